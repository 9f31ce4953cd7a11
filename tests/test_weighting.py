"""LDS weights against a loop-by-loop re-implementation of Yang et al.'s ``_prepare_weights``."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import convolve1d, gaussian_filter1d
from scipy.signal.windows import triang

from wsrl.core.weighting import lds_weights


def reference_bins(labels, bins: int) -> list[int]:
    """Equal-width bins over [min, max], the maximum in the last bin, one label at a time."""
    lo, hi = float(min(labels)), float(max(labels))
    return [min(int((float(y) - lo) / (hi - lo) * bins), bins - 1) if hi > lo else 0 for y in labels]


def reference_window(kernel: str, ks: int, sigma: float) -> np.ndarray:
    """``get_lds_kernel_window`` of the LDS reference code."""
    half = (ks - 1) // 2
    if kernel == "gaussian":
        base = [0.0] * half + [1.0] + [0.0] * half
        smooth = gaussian_filter1d(base, sigma=sigma)
        return smooth / max(smooth)
    if kernel == "triangular":
        return triang(ks)
    def laplace(x):
        return np.exp(-abs(x) / sigma) / (2.0 * sigma)
    values = [laplace(x) for x in range(-half, half + 1)]
    return np.array(values) / max(values)


def reference_weights(labels, bins: int, kernel: str, ks: int, sigma: float, reweight: str) -> np.ndarray:
    """``_prepare_weights`` (reweight + LDS) on the binned labels, with dicts and loops as in the reference."""
    binned = reference_bins(labels, bins)
    value_dict = {b: 0 for b in range(bins)}
    for b in binned:
        value_dict[b] += 1
    if reweight == "sqrt_inv":
        value_dict = {k: np.sqrt(v) for k, v in value_dict.items()}
    else:
        value_dict = {k: np.clip(v, 5, 1000) for k, v in value_dict.items()}
    smoothed = convolve1d(np.asarray([value_dict[b] for b in range(bins)], dtype=np.float64),
                          weights=reference_window(kernel, ks, sigma), mode="constant")
    weights = [1.0 / smoothed[b] for b in binned]
    scaling = len(weights) / sum(weights)
    return np.array([scaling * w for w in weights])


@pytest.fixture(scope="module")
def skewed_labels() -> np.ndarray:
    """Mostly low returns with a thin tail of high ones, like a medium-expert dataset's trajectory returns."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(1000, 150, 3000), rng.normal(3000, 100, 150), rng.uniform(0, 3500, 50)])


@pytest.mark.parametrize("reweight", ["sqrt_inv", "inverse"])
@pytest.mark.parametrize("kernel,ks,sigma", [("gaussian", 5, 2.0), ("gaussian", 9, 1.0), ("triangular", 5, 2.0),
                                             ("triangular", 7, 2.0), ("laplace", 5, 2.0), ("laplace", 3, 0.5)])
def test_lds_weights_match_reference(skewed_labels, kernel, ks, sigma, reweight):
    got = lds_weights(skewed_labels, bins=50, kernel=kernel, ks=ks, sigma=sigma, reweight=reweight)
    want = reference_weights(skewed_labels, 50, kernel, ks, sigma, reweight)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert got.mean() == pytest.approx(1.0, abs=1e-12)
    assert (got > 0).all()


def test_rare_labels_get_larger_weights():
    rng = np.random.default_rng(1)
    common, rare = rng.normal(0.0, 1.0, 2000), rng.normal(10.0, 0.2, 20)
    w = lds_weights(np.concatenate([common, rare]), bins=40)
    assert w[2000:].min() > 3 * np.median(w[:2000])
    # within the common mode, the centre (dense) is weighted less than the shoulders
    centre = np.abs(common) < 0.3
    shoulder = (np.abs(common) > 1.5) & (np.abs(common) < 2.5)
    assert w[:2000][centre].mean() < w[:2000][shoulder].mean()


def test_constant_labels_give_uniform_weights():
    np.testing.assert_allclose(lds_weights(np.full(100, 3.0), bins=10), np.ones(100))


def test_clip_max_bounds_the_weights_then_renormalizes(skewed_labels):
    raw = lds_weights(skewed_labels, bins=50)
    assert raw.max() > 4.0, "the test needs weights above the clip"
    clipped = lds_weights(skewed_labels, bins=50, clip_max=4.0)
    want = np.minimum(raw, 4.0)
    np.testing.assert_allclose(clipped, want * len(want) / want.sum(), rtol=1e-12)
    assert clipped.mean() == pytest.approx(1.0)
    assert clipped.max() < raw.max()
    # every weight that hit the clip ends at the same value
    assert np.unique(np.round(clipped[raw >= 4.0], 12)).size == 1


def test_two_dimensional_labels_average_the_per_dimension_weights():
    rng = np.random.default_rng(2)
    labels = np.stack([rng.normal(0, 1, 500), rng.exponential(1.0, 500), rng.uniform(-1, 1, 500)], axis=1)
    got = lds_weights(labels, bins=20, kernel="triangular", ks=5, reweight="inverse")
    per_dim = [reference_weights(labels[:, d], 20, "triangular", 5, 2.0, "inverse") for d in range(3)]
    want = np.mean(per_dim, axis=0)
    np.testing.assert_allclose(got, want / want.mean(), rtol=1e-10)
    assert got.mean() == pytest.approx(1.0)


def test_unknown_kernel_and_reweight_are_refused():
    with pytest.raises(ValueError, match="unknown LDS kernel"):
        lds_weights(np.arange(10.0), kernel="box")
    with pytest.raises(ValueError, match="unknown reweight"):
        lds_weights(np.arange(10.0), reweight="log")
