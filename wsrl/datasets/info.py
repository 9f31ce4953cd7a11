"""Inspect a dataset: size, return quantiles, normalized score, and a histogram of trajectory returns."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsrl.datasets.store import DatasetError, datasets_root, exists_locally
from wsrl.datasets.suite import normalize


def info(dataset_id: str, png: Path | None = None) -> dict:
    """Print a summary of ``dataset_id`` and write the histogram of its episode returns to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import minari

    if not exists_locally(dataset_id):
        raise DatasetError(f"{dataset_id} is not in {datasets_root()}; make it with `python -m wsrl.datasets "
                           "generate|import-d4rl|download ...` (see --help)")
    ds = minari.load_dataset(dataset_id)
    returns = np.array([ep.rewards.sum() for ep in ds.iterate_episodes()])
    lo, hi = ds.storage.metadata.get("ref_min_score"), ds.storage.metadata.get("ref_max_score")
    summary = {"dataset_id": dataset_id, "episodes": int(ds.total_episodes), "steps": int(ds.total_steps),
               "return_quantiles": dict(zip(("min", "q25", "median", "q75", "max"),
                                            np.quantile(returns, [0, 0.25, 0.5, 0.75, 1]).round(1).tolist(),
                                            strict=True))}
    scores = returns
    if lo is not None and hi is not None:
        scores = normalize(returns, lo, hi)
        summary["normalized_score"] = {"mean": round(float(scores.mean()), 1), "std": round(float(scores.std()), 1)}
    for key, value in summary.items():
        print(f"{key:>18}: {value}")
    png = Path(png or f"{dataset_id.replace('/', '_')}_returns.png")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(scores, bins=50, color="tab:blue")
    ax.set(title=dataset_id, xlabel="D4RL normalized return" if scores is not returns else "episode return",
           ylabel="episodes")
    fig.tight_layout()
    tmp = png.with_name(png.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(png)
    print(f"{'histogram':>18}: {png}")
    summary["png"] = str(png)
    return summary
