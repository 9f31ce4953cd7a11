"""End to end on a tiny dataset: the loss falls, results.json is right, checkpoints act alone, rollouts are exact."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from tests.conftest import make_tiny_dataset, random_episodes
from wsrl.common.episodes import run_episodes
from wsrl.core.config import ConfigError, MethodConfig, SamplerConfig, register_configs
from wsrl.core.data import OfflineDataModule, load_transitions
from wsrl.core.methods import conditions_on_return
from wsrl.core.module import WeightedBC
from wsrl.datasets.suite import ROBOT
from wsrl.evaluation.__main__ import main as evaluate_cli
from wsrl.evaluation.scores import eval_seed, evaluate, load_checkpoint
from wsrl.train import train

CONF = str(Path(__file__).resolve().parents[1] / "conf")
HOPPER_MIN, HOPPER_MAX = -20.272305, 3234.3  # D4RL REF_MIN_SCORE / REF_MAX_SCORE for hopper
SMALL = ["policy.hidden_dims=[64,64]", "trainer.batch_size=64", "eval.episodes=2", "wandb.mode=disabled",
         "generate_if_missing=false", "trainer.log_every_n_steps=5", "trainer.progress_bar=false",
         "trainer.max_steps=60", "trainer.lr=3e-3"]


def config(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=SMALL + list(overrides))


@pytest.fixture
def finished_run(tiny_dataset, tmp_path, one_thread):
    run_dir = tmp_path / "run"
    return train(config("method=rvs_r", "sampler=lds"), run_dir), run_dir


def test_short_run_lowers_the_loss_and_writes_results(finished_run):
    results, run_dir = finished_run
    with open(run_dir / "csv" / "metrics.csv") as f:
        logged = list(csv.DictReader(f))
    rows = [r for r in logged if r.get("train/loss")]
    losses = [float(r["train/loss"]) for r in rows]
    assert len(losses) >= 10 and all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.2, losses
    assert all(float(r["train/weight_mean"]) > 0 for r in rows)  # sampler=lds logs its loss weights
    weights = OfflineDataModule("wsrl/hopper/medium-expert-v0", MethodConfig(), SamplerConfig(weighting="loss"), 8,
                                0, torch.device("cpu"))
    weights.setup()
    w = weights.weights
    assert {k: results.weights[k] for k in ("min", "max", "effective_fraction")} == pytest.approx(
        {"min": w.min(), "max": w.max(), "effective_fraction": w.sum() ** 2 / (len(w) * (w ** 2).sum())})
    assert float(next(r for r in logged if r.get("data/weight_max"))["data/weight_max"]) == pytest.approx(w.max())

    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == results.to_json()
    for key in ("env", "method", "sampler", "policy", "seed", "steps", "dataset_id", "eval_env_id", "target_return",
                "normalized_score", "returns", "lengths", "eval_history", "wall_seconds", "device", "config"):
        assert key in saved, key
    assert (saved["env"], saved["method"], saved["sampler"], saved["policy"]) == (
        "hopper_medium_expert", "rvs_r", "lds", "unconditional")
    assert saved["steps"] == 60 and saved["dataset_id"] == "wsrl/hopper/medium-expert-v0"
    assert saved["eval_env_id"] == "Hopper-v5"
    returns = np.array(saved["returns"])
    assert len(returns) == len(saved["lengths"]) == 2 and all(1 <= n <= 1000 for n in saved["lengths"])
    norm = 100 * (returns - HOPPER_MIN) / (HOPPER_MAX - HOPPER_MIN)
    assert saved["normalized_score"]["mean"] == pytest.approx(norm.mean(), rel=1e-9)
    assert saved["normalized_score"]["std"] == pytest.approx(norm.std(), rel=1e-9, abs=1e-9)
    assert saved["eval_history"][-1] == {"step": 60, **saved["normalized_score"]}
    # the RvS-R target defaults to the dataset's best episode return
    import minari

    best = max(sum(ep.rewards) for ep in minari.load_dataset(saved["dataset_id"]).iterate_episodes())
    assert saved["target_return"] == pytest.approx(best)


def test_checkpoint_reloads_and_acts_identically_without_the_dataset(finished_run, minari_root, capsys):
    results, run_dir = finished_run
    observations = load_transitions(results.dataset_id).observations.astype(np.float64)
    shutil.rmtree(minari_root)
    minari_root.mkdir()  # the dataset is gone: acting needs only the checkpoint
    module, env = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert module.target_return == results.target_return
    assert conditions_on_return(module.method)
    np.testing.assert_allclose(module.obs_mean.cpu().numpy(), observations.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(module.obs_std.cpu().numpy(), observations.std(0) + 1e-3, rtol=1e-5)
    assert env.eval_env_id == results.eval_env_id == "Hopper-v5"
    assert (env.ref_min_score, env.ref_max_score) == (results.ref_min_score, results.ref_max_score)
    again = evaluate(module, env, 2, eval_seed(results.seed, 60))
    assert again["returns"] == results.returns and again["lengths"] == results.lengths
    assert again["normalized_score"] == results.normalized_score
    # the same from the command line, which prints the score
    cli = evaluate_cli([str(run_dir / "checkpoints" / "last.ckpt"), "--episodes", "2", "--seed",
                        str(eval_seed(results.seed, 60))])
    assert cli["returns"] == results.returns
    assert f"Hopper-v5: normalized score {results.normalized_score['mean']:.1f}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="is not a file"):
        evaluate_cli([str(run_dir / "nothing.ckpt")])
    with pytest.raises(SystemExit, match="--device gpu must be auto, cpu, cuda or cuda:N"):
        evaluate_cli([str(run_dir / "checkpoints" / "last.ckpt"), "--device", "gpu"])
    # acting is deterministic in eval mode
    obs = np.random.default_rng(0).normal(size=(5, 11))
    np.testing.assert_array_equal(module.act(obs, np.zeros(5), np.zeros(5)), module.act(obs, np.zeros(5), np.zeros(5)))


def by_hand(env_id: str, policy, n_episodes: int, seed: int) -> tuple[list[float], list[int]]:
    env = gym.make(env_id)
    returns, lengths = [], []
    for i in range(n_episodes):
        obs, _ = env.reset(seed=seed + i)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, term, trunc, _ = env.step(policy(obs[None], np.array([total]), np.array([steps]))[0])
            total += float(reward)
            steps += 1
            done = term or trunc
        returns.append(total)
        lengths.append(steps)
    env.close()
    return returns, lengths


def zero_policy(obs, returns_so_far, steps):
    return np.zeros((len(obs), 3))


def linear_policy(obs, returns_so_far, steps):
    """Deterministic but state-dependent, and it uses the return and step inputs: episodes end at different times."""
    w = np.linspace(-1, 1, obs.shape[1] * 3).reshape(obs.shape[1], 3)
    drive = np.sin(steps[:, None] * np.array([0.3, 0.5, 0.7]))
    return 0.1 * np.tanh(obs @ w + 0.001 * returns_so_far[:, None] - 0.002 * steps[:, None]) + 0.1 * drive


@pytest.mark.parametrize("policy", [zero_policy, linear_policy])
def test_run_episodes_equals_stepping_by_hand(policy):
    returns, lengths = run_episodes("Hopper-v5", policy, 3, seed=11)
    want_returns, want_lengths = by_hand("Hopper-v5", policy, 3, seed=11)
    assert lengths.tolist() == want_lengths
    np.testing.assert_allclose(returns, want_returns, rtol=1e-12)
    assert len(set(want_lengths)) > 1, "the masking of finished episodes is not exercised"


class Recorder(nn.Module):
    """A policy stub that records its inputs and returns zero actions."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def mean_action(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return torch.zeros(len(x), 3)


