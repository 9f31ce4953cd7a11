"""Sample weights from imbalanced regression: label distribution smoothing (LDS, Yang et al. 2021).

The paper weights each transition by ``w(y) = 1 / smoothed density(y)``. We follow the reference code of
"Delving into Deep Imbalanced Regression" (``_prepare_weights``): count labels per bin, take the square root of
the counts (``sqrt_inv``, their default for regression) or clip them to [5, 1000] (``inverse``), convolve the
counts with a symmetric kernel normalized to peak 1 (``mode='constant'``), weight each sample by the inverse of
its bin's smoothed count, and rescale so the weights average 1. Their labels are integers (ages); ours are
continuous, so bins are equal-width over the label's observed range. Everything is one histogram, one
convolution and one gather: well under a second for 2M samples.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import convolve1d, gaussian_filter1d
from scipy.signal.windows import triang


def lds_kernel(kernel: str, ks: int, sigma: float) -> np.ndarray:
    """Symmetric smoothing window of odd length ``ks`` with peak 1 (the reference ``get_lds_kernel_window``)."""
    half = (ks - 1) // 2
    if kernel == "gaussian":
        impulse = np.zeros(ks)
        impulse[half] = 1.0
        window = gaussian_filter1d(impulse, sigma=sigma)
    elif kernel == "triangular":  # scipy's triang, as the reference code
        window = triang(ks)
    elif kernel == "laplace":
        window = np.exp(-np.abs(np.arange(-half, half + 1)) / sigma) / (2.0 * sigma)
    else:
        raise ValueError(f"unknown LDS kernel {kernel!r}: use gaussian, triangular or laplace")
    return window / window.max()


def bin_index(labels: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each label over [min, max]; the maximum falls in the last bin."""
    lo, hi = labels.min(), labels.max()
    scaled = (labels - lo) / (hi - lo) if hi > lo else np.zeros_like(labels)
    return np.minimum((scaled * bins).astype(np.int64), bins - 1)


def lds_weights(labels: np.ndarray, bins: int = 100, kernel: str = "gaussian", ks: int = 5, sigma: float = 2.0,
                reweight: str = "sqrt_inv", clip_max: float | None = None) -> np.ndarray:
    """LDS weights (mean 1) for 1-D labels, or the mean over dimensions of per-dimension weights for 2-D labels."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim == 2:
        per_dim = [lds_weights(labels[:, d], bins, kernel, ks, sigma, reweight) for d in range(labels.shape[1])]
        return _rescale(np.mean(per_dim, axis=0), clip_max)
    idx = bin_index(labels, bins)
    counts = np.bincount(idx, minlength=bins).astype(np.float64)
    if reweight == "sqrt_inv":
        counts = np.sqrt(counts)
    elif reweight == "inverse":
        counts = np.clip(counts, 5, 1000)
    else:
        raise ValueError(f"unknown reweight {reweight!r}: use sqrt_inv or inverse")
    smoothed = convolve1d(counts, weights=lds_kernel(kernel, ks, sigma), mode="constant")
    return _rescale(1.0 / smoothed[idx], clip_max)


def _rescale(weights: np.ndarray, clip_max: float | None) -> np.ndarray:
    weights = weights * (len(weights) / weights.sum())
    if clip_max is not None:
        weights = np.minimum(weights, clip_max)
        weights *= len(weights) / weights.sum()
    return weights


class IndexSampler:
    """Draws batches of transition indices on the training device, uniformly or in proportion to weights.

    Weighted draws search a precomputed cumulative sum (O(batch log N)) instead of rescanning all N weights
    per call as ``np.random.choice(p=...)`` or ``torch.multinomial`` do.
    """

    def __init__(self, n: int, batch_size: int, weights: torch.Tensor | None, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.cdf = None if weights is None else torch.cumsum(weights.double(), 0)
        device = generator.device
        self._uniform = torch.empty(batch_size, dtype=torch.float64, device=device)

    def __call__(self) -> torch.Tensor:
        if self.cdf is None:
            return torch.randint(self.n, (self.batch_size,), generator=self.generator, device=self.generator.device)
        u = self._uniform.uniform_(0.0, 1.0, generator=self.generator) * self.cdf[-1]
        return torch.searchsorted(self.cdf, u, right=True).clamp_(max=self.n - 1)
