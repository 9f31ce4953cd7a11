"""Diagnostics of a weighting, one implementation for ``results.json``, the loggers and the figures: how uneven the
weights are (effective sample fraction, max / mean) and where they put the mass (the top 10 % of trajectories, the
valley between the dataset's two modes)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from wsrl.core.weighting import bin_index, top_trajectories

TOP_SHARE = 0.1  # top10_share: the weight on the transitions of the top 10 % of trajectories (top_trajectories)
MODE_BINS = 50  # the modes: peaks of the histogram of trajectory returns (one count per trajectory), 50 bins,
MODE_SIGMA = 2.0  # smoothed with a Gaussian of 2 bins,
MODE_PROMINENCE = 0.25  # peaks of prominence >= 25 % of the highest smoothed count; the two highest are the modes
VALLEY = 0.5  # between them: the bins where the smoothed count is below half the lower mode's


def between_modes(returns: np.ndarray) -> np.ndarray | None:
    """Mask of the trajectories whose return lies between the dataset's two modes, None for a unimodal dataset.

    The histogram of trajectory returns (``MODE_BINS`` equal-width bins over [min, max], one count per trajectory)
    is smoothed with a Gaussian of ``MODE_SIGMA`` bins; its peaks of prominence at least ``MODE_PROMINENCE`` of its
    maximum (edge bins may be peaks) are the modes, and the two highest are the two modes. A trajectory is between
    them when its bin lies strictly between the two modes' bins and the smoothed count there is below ``VALLEY``
    times the lower mode's: the valley, not the modes' inner shoulders. Fewer than two such peaks: None.
    """
    from scipy.signal import find_peaks

    returns = np.asarray(returns, dtype=np.float64)
    idx = bin_index(returns, MODE_BINS)
    smooth = gaussian_filter1d(np.bincount(idx, minlength=MODE_BINS).astype(np.float64), MODE_SIGMA, mode="constant")
    peaks, _ = find_peaks(np.concatenate([[0.0], smooth, [0.0]]), prominence=MODE_PROMINENCE * smooth.max())
    peaks = peaks - 1
    if len(peaks) < 2:
        return None
    low, high = sorted(peaks[np.argsort(-smooth[peaks], kind="stable")[:2]])
    valley = np.zeros(MODE_BINS, dtype=bool)
    valley[low + 1:high] = smooth[low + 1:high] < VALLEY * min(smooth[low], smooth[high])
    return valley[idx]


def weight_diagnostics(weights: np.ndarray, returns: np.ndarray, lengths: np.ndarray) -> dict[str, float | None]:
    """How uneven the per-transition ``weights`` are and where they put the mass, with ``returns`` and ``lengths``
    per trajectory:

    - min, max, mean: of the weights (mean 1 as rescaled);
    - effective_fraction: Kish's effective sample size as a fraction of N, (sum w)^2 / (N sum w^2): 1 for equal
      weights, small when a few dominate (topk: the kept share of transitions);
    - top10_share: the share of the total weight on the transitions of the top 10 % of trajectories by return
      (``top_trajectories``); top10_share_uniform: the same without weights (their share of transitions);
    - between_modes_share (and _uniform): the share on trajectories between the dataset's two modes
      (``between_modes``); None (null) for a unimodal dataset.
    """
    weights = np.asarray(weights, dtype=np.float64)
    ids = np.repeat(np.arange(len(returns)), lengths)
    mass = np.bincount(ids, weights, minlength=len(returns)) / weights.sum()
    share = np.asarray(lengths, dtype=np.float64) / np.sum(lengths)
    top = top_trajectories(returns, TOP_SHARE)
    between = between_modes(returns)
    return {"min": float(weights.min()), "max": float(weights.max()), "mean": float(weights.mean()),
            "effective_fraction": effective_fraction(weights),
            "top10_share": float(mass[top].sum()), "top10_share_uniform": float(share[top].sum()),
            "between_modes_share": None if between is None else float(mass[between].sum()),
            "between_modes_share_uniform": None if between is None else float(share[between].sum())}


def effective_fraction(weights: np.ndarray) -> float:
    """Kish's effective sample size as a fraction of N: (sum w)^2 / (N sum w^2)."""
    weights = np.asarray(weights, dtype=np.float64)
    return float(weights.sum() ** 2 / (len(weights) * np.square(weights).sum()))