@pytest.mark.parametrize("return_input", ["to_go", "average", None])
def test_act_feeds_normalized_state_and_the_return_input(return_input):
    obs_mean, obs_std = np.linspace(-1, 1, 11), np.linspace(0.5, 2, 11)
    method = {"name": "bc" if return_input is None else "rvs_r", "return_input": return_input or "to_go",
              "return_scale": 100.0}
    in_dim = 11 + int(return_input is not None)
    module = WeightedBC(in_dim, 3, {"hidden_dims": [8]}, method, {}, target_return=500.0, obs_mean=obs_mean,
                        obs_std=obs_std).eval()
    module.policy = Recorder()
    obs = np.random.default_rng(0).normal(size=(4, 11))
    so_far, steps = np.array([0.0, 120.0, 480.0, 700.0]), np.array([0, 30, 90, 200])
    assert module.act(obs, so_far, steps).shape == (4, 3)
    x = module.policy.seen[-1].double().numpy()
    assert x.shape == (4, in_dim)
    np.testing.assert_allclose(x[:, :11], (obs - obs_mean) / obs_std, rtol=1e-5, atol=1e-6)
    if return_input == "to_go":
        np.testing.assert_allclose(x[:, -1], (500.0 - so_far) / 100.0, rtol=1e-6)
    elif return_input == "average":
        np.testing.assert_allclose(x[:, -1], np.full(4, 5.0), rtol=1e-6)


