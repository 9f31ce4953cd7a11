"""What each weighting scheme favours, for one dataset: ``python -m wsrl.report.weight_mass halfcheetah_medium_expert``.

Every scheme of ``wsrl.core.weighting.SCHEMES`` with its published defaults (``SamplerConfig``'s; LDS on the trajectory
return) weights the dataset's transitions; the figure draws, over the histogram of trajectory returns (grey: the
share of transitions per bin, what a uniform draw sees), each scheme's share of the total weight per bin (what its
draw samples or its loss sees), and shades the returns between the dataset's two modes (``between_modes``). The
diagnostics of each scheme (``weight_diagnostics``) go into a JSON file beside the PNG and are printed.
Default output: ``docs/weight_mass_<dataset>.png`` and ``.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from wsrl.common.figures import pyplot, save_figure
from wsrl.common.files import write_json_atomic
from wsrl.core.config import SamplerConfig
from wsrl.core.data import DataError, Transitions, load_transitions, sample_weights
from wsrl.core.diagnostics import MODE_BINS, between_modes, weight_diagnostics
from wsrl.core.weighting import SCHEMES, bin_index, sampler_name
from wsrl.datasets.suite import ROBOTS, dataset_id
from wsrl.evaluation.media import return_distribution

DEFAULT_SCHEMES = [s for s in SCHEMES if s != "uniform"]


def resolve_dataset(name: str) -> tuple[str, str]:
    """A Minari id (``wsrl/hopper/medium-expert-v0``) or an env option name of the generated suite
    (``hopper_medium_expert``) -> (dataset id, file-name stem)."""
    if "/" in name:
        return name, name.replace("/", "_").replace("-", "_")
    robot = next((r for r in ROBOTS if name.startswith(f"{r}_")), None)
    if robot is None:
        raise DataError(f"{name!r} is neither a Minari id nor <robot>_<quality> with robot one of {', '.join(ROBOTS)}")
    return dataset_id(robot, name.removeprefix(f"{robot}_"), "generated", "full"), name


def scheme_masses(data: Transitions, schemes: list[str], bins: int = 50) -> dict:
    """Bin edges over the trajectory returns, the dataset's share of transitions per bin, and per scheme (each with
    SamplerConfig's defaults, in the draw) its share of the weight per bin and its diagnostics."""
    returns = data.trajectory_returns()
    edges, data_share, _ = return_distribution(returns, None, bins)
    out = {"edges": edges.tolist(), "dataset": data_share.tolist(), "schemes": {}}
    for scheme in schemes:
        cfg = SamplerConfig(name=sampler_name(scheme, "sampling"), scheme=scheme, weighting="sampling")
        weights = sample_weights(data, cfg, 1.0)
        if weights is None:
            weights = np.ones(len(returns))
        mass = return_distribution(returns, weights, bins)[2]
        out["schemes"][scheme] = {"mass": mass.tolist(), "diagnostics": weight_diagnostics(
            weights, data.episode_returns(), data.episode_lengths)}
    return out


def plot(masses: dict, data: Transitions, title: str, png: Path) -> Path:
    plt = pyplot()
    edges = np.array(masses["edges"])
    fig, ax = plt.subplots(figsize=(9, 4.8))
    ax.bar(edges[:-1], masses["dataset"], width=np.diff(edges), align="edge", color="0.8",
           label="dataset (uniform draw)")
    returns = data.episode_returns()
    between = between_modes(returns)
    if between is not None and between.any():  # the valley's bins of the mode histogram, shaded
        lo, hi = returns.min(), returns.max()
        width = (hi - lo) / MODE_BINS
        for i, b in enumerate(np.unique(bin_index(returns, MODE_BINS)[between])):
            ax.axvspan(lo + b * width, lo + (b + 1) * width, color="tab:orange", alpha=0.12, lw=0,
                       label="between the modes" if i == 0 else None)
    for i, (scheme, entry) in enumerate(masses["schemes"].items()):
        d = entry["diagnostics"]
        between_share = "" if d["between_modes_share"] is None else f", between {d['between_modes_share']:.0%}"
        ax.stairs(entry["mass"], edges, color=f"C{i}", lw=1.8, label=f"{scheme}: ESS {d['effective_fraction']:.0%}"
                  f", top-10 % {d['top10_share']:.0%}{between_share}")
    ax.set(xlabel="trajectory return of the transition (undiscounted)", ylabel="share of the weight per bin",
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png)
    return png


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m wsrl.report.weight_mass", description=__doc__.splitlines()[0])
    p.add_argument("dataset", help="a Minari id (wsrl/hopper/medium-expert-v0) or an env option of the generated "
                   "suite (hopper_medium_expert)")
    p.add_argument("--schemes", nargs="+", choices=list(SCHEMES), default=DEFAULT_SCHEMES,
                   help="schemes to draw (default: every weighting scheme)")
    p.add_argument("--bins", type=int, default=50, help="bins of the return histogram")
    p.add_argument("--out", type=Path, help="the PNG (default: docs/weight_mass_<dataset>.png); the JSON beside it")
    a = p.parse_args(argv)
    try:
        ident, stem = resolve_dataset(a.dataset)
        data = load_transitions(ident)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    png = a.out or Path("docs") / f"weight_mass_{stem}.png"
    masses = scheme_masses(data, a.schemes, a.bins)
    plot(masses, data, f"{ident}: where each scheme puts the weight ({len(data.episode_starts)} trajectories)", png)
    write_json_atomic(png.with_suffix(".json"), {"dataset_id": ident, **masses})
    for scheme, entry in masses["schemes"].items():
        print(f"{scheme:8s} " + " ".join(f"{k} {v:.3g}" if v is not None else f"{k} null"
                                         for k, v in entry["diagnostics"].items()))
    print(f"-> {png}, {png.with_suffix('.json')}")
    return png


if __name__ == "__main__":
    main()
