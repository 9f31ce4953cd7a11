"""Offline data: transitions against the raw Minari episodes, returns by hand, normalization, weights, sampling."""

from __future__ import annotations

import minari
import numpy as np
import pytest
import torch
from scipy.stats import chi2

from tests.conftest import make_tiny_dataset, random_episodes
from tests.test_weighting import reference_weights
from wsrl.core.config import MethodConfig, SamplerConfig
from wsrl.core.data import DataError, OfflineDataModule, load_transitions, return_input, sample_weights
from wsrl.core.weighting import IndexSampler

DATASET = "wsrl/hopper/boundaries-v0"
LDS = SamplerConfig(name="lds", weighting="loss", bins=10)
LDS_SAMPLING = SamplerConfig(name="lds_sampling", weighting="sampling", bins=10)
UNIFORM = SamplerConfig()


@pytest.fixture
def dataset(minari_root) -> str:
    """Six random hopper episodes cut at 40 steps: some terminate, some are truncated (seed 0)."""
    return make_tiny_dataset(DATASET, n_episodes=6, max_steps=40, seed=0)


@pytest.fixture
def episodes(dataset) -> list:
    return list(minari.load_dataset(dataset).iterate_episodes())


def hand_returns_to_go(rewards: list[float], gamma: float) -> list[float]:
    out, g = [], 0.0
    for r in reversed(rewards):
        g = r + gamma * g
        out.append(g)
    return out[::-1]


def test_transitions_align_with_the_episodes(dataset, episodes):
    data = load_transitions(dataset)
    lengths = [len(ep.actions) for ep in episodes]
    assert len(data.rewards) == sum(lengths)
    assert data.episode_starts.tolist() == [sum(lengths[:i]) for i in range(len(lengths))]
    assert data.episode_lengths.tolist() == lengths
    assert data.observations.dtype == np.float32 and data.actions.dtype == np.float32
    ends = 0
    for ep, start, n in zip(episodes, data.episode_starts, lengths, strict=True):
        rows = slice(start, start + n)
        np.testing.assert_array_equal(data.observations[rows], ep.observations[:-1].astype(np.float32))
        np.testing.assert_array_equal(data.actions[rows], ep.actions.astype(np.float32))
        np.testing.assert_array_equal(data.rewards[rows], ep.rewards)
        np.testing.assert_array_equal(data.terminations[rows], ep.terminations)
        np.testing.assert_array_equal(data.truncations[rows], ep.truncations)
        assert data.timesteps[rows].tolist() == list(range(n))
        assert (data.episode_ids[rows] == ep.id).all()
        ends += int(ep.terminations[-1]) + int(ep.truncations[-1])
    # both kinds of ending occur, never together, and only on an episode's last transition
    assert data.terminations.any() and data.truncations.any()
    assert not (data.terminations & data.truncations).any()
    last = np.zeros(len(data.rewards), dtype=bool)
    last[data.episode_starts[1:] - 1] = True
    last[-1] = True
    assert not ((data.terminations | data.truncations) & ~last).any()
    assert ends == len(episodes)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_returns_to_go_match_a_hand_computation(dataset, episodes, gamma):
    data = load_transitions(dataset)
    want = [g for ep in episodes for g in hand_returns_to_go([float(r) for r in ep.rewards], gamma)]
    np.testing.assert_allclose(data.returns_to_go(gamma), want, rtol=1e-12, atol=1e-12)
    # G_t restarts at every episode: the last transition of an episode holds only its own reward
    ends = np.append(data.episode_starts[1:], len(data.rewards)) - 1
    np.testing.assert_allclose(data.returns_to_go(gamma)[ends], data.rewards[ends])


def test_trajectory_returns_label_each_transition_with_its_episode_return(dataset, episodes):
    data = load_transitions(dataset)
    want = [sum(float(r) for r in ep.rewards) for ep in episodes for _ in ep.actions]
    np.testing.assert_allclose(data.trajectory_returns(), want, rtol=1e-12)
    np.testing.assert_allclose(data.episode_returns(), [sum(float(r) for r in ep.rewards) for ep in episodes])