@pytest.mark.parametrize("name,flag", [("rvs_r", True), ("bc", False), ("bc", True)])
def test_a_checkpoint_holding_condition_on_return_loads_where_it_agrees(tmp_path, name, flag):
    """A checkpoint made while the return input was a switch of its own (``method.condition_on_return``) loads
    where the switch says what the method says, and is refused in one line where it does not."""
    in_dim = 11 + int(flag)
    method = {"name": name, "condition_on_return": flag, "return_scale": 100.0}
    hparams = {"input_dim": in_dim, "action_dim": 3, "policy": {"hidden_dims": [8]}, "method": method,
               "trainer": {}, "target_return": 500.0}
    state_dict = WeightedBC(in_dim, 3, {"hidden_dims": [8]}, {"name": "rvs_r" if flag else "bc"}, {}, 1.0).state_dict()
    path = tmp_path / "old.ckpt"
    torch.save({"epoch": 0, "global_step": 0, "pytorch-lightning_version": L.__version__, "state_dict": state_dict,
                "hyper_parameters": hparams, "torch_rng": torch.get_rng_state()}, path)
    if flag == (name == "rvs_r"):
        module = WeightedBC.load_from_checkpoint(path, map_location="cpu")
        assert conditions_on_return(module.method) == flag and module.policy.body[0].in_features == in_dim
        return
    with pytest.raises(ConfigError, match="the checkpoint holds method.name=bc with method.condition_on_return=True"):
        WeightedBC.load_from_checkpoint(path, map_location="cpu")


def test_the_single_runs_loss_ignores_what_it_weighs_zero(minari_root, tmp_path, monkeypatch, one_thread):
    """The single run's weighted loss: sampler=topk_loss gives the best of six trajectories all the weight in the
    loss and the others 0 (the draw stays uniform), so the trained policy is bitwise the same when every other
    trajectory's actions are reversed, and moves when the best one's are."""
    episodes = random_episodes(ROBOT["hopper"].env_id, 6, 60, seed=0)
    best = int(np.argmax([sum(ep.rewards) for ep in episodes]))

    def trained(reversed_actions: list[int]) -> dict[str, torch.Tensor]:
        name = "-".join(map(str, reversed_actions)) or "none"
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root / name))
        make_tiny_dataset("wsrl/hopper/medium-expert-v0", episodes=[dataclasses.replace(ep, actions=-ep.actions)
                                                                   if i in reversed_actions else ep
                                                                   for i, ep in enumerate(episodes)])
        train(config("sampler=topk_loss", "trainer.max_steps=5", "eval.episodes=1"), tmp_path / name)
        return torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]

    policy = trained([])
    others = trained([i for i in range(6) if i != best])
    assert policy.keys() == others.keys() and all(torch.equal(policy[k], others[k]) for k in policy)
    moved = trained([best])
    assert not all(torch.equal(policy[k], moved[k]) for k in policy if k.startswith("policy."))


