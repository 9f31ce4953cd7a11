"""The device script experiments/gpu.sh, on this machine: its deadline stops a sweep and the trap still packs."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import ROOT, child_env

SCRIPT = ROOT / "experiments" / "gpu.sh"


def test_help_lists_the_settings():
    out = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    assert "DEADLINE_S" in out and "--smoke" in out and "set -u" not in out
    bad = subprocess.run(["bash", str(SCRIPT), "--nonsense"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr


@pytest.mark.slow
def test_deadline_stops_the_sweep_and_everything_is_packed(tmp_path):
    """A sweep that would run for minutes gets SIGTERM at the deadline; what it wrote comes back in the tarball,
    with the timing file and the log."""
    out, runs = tmp_path / "out", tmp_path / "sweep"
    sweep = (f"mkdir -p {runs}/a/seed0/checkpoints && echo '{{\"ok\": 1}}' > {runs}/a/seed0/results.json && "
             f"touch {runs}/a/seed0/checkpoints/last.ckpt && echo sweep has {{SWEEP_S}} s && sleep 300")
    env = child_env(OUT=str(out), PYTHON=sys.executable, SKIP_INSTALL="1", DEADLINE_S="45", PACK_S="5",
                    GRACE_S="2", PACK_DIRS=str(runs), MINARI_DATASETS_PATH=str(tmp_path / "minari"))
    proc = subprocess.run(["bash", str(SCRIPT), "--datasets", "none", "--", "bash", "-c", sweep], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 124, proc.stdout[-2000:]
    timing = json.loads((out / "timing.json").read_text())
    assert timing["exit_code"] == 124 and {"install", "datagen", "sweep", "pack", "total"} <= set(timing["phases"])
    assert timing["phases"]["total"] < 45
    with tarfile.open(out / "results.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("a/seed0/results.json") for n in names) and not any(n.endswith(".ckpt") for n in names)
    log = (out / "log.txt").read_text()
    assert "sweep has " in log and "{SWEEP_S}" not in log and "stopped at the deadline" in log
