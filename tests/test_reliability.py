"""Runs that survive: exact resume after SIGKILL, determinism, and clear refusals of bad input."""

from __future__ import annotations

import csv
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import ROOT, child_env
from wsrl.core.config import ConfigError, register_configs, to_plain
from wsrl.core.data import DataError
from wsrl.core.module import NonFiniteLossError
from wsrl.evaluation.video import VideoUnavailable
from wsrl.running.rundir import record_run, run_identity
from wsrl.train import train

CONF = str(ROOT / "conf")
LOG_EVERY = 10
SMALL = ["policy.hidden_dims=[32,32]", "trainer.batch_size=32", "eval.episodes=2", "wandb.mode=disabled",
         "generate_if_missing=false", f"trainer.log_every_n_steps={LOG_EVERY}", "trainer.progress_bar=false"]


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
    assert a.returns == b.returns
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


RESUME_STEPS, EVAL_EVERY = 600, 200


def resume_cmd(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "wsrl.train", *SMALL, f"trainer.max_steps={RESUME_STEPS}", "sampler=lds",
            "method=rvs_r", f"eval.every_steps={EVAL_EVERY}", *overrides]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict[str, str], Path]:
    """The environment of a tiny dataset and a clean CLI run on it, shared by the interruption tests."""
    from tests.conftest import make_tiny_dataset

    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        make_tiny_dataset("wsrl/hopper/medium-expert-v0")
    env = child_env(MINARI_DATASETS_PATH=str(root))
    clean = tmp_path_factory.mktemp("clean")
    subprocess.run(resume_cmd("trainer.checkpoint_every_steps=0", f"hydra.run.dir={clean}"), env=env, cwd=clean,
                   check=True, capture_output=True)
    return env, clean