def test_periodic_evaluation_scores_the_policy_of_its_step(tiny_dataset, tmp_path, one_thread):
    """eval.every_steps=20 over 60 steps: evaluations at 20 and 40 (and the final one at 60); the one at 20 is
    exactly the final score of a run stopped at step 20 (training is deterministic, evaluation seeded by step)."""
    results = train(config("trainer.max_steps=60", "eval.every_steps=20"), tmp_path / "long")
    assert [e["step"] for e in results.eval_history] == [20, 40, 60]
    short = train(config("trainer.max_steps=20"), tmp_path / "short")
    assert results.eval_history[0] == {"step": 20, **short.normalized_score}
    with open(tmp_path / "long" / "csv" / "metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("eval/normalized_mean")]
    assert [r["step"] for r in logged] == ["20", "40"]  # labelled with the step of the policy they score
    assert float(logged[0]["eval/normalized_mean"]) == pytest.approx(short.normalized_score["mean"])



def test_a_checkpoint_that_evaluated_its_own_step_is_not_evaluated_again(tiny_dataset, tmp_path, one_thread):
    """An earlier wsrl evaluated after the step, so its checkpoint at an evaluation step holds that evaluation: the
    resumed run keeps it rather than evaluating the step twice."""
    train(config("trainer.max_steps=20", "eval.every_steps=10"), tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    [key] = [k for k in saved["callbacks"] if k.startswith("PeriodicEval")]
    assert [e["step"] for e in saved["callbacks"][key]["history"]] == [10]
    saved["callbacks"][key]["history"].append({"step": 20, "mean": 1.0, "std": 0.0})  # as the earlier wsrl kept it
    torch.save(saved, last)
    resumed = train(config("trainer.max_steps=30", "eval.every_steps=10"), tmp_path)
    assert [e["step"] for e in resumed.eval_history] == [10, 20, 30] and resumed.eval_history[1]["mean"] == 1.0
    with open(tmp_path / "csv" / "metrics.csv") as f:  # the kept evaluation has its row, once
        rows = [(int(r["step"]), float(r["eval/normalized_mean"])) for r in csv.DictReader(f)
                if r["eval/normalized_mean"]]
    assert [step for step, _ in rows] == [10, 20] and rows[1][1] == 1.0  # 30: the final evaluation's own keys

def test_each_metrics_row_holds_the_step_it_is_labelled_with(tiny_dataset, tmp_path, monkeypatch, one_thread):
    """Training rows on Lightning's logging steps (every 5: 4, 9, ...) hold the loss the module computed at that
    very step (recorded as it trains), not that of an earlier one; evaluation rows are their own, at their step."""
    import wsrl.core.module as module

    losses: list[float] = []  # losses[s]: the loss of step s (one training forward per step)
    weighted_nll = module.weighted_nll

    def recorded(log_prob: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        loss = weighted_nll(log_prob, weights)
        losses.append(loss.item())
        return loss

    monkeypatch.setattr(module, "weighted_nll", recorded)
    results = train(config("trainer.max_steps=30", "eval.every_steps=10"), tmp_path)
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = [{k: v for k, v in r.items() if v} for r in csv.DictReader(f)]
    training = {int(r["step"]): float(r["train/loss"]) for r in rows if "train/loss" in r}
    assert len(losses) == 30 and list(training) == list(range(4, 30, 5))
    assert training == {s: losses[s] for s in training}
    evaluations = [r for r in rows if "eval/normalized_mean" in r]
    assert all("train/loss" not in r for r in evaluations)
    assert [(int(r["step"]), float(r["eval/normalized_mean"])) for r in evaluations] == [
        (e["step"], e["mean"]) for e in results.eval_history[:-1]] and len(evaluations) == 2


def test_resume_false_starts_over(tiny_dataset, tmp_path, one_thread):
    run = tmp_path / "run"
    every = "trainer.checkpoint_every_steps=10"
    train(config("trainer.max_steps=20", every), run)
    assert train(config("trainer.max_steps=40", every, "resume=false"), run).started_at_steps == [0]
    assert train(config("trainer.max_steps=50", every), run).started_at_steps == [0, 40]  # the default resumes


def test_explicit_target_return_and_reference_scores_are_used(tiny_dataset, tmp_path, one_thread):
    results = train(config("method=rvs_r", "env.target_return=1234.5", "env.ref_min_score=10",
                           "env.ref_max_score=110", "trainer.max_steps=5"), tmp_path)
    assert results.target_return == 1234.5
    assert (results.ref_min_score, results.ref_max_score) == (10, 110)
    returns = np.array(results.returns)
    assert results.normalized_score["mean"] == pytest.approx((returns - 10).mean(), rel=1e-9)
    module, env = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert module.target_return == 1234.5 and (env.ref_min_score, env.ref_max_score) == (10, 110)
    # BC takes no target return, so its results.json records none, even with env.target_return set
    assert train(config("env.target_return=1234.5", "trainer.max_steps=5"), tmp_path / "bc").target_return is None
    assert json.loads((tmp_path / "bc" / "results.json").read_text())["target_return"] is None


def test_checkpoint_every_steps_zero_saves_only_the_end(tiny_dataset, tmp_path, one_thread):
    train(config("trainer.max_steps=25", "trainer.checkpoint_every_steps=0"), tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt", "step=25.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 25


def test_a_checkpoint_holds_the_generator_of_the_step_it_saves(tiny_dataset, tmp_path, one_thread):
    """The run draws each step's batch inside the step, none ahead: the generator its final checkpoint saves stands
    exactly after 7 batches (CWBC's raised rows included), as a fresh data module's does after drawing 7."""
    cfg = config("method=rvs_r", "sampler=cwbc_conservative", "trainer.max_steps=7", "trainer.checkpoint_every_steps=0")
    train(cfg, tmp_path)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["OfflineDataModule"]["generator"]
    replay = OfflineDataModule(tiny_dataset, cfg.method, cfg.sampler, cfg.trainer.batch_size,
                               cfg.seed, torch.device("cpu"))
    replay.setup()
    raised = [len(replay.draws.batch()[0]) - cfg.trainer.batch_size for _ in range(7)]
    assert any(raised), "the test needs batches with raised rows"
    assert torch.equal(saved, replay.generator.get_state())
