"""The return-conditioning curve of an RvS-R policy: the score it achieves against the return it is asked for.

A return-conditioned policy is judged by how its score follows the target (Emmons et al.'s analysis): on a
medium-expert dataset a policy that "picks out" the expert part rises with the target up to the expert's level.
The curve scores the policy at a range of target returns (default: the dataset's lowest episode return to 1.2x
its highest), every target on the same episode seeds, and is drawn against the diagonal, with the dataset's
episode-return histogram underneath. The histogram travels in the checkpoint (``WeightedBC.hparams
.dataset_returns``), so a checkpoint alone is enough.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wsrl.common.figures import pyplot, save_figure
from wsrl.core.methods import conditions_on_return
from wsrl.evaluation.scores import evaluate

if TYPE_CHECKING:
    from wsrl.core.config import ResolvedEnv
    from wsrl.core.module import WeightedBC


class ConditioningError(ValueError):
    """No curve can be made; the message says why and what to pass instead."""


def return_histogram(returns: np.ndarray, bins: int = 40) -> dict:
    """A dataset's episode returns as a small histogram (raw returns): the range for the default targets and the
    bars under the curve."""
    counts, edges = np.histogram(np.asarray(returns, dtype=np.float64), bins)
    return {"counts": counts.tolist(), "edges": edges.tolist()}


def dataset_histogram(module: WeightedBC, env: ResolvedEnv) -> dict | None:
    """The histogram stored in the checkpoint; for checkpoints made before it was stored, the local dataset's;
    None when neither exists."""
    if module.hparams.get("dataset_returns") is not None:
        return module.hparams.dataset_returns
    from wsrl.core.data import load_transitions
    from wsrl.datasets.store import exists_locally

    if exists_locally(env.dataset_id):
        return return_histogram(load_transitions(env.dataset_id).episode_returns())
    return None


def default_targets(histogram: dict, points: int) -> np.ndarray:
    """``points`` raw target returns from the dataset's lowest episode return to 1.2x its highest."""
    low, high = histogram["edges"][0], histogram["edges"][-1]
    return np.linspace(low, high + 0.2 * abs(high), points)


def require_conditioned(module: WeightedBC) -> None:
    """Refuse a policy that takes no target return."""
    if not conditions_on_return(module.method):
        raise ConditioningError("a BC policy (method=bc) takes no target return, so it has no conditioning curve; "
                                "pass an RvS-R checkpoint (method=rvs_r)")


def conditioning_curve(module: WeightedBC, env: ResolvedEnv, targets: np.ndarray, episodes: int, seed: int) -> dict:
    """Score the policy at each raw target return, each on the same ``episodes`` episode seeds."""
    require_conditioned(module)
    trained_target = module.target_return
    achieved = []
    try:
        for target in targets:
            module.target_return = float(target)
            achieved.append(env.normalize(np.array(evaluate(module, env, episodes, seed)["returns"])))
    finally:
        module.target_return = trained_target
    targets = np.asarray(targets, dtype=np.float64)
    return {"targets": targets.tolist(), "requested": env.normalize(targets).tolist(),
            "achieved_mean": [float(a.mean()) for a in achieved], "achieved_std": [float(a.std()) for a in achieved],
            "trained_target": float(trained_target), "episodes": episodes, "seed": seed}


def draw(ax, ax_hist, curve: dict, histogram: dict | None, env: ResolvedEnv, label: str | None = None) -> None:
    """Achieved against requested normalized return on ``ax`` (mean ± std over episodes, the diagonal, the
    training target), the dataset's episode returns as bars on ``ax_hist`` below it."""
    requested, mean, std = (np.array(curve[k]) for k in ("requested", "achieved_mean", "achieved_std"))
    ends = [requested.min(), requested.max()]
    ax.plot(ends, ends, color="0.6", linestyle="--", linewidth=1, label="achieved = requested")
    ax.axvline(float(env.normalize(curve["trained_target"])), color="tab:green", linestyle=":", linewidth=1.2,
               label="training-time target")
    ax.errorbar(requested, mean, yerr=std, marker="o", markersize=4, capsize=3, color="tab:blue",
                label=label or f"achieved (± std, {curve['episodes']} episodes)")
    ax.set_ylabel("achieved normalized return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if histogram is not None:
        edges = env.normalize(np.array(histogram["edges"]))
        ax_hist.bar(edges[:-1], histogram["counts"], width=np.diff(edges), align="edge", color="0.55")
    else:
        ax_hist.text(0.5, 0.5, "dataset returns unknown", ha="center", va="center", transform=ax_hist.transAxes)
    ax_hist.set_ylabel("dataset\nepisodes", fontsize=9)
    ax_hist.set_xlabel("requested normalized return (target)")


def plot_conditioning(curve: dict, histogram: dict | None, env: ResolvedEnv, title: str, png: Path) -> Path:
    """The curve of one policy as a PNG (written aside, then renamed into place)."""
    plt = pyplot()

    fig, (ax, ax_hist) = plt.subplots(2, 1, figsize=(6.4, 6), sharex=True, height_ratios=[3, 1])
    draw(ax, ax_hist, curve, histogram, env)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, png)
    return png


