"""Runs that survive: exact resume after SIGKILL, determinism, and clear refusals of bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from wsrl.config import ConfigError, register_configs
from wsrl.data import DataError
from wsrl.module import NonFiniteLossError
from wsrl.train import train

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
SMALL = ["policy.hidden_dims=[32,32]", "trainer.batch_size=32", "eval.episodes=2", "wandb.mode=disabled",
         "generate_if_missing=false", "trainer.log_every_n_steps=10", "trainer.progress_bar=false"]


def config(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=SMALL + list(overrides))


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_same_seed_same_result_and_seeds_differ(tiny_dataset, tmp_path):
    args = ("trainer.max_steps=30", "sampler=lds_sampling", "policy.dropout=0.1")
    a = train(config(*args), tmp_path / "a")
    b = train(config(*args), tmp_path / "b")
    train(config(*args, "seed=1"), tmp_path / "c")
    wa, wb, wc = (final_weights(tmp_path / d) for d in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["returns"] == b["returns"]
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_after_sigkill_equals_uninterrupted_run(tiny_dataset, minari_root, tmp_path):
    """Kill a CLI run after its first checkpoint, start the same command again, compare with a clean run."""
    steps, every = 400, 25
    cmd = [sys.executable, "-m", "wsrl.train", *SMALL, f"trainer.max_steps={steps}", "sampler=lds",
           f"trainer.checkpoint_every_steps={every}", "method=rvs_r"]
    env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_root)}
    killed = tmp_path / "killed"
    run = [*cmd, f"hydra.run.dir={killed}"]
    proc = subprocess.Popen(run, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (killed / "results.json").exists(), "the run was not killed mid-training"
    subprocess.run(run, env=env, cwd=tmp_path, check=True, capture_output=True)
    clean = tmp_path / "clean"
    subprocess.run([*cmd, f"hydra.run.dir={clean}"], env=env, cwd=tmp_path, check=True, capture_output=True)
    wk, wc = final_weights(killed), final_weights(clean)
    assert all(torch.equal(wk[k], wc[k]) for k in wc)
    rk, rc = (json.loads((d / "results.json").read_text()) for d in (killed, clean))
    assert rk["steps"] == rc["steps"] == steps
    assert rk["normalized_score"] == rc["normalized_score"]


def test_finished_run_is_not_overwritten_and_other_config_is_refused(tiny_dataset, tmp_path):
    first = train(config("trainer.max_steps=10"), tmp_path)
    mtime = (tmp_path / "results.json").stat().st_mtime_ns
    assert train(config("trainer.max_steps=10"), tmp_path) == first
    assert (tmp_path / "results.json").stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match="different trainer config"):
        train(config("trainer.max_steps=10", "trainer.lr=0.1"), tmp_path)


def test_cli_refusal_leaves_the_earlier_run_untouched(tiny_dataset, minari_root, tmp_path):
    def cli(*overrides: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "MINARI_DATASETS_PATH": str(minari_root), "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-m", "wsrl.train", *SMALL, "trainer.max_steps=3", "eval.episodes=1",
                               *overrides], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert cli().returncode == 0
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert {"config.yaml", "run_config.json", "results.json", "last.ckpt"} <= {p.name for p in files}
    refused = cli("trainer.lr=0.1")
    assert refused.returncode != 0
    last_line = refused.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and "different trainer config" in last_line
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == files


def test_last_checkpoint_holds_the_final_step_off_the_interval(tiny_dataset, tmp_path):
    train(config("trainer.max_steps=25", "trainer.checkpoint_every_steps=10"), tmp_path)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 25


def test_dataset_that_does_not_fit_the_eval_env_is_refused(tiny_dataset, tmp_path):
    with pytest.raises(DataError, match="expects 17 and 6"):
        train(config("trainer.max_steps=5", "env.eval_env_id=HalfCheetah-v5"), tmp_path)
    assert not (tmp_path / "results.json").exists()


def test_nan_loss_stops_with_step_and_hint(tiny_dataset, tmp_path):
    with pytest.raises(NonFiniteLossError, match="by step .*lower trainer.lr"):
        train(config("trainer.max_steps=200", "trainer.lr=1e30", "trainer.log_every_n_steps=1"), tmp_path)
    assert not (tmp_path / "results.json").exists()


def test_non_finite_weights_are_never_checkpointed(tiny_dataset, tmp_path):
    """Between two loss checks, a checkpoint of broken weights is refused rather than written."""
    with pytest.raises(NonFiniteLossError, match="were not checkpointed"):
        train(config("trainer.max_steps=200", "trainer.lr=1e30", "trainer.log_every_n_steps=1000",
                     "trainer.checkpoint_every_steps=20"), tmp_path)
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))


def test_wandb_online_without_network_falls_back_to_offline(tiny_dataset, tmp_path, monkeypatch, caplog):
    import wsrl.train as wt

    monkeypatch.setattr(wt, "wandb_reachable", lambda timeout=3.0: False)
    cfg = config("wandb.mode=online")
    loggers = wt.make_loggers(cfg, tmp_path)
    assert "logging offline instead" in caplog.text
    assert loggers[1].experiment.settings.mode == "offline"
    import wandb

    wandb.finish()
