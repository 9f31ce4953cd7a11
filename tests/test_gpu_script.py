"""The device script experiments/gpu.sh, on this machine: the device's defaults and one deadline for a stacked sweep,
the wheels installed once per set, every finished group packed at once, a stopped sweep still packed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest

from tests.conftest import ROOT, child_env

SCRIPT = ROOT / "experiments" / "gpu.sh"


def test_help_lists_the_settings():
    out = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    assert "DEADLINE_S" in out and "--smoke" in out and "set -u" not in out
    bad = subprocess.run(["bash", str(SCRIPT), "--nonsense"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr


def test_the_device_gets_the_package_versions_of_this_environment():
    """The wheels carried to the device (the Makefile's GPU_WHEELS) are the versions the CPU suite runs with."""
    from importlib.metadata import version

    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    pins = dict(pin.split("==") for pin in text.split("GPU_WHEELS ?=")[1].splitlines()[0].split())
    assert {"mujoco", "gymnasium", "minari", "hydra-core"} <= set(pins)
    assert {name: version(name) for name in pins} == pins


def script_env(tmp_path, **extra: str) -> dict[str, str]:
    """The script's settings for a run in ``tmp_path`` (no wheels, the archive ``out/gpu_test``), ``extra`` winning."""
    return child_env(**{"OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "SKIP_INSTALL": "1",
                        "RUNS_DIR": str(tmp_path / "runs"), "MINARI_DATASETS_PATH": str(tmp_path / "minari"),
                        "ARCHIVE": "gpu_test", **extra})


def archived(tmp_path) -> list[str]:
    with tarfile.open(tmp_path / "out" / "gpu_test" / "runs.tar.gz") as tar:
        return tar.getnames()


def a_run(tmp_path) -> str:
    """A shell sweep that writes a finished run (and a checkpoint) at once, then runs for minutes."""
    run = tmp_path / "runs" / "sweep" / "a" / "seed0"
    return (f"mkdir -p {run}/checkpoints && echo '{{\"ok\": 1}}' > {run}/results.json && "
            f"touch {run}/checkpoints/last.ckpt && sleep 300")


@pytest.mark.slow
def test_deadline_stops_the_sweep_and_everything_is_packed(tmp_path):
    """A sweep that would run for minutes gets SIGTERM before the deadline; what it wrote comes back in the archive,
    with the timing file and the log."""
    env = script_env(tmp_path, DEADLINE_S="45", PACK_S="5")
    proc = subprocess.run(["bash", str(SCRIPT), "--", "bash", "-c", a_run(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 124, proc.stdout[-2000:]
    timing = json.loads((tmp_path / "out" / "gpu_test" / "timing.json").read_text())
    assert timing["exit_code"] == 124 and {"install", "datasets", "sweep", "total"} <= set(timing["phases"])
    assert timing["phases"]["total"] < 45
    names = archived(tmp_path)
    assert "./sweep/a/seed0/results.json" in names and not any(n.endswith(".ckpt") for n in names)
    assert "stopped at the deadline" in (tmp_path / "out" / "gpu_test" / "log.txt").read_text()


@pytest.mark.slow
def test_a_finished_run_is_packed_before_the_script_ends(tmp_path):
    """Killed outright (no trap runs), the script has already packed the run that finished during the sweep."""
    proc = subprocess.Popen(["bash", str(SCRIPT), "--", "bash", "-c", a_run(tmp_path)], env=script_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not (tmp_path / "out" / "gpu_test" / "runs.tar.gz").exists() and time.time() < deadline:
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert archived(tmp_path) == ["./sweep/a/seed0/results.json"]


def tiny_wheel(folder) -> None:
    """A pure-Python wheel of one module, ``wsrl_wheel_probe``."""
    folder.mkdir()
    info = "wsrl_wheel_probe-0.1.dist-info"
    with zipfile.ZipFile(folder / "wsrl_wheel_probe-0.1-py3-none-any.whl", "w") as whl:
        whl.writestr("wsrl_wheel_probe.py", "VALUE = 1\n")
        whl.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: wsrl-wheel-probe\nVersion: 0.1\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", f"wsrl_wheel_probe.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")


@pytest.mark.slow
def test_the_wheels_are_installed_once_per_set(tmp_path):
    tiny_wheel(tmp_path / "whl")
    env = script_env(tmp_path, SKIP_INSTALL="0", WHEELS=str(tmp_path / "whl"), SITE=str(tmp_path / "site"))
    logs = []
    for _ in range(2):
        proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:]
        logs.append(proc.stdout)
    assert "installing 1 wheels" in logs[0] and "already installed" in logs[1] and "installing" not in logs[1]
    assert (tmp_path / "site" / "wsrl_wheel_probe.py").exists()


@pytest.mark.slow
def test_a_stacked_sweep_gets_the_device_defaults_and_its_archive(tiny_dataset, minari_root, tmp_path):
    """The stacked launcher's defaults added, one deadline passed on, the datasets' hashes and the group's row."""
    sweep = tmp_path / "runs" / "tiny"
    cmd = ["python", "-m", "wsrl.train", "-m", "hydra/launcher=stacked", "method=bc,rvs_r", "seed=0",
           "trainer.max_steps=12", "policy.hidden_dims=[16]", "trainer.batch_size=16", "eval.episodes=1",
           "device=cpu", f"hydra.sweep.dir={sweep}"]
    env = script_env(tmp_path, MINARI_DATASETS_PATH=str(minari_root), DEADLINE_S="300", OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(SCRIPT), "--", *cmd], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "hydra.launcher.deadline_s=" in proc.stdout and "hydra.launcher.eval_workers=" in proc.stdout
    run = json.loads(next(sweep.rglob("results.json")).read_text())
    assert run["config"]["trainer"]["checkpoint_every_steps"] == 0 and not run["config"]["generate_if_missing"]
    assert run["config"]["wandb"]["mode"] == "disabled"
    archive = tmp_path / "out" / "gpu_test"
    assert sum(n.endswith("results.json") for n in archived(tmp_path)) == 2
    assert any("/.stacked/" in n and n.endswith(".json") for n in archived(tmp_path))
    assert "wsrl/hopper/medium-expert-v0/data/main_data.hdf5" in (archive / "datasets.txt").read_text()
    assert "| cpu | FP32 | 2 |" in (archive / "README.md").read_text()
