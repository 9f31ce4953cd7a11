"""The weighting schemes (issue 24) against their formulas worked by hand on a dataset of five trajectories, the
diagnostics, the same expected gradient in the loss and in the draw, and a short run of each new sampler."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from tests.test_train import config
from wsrl.core.config import MethodConfig, SamplerConfig, to_plain
from wsrl.core.data import OfflineDataModule, Transitions, load_transitions, sample_weights, trajectories
from wsrl.core.diagnostics import between_modes, weight_diagnostics
from wsrl.core.module import weighted_nll
from wsrl.core.weighting import (
    SAMPLER_NAMES,
    SCHEMES,
    cwbc_trajectory_weights,
    lds_weights,
    ridge_fit,
    sampler_name,
    top_trajectories,
)
from wsrl.running.rundir import IDENTITY, check_same_run, run_identity
from wsrl.train import train

# Five trajectories: returns G = [2, 6, 10, 4, 9], lengths T = [2, 3, 1, 2, 1] (N = 9), first states s0 = 0..4
REWARDS = [[1.0, 1.0], [1.0, 2.0, 3.0], [10.0], [0.0, 4.0], [9.0]]
G = np.array([2.0, 6.0, 10.0, 4.0, 9.0])
T = np.array([2, 3, 1, 2, 1])
N = 9


def hand_made() -> Transitions:
    """The five trajectories; each ends with a termination or truncation flag, and only its last step has one."""
    obs, term, trunc = [], [], []
    for i, rewards in enumerate(REWARDS):
        obs += [[float(i), 0.5 * t] for t in range(len(rewards))]  # s0 = i; later states differ
        term += [False] * (len(rewards) - 1) + [i % 2 == 0]
        trunc += [False] * (len(rewards) - 1) + [i % 2 == 1]
    rng = np.random.default_rng(0)
    return Transitions(observations=np.array(obs, dtype=np.float32),
                       actions=rng.uniform(-1, 1, (N, 2)).astype(np.float32),
                       rewards=np.concatenate(REWARDS), terminations=np.array(term), truncations=np.array(trunc),
                       episode_starts=np.array([0, 2, 5, 6, 8]))


def weights_of(scheme: str, **knobs) -> np.ndarray:
    return sample_weights(hand_made(), SamplerConfig(scheme=scheme, weighting="sampling", **knobs), 1.0)


def mean_one(per_transition: np.ndarray) -> np.ndarray:
    return per_transition * len(per_transition) / per_transition.sum()


def test_the_trajectories_are_the_episodes_their_flags_end():
    data = hand_made()
    ends = np.flatnonzero(data.terminations | data.truncations)
    np.testing.assert_array_equal(data.episode_starts, np.concatenate([[0], ends[:-1] + 1]))
    ep = trajectories(data, SamplerConfig(), 1.0)
    np.testing.assert_array_equal(ep.returns, G)
    np.testing.assert_array_equal(ep.lengths, T)
    np.testing.assert_array_equal(ep.initial_states[:, 0], np.arange(5.0))


def test_the_generated_datasets_trajectories_end_at_their_flags(minari_root):
    """On a Minari dataset, every weight is constant over each run of steps that a flag ends (rw: exp(G^ / alpha))."""
    from tests.conftest import make_tiny_dataset

    data = load_transitions(make_tiny_dataset("wsrl/hopper/medium-v0", n_episodes=5, max_steps=30, seed=1))
    ends = np.flatnonzero(data.terminations | data.truncations)
    spans = list(zip(np.concatenate([[0], ends[:-1] + 1]), ends + 1, strict=True))
    returns = np.array([data.rewards[a:b].sum() for a, b in spans])
    want = np.concatenate([np.full(b - a, np.exp((r - returns.max()) / (returns.max() - returns.min()) / 0.1))
                           for (a, b), r in zip(spans, returns, strict=True)])
    got = sample_weights(data, SamplerConfig(scheme="rw", weighting="sampling"), 1.0)
    np.testing.assert_allclose(got, mean_one(want), rtol=1e-12)


def test_topk_keeps_exactly_the_top_trajectories():
    # top_fraction 0.4 of 5 trajectories: the 2 best (G = 10 and 9), one transition each, so weight 9 / 2
    np.testing.assert_allclose(weights_of("topk", top_fraction=0.4), [0, 0, 0, 0, 0, 4.5, 0, 0, 4.5])
    # the default 10 %: max(1, floor(0.5)) = 1 trajectory, the best
    np.testing.assert_allclose(weights_of("topk"), [0, 0, 0, 0, 0, 9, 0, 0, 0])
    # 0.6: the 3 best (10, 9, 6): 5 transitions of weight 9 / 5
    np.testing.assert_allclose(weights_of("topk", top_fraction=0.6), [0, 0, 1.8, 1.8, 1.8, 1.8, 0, 0, 1.8])
    np.testing.assert_array_equal(top_trajectories(np.array([3.0, 7.0, 7.0, 1.0]), 0.5), [False, True, True, False])
    np.testing.assert_array_equal(top_trajectories(np.array([3.0, 7.0, 7.0, 1.0]), 0.25), [False, True, False, False])


def test_rw_is_the_softmax_of_the_min_max_return_over_alpha():
    g_hat = np.array([0.0, 0.5, 1.0, 0.25, 0.875])  # (G - 2) / 8
    want = np.repeat(np.exp(g_hat / 0.1), T)
    np.testing.assert_allclose(weights_of("rw"), mean_one(want), rtol=1e-12)
    # the draw's probability of the best trajectory's one step: e^10 / (2 + 3 e^5 + e^10 + 2 e^2.5 + e^8.75)
    p = weights_of("rw") / N
    assert p[5] == pytest.approx(np.exp(10) / (2 + 3 * np.exp(5) + np.exp(10) + 2 * np.exp(2.5) + np.exp(8.75)))
    assert p[5] == pytest.approx(0.7646, abs=1e-4)


def test_rw_with_a_huge_alpha_is_uniform_and_with_a_tiny_one_all_on_the_best_trajectory():
    np.testing.assert_allclose(weights_of("rw", alpha=1e9), np.ones(N), rtol=1e-7)
    np.testing.assert_allclose(weights_of("rw", alpha=1e-6), [0, 0, 0, 0, 0, 9, 0, 0, 0], atol=1e-12)


def test_aw_tilts_the_return_minus_a_least_squares_fit_on_the_first_state():
    # s0 = 0..4 standardised: z = (s0 - 2) / sqrt(2), sum z^2 = 5; sum (s0 - 2)(G - 6.2) = 12, so least squares
    # (the default, as published) fits 6.2 + 1.2 (s0 - 2), and ridge with lambda = 1 has beta_z = (12 / sqrt 2) / 6,
    # the fit 6.2 + (s0 - 2) * 1.0
    ols = np.array([3.8, 5.0, 6.2, 7.4, 8.6])
    np.testing.assert_allclose(ridge_fit(np.arange(5.0)[:, None], G, 0.0), ols, rtol=1e-12)
    np.testing.assert_allclose(ridge_fit(np.arange(5.0)[:, None], G, 1.0), [4.2, 5.2, 6.2, 7.2, 8.2], rtol=1e-12)
    # A = G - fit = [-1.8, 1.0, 3.8, -3.4, 0.4]; min-max over [-3.4, 3.8]: [1.6, 4.4, 7.2, 0, 3.8] / 7.2
    a_hat = np.array([1.6, 4.4, 7.2, 0.0, 3.8]) / 7.2
    np.testing.assert_allclose(weights_of("aw"), mean_one(np.repeat(np.exp(a_hat / 0.1), T)), rtol=1e-12)
    # with lambda = 1: A = [-2.2, 0.8, 3.8, -3.2, 0.8]; min-max over [-3.2, 3.8]: [1, 4, 7, 0, 4] / 7
    ridge_hat = np.array([1.0, 4.0, 7.0, 0.0, 4.0]) / 7
    np.testing.assert_allclose(weights_of("aw", aw_ridge=1.0), mean_one(np.repeat(np.exp(ridge_hat / 0.1), T)),
                               rtol=1e-12)
    # a first state that does not vary drops out: aw is rw
    data = hand_made()
    data.observations[:, 0] = 1.0
    flat = sample_weights(data, SamplerConfig(scheme="aw", weighting="loss"), 1.0)
    np.testing.assert_allclose(flat, weights_of("rw"), rtol=1e-12)


def test_cwbc_weights_return_bins_by_closeness_to_the_best_over_their_frequency():
    # 4 bins over [2, 10] (width 2, centres 3, 5, 7, 9): G = 2, 6, 10, 4, 9 fall in bins 0, 2, 3, 1, 3, so the
    # shares of trajectories are f = 0.2, 0.2, 0.4 (bin 3), 0.2; G* = 10; percentile 0.5: sorted returns
    # [2, 4, 6, 9, 10][int(2.5)] = 6, kappa = 4
    per_trajectory = np.array([np.exp(-7 / 4) / 0.21, np.exp(-3 / 4) / 0.21, np.exp(-1 / 4) / 0.41,
                               np.exp(-5 / 4) / 0.21, np.exp(-1 / 4) / 0.41])
    np.testing.assert_allclose(cwbc_trajectory_weights(G, 4, 0.01, 0.5), per_trajectory, rtol=1e-12)
    # a trajectory is drawn in proportion to its weight, then one of its steps: each step weighs w_i / T_i
    got = weights_of("cwbc", cwbc_bins=4, cwbc_percentile=0.5)
    np.testing.assert_allclose(got, mean_one(np.repeat(per_trajectory / T, T)), rtol=1e-12)
    per_trajectory_mass = np.bincount(np.repeat(np.arange(5), T), got)
    np.testing.assert_allclose(per_trajectory_mass / per_trajectory_mass.sum(), per_trajectory / per_trajectory.sum())
    # the default percentile 0.9 picks the best return itself (index 4 of 5): kappa = 0 becomes 0.1, as in the
    # reference code
    centres, shares = np.array([3, 7, 9, 5, 9]), np.array([0.2, 0.2, 0.4, 0.2, 0.4])
    np.testing.assert_allclose(cwbc_trajectory_weights(G, 4, 0.01, 0.9),
                               np.exp(-np.abs(centres - 10) / 0.1) / (shares + 0.01))


def test_lds_rw_is_lds_times_the_return_tilt():
    data = hand_made()
    lds = lds_weights(data.trajectory_returns(), bins=4)
    tilt = np.repeat(np.exp(np.array([0.0, 0.5, 1.0, 0.25, 0.875]) / 0.1), T)
    np.testing.assert_allclose(weights_of("lds_rw", bins=4), mean_one(lds * tilt), rtol=1e-12)
    np.testing.assert_allclose(weights_of("lds", bins=4), lds, rtol=1e-12)


def test_clip_max_bounds_any_scheme():
    w = weights_of("rw", clip_max=2.0)
    raw = weights_of("rw")
    clipped = np.minimum(raw, 2.0)
    np.testing.assert_allclose(w, mean_one(clipped), rtol=1e-12)


def test_the_registry_names_each_scheme_in_each_placement():
    assert sampler_name("lds", "loss") == "lds" and sampler_name("lds", "sampling") == "lds_sampling"
    assert sampler_name("rw", "sampling") == "rw" and sampler_name("rw", "loss") == "rw_loss"
    assert sampler_name("cwbc", "none") == sampler_name("uniform", "loss") == "uniform"
    assert len(SAMPLER_NAMES) == 1 + 2 * (len(SCHEMES) - 1)  # every name is one scheme in one placement


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "uniform"])
def test_the_draw_and_the_loss_give_the_same_expected_gradient(scheme):
    """A fixed linear Gaussian policy: the loss placement's expected batch gradient (exact: a uniform draw of each
    transition, weighted) equals the draw placement's (exact: the sampler's probabilities; and the mean over many
    drawn batches, within sampling error)."""
    data = hand_made()
    knobs = {"bins": 4, "cwbc_bins": 4, "top_fraction": 0.4}
    modules = {}
    for weighting in ("loss", "sampling"):
        cfg = SamplerConfig(name=sampler_name(scheme, weighting), scheme=scheme, weighting=weighting, **knobs)
        modules[weighting] = dm = OfflineDataModule("hand-made", MethodConfig(), cfg, batch_size=4096, seed=0,
                                                    device=torch.device("cpu"), transitions=data)
        dm.setup()
    torch.manual_seed(0)
    policy = torch.nn.Linear(2, 2).double()

    def gradient(inputs, actions, weights) -> torch.Tensor:
        policy.zero_grad()
        log_prob = torch.distributions.Normal(policy(inputs.double()), 1.0).log_prob(actions.double()).sum(-1)
        weighted_nll(log_prob, None if weights is None else weights.double()).backward()
        return torch.cat([p.grad.flatten() for p in policy.parameters()]).clone()

    loss, draw = modules["loss"], modules["sampling"]
    assert draw.draws.loss_weights is None and loss.draws.sampler.cdf is None
    expected_loss = gradient(loss.inputs, loss.actions, loss.draws.loss_weights)  # all N, uniform: the expectation
    cdf = draw.draws.sampler.cdf
    probs = torch.diff(cdf, prepend=torch.zeros(1, dtype=cdf.dtype)) / cdf[-1]
    expected_draw = gradient(draw.inputs, draw.actions, (probs * N).float())  # sum_t p_t g_t = mean of N p_t g_t
    torch.testing.assert_close(expected_draw, expected_loss, rtol=1e-5, atol=1e-6)
    drawn = torch.stack([gradient(*draw.draws.batch()) for _ in range(100)]).mean(0)
    scale = expected_loss.abs().max()
    assert (drawn - expected_loss).abs().max() < 0.02 * scale + 0.02, (drawn, expected_loss)


def test_between_modes_is_the_valley_of_a_two_mode_return_histogram():
    rng = np.random.default_rng(0)
    low, high, valley = rng.normal(0, 5, 400), rng.normal(100, 5, 200), np.full(10, 50.0)
    between = between_modes(np.concatenate([low, high, valley]))
    assert between[600:].all()
    assert between[:600].mean() < 0.03  # only the modes' far tails reach the valley
    assert between_modes(rng.normal(0, 5, 500)) is None  # one mode
    assert between_modes(np.full(20, 3.0)) is None


def test_weight_diagnostics_by_hand():
    returns = np.array([0.0, 0.0, 50.0, 100.0, 100.0] * 4 + [0.0] * 10 + [100.0] * 10)  # 40 trajectories
    lengths = np.full(40, 2)
    top = top_trajectories(returns, 0.1)  # 4 trajectories of return 100
    ids = np.repeat(np.arange(40), lengths)
    weights = np.where(np.repeat(returns, lengths) == 100.0, 3.0, 1.0)
    weights *= len(weights) / weights.sum()
    got = weight_diagnostics(weights, returns, lengths)
    total = weights.sum()
    assert got["top10_share"] == pytest.approx(weights[np.isin(ids, np.flatnonzero(top))].sum() / total)
    assert got["top10_share_uniform"] == pytest.approx(0.1)
    assert got["effective_fraction"] == pytest.approx(weights.sum() ** 2 / (80 * (weights ** 2).sum()))
    assert (got["min"], got["max"], got["mean"]) == pytest.approx((weights.min(), weights.max(), 1.0))
    # the modes are 0 and 100; the four trajectories of return 50 lie in the valley
    assert got["between_modes_share_uniform"] == pytest.approx(4 / 40)
    assert got["between_modes_share"] == pytest.approx(8 * weights[4] / total)
    unimodal = weight_diagnostics(np.ones(1000), np.random.default_rng(0).normal(0, 1, 500), np.full(500, 2))
    assert unimodal["between_modes_share"] is None and unimodal["between_modes_share_uniform"] is None


def test_runs_recorded_before_the_schemes_are_the_same_run(tmp_path):
    """A run_config.json written before sampler.scheme and its knobs existed matches the same run now."""
    for sampler in ("uniform", "lds", "lds_sampling"):
        cfg = config(f"sampler={sampler}", "sampler.target=return_to_go")
        now = run_identity(to_plain(cfg))
        before = json.loads(json.dumps(now))
        for key in ("scheme", "top_fraction", "alpha", "aw_ridge", "cwbc_bins", "cwbc_lambda", "cwbc_percentile"):
            before["sampler"].pop(key, None)
        assert before == now, sampler
        run_dir = tmp_path / sampler
        run_dir.mkdir()
        (run_dir / IDENTITY).write_text(json.dumps(before))
        assert check_same_run(now, run_dir, "wsrl/hopper/medium-expert-v0") is None  # accepted: the same run
    # a scheme or knob that acts is part of the identity
    assert run_identity(to_plain(config("sampler=rw")))["sampler"]["scheme"] == "rw"
    assert run_identity(to_plain(config("sampler=rw", "sampler.alpha=0.2")))["sampler"]["alpha"] == 0.2
    with pytest.raises(Exception, match="holds a run with a different sampler config"):
        check_same_run(to_plain(config("sampler=lds", "sampler.alpha=0.5", "sampler.scheme=lds_rw",
                                       "sampler.name=mine")), tmp_path / "lds", "wsrl/hopper/medium-expert-v0")


@pytest.mark.parametrize("sampler", ["topk", "rw", "aw", "cwbc", "lds_rw", "rw_loss", "cwbc_conservative"])
def test_each_new_sampler_trains_and_records_its_diagnostics(tiny_dataset, tmp_path, one_thread, sampler):
    results = train(config("method=rvs_r", f"sampler={sampler}", "trainer.max_steps=10", "eval.episodes=1",
                           "sampler.cwbc_bins=4"), tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["sampler"] == sampler and saved["steps"] == 10
    weights = saved["weights"]
    assert set(weights) == {"min", "max", "mean", "effective_fraction", "top10_share", "top10_share_uniform",
                            "between_modes_share", "between_modes_share_uniform"}
    assert weights["mean"] == pytest.approx(1.0) and 0 < weights["effective_fraction"] <= 1
    assert 0 <= weights["top10_share"] <= 1
    if sampler == "topk":  # every weight on the best trajectory (6 episodes: 10 % is 1)
        assert weights["top10_share"] == pytest.approx(1.0) and weights["min"] == 0
    assert results.weights == weights
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        logged = next(r for r in csv.DictReader(f) if r.get("data/weight_effective_fraction"))
    for key in ("max", "mean", "effective_fraction", "top10_share"):
        assert float(logged[f"data/weight_{key}"]) == pytest.approx(weights[key], rel=1e-6)


def test_weight_mass_figure_of_every_scheme(tiny_dataset, tmp_path, capsys):
    from wsrl.report.weight_mass import DEFAULT_SCHEMES, main, resolve_dataset

    assert resolve_dataset("hopper_medium_expert") == ("wsrl/hopper/medium-expert-v0", "hopper_medium_expert")
    png = main([tiny_dataset, "--out", str(tmp_path / "weight_mass_tiny.png"), "--bins", "10"])
    assert png.stat().st_size > 0
    saved = json.loads(png.with_suffix(".json").read_text())
    assert saved["dataset_id"] == tiny_dataset and list(saved["schemes"]) == DEFAULT_SCHEMES
    assert len(saved["edges"]) == 11 and sum(saved["dataset"]) == pytest.approx(1.0)
    for entry in saved["schemes"].values():
        assert sum(entry["mass"]) == pytest.approx(1.0) and "effective_fraction" in entry["diagnostics"]
    assert saved["schemes"]["topk"]["diagnostics"]["top10_share"] == pytest.approx(1.0)
    assert "topk" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["nowhere_medium"])


def test_table5_pools_tables_2_and_4_and_compares_every_column_with_uniform(tmp_path, capsys):
    from tests.test_report import write_run
    from wsrl.report.paper import COLUMNS, COMPARISONS, GROUPS
    from wsrl.report.write import write_table

    envs = GROUPS["medium_replay"] + GROUPS["medium_expert"]
    t2, t4, t5 = tmp_path / "table2_cpu", tmp_path / "table4_cpu", tmp_path / "table5_cpu"
    w = {"min": 0.0, "max": 9.0, "mean": 1.0, "effective_fraction": 0.1, "top10_share": 1.0,
         "top10_share_uniform": 0.1, "between_modes_share": None, "between_modes_share_uniform": None}
    for seed in range(3):
        for env in [*envs, "hopper_medium"]:  # Table 2's sweep has all nine datasets
            for method in ("bc", "rvs_r"):
                write_run(t2, env, method, "uniform", seed, 40.0 + seed)
                write_run(t2, env, method, "lds", seed, 30.0 + seed, weights=w)
        for env in GROUPS["medium_expert"]:  # Table 4's: the best LDS, and another label that Table 5 leaves out
            write_run(t4, env, "rvs_r", "lds_sampling", seed, 50.0 + seed, target="return_to_go", weights=w)
            write_run(t4, env, "rvs_r", "lds", seed, 0.0, target="return_to_go", weights=w)
        for env in envs:
            for sampler in ("topk", "rw", "aw", "cwbc"):
                write_run(t5, env, "bc", sampler, seed, 60.0 + seed, weights=w)
            for sampler in ("rw", "cwbc", "cwbc_conservative"):
                write_run(t5, env, "rvs_r", sampler, seed, 45.0 + seed, weights=w)
            write_run(t5, env, "rvs_r", "lds_rw", seed, 47.0 + 2 * seed, weights=w)
        for env in GROUPS["medium_replay"]:
            write_run(t5, env, "rvs_r", "lds_sampling", seed, 50.0 + seed, target="return_to_go", weights=w)
            write_run(t5, env, "rvs_r", "lds_sampling", seed, 20.0 + seed, target="trajectory_return", weights=w)
        for env in GROUPS["medium_expert"]:  # the LDS draw on the return: Table 4's on medium-expert
            write_run(t4, env, "rvs_r", "lds_sampling", seed, 20.0 + seed, target="trajectory_return", weights=w)
    md = write_table([t5, t2, t4], 5, reps=50).read_text()
    capsys.readouterr()
    assert "hopper_medium |" not in md and "no runs" not in md  # six datasets, every cell filled
    for column in COLUMNS[5]:
        assert f"{column} (95% CI)" in md
    # in two halves: BC's columns, then RvS-R's, each a table of its own (in the cells and the seeds)
    bc = md.index("**BC**\n\n| dataset | BC uniform (95% CI) |")
    rvs = md.index("**RvS-R**\n\n| dataset | RvS-R uniform")
    assert bc < rvs < md.index("### Seeds") < md.index("**RvS-R**\n\n| dataset | RvS-R uniform |", rvs + 1)
    assert "RvS-R" not in md[bc:rvs].split("\n\n", 2)[1]
    assert "| RvS-R lds | 3 | 31.0 |" in md  # Table 4's other label (score 0) is not in the lds column
    for x, y in COMPARISONS[5].items():
        assert y.endswith(" uniform") and f"| {x} > {y} |" in md
    assert len(COMPARISONS[5]) == len(COLUMNS[5]) - 2
    # lds_rw against its two controls in the draw: 47, 49, 51 against 45, 46, 47 (rw) and 20, 21, 22 (LDS)
    assert "| RvS-R cwbc weights only | 3 | 46.0 |" in md and "| RvS-R lds draw | 3 | 21.0 |" in md
    for control, difference in (("RvS-R lds draw", 28.0), ("RvS-R rw", 3.0)):
        assert f"| RvS-R lds_rw > {control} |" in md
        assert f"| hopper_medium_replay | RvS-R lds_rw − {control} | {difference:+.1f} [" in md
    assert "### What the weights do" in md and "0.10 / 9.00 / 1.00 / —" in md


def test_table5_commands_make_every_column_in_its_own_directory():
    """The four commands in table5.yaml's header launch exactly Table 5's columns, each in its own directory."""
    from hydra import compose, initialize_config_dir

    from tests.test_train import CONF
    from wsrl.core.config import register_configs
    from wsrl.core.validation import validate
    from wsrl.report.paper import COLUMNS

    register_configs()
    commands = [("bc", s, "trajectory_return") for s in ("topk", "rw", "aw", "cwbc")] + \
        [("rvs_r", s, "trajectory_return") for s in ("rw", "cwbc", "cwbc_conservative", "lds_rw")] + \
        [("rvs_r", "lds_sampling", t) for t in ("return_to_go", "trajectory_return")] + \
        [(m, s, "trajectory_return") for m in ("bc", "rvs_r") for s in ("uniform", "lds")]
    dirs = set()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        for method, sampler, target in commands:
            overrides = ["experiment=table5_cpu", f"method={method}", f"sampler={sampler}", f"sampler.target={target}"]
            validate(compose("train", overrides=overrides))
            job = compose("train", overrides=overrides, return_hydra_config=True)
            dirs.add(job.hydra.sweep.subdir)
            got = (job.method.name, job.sampler.name, job.policy.name, job.sampler.target)
            assert sum(got[:3] == col[:3] and col[3] in (None, got[3]) for col in COLUMNS[5].values()) == 1, got
    assert len(dirs) == len(COLUMNS[5]) == len(commands)


@pytest.mark.parametrize("return_input", ["to_go", "average"])
def test_the_conservative_loss_raises_the_best_trajectories_return_input(return_input):
    """CWBC's conservative rows: the drawn transitions of the trajectories at or above the quantile, their return
    input raised by (G* - G_i + |noise|) in return units, the same actions, and weights that make the batch's mean
    loss the batch's NLL plus conservative_weight x the raised rows' mean NLL."""
    data = hand_made()
    method = MethodConfig(name="rvs_r", return_input=return_input, return_scale=10.0, horizon=4)
    sampler = SamplerConfig(name="mine", conservative_percentile=0.5, conservative_std=0.0, conservative_weight=2.0)
    dm = OfflineDataModule("hand-made", method, sampler, batch_size=64, seed=0, device=torch.device("cpu"),
                           transitions=data)
    dm.setup()
    # threshold: sorted returns [2, 4, 6, 9, 10][int(0.5 * 5)] = 6, so trajectories 1 (G 6), 2 (10), 4 (9): rows
    # 2-4, 5 and 8, raised by 10 - G (std 0: no noise) times the return input's factor
    np.testing.assert_array_equal(dm.conservative.rows.numpy(), [0, 0, 1, 1, 1, 1, 0, 0, 1])
    factor = np.full(N, 0.1) if return_input == "to_go" else 0.1 * 4 / np.maximum(4 - data.timesteps, 1)
    state = dm.generator.get_state()
    inputs, actions, weights = dm.draws.batch()
    dm.generator.set_state(state)
    idx = dm.draws.sampler()
    rows = idx[np.isin(idx.numpy(), [2, 3, 4, 5, 8])]
    b, a = len(idx), len(rows)
    assert len(inputs) == b + a and 0 < a < b
    torch.testing.assert_close(inputs[:b], dm.inputs[idx])
    torch.testing.assert_close(actions[b:], dm.actions[rows])
    raise_by = (np.array([10 - G[i] for i in np.repeat(np.arange(5), T)]) * factor)[rows.numpy()]
    torch.testing.assert_close(inputs[b:, -1], dm.inputs[rows, -1] + torch.as_tensor(raise_by, dtype=torch.float32))
    torch.testing.assert_close(inputs[b:, :-1], dm.inputs[rows, :-1])
    log_prob = torch.randn(b + a, dtype=torch.float64)
    want = -(log_prob[:b].mean() + 2.0 * log_prob[b:].mean())
    torch.testing.assert_close(weighted_nll(log_prob, weights.double()), want)
    # with noise, every raise is at least G* - G_i
    dm2 = OfflineDataModule("hand-made", method, SamplerConfig(name="mine", conservative_percentile=0.5), 64, 0,
                            torch.device("cpu"), transitions=data)
    dm2.setup()
    inputs2, _, _ = dm2.draws.batch()
    assert (inputs2[b:, -1] - dm2.inputs[rows, -1] >= torch.as_tensor(raise_by, dtype=torch.float32) - 1e-6).all()


def test_the_single_runs_loss_adds_the_conservative_term(tiny_dataset, tmp_path, one_thread):
    """sampler=cwbc_conservative in a single run: the first step's loss (the initial policy, the same draws whatever
    the weight) is the batch's NLL plus conservative_weight x the raised rows' mean NLL, so it is linear in the weight
    with a non-zero slope; and the logged weights average 1 + conservative_weight (the batch's rows weigh
    (a + b) / b each, the a raised rows weight x (a + b) / a)."""
    first = {}
    for weight in (0, 1, 3):
        run = tmp_path / f"w{weight}"
        train(config("method=rvs_r", "sampler=cwbc_conservative", f"sampler.conservative_weight={weight}",
                     "sampler.cwbc_bins=4", "trainer.max_steps=1", "trainer.log_every_n_steps=1", "eval.episodes=1"),
              run)
        with open(run / "csv" / "metrics.csv") as f:
            first[weight] = next(r for r in csv.DictReader(f) if r.get("train/loss"))
    loss = {w: float(r["train/loss"]) for w, r in first.items()}
    raised = loss[1] - loss[0]  # the raised rows' mean NLL under the initial policy
    assert abs(raised) > 0.01, loss
    assert loss[3] - loss[0] == pytest.approx(3 * raised, rel=1e-4), loss
    assert {w: float(r["train/weight_mean"]) for w, r in first.items()} == pytest.approx({0: 1.0, 1: 2.0, 3: 4.0})