def test_average_return_input(dataset, episodes):
    data = load_transitions(dataset)
    horizon, scale = 50, 100.0
    method = MethodConfig(name="rvs_r", return_input="average", horizon=horizon, return_scale=scale)
    want = []
    for ep in episodes:
        for t, g in enumerate(hand_returns_to_go([float(r) for r in ep.rewards], 1.0)):
            want.append(g / (horizon - t) * horizon / scale)  # remaining return per remaining step, times H
    np.testing.assert_allclose(return_input(data, method), want, rtol=1e-12)
    to_go = MethodConfig(name="rvs_r", gamma=0.9, return_scale=scale)
    np.testing.assert_allclose(return_input(data, to_go), data.returns_to_go(0.9) / scale, rtol=1e-12)


@pytest.mark.parametrize("name", ["bc", "rvs_r"])
def test_datamodule_normalization_round_trip(dataset, name):
    method = MethodConfig(name=name, return_scale=10.0)
    conditioned = name == "rvs_r"  # RvS-R's policy takes the return input besides the state
    dm = OfflineDataModule(dataset, method, UNIFORM, batch_size=16, seed=0, device=torch.device("cpu"))
    dm.setup()
    data = dm.transitions
    obs_dim = data.observations.shape[1]
    assert dm.input_dim == obs_dim + int(conditioned)
    assert dm.action_dim == data.actions.shape[1] == 3
    inputs = dm.inputs.numpy().astype(np.float64)
    np.testing.assert_allclose(inputs[:, :obs_dim] * dm.obs_std + dm.obs_mean, data.observations, atol=1e-4)
    np.testing.assert_allclose(inputs[:, :obs_dim].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(dm.obs_mean, data.observations.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dm.obs_std, data.observations.astype(np.float64).std(0) + 1e-3, rtol=1e-5)
    if conditioned:
        np.testing.assert_allclose(inputs[:, -1], data.returns_to_go(1.0) / 10.0, rtol=1e-5)
    np.testing.assert_array_equal(dm.actions.numpy(), data.actions)


@pytest.mark.parametrize("field", ["observations", "actions", "rewards"])
def test_non_finite_values_are_refused_naming_the_field(minari_root, field):
    episodes = random_episodes("Hopper-v5", 2, 15, seed=0)
    ep = episodes[1]
    values = np.array(getattr(ep, field), dtype=np.float64 if field == "rewards" else None)
    values[3] = np.nan
    episodes[1] = type(ep)(**{**ep.__dict__, field: values if field != "rewards" else values.tolist()})
    minari.create_dataset_from_buffers("wsrl/hopper/nan-v0", buffer=episodes, env="Hopper-v5",
                                       algorithm_name="random", description="NaN test")
    with pytest.raises(DataError, match=f"non-finite values in {field}"):
        load_transitions("wsrl/hopper/nan-v0")


def test_damaged_dataset_file_is_refused_with_the_fix(minari_root):
    make_tiny_dataset("wsrl/hopper/damaged-v0", n_episodes=2, max_steps=10)
    path = minari_root / "wsrl" / "hopper" / "damaged-v0" / "data" / "main_data.hdf5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy cut short
    with pytest.raises(DataError, match="damaged-v0 in .* cannot be read .*--overwrite"):
        load_transitions("wsrl/hopper/damaged-v0")


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = counts.sum() * probs
    keep = expected > 0
    return float((((counts - expected) ** 2)[keep] / expected[keep]).sum())


def draw_counts(sampler: IndexSampler, n: int, batches: int) -> np.ndarray:
    return np.bincount(torch.cat([sampler() for _ in range(batches)]).numpy(), minlength=n)


def test_weighted_sampler_frequencies_follow_the_weights():
    n = 30
    weights = torch.rand(n, generator=torch.Generator().manual_seed(1)) ** 3 * 10
    weights[[0, 7, n - 1]] = torch.tensor([0.0, 0.0, 25.0])  # zero weights are never drawn; a heavy last index
    sampler = IndexSampler(n, 2000, weights, torch.Generator().manual_seed(0))
    counts = draw_counts(sampler, n, 100)
    probs = (weights / weights.sum()).double().numpy()
    assert counts[0] == counts[7] == 0
    assert chi_square(counts, probs) < chi2.ppf(1 - 1e-6, df=n - 3)
    np.testing.assert_allclose(counts / counts.sum(), probs, atol=0.01)


def test_uniform_sampler_is_uniform():
    n = 40
    sampler = IndexSampler(n, 2000, None, torch.Generator().manual_seed(0))
    batch = sampler()
    assert batch.shape == (2000,) and batch.min() >= 0 and batch.max() < n
    counts = draw_counts(sampler, n, 100)
    assert chi_square(counts, np.full(n, 1.0 / n)) < chi2.ppf(1 - 1e-6, df=n - 1)


def test_lds_sampling_draws_dataset_transitions_in_proportion_to_their_weights(dataset, episodes):
    dm = OfflineDataModule(dataset, MethodConfig(), LDS_SAMPLING, batch_size=4096, seed=0, device=torch.device("cpu"))
    dm.setup()
    # the formula: each transition labelled with its episode's return (from the raw episodes), LDS_SAMPLING's 10
    # bins and the default kernel (gaussian, ks 5, sigma 2) and reweighting (sqrt_inv)
    labels = np.concatenate([np.full(len(ep.rewards), np.sum(ep.rewards)) for ep in episodes])
    weights = reference_weights(labels, 10, "gaussian", 5, 2.0, "sqrt_inv")
    np.testing.assert_allclose(dm.weights, weights, rtol=1e-10)
    assert weights.std() > 0.05, "the test needs unequal weights"
    counts = draw_counts(dm.draws.sampler, len(weights), 50)
    probs = weights / weights.sum()
    assert chi_square(counts, probs) < chi2.ppf(1 - 1e-6, df=len(weights) - 1)
    # per episode (one trajectory-return label each) the frequency is the episode's share of the weight
    ids = dm.transitions.episode_ids
    per_episode = np.bincount(ids, counts) / counts.sum()
    np.testing.assert_allclose(per_episode, np.bincount(ids, probs), atol=0.01)


@pytest.mark.parametrize("sampler,weighted_loss,weighted_draw", [(UNIFORM, False, False), (LDS, True, False),
                                                                 (LDS_SAMPLING, False, True)])
def test_batches_carry_the_weights_of_their_indices(dataset, sampler, weighted_loss, weighted_draw):
    dm = OfflineDataModule(dataset, MethodConfig(), sampler, batch_size=64, seed=3, device=torch.device("cpu"))
    dm.setup()
    for _ in range(3):
        state = dm.generator.get_state()
        inputs, actions, weights = dm.draws.batch()
        after = dm.generator.get_state()
        dm.generator.set_state(state)
        idx = dm.draws.sampler()  # the same draw again
        assert torch.equal(dm.generator.get_state(), after)
        assert torch.equal(inputs, dm.inputs[idx]) and torch.equal(actions, dm.actions[idx])
        if weighted_loss:
            assert torch.equal(weights, torch.as_tensor(dm.weights, dtype=torch.float32)[idx])
        else:
            assert weights is None
    assert (dm.draws.sampler.cdf is not None) == weighted_draw
    assert (dm.weights is None) == (sampler.weighting == "none")


@pytest.mark.parametrize("target", ["trajectory_return", "return_to_go", "action"])
def test_lds_balances_the_configured_target(dataset, target):
    """Each target's weights are LDS over its own labels: per transition for the returns, and the mean of the
    per-dimension weights for the action."""
    from wsrl.core.weighting import lds_weights

    data = load_transitions(dataset)
    sampler = SamplerConfig(name="lds", weighting="loss", bins=10, target=target)
    labels = {"trajectory_return": data.trajectory_returns(), "return_to_go": data.returns_to_go(0.9),
              "action": data.actions}[target]
    got = sample_weights(data, sampler, 0.9)
    np.testing.assert_allclose(got, lds_weights(labels, bins=10), rtol=1e-12)
    if target == "action":
        per_dim = np.mean([lds_weights(data.actions[:, d], bins=10) for d in range(data.actions.shape[1])], axis=0)
        np.testing.assert_allclose(got, per_dim / per_dim.mean(), rtol=1e-12)
    others = [t for t in ("trajectory_return", "return_to_go", "action") if t != target]
    for other in others:  # the target changes the weights
        assert not np.allclose(got, sample_weights(data, SamplerConfig(weighting="loss", bins=10, target=other), 0.9))
