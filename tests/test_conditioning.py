"""The return-conditioning curve (from a checkpoint alone, per sweep cell) and the W&B dashboard of a run."""

from __future__ import annotations

import json

import minari
import numpy as np
import pytest
import torch
import wandb

from tests.conftest import can_render, make_tiny_dataset
from tests.test_train import config
from wsrl.core.config import ConfigError
from wsrl.core.weighting import lds_weights
from wsrl.evaluation.__main__ import main as evaluate_cli
from wsrl.evaluation.conditioning import conditioning_curve
from wsrl.evaluation.media import return_distribution
from wsrl.evaluation.scores import evaluate, load_checkpoint
from wsrl.report.__main__ import main as report_cli
from wsrl.report.curves import conditioning_report
from wsrl.train import train

RVS = "hopper_medium_expert/rvs_r-uniform-unconditional/seed{}"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two RvS-R seeds and a BC run on a tiny hopper medium-expert dataset, laid out as a sweep; yields the sweep
    directory, the dataset's episode returns, the MINARI_DATASETS_PATH that holds the dataset and an empty one
    (where the dataset is gone). The tests set the one they need: none is left set for them."""
    root = tmp_path_factory.mktemp("conditioning")
    (root / "minari").mkdir()
    (root / "empty").mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        dataset = make_tiny_dataset("wsrl/hopper/medium-expert-v0")
        returns = np.array([ep.rewards.sum() for ep in minari.load_dataset(dataset).iterate_episodes()])
        for seed in (0, 1):
            train(config("method=rvs_r", f"seed={seed}"), root / "sweep" / RVS.format(seed))
        train(config(), root / "sweep" / "hopper_medium_expert" / "bc-uniform-unconditional" / "seed0")
    yield root / "sweep", returns, root / "minari", root / "empty"
    torch.set_num_threads(threads)


def test_curve_from_a_checkpoint_alone(sweep, monkeypatch, tmp_path, capsys):
    runs, returns, _, empty = sweep
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(empty))  # no dataset: the checkpoint carries its returns
    ckpt = runs / RVS.format(0) / "checkpoints" / "last.ckpt"
    png = tmp_path / "plots" / "curve.png"
    curve = evaluate_cli([str(ckpt), "--targets", "--points", "3", "--episodes", "2", "--plot", str(png)])
    np.testing.assert_allclose(curve["targets"], np.linspace(returns.min(), 1.2 * returns.max(), 3), rtol=1e-9)
    module, env = load_checkpoint(ckpt)
    for target, mean, std in zip(curve["targets"], curve["achieved_mean"], curve["achieved_std"], strict=True):
        module.target_return = target  # the same episodes, scored here at that target
        assert evaluate(module, env, 2, 0)["normalized_score"] == pytest.approx({"mean": mean, "std": std})
    np.testing.assert_allclose(curve["requested"], env.normalize(np.array(curve["targets"])))
    saved = json.loads(png.with_suffix(".json").read_text())
    assert saved["achieved_mean"] == curve["achieved_mean"] and sum(saved["dataset_returns"]["counts"]) == 6
    assert png.read_bytes()[:4] == b"\x89PNG" and sorted(p.name for p in png.parent.iterdir()) == [
        "curve.json", "curve.png"]
    assert f"conditioning curve over 2 episodes per target -> {png}" in capsys.readouterr().out
    # explicit targets; without --plot the curve goes into the run directory
    low, high = evaluate_cli([str(ckpt), "--targets", "5", "700", "--episodes", "1"])["achieved_mean"]
    assert low != high, "the target does not reach the policy"
    assert (runs / RVS.format(0) / "conditioning.png").exists()


def test_bc_and_checkpoints_without_returns(sweep, monkeypatch, tmp_path):
    runs, returns, minari_path, empty = sweep
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_path))
    bc = runs / "hopper_medium_expert" / "bc-uniform-unconditional" / "seed0" / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit, match=r"^error: .*last\.ckpt: a BC policy \(method=bc\) takes no target return"):
        evaluate_cli([str(bc), "--targets"])
    # a checkpoint from before the dataset's returns were stored in it
    old = torch.load(runs / RVS.format(1) / "checkpoints" / "last.ckpt", weights_only=False)
    stored = old["hyper_parameters"].pop("dataset_returns")
    torch.save(old, tmp_path / "old.ckpt")
    args = [str(tmp_path / "old.ckpt"), "--episodes", "1", "--points", "2"]
    curve = evaluate_cli([*args, "--targets"])  # the dataset is here: its returns stand in
    assert json.loads((tmp_path / "conditioning.json").read_text())["dataset_returns"] == stored
    np.testing.assert_allclose(curve["targets"], [returns.min(), 1.2 * returns.max()], rtol=1e-9)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(empty))
    with pytest.raises(SystemExit, match=r"^error: .*old\.ckpt stores no dataset returns .* pass --targets R1 R2"):
        evaluate_cli([*args, "--targets"])
    assert evaluate_cli([*args, "--targets", "100"])["targets"] == [100.0]  # explicit targets need no dataset


def test_report_draws_each_medium_expert_cell(sweep, tmp_path, monkeypatch):
    runs, _, minari_path, _ = sweep
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_path))
    png = conditioning_report(runs, tmp_path, points=3, episodes=1)
    cells = json.loads((tmp_path / "conditioning.json").read_text())["cells"]
    assert [(c["env"], c["sampler"], c["policy"]) for c in cells] == [
        ("hopper_medium_expert", "uniform", "unconditional")]  # the BC run has no curve
    assert cells[0]["seeds"] == [RVS.format(0), RVS.format(1)]
    per_seed = []
    for seed in (0, 1):
        module, env = load_checkpoint(runs / RVS.format(seed) / "checkpoints" / "last.ckpt")
        per_seed.append(conditioning_curve(module, env, np.array(cells[0]["targets"]), 1, 0)["achieved_mean"])
    np.testing.assert_allclose(cells[0]["achieved_mean"], np.mean(per_seed, axis=0))
    np.testing.assert_allclose(cells[0]["achieved_std"], np.std(per_seed, axis=0), atol=1e-9)
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit) as exit_info:
        report_cli([str(runs / "hopper_medium_expert" / "bc-uniform-unconditional"), "--conditioning"])
    assert exit_info.value.code == 2


def test_weighted_return_distribution_is_what_the_weights_make_it():
    returns = np.repeat([10.0, 40.0, 90.0], [80, 15, 5])
    weights = lds_weights(returns, bins=10)
    edges, data, weighted = return_distribution(returns, weights, bins=4)
    np.testing.assert_allclose(data, [0.8, 0.15, 0, 0.05])
    want = [weights[returns == r].sum() / weights.sum() for r in (10.0, 40.0)]
    np.testing.assert_allclose(weighted, [want[0], want[1], 0, 1 - sum(want)])
    assert weighted[0] < data[0] - 0.1 and weighted[3] > data[3] + 0.05  # LDS moves mass to the rare returns
    assert return_distribution(returns, None)[2] is None


@pytest.mark.video
def test_one_wandb_run_shows_every_panel(tiny_dataset, tmp_path, monkeypatch):
    """An offline W&B run: the metric curves, the weight statistics, the dataset's returns with the weights' effect,
    the conditioning curve and, where this machine renders, the final video."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    video = ["eval.video=true", "eval.video_frames=3", "eval.video_size=[32,32]"] if can_render() is None else []
    run_dir = tmp_path / "run"
    results = train(config("method=rvs_r", "sampler=lds", "wandb.mode=offline", "eval.every_steps=30",
                           "eval.conditioning_points=3", *video), run_dir)
    assert len(results.conditioning["targets"]) == 3
    assert (run_dir / "returns.png").exists() and (run_dir / "conditioning.png").exists()
    wandb.teardown()  # the W&B service may still be writing the run's last records: wait for it
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (records,) = offline.glob("run-*.wandb")
    logged = records.read_bytes()
    keys = ["train/loss", "train/mean_log_std", "eval/normalized_mean", "eval/final_normalized_mean",
            "data/weight_max", "data/weight_effective_fraction", "data/returns", "eval/conditioning"]
    media = {"images/data/returns_", "images/eval/conditioning_"}
    if video:
        keys.append("eval/video")
        media.add("videos/eval/video_")
    assert [k for k in keys if k.encode() not in logged] == []
    files = [str(p.relative_to(offline / "files" / "media")) for p in (offline / "files" / "media").rglob("*.*")]
    assert {m for m in media if any(f.startswith(m) for f in files)} == media, files


def test_looking_at_a_policy_does_not_change_which_run_it_is(tiny_dataset, tmp_path):
    """A finished run asked again with a curve (or a video) is the same run, as one made before these settings
    existed; another number of evaluation episodes is another run."""
    first = train(config("trainer.max_steps=10"), tmp_path)
    identity = json.loads((tmp_path / "run_config.json").read_text())
    assert identity["eval"] == {"episodes": 2, "every_steps": 0}
    assert train(config("trainer.max_steps=10", "eval.conditioning_points=4"), tmp_path) == first
    with pytest.raises(ConfigError, match="different eval config"):
        train(config("trainer.max_steps=10", "eval.episodes=3"), tmp_path)
