"""Uncertainty for the report: per-cell intervals over seeds, per-dataset differences and rliable's aggregates.

Per cell (one dataset, one method) the report gives the Student-t 95 % interval of the mean over seeds: with
3-5 seeds a bootstrap over seeds is too narrow. Per dataset, two columns are compared by the difference of their
means with Welch's 95 % interval and two-sided p-value (``welch``), Holm's step-down correction over all the
comparisons of a table (``holm``). Over all datasets and seeds it follows Agarwal et al. (NeurIPS 2021) with
their package ``rliable``: interquartile mean (IQM) and mean with stratified-bootstrap intervals (runs resampled
within each dataset), the probability of improvement P(X > Y) with its interval and per dataset
(``improvement_per_task``), and performance profiles (the fraction of runs scoring above each threshold).
rliable (and arch, which it imports, ~2 s) is imported only here, inside the functions that need it. Its
bootstrap draws from NumPy's global generator; ``_seeded`` fixes that generator for one call so that a report is
reproducible, then restores it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from scipy import stats

from wsrl.common.figures import pyplot, save_figure

LEVEL = 0.95  # every interval in the report


def seed_interval(scores: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """The Student-t interval of the mean of ``scores`` (one per seed); None for fewer than two seeds."""
    scores = np.asarray(scores, dtype=float)
    if scores.size < 2:
        return None
    mean, sem = scores.mean(), stats.sem(scores)
    if sem == 0:
        return float(mean), float(mean)
    lo, hi = stats.t.interval(level, scores.size - 1, loc=mean, scale=sem)
    return float(lo), float(hi)


def spread(scores: np.ndarray) -> dict[str, float | None]:
    """The seeds' median, lowest, highest and sample standard deviation (ddof=1; None for one seed)."""
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        return {"median": None, "min": None, "max": None, "sd": None}
    return {"median": float(np.median(scores)), "min": float(scores.min()), "max": float(scores.max()),
            "sd": float(scores.std(ddof=1)) if scores.size > 1 else None}


