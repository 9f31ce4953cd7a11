"""One process per run directory, stop signals that save the run, writes that fail whole, the submitit path."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import wsrl.common.files as files
import wsrl.running.rundir as runs
from tests.conftest import child_env, make_tiny_dataset
from tests.test_reliability import SMALL, config, final_weights, training_logged
from wsrl.common.files import WriteError, atomic_path, write_bytes_atomic
from wsrl.core.config import ConfigError
from wsrl.running.rundir import LOCK_NAME, RunLockedError, StopSignals, run_lock
from wsrl.train import train


def cli_env(minari_root: Path) -> dict[str, str]:
    return child_env(MINARI_DATASETS_PATH=str(minari_root))


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file below ``directory`` and its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def wait_for(condition, proc: subprocess.Popen | None = None, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, "the process ended before the condition held"
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_run_lock_is_exclusive_names_the_holder_and_goes_with_it(tmp_path):
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(RunLockedError, match=f"{tmp_path} is in use by another run \\(PID {os.getpid()}\\)"):
            with run_lock(tmp_path):
                pass
    assert list(tmp_path.iterdir()) == []  # released: no lock file left behind
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from wsrl.running.rundir import run_lock\nwith run_lock(Path(sys.argv[1])):\n"
                               " print('held', flush=True); time.sleep(600)", str(tmp_path)],
                              stdout=subprocess.PIPE, text=True, env=child_env())
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLockedError, match=f"PID {holder.pid}"):
        with run_lock(tmp_path):
            pass
    holder.kill()  # SIGKILL: no chance to clean up, yet the kernel drops the lock
    holder.wait()
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_second_process_on_a_run_directory_is_refused_and_writes_nothing(tiny_dataset, minari_root, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "wsrl.train", *SMALL, "trainer.max_steps=3000", "trainer.checkpoint_every_steps=50",
           f"hydra.run.dir={run_dir}"]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(minari_root), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    wait_for(lambda: (run_dir / "checkpoints" / "last.ckpt").exists(), first)
    first.send_signal(signal.SIGSTOP)  # hold the first run still, so any change below is the second's
    try:
        before = snapshot(run_dir)
        second = subprocess.run(cmd, cwd=tmp_path, env=cli_env(minari_root), capture_output=True, text=True,
                                timeout=300)
        assert snapshot(run_dir) == before
    finally:
        first.send_signal(signal.SIGTERM)  # delivered on SIGCONT: the first run saves its step and stops
        first.send_signal(signal.SIGCONT)
    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert lines == [f"error: {run_dir} is in use by another run (PID {first.pid}); wait for it to end or stop it, "
                     "or pass name=<new name> to run separately"], second.stderr
    assert first.wait(timeout=300) == 128 + signal.SIGTERM
    assert not (run_dir / LOCK_NAME).exists()  # the lock went with its holder


def test_sweep_job_on_a_held_directory_fails_alone(tiny_dataset, minari_root, tmp_path):
    sweep = tmp_path / "sweep"
    held = sweep / "hopper_medium_expert" / "bc-uniform-unconditional" / "seed1"
    with run_lock(held):
        proc = subprocess.run([sys.executable, "-m", "wsrl.train", "-m", *SMALL, "trainer.max_steps=5",
                               "eval.episodes=1", "seed=0,1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path,
                              env=cli_env(minari_root), capture_output=True, text=True, timeout=300)
        assert sorted(p.name for p in held.iterdir()) == [LOCK_NAME]  # nothing of the refused job
    assert proc.returncode == 0, proc.stderr
    assert f"error: {held} is in use by another run (PID {os.getpid()})" in proc.stderr
    assert json.loads((held.parent / "seed0" / "results.json").read_text())["steps"] == 5


def test_second_signal_exits_at_once(tmp_path):
    """The first signal waits for the end of the step in progress (here: one that never ends); the second does not."""
    script = ("import os, signal, time\nfrom wsrl.running.rundir import StopSignals\nwith StopSignals() as s:\n"
              " s.deferred = True\n os.kill(os.getpid(), signal.SIGTERM)\n time.sleep(0.2)\n"
              " print('waiting for the step', flush=True)\n os.kill(os.getpid(), signal.SIGTERM)\n"
              " time.sleep(60)\n print('still running', flush=True)")
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=child_env())
    assert proc.returncode == 128 + signal.SIGTERM and proc.stdout == "waiting for the step\n"
    assert time.time() - start < 50
    with StopSignals() as stop:  # outside training, the first signal stops at once
        with pytest.raises(runs.RunInterrupted, match="stopped by SIGINT: the run directory keeps its last"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        assert stop.signum == signal.SIGINT


WRITE = files._write_fully


def failing_writer(when: bytes):
    """A writer that runs out of space halfway through data containing ``when``."""
    write = WRITE

    def writer(fd: int, data: bytes) -> None:
        if when in data:
            write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(fd, data)

    return writer


def test_full_disk_keeps_the_previous_checkpoint_and_leaves_no_partial_file(tiny_dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(config("trainer.max_steps=20", "trainer.checkpoint_every_steps=10"), run)
    before = snapshot(run)
    monkeypatch.setattr(files, "_write_fully", failing_writer(b"pytorch-lightning_version"))
    with pytest.raises(WriteError, match=f"cannot write {run}/checkpoints/step=30.ckpt: No space left on device"):
        train(config("trainer.max_steps=40", "trainer.checkpoint_every_steps=10"), run)
    after = snapshot(run)
    assert after["checkpoints/last.ckpt"] == before["checkpoints/last.ckpt"]  # still the step-20 checkpoint
    assert {k for k in after if k.startswith("checkpoints/")} == {"checkpoints/last.ckpt", "checkpoints/step=20.ckpt"}
    assert after["results.json"] == before["results.json"]
    assert not [k for k in after if "tmp" in k or LOCK_NAME in k]
    # results.json: training and the final checkpoint done, the results cannot be written
    monkeypatch.setattr(files, "_write_fully", failing_writer(b'"normalized_score"'))
    with pytest.raises(WriteError, match=f"cannot write {run}/results.json: No space left on device"):
        train(config("trainer.max_steps=30", "trainer.checkpoint_every_steps=10"), run)
    assert snapshot(run)["results.json"] == before["results.json"]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 30
    assert not [p for p in run.rglob("*") if "tmp" in p.name or p.name == LOCK_NAME]


def make_read_only(path: Path):
    """Make ``path`` refuse new entries, also for root (immutable flag); skip where neither way works."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("running as root without chattr: cannot make a read-only directory")
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    path.chmod(0o555)
    return lambda: path.chmod(0o755)


