"""Inspect datasets: size, content hash, return quantiles, normalized score, and histograms of trajectory returns.

Several datasets go side by side in one figure, on one shared axis, so that their modes can be compared (the
medium-expert sets should show two: ``docs/medium_expert_returns.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsrl.common.figures import pyplot, save_figure
from wsrl.datasets.store import DatasetError, dataset_hash, datasets_root, exists_locally, read_episodes, read_metadata
from wsrl.datasets.suite import normalize


def summarize(dataset_id: str) -> tuple[dict, np.ndarray]:
    """The printed summary of ``dataset_id`` (with its content hash, the one runs record: two machines may make
    datasets that differ in the last digits) and its episodes' returns, normalized when the dataset carries
    reference scores (raw otherwise)."""
    if not exists_locally(dataset_id):
        raise DatasetError(f"{dataset_id} is not in {datasets_root()}; make it with `python -m wsrl.datasets "
                           "generate|import-d4rl|download ...` (see --help)")
    meta = read_metadata(dataset_id)
    episodes = read_episodes(dataset_id)
    returns = np.array([rewards.sum() for rewards in episodes["rewards"]])
    summary = {"dataset_id": dataset_id, "episodes": int(meta["total_episodes"]), "steps": int(meta["total_steps"]),
               "content_hash": dataset_hash(dataset_id, episodes),
               "return_quantiles": dict(zip(("min", "q25", "median", "q75", "max"),
                                            np.quantile(returns, [0, 0.25, 0.5, 0.75, 1]).round(1).tolist(),
                                            strict=True))}
    lo, hi = meta.get("ref_min_score"), meta.get("ref_max_score")
    if lo is None or hi is None:
        return summary, returns
    scores = normalize(returns, lo, hi)
    summary["normalized_score"] = {"mean": round(float(scores.mean()), 1), "std": round(float(scores.std()), 1)}
    return summary, scores


def info(dataset_ids: str | list[str], png: Path | None = None) -> list[dict]:
    """Print a summary of each dataset and write their return histograms, one panel each, to ``png``
    (default ``<first id>_returns.png``)."""
    plt = pyplot()
    ids = [dataset_ids] if isinstance(dataset_ids, str) else list(dataset_ids)
    found = [summarize(i) for i in ids]  # every id checked before anything is drawn or written
    for summary, _ in found:
        for key, value in summary.items():
            print(f"{key:>18}: {value}")
    normalized = all("normalized_score" in s for s, _ in found)
    png = Path(png or f"{ids[0].replace('/', '_')}_returns.png")
    fig, axes = plt.subplots(1, len(ids), figsize=(5 * len(ids) + 2, 4), sharex=normalized, squeeze=False)
    for ax, (summary, scores) in zip(axes[0], found, strict=True):
        ax.hist(scores, bins=50, color="tab:blue")
        mean = summary.get("normalized_score", {}).get("mean")
        ax.set(title=summary["dataset_id"] + (f" (mean {mean})" if mean is not None else ""), ylabel="episodes",
               xlabel="D4RL normalized return" if "normalized_score" in summary else "episode return")
    fig.tight_layout()
    save_figure(fig, png, dpi=100)
    print(f"{'histogram':>18}: {png}")
    return [{**summary, "png": str(png)} for summary, _ in found]