def training_logged(run_dir: Path) -> bool:
    """Whether the run's metrics.csv holds a training loss yet (the file itself is written before training)."""
    try:
        return "train/loss" in (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
    except (OSError, IndexError):
        return False


def interrupt_and_resume(env: dict[str, str], run_dir: Path, signum: int, ready, *overrides: str) -> int:
    """Start a CLI run, send ``signum`` once ``ready()`` holds, check it was stopped mid-run, run the same command
    again; return the step the stopped run's last checkpoint holds."""
    cmd = resume_cmd(*overrides, f"hydra.run.dir={run_dir}")
    proc = subprocess.Popen(cmd, env=env, cwd=run_dir.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None and ready(), "the run ended, or never started training"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.exists() and not (run_dir / "results.json").exists(), "the run was not stopped mid-training"
    step = torch.load(ckpt, weights_only=True)["global_step"]
    assert 0 < step < RESUME_STEPS
    if signum != signal.SIGKILL:  # a stop signal: this step saved, one line on how to resume, exit 128 + signum
        assert proc.returncode == 128 + signum
        name = signal.Signals(signum).name
        assert stderr.strip().splitlines()[-1] == (f"stopped by {name}: saved step {step} to {ckpt}; to resume, run "
                                                   "python -m wsrl.train " + shlex.join(cmd[3:])), stderr
    subprocess.run(cmd, env=env, cwd=run_dir.parent, check=True, capture_output=True)
    return step


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    """The rows of the run's metrics.csv, each with its non-empty cells."""
    with (run_dir / "csv" / "metrics.csv").open(newline="") as file:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(file)]


def assert_same_metrics(resumed: Path, clean: Path) -> None:
    """The resumed run's metrics.csv holds the clean run's rows, each once, those before the resume point kept from
    the first process (CSVLogger would delete them: ``lightning_fixes.keep_metrics``), wherever it resumed: each
    row holds the metrics of the step it is labelled with (``wsrl.core.module.logs_metrics``)."""
    ours, theirs = metrics_rows(resumed), metrics_rows(clean)
    train = [int(row["step"]) for row in ours if "train/loss" in row]
    assert train == sorted(set(train)), "a training step twice, or out of order"
    assert sorted(map(str, ours)) == sorted(map(str, theirs))


def assert_same_run(resumed: Path, clean: Path, resumed_from: int) -> None:
    """Same weights, returns, evaluation history and metrics as the clean run; the second process started at the
    checkpoint's step, so it trained only the remaining steps."""
    assert not list(resumed.glob("checkpoints/*-v*.ckpt")), "a second last.ckpt beside the one resumes read"
    wr, wc = final_weights(resumed), final_weights(clean)
    assert all(torch.equal(wr[k], wc[k]) for k in wc)
    rr, rc = (json.loads((d / "results.json").read_text()) for d in (resumed, clean))
    assert rr["steps"] == rc["steps"] == RESUME_STEPS
    assert rr["started_at_steps"] == [0, resumed_from] and rc["started_at_steps"] == [0]
    assert rr["eval_history"] == rc["eval_history"]
    assert [e["step"] for e in rc["eval_history"]] == list(range(EVAL_EVERY, RESUME_STEPS + 1, EVAL_EVERY))
    assert rr["returns"] == rc["returns"] and rr["normalized_score"] == rc["normalized_score"]
    assert_same_metrics(resumed, clean)


def test_resume_after_sigkill_equals_uninterrupted_run(uninterrupted, tmp_path):
    """Kill a CLI run after its first checkpoint, start the same command again, compare with a clean run."""
    env, clean = uninterrupted
    killed = tmp_path / "killed"
    step = interrupt_and_resume(env, killed, signal.SIGKILL, (killed / "checkpoints" / "last.ckpt").exists,
                                "trainer.checkpoint_every_steps=25")
    assert_same_run(killed, clean, step)


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_stop_signal_saves_the_step_and_resume_equals_uninterrupted_run(uninterrupted, tmp_path, signum):
    """No periodic checkpoint before the end: the one the second process resumes from is the signal's."""
    env, clean = uninterrupted
    stopped = tmp_path / "stopped"
    step = interrupt_and_resume(env, stopped, signum, lambda: training_logged(stopped),
                                "trainer.checkpoint_every_steps=0")
    assert_same_run(stopped, clean, step)


def test_finished_run_is_not_overwritten_and_other_config_is_refused(tiny_dataset, tmp_path):
    first = train(config("trainer.max_steps=10"), tmp_path)
    mtime = (tmp_path / "results.json").stat().st_mtime_ns
    assert train(config("trainer.max_steps=10"), tmp_path) == first
    assert (tmp_path / "results.json").stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match="different trainer config"):
        train(config("trainer.max_steps=10", "trainer.lr=0.1"), tmp_path)


def test_cli_refusal_leaves_the_earlier_run_untouched(tiny_dataset, minari_root, tmp_path):
    def cli(*overrides: str) -> subprocess.CompletedProcess:
        env = child_env(MINARI_DATASETS_PATH=str(minari_root))
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
    assert cli("trainer.lr=0.1", "name=other").returncode == 0  # name= keeps both runs
    other = json.loads(next((tmp_path / "outputs" / "other").rglob("results.json")).read_text())
    assert other["config"]["trainer"]["lr"] == 0.1
    assert {p: p.stat().st_mtime_ns for p in files} == files


def test_last_checkpoint_holds_the_final_step_off_the_interval(tiny_dataset, tmp_path):
    train(config("trainer.max_steps=25", "trainer.checkpoint_every_steps=10"), tmp_path)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 25