def kept(run: Path) -> dict[str, bytes]:
    """The files a failed write must leave as they were: checkpoints, results and the run's config."""
    return {k: v for k, v in snapshot(run).items()
            if k.startswith("checkpoints/") or k in ("results.json", "run_config.json", "config.yaml")}


def test_read_only_output_directory_ends_the_run_in_one_line(tiny_dataset, minari_root, tmp_path):
    run = tmp_path / "run"
    train(config("trainer.max_steps=20", "trainer.checkpoint_every_steps=10"), run)
    before = kept(run)
    cmd = [sys.executable, "-m", "wsrl.train", *SMALL, "trainer.max_steps=40", "trainer.checkpoint_every_steps=10",
           f"hydra.run.dir={run}"]
    for read_only, message in [(run / "checkpoints", f"cannot write {run}/checkpoints/step=30.ckpt: "),
                               (run, f"cannot lock the run directory {run} ({run}/{LOCK_NAME}: ")]:
        undo = make_read_only(read_only)
        try:
            proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(minari_root), capture_output=True, text=True,
                                  timeout=300)
        finally:
            undo()
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and lines[-1].startswith(f"error: {message}"), proc.stderr
        assert [line for line in lines if "error" in line.lower()] == [lines[-1]], proc.stderr
        assert kept(run) == before and not [p for p in run.rglob("*") if "tmp" in p.name or p.name == LOCK_NAME]


def test_write_bytes_atomic_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    write_bytes_atomic(target, b"old")
    monkeypatch.setattr(files, "_write_fully", failing_writer(b"new"))
    with pytest.raises(WriteError, match="No space left on device; the previous file"):
        write_bytes_atomic(target, b"new" * 1000)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_path_renames_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "clip.mp4"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp != target
        tmp.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="encoder died"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder died")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_submitit_sweep_survives_a_preemption(tiny_dataset, minari_root, tmp_path):
    """A sweep through hydra-submitit-launcher's local executor (the SLURM preset's machinery). One job gets
    submitit's pre-emption signal mid-run: it saves, is requeued, resumes in its directory and ends exactly as
    its twin, which runs the same training undisturbed (``env.name`` only names the directory)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the cluster extra")
    from submitit.local.local import LocalJobEnvironment

    sweep, steps = tmp_path / "sweep", 1000
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsrl.train", "-m", "hydra/launcher=submitit_local", *SMALL, "env.name=a,b",
         f"trainer.max_steps={steps}", "trainer.checkpoint_every_steps=0", "eval.every_steps=500",
         f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=cli_env(minari_root), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    job = sweep / "a" / "bc-uniform-unconditional" / "seed0"
    wait_for(lambda: training_logged(job) and (job / LOCK_NAME).exists(), proc, timeout=300)
    os.kill(int((job / LOCK_NAME).read_text()), LocalJobEnvironment._usr_sig())  # what LocalJob._interrupt sends
    _, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 0, stderr
    twin = sweep / "b" / "bc-uniform-unconditional" / "seed0"
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (job, twin))
    k = ra["started_at_steps"][1]
    assert ra["started_at_steps"] == [0, k] and 0 < k < steps and rb["started_at_steps"] == [0]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "Requeued job" in logs and f"stopped by SIGUSR2: saved step {k}" in logs
    wa, wb = final_weights(job), final_weights(twin)
    assert all(torch.equal(wa[n], wb[n]) for n in wb)
    assert ra["eval_history"] == rb["eval_history"] and [e["step"] for e in ra["eval_history"]] == [500, 1000]
    assert ra["returns"] == rb["returns"]


def test_a_run_directory_on_another_version_of_its_data_is_refused(tiny_dataset, minari_root, tmp_path):
    """A new dataset version has a new id: a finished run on the old one is neither reported as the new one's nor
    extended on it, whether its identity records the id or (made before it did) only its results.json does."""
    run_dir, steps = tmp_path / "run", ["trainer.max_steps=5", "eval.episodes=1"]
    train(config(*steps), run_dir)
    newer = tiny_dataset.replace("-v0", "-v1")
    make_tiny_dataset(newer)
    identity = json.loads((run_dir / runs.IDENTITY).read_text())
    assert identity["dataset_id"] == tiny_dataset
    for _recorded_in in ("identity", "results.json"):
        with pytest.raises(ConfigError, match=f"holds a run on {tiny_dataset} and this config trains on {newer}"):
            train(config(*steps, f"env.dataset_id={newer}"), run_dir)
        identity.pop("dataset_id", None)  # as recorded before identities held the id
        (run_dir / runs.IDENTITY).write_text(json.dumps(identity))
    assert train(config(*steps), run_dir).steps == 5  # the same data: the finished run, as it was
