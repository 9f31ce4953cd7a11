"""Sample weights: label distribution smoothing from imbalanced regression (LDS, Yang et al. 2021), the weighting
schemes of offline RL beside it (``SCHEMES``: top-x % filtering, RW / AW, CWBC, LDS x RW; see below), where the
weights act (``PLACEMENTS``: in the loss or in the draw) and the index sampler that draws by weight
(their diagnostics: ``wsrl.core.diagnostics``).

The paper weights each transition by ``w(y) = 1 / smoothed density(y)``. We follow the reference code of
"Delving into Deep Imbalanced Regression" (``_prepare_weights``): count labels per bin, take the square root of
the counts (``sqrt_inv``, their default for regression) or clip them to [5, 1000] (``inverse``), convolve the
counts with a symmetric kernel normalized to peak 1 (``mode='constant'``), weight each sample by the inverse of
its bin's smoothed count, and rescale so the weights average 1. Their labels are integers (ages); ours are
continuous, so bins are equal-width over the label's observed range. Everything is one histogram, one
convolution and one gather: well under a second for 2M samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

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


def min_max(values: np.ndarray) -> np.ndarray:
    """(v - min) / (max - min); all zeros when every value is the same."""
    lo, hi = values.min(), values.max()
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values, dtype=np.float64)


def bin_index(labels: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each label over [min, max]; the maximum falls in the last bin."""
    return np.minimum((min_max(labels) * bins).astype(np.int64), bins - 1)


def percentile_element(ranked: np.ndarray, percentile: float) -> float:
    """The element of the sorted ``ranked`` at index int(percentile * E), at most the last: the percentile of CWBC's
    reference code (tung-nd/cwbc), for its kappa and its conservative loss's threshold."""
    return ranked[min(int(percentile * len(ranked)), len(ranked) - 1)]


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


# --- The weighting schemes of the field, on one footing -----------------------------------------------
#
# Every scheme gives each transition a non-negative raw weight; ``scheme_weights`` rescales them to mean 1 over the
# dataset (then applies ``clip_max``). The same weights act in the loss (they multiply each transition's
# log-likelihood) or in the draw (each transition is drawn with probability weight / sum): in expectation the two
# give the same gradient. A trajectory is an episode of the dataset (its boundaries: the termination or truncation
# flag of its last transition); G_i is its undiscounted return, T_i its length, s0_i its first state.


@dataclass(frozen=True)
class Episodes:
    """What the schemes weight by: per trajectory its return, length and first state; per transition the label LDS
    balances (a function, since return-to-go labels cost a pass over the data that only LDS needs)."""

    returns: np.ndarray  # [E] undiscounted return G_i of each trajectory
    lengths: np.ndarray  # [E] number of transitions T_i
    initial_states: np.ndarray  # [E, obs_dim] s0_i, the state of each trajectory's first transition
    lds_labels: Callable[[], np.ndarray]  # [N] or [N, d] labels LDS balances (SamplerConfig.target)

    def per_transition(self, per_trajectory: np.ndarray) -> np.ndarray:
        """Each transition given its trajectory's value."""
        return np.repeat(per_trajectory, self.lengths)


class SchemeParams(Protocol):
    """The knobs the schemes read (SamplerConfig has them; see its comments for their meaning and defaults)."""

    bins: int
    kernel: str
    ks: int
    sigma: float
    reweight: str
    top_fraction: float
    alpha: float
    aw_ridge: float
    cwbc_bins: int
    cwbc_lambda: float
    cwbc_percentile: float


def top_trajectories(returns: np.ndarray, fraction: float) -> np.ndarray:
    """Mask of the top ``fraction`` of trajectories by return: k = max(1, floor(fraction * E)) of them (CORL's
    any_percent_bc and Hong et al.'s TopK count trajectories); ties at the cut go to the earlier trajectory."""
    k = max(1, int(np.floor(fraction * len(returns) + 1e-9)))
    keep = np.zeros(len(returns), dtype=bool)
    keep[np.argsort(-np.asarray(returns, dtype=np.float64), kind="stable")[:k]] = True
    return keep


def return_tilt(values: np.ndarray, alpha: float) -> np.ndarray:
    """exp(v^ / alpha) with v^ the min-max normalised values, divided by exp(1 / alpha) so the largest is 1 (the
    same probabilities as Hong et al.'s softmax, without overflow at small alpha)."""
    return np.exp((min_max(np.asarray(values, dtype=np.float64)) - 1.0) / alpha)


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Fitted values of a ridge regression of ``y`` on ``x`` with an unpenalised intercept, on standardised
    columns of ``x`` (zero mean, unit std; constant columns drop out): beta = (Z'Z + lam I)^-1 Z'(y - mean y)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(y), -1)
    std = x.std(0)
    z = np.where(std > 0, (x - x.mean(0)) / np.where(std > 0, std, 1.0), 0.0)
    y = np.asarray(y, dtype=np.float64)
    beta = np.linalg.lstsq(z.T @ z + lam * np.eye(z.shape[1]), z.T @ (y - y.mean()), rcond=None)[0]
    return y.mean() + z @ beta