def welch(x: np.ndarray, y: np.ndarray, level: float = LEVEL) -> dict[str, float | None] | None:
    """mean(x) - mean(y) with Welch's interval (Welch-Satterthwaite degrees of freedom) and the two-sided p-value
    of Welch's t-test (scipy's ``ttest_ind(equal_var=False)``); None when either has fewer than two values. Where
    neither varies the difference is given without interval, degrees of freedom or p (the test is undefined)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or y.size < 2:
        return None
    difference = float(x.mean() - y.mean())
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return {"difference": difference, "low": None, "high": None, "df": None, "p": None}
    with warnings.catch_warnings():  # scipy calls a sample whose seeds score the same "nearly identical": it is exact
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        test = stats.ttest_ind(x, y, equal_var=False)
    interval = test.confidence_interval(level)
    return {"difference": difference, "low": float(interval.low), "high": float(interval.high),
            "df": float(test.df), "p": float(test.pvalue)}


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error) of ``pvalues``, in their order."""
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(range(len(pvalues)), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def improvement_per_task(x: np.ndarray, y: np.ndarray) -> list[float]:
    """P(X > Y) on each dataset (column) of two (runs x datasets) matrices: rliable's ``probability_of_improvement``
    on that column alone (the fraction of pairs of runs where X scores higher, ties counted half)."""
    from rliable import metrics

    return [float(metrics.probability_of_improvement(a[:, None], b[:, None]))
            for a, b in zip(np.asarray(x, dtype=float).T, np.asarray(y, dtype=float).T, strict=True)]


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def aggregates(scores: Mapping[str, np.ndarray], reps: int, seed: int = 0) -> dict[str, dict]:
    """Per method, from its (runs x datasets) matrix: IQM and mean over all runs with 95 % stratified-bootstrap
    intervals, as ``{method: {"IQM": (estimate, low, high), "mean": (...)}}``."""
    from rliable import library as rly
    from rliable import metrics

    def iqm_and_mean(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    with _seeded(seed):
        points, intervals = rly.get_interval_estimates(dict(scores), iqm_and_mean, reps=reps,
                                                       confidence_interval_size=LEVEL)
    return {m: {name: (float(points[m][i]), float(intervals[m][0, i]), float(intervals[m][1, i]))
                for i, name in enumerate(("IQM", "mean"))} for m in scores}


def improvement(scores: Mapping[str, np.ndarray], pairs: Mapping[str, str] | Iterable[tuple[str, str]], reps: int,
                seed: int = 0) -> dict[tuple[str, str], tuple[float, float, float]]:
    """P(X > Y) for each ``(X, Y)`` of ``pairs`` (or ``X: Y`` of a mapping): the chance that a run of X on a
    dataset beats a run of Y on the same dataset, averaged over datasets, with its 95 % interval (runs of X and Y
    resampled independently)."""
    from rliable import library as rly
    from rliable import metrics

    out = {}
    for x, y in pairs.items() if isinstance(pairs, Mapping) else pairs:
        with _seeded(seed):
            points, intervals = rly.get_interval_estimates({"p": [scores[x], scores[y]]},
                                                           metrics.probability_of_improvement, reps=reps,
                                                           confidence_interval_size=LEVEL)
        out[(x, y)] = (float(points["p"]), float(intervals["p"][0, 0]), float(intervals["p"][1, 0]))
    return out


def thresholds(scores: Mapping[str, np.ndarray], points: int = 101) -> np.ndarray:
    """Score thresholds for the performance profile: from 0 (or the lowest score) to the highest score."""
    every = np.concatenate([s.ravel() for s in scores.values()])
    return np.linspace(min(0.0, float(every.min())), max(100.0, float(every.max())), points)


def profiles(scores: Mapping[str, np.ndarray], taus: np.ndarray, reps: int,
             seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Performance profiles (fraction of runs with score > tau, over all datasets) and their 95 % bands."""
    from rliable import library as rly

    with _seeded(seed):
        return rly.create_performance_profile(dict(scores), taus, reps=reps, confidence_interval_size=LEVEL)


def plot(agg: dict[str, dict], poi: dict[tuple[str, str], tuple[float, float, float]], taus: np.ndarray,
         profile: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], title: str, png: Path) -> None:
    """One figure: IQM and mean with their intervals, P(X > Y) with its interval, and the performance profiles."""
    plt = pyplot()
    from rliable import plot_utils

    methods = list(agg)
    palette = plt.get_cmap("tab10").colors
    colors = {m: palette[i % len(palette)] for i, m in enumerate(methods)}  # Table 5 has 12 columns: colours repeat
    fig, axes = plt.subplots(1, 4, figsize=(17, 0.5 * max(len(methods), len(poi)) + 2.8),
                             gridspec_kw={"width_ratios": [1, 1, 1.2, 1.8]})
    for ax, name in zip(axes[:2], ("IQM", "mean"), strict=True):
        for i, m in enumerate(methods):
            est, lo, hi = agg[m][name]
            ax.barh(i, hi - lo, left=lo, height=0.6, color=colors[m], alpha=0.75)
            ax.vlines(est, i - 0.3, i + 0.3, color="k")
        ax.set(title=f"{name} ({LEVEL:.0%} CI)", xlabel="normalized score", yticks=range(len(methods)))
        ax.set_yticklabels(methods if name == "IQM" else [])
        ax.grid(axis="x", alpha=0.3)
    labels = [f"{x} > {y}" for x, y in poi]
    for i, (est, lo, hi) in enumerate(poi.values()):
        axes[2].barh(i, hi - lo, left=lo, height=0.6, color="tab:gray", alpha=0.6)
        axes[2].vlines(est, i - 0.3, i + 0.3, color="k")
    axes[2].axvline(0.5, color="k", ls=":", lw=1)
    axes[2].set(title=f"P(X > Y) ({LEVEL:.0%} CI)", xlim=(0, 1), yticks=range(len(labels)))
    axes[2].set_yticklabels(labels, fontsize=8)
    for ax in axes[:3]:
        ax.invert_yaxis()  # top to bottom in the table's order
    plot_utils.plot_performance_profiles(profile[0], taus, performance_profile_cis=profile[1], ax=axes[3],
                                         colors=colors, xlabel=r"normalized score $\tau$",
                                         ylabel=r"fraction of runs with score $> \tau$", labelsize="medium",
                                         ticklabelsize="small", legend=True, legendsize="small")
    axes[3].set_title("performance profile")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, png, dpi=100)