def test_dataset_that_does_not_fit_the_eval_env_is_refused(tiny_dataset, tmp_path):
    with pytest.raises(DataError, match="expects 17 and 6"):
        train(config("trainer.max_steps=5", "env.eval_env_id=HalfCheetah-v5"), tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []  # refused before writing anything


def test_every_refusal_comes_before_the_data_is_made(minari_root, tmp_path, monkeypatch):
    """What would refuse the run, checked before the missing dataset is generated (minutes at full size): the
    device, the video, another run's directory and, known from the robot's env, the dataset's shapes."""
    def make_dataset(*args):
        raise AssertionError("the dataset was being made before the run was refused")

    monkeypatch.setattr("wsrl.datasets.sources.ensure_dataset", make_dataset)
    make = ("generate_if_missing=true", "trainer.max_steps=5")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device=cuda but CUDA is not available"):
            train(config(*make, "device=cuda"), tmp_path / "cuda")
    with pytest.raises(DataError, match="expects 17 and 6"):  # hopper's data, HalfCheetah's env
        train(config(*make, "env.eval_env_id=HalfCheetah-v5"), tmp_path / "shapes")

    def no_renderer(env_id):
        raise VideoUnavailable("no renderer here")

    monkeypatch.setattr("wsrl.train.check_video", no_renderer)
    with pytest.raises(ConfigError, match="eval.video=true: no renderer here"):
        train(config(*make, "eval.video=true"), tmp_path / "video")
    plain = to_plain(config(*make))
    record_run(tmp_path / "other", run_identity(plain), plain)
    with pytest.raises(ConfigError, match="different trainer config"):
        train(config(*make, "trainer.lr=0.1"), tmp_path / "other")
    assert list(minari_root.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: device=cuda runs here")
def test_cuda_on_a_machine_without_it_is_refused_at_once_and_writes_nothing(tmp_path):
    """device=cuda without CUDA and without the dataset: one line within seconds, no data made (the default dataset
    at full size would take minutes of CPU to generate) and no run directory left."""
    root = tmp_path / "minari"
    root.mkdir()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "wsrl.train", "device=cuda", "wandb.mode=disabled"], cwd=tmp_path,
                          env=child_env(MINARI_DATASETS_PATH=str(root)), capture_output=True, text=True, timeout=180)
    seconds = time.monotonic() - start
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr
    assert lines == ["error: device=cuda but CUDA is not available; use device=cpu or device=auto"], proc.stderr
    assert proc.stdout == ""
    assert seconds < 60, f"refused only after {seconds:.0f} s"
    assert list(root.iterdir()) == [] and [p.name for p in tmp_path.iterdir()] == ["minari"]


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
    import wsrl.running.build as wt

    monkeypatch.setattr(wt, "wandb_reachable", lambda timeout=3.0: False)
    cfg = config("wandb.mode=online")
    loggers = wt.make_loggers(cfg, to_plain(cfg), tmp_path)
    assert "logging offline instead" in caplog.text
    assert loggers[1].experiment.settings.mode == "offline"
    import wandb

    wandb.finish()
    wandb.teardown()  # stops the W&B service this process started, and takes WANDB_SERVICE out of its environment


@pytest.mark.parametrize("stop_after", [47, 50])  # 50: the end of step 49, a logging step (rows at 9, 19, ...)
def test_a_stop_at_any_step_keeps_every_metrics_row(tiny_dataset, tmp_path, monkeypatch, stop_after):
    """A stop signal handled at the end of step ``stop_after - 1``, then the same run resumed: its metrics.csv equals
    an uninterrupted run's, the stopped step's own row included where that step logs."""
    from wsrl.running.rundir import RunInterrupted, StopAtStep

    overrides = ("trainer.max_steps=80", "trainer.checkpoint_every_steps=0", "eval.every_steps=40")
    clean = tmp_path / "clean"
    train(config(*overrides), clean)
    handled = StopAtStep.on_train_batch_end

    def signal_at(self, trainer, *args) -> None:
        if trainer.global_step == stop_after and not self.starts[1:]:  # the first process only
            self.signals.signum = signal.SIGTERM
        handled(self, trainer, *args)

    monkeypatch.setattr(StopAtStep, "on_train_batch_end", signal_at)
    stopped = tmp_path / "stopped"
    with pytest.raises(RunInterrupted):
        train(config(*overrides), stopped)
    monkeypatch.setattr(StopAtStep, "on_train_batch_end", handled)
    train(config(*overrides), stopped)
    assert sorted(map(str, metrics_rows(stopped))) == sorted(map(str, metrics_rows(clean)))