def cwbc_trajectory_weights(returns: np.ndarray, bins: int, lam: float, percentile: float) -> np.ndarray:
    """CWBC's trajectory weight exp(-|c_b - G*| / kappa) / (f_b + lam) (Nguyen et al. 2022, tung-nd/cwbc
    ``reweight_bin``): b the trajectory's bin of ``bins`` equal-width bins over [min, max] of the returns, c_b its
    centre, f_b the share of *trajectories* in it (the reference histograms one return per trajectory), G* the best
    return, kappa = G* - the sorted returns' element at index int(percentile * E) (the reference's percentile; 0.1
    where that is 0, as there)."""
    returns = np.asarray(returns, dtype=np.float64)
    idx = bin_index(returns, bins)
    share = np.bincount(idx, minlength=bins) / len(returns)
    lo, hi = returns.min(), returns.max()
    centres = lo + (np.arange(bins) + 0.5) * (hi - lo) / bins
    ranked = np.sort(returns)
    best = ranked[-1]
    kappa = best - percentile_element(ranked, percentile)
    kappa = kappa if kappa > 0 else 0.1
    return np.exp(-np.abs(centres[idx] - best) / kappa) / (share[idx] + lam)


def _lds(ep: Episodes, p: SchemeParams) -> np.ndarray:
    return lds_weights(ep.lds_labels(), p.bins, p.kernel, p.ks, p.sigma, p.reweight)


def _topk(ep: Episodes, p: SchemeParams) -> np.ndarray:
    return ep.per_transition(top_trajectories(ep.returns, p.top_fraction).astype(np.float64))


def _rw(ep: Episodes, p: SchemeParams) -> np.ndarray:
    return ep.per_transition(return_tilt(ep.returns, p.alpha))


def _aw(ep: Episodes, p: SchemeParams) -> np.ndarray:
    advantage = ep.returns - ridge_fit(ep.initial_states, ep.returns, p.aw_ridge)
    return ep.per_transition(return_tilt(advantage, p.alpha))


def _cwbc(ep: Episodes, p: SchemeParams) -> np.ndarray:
    # the reference draws a trajectory with probability proportional to its weight, then one of its steps
    # uniformly: a transition's weight is its trajectory's divided by the trajectory's length
    w = cwbc_trajectory_weights(ep.returns, p.cwbc_bins, p.cwbc_lambda, p.cwbc_percentile)
    return ep.per_transition(w / ep.lengths)


def _lds_rw(ep: Episodes, p: SchemeParams) -> np.ndarray:
    return _lds(ep, p) * _rw(ep, p)


WeightsT = TypeVar("WeightsT")  # per-transition weights: an array or a tensor


@dataclass(frozen=True)
class Placement:
    """Where a sampler's weights act (``SamplerConfig.weighting``)."""

    in_loss: bool  # they multiply each transition's log-likelihood
    in_draw: bool  # each transition is drawn with probability weight / sum

    @property
    def weighted(self) -> bool:
        return self.in_loss or self.in_draw

    def split(self, weights: WeightsT) -> tuple[WeightsT | None, WeightsT | None]:
        """``weights`` as (loss weights, draw weights): each None where they do not act."""
        return (weights if self.in_loss else None), (weights if self.in_draw else None)


PLACEMENTS: dict[str, Placement] = {"none": Placement(False, False), "loss": Placement(True, False),
                                    "sampling": Placement(False, True)}


@dataclass(frozen=True)
class Scheme:
    """One weighting scheme: its raw per-transition weights (None: no weights) and the sampler names (config files,
    run directories, report columns) of its two placements."""

    weights: Callable[[Episodes, SchemeParams], np.ndarray] | None
    draw_name: str  # weights in the draw (weighting: sampling)
    loss_name: str  # weights in the loss (weighting: loss)
    formula: str  # what a transition of trajectory i weighs, before the mean-1 rescaling
    labelled: bool = False  # the weights depend on the LDS label (SamplerConfig.target)


SCHEMES: dict[str, Scheme] = {
    "uniform": Scheme(None, "uniform", "uniform", "1"),
    "lds": Scheme(_lds, "lds_sampling", "lds", "1 / smoothed density of its label (Yang et al. 2021)", True),
    "topk": Scheme(_topk, "topk", "topk_loss", "1 if G_i is in the top top_fraction of trajectories, else 0"),
    "rw": Scheme(_rw, "rw", "rw_loss", "exp(G^_i / alpha), G^ min-max over trajectories (Hong et al. 2023)"),
    "aw": Scheme(_aw, "aw", "aw_loss", "exp(A^_i / alpha), A_i = G_i - OLS fit of G on s0_i (Hong et al. 2023)"),
    "cwbc": Scheme(_cwbc, "cwbc", "cwbc_loss", "exp(-|c_b - G*| / kappa) / (f_b + lambda) / T_i (Nguyen et al. 2022)"),
    "lds_rw": Scheme(_lds_rw, "lds_rw", "lds_rw_loss", "LDS weight times exp(G^_i / alpha)", True),
}


def sampler_name(scheme: str, weighting: str) -> str:
    """The sampler name of a scheme in a placement (weighting none or the uniform scheme: ``uniform``)."""
    entry, placement = SCHEMES[scheme], PLACEMENTS[weighting]
    if not placement.weighted or entry.weights is None:
        return "uniform"
    return entry.draw_name if placement.in_draw else entry.loss_name


SAMPLER_NAMES = frozenset(sampler_name(s, w) for s in SCHEMES for w in PLACEMENTS)


def scheme_weights(scheme: str, episodes: Episodes, params: SchemeParams, clip_max: float | None = None
                   ) -> np.ndarray | None:
    """The scheme's weights per transition with mean 1 (clipped at ``clip_max``, then rescaled), None for uniform."""
    entry = SCHEMES[scheme]
    if entry.weights is None:
        return None
    raw = np.asarray(entry.weights(episodes, params), dtype=np.float64)
    if not raw.sum() > 0:
        raise ValueError(f"the {scheme} weights are all zero on this dataset")
    return _rescale(raw, clip_max)
