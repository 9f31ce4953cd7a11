"""experiments/render.sh: the finished runs of a sweep packed into a small archive (byte-identical when packed
again), restored without overwriting what is there, and the tables rendered from them; missing sweeps skipped."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.conftest import ROOT, child_env
from tests.test_report import write_run

SCRIPT = ROOT / "experiments" / "render.sh"
ME = ("halfcheetah_medium_expert", "hopper_medium_expert", "walker2d_medium_expert")


def render(tmp_path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    env = child_env(PYTHON=sys.executable, MULTIRUN=str(tmp_path / "multirun"), RUNS=str(tmp_path / "sweeps"),
                    GPU_RUNS=str(tmp_path / "gpu"), OUT=str(tmp_path / "out"), REPS="20")
    proc = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == code, proc.stderr[-2000:]
    return proc


def test_pack_restore_and_render(tmp_path):
    sweep = tmp_path / "multirun" / "table2_cpu"
    for k, env in enumerate(ME):
        for method in ("bc", "rvs_r"):
            for sampler in ("uniform", "lds"):
                for seed in range(5):
                    write_run(sweep, env, method, sampler, seed, 30.0 + 10 * k + seed + (method == "rvs_r"))
    unfinished = sweep / "hopper_medium_expert" / "bc-uniform-None-unconditional" / "seed7"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "checkpoints" / "last.ckpt").write_bytes(b"not a result")

    assert "unknown argument --nonsense" in render(tmp_path, "--nonsense", code=2).stderr
    assert f"{tmp_path / 'sweeps' / 'table2_cpu.tar.gz'}: 60 runs" in render(tmp_path, "--pack").stdout
    archive = tmp_path / "sweeps" / "table2_cpu.tar.gz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert len(names) == 60 and all(n.startswith("table2_cpu/") and n.endswith("/results.json") for n in names)
    first = archive.read_bytes()
    render(tmp_path, "--pack")
    assert archive.read_bytes() == first  # the same runs give the same bytes

    lost = sweep / "walker2d_medium_expert" / "bc-uniform-None-unconditional" / "seed0" / "results.json"
    kept = sweep / "walker2d_medium_expert" / "bc-uniform-None-unconditional" / "seed1" / "results.json"
    lost.unlink()
    edited = {**json.loads(kept.read_text()), "note": "the user's"}
    kept.write_text(json.dumps(edited))
    out = render(tmp_path).stdout
    assert lost.exists() and json.loads(kept.read_text()) == edited
    assert "table1_cpu is missing" in out  # Tables 1, 4 and 5 have no sweep here: skipped, said
    table = {r["dataset"]: r for r in csv.DictReader((tmp_path / "out" / "table2.csv").open())}
    assert float(table["hopper_medium_expert"]["BC"]) == 42.0 and float(table["hopper_medium_expert"]["IR"]) == 43.0
    assert (tmp_path / "out" / "table3.md").exists() and (tmp_path / "out" / "me10" / "table2.md").exists()


def test_a_damaged_archive_or_member_is_named_and_rendering_goes_on(tmp_path):
    """An archive packed with a cut results.json: the report names that run and counts it in the notes; an
    archive cut short: named in one line, and the other tables are rendered."""
    multirun = tmp_path / "multirun"
    for sweep, env in (("table2_cpu", "hopper_medium_expert"), ("table4_cpu", "walker2d_medium_expert")):
        for seed in range(3):
            write_run(multirun / sweep, env, "bc", "uniform", seed, 10.0 * (seed + 1))
    for env in ("halfcheetah_medium_expert", "walker2d_medium_expert"):  # the rows of the medium-expert tables
        write_run(multirun / "table2_cpu", env, "bc", "uniform", 0, 50.0)
    member = Path("table2_cpu") / "hopper_medium_expert" / "bc-uniform-None-unconditional" / "seed2" / "results.json"
    (multirun / member).write_bytes((multirun / member).read_bytes()[:200])
    render(tmp_path, "--pack")
    shutil.rmtree(multirun)
    cut = tmp_path / "sweeps" / "table4_cpu.tar.gz"
    cut.write_bytes(cut.read_bytes()[:100])
    proc = render(tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert [line for line in lines if line.startswith("damaged:")] == [
        f"damaged: {cut} cannot be read whole (gzip: stdin: unexpected end of file): the tables use the runs "
        f"restored from it, the report names any it cut; restore the archive (git checkout -- {cut}) and render again"]
    skipped = [line for line in lines if line.startswith("skipped:")]
    assert skipped and all(line.startswith(f"skipped: {multirun / member} cannot be read (not whole JSON")
                           for line in skipped)
    notes = [line for line in (tmp_path / "out" / "table2.md").read_text().splitlines() if "unreadable" in line]
    assert len(notes) == 1 and notes[0].startswith("- 1 run unreadable, left out")
    table = {r["dataset"]: r for r in csv.DictReader((tmp_path / "out" / "table2.csv").open())}
    assert float(table["hopper_medium_expert"]["BC"]) == 15.0  # the two readable seeds


def test_a_gpu_calls_runs_render_the_paper_budget_tables_of_the_robots_done(tmp_path):
    """An archive as experiments/gpu.sh packs it (hopper's Table 2 at the paper's budget) is restored and rendered:
    hopper's rows with numbers, the other robots' "not run yet"; Table 1, without its sweep, skipped."""
    build = tmp_path / "build" / "table2"
    for env in ("hopper_medium_replay", "hopper_medium", "hopper_medium_expert"):
        for method, sampler in (("bc", "uniform"), ("rvs_r", "uniform"), ("rvs_r", "lds"), ("bc", "lds")):
            for seed in range(2):
                write_run(build, env, method, sampler, seed, 50.0 + seed, steps=100_000)
    call = tmp_path / "gpu" / "gpu_2026-12-01_hopper"
    call.mkdir(parents=True)
    with tarfile.open(call / "runs.tar.gz", "w:gz") as tar:
        tar.add(build, arcname="./table2")
    out = render(tmp_path).stdout
    assert f"rendered: {tmp_path / 'out' / 'paper'} --table 2" in out and "table1 is missing" in out
    assert (tmp_path / "multirun" / "table2" / "hopper_medium" / "bc-uniform-None-unconditional" / "seed1" /
            "results.json").exists()
    md = (tmp_path / "out" / "paper" / "table2.md").read_text()
    assert "| hopper_medium | 50.5 [" in md and "| walker2d_medium | not run yet |" in md
    assert (tmp_path / "out" / "paper" / "table3.md").exists()
