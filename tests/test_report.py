"""Reports from sweeps: the paper's layout, averages, flags, failures; a real multirun end to end; GPU pinning."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from tests.conftest import make_tiny_dataset
from wsrl.launch import pin_worker_gpu
from wsrl.report import ReportError, collect, report, swept_seeds, table


def write_run(root, env, method, sampler, seed, score, ep_std=1.0, steps=100, policy="unconditional"):
    d = root / env / f"{method}-{sampler}-{policy}" / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({
        "env": env, "method": method, "sampler": sampler, "policy": policy, "seed": seed, "steps": steps,
        "normalized_score": {"mean": score, "std": ep_std}}))


def test_table2_rows_averages_and_flags(tmp_path):
    scores = {"hopper_medium": [10.0, 20.0], "walker2d_medium": [30.0, 50.0], "halfcheetah_medium": [40.0, 40.0]}
    for env, (s0, s1) in scores.items():
        write_run(tmp_path, env, "bc", "uniform", 0, s0, ep_std=2.0)
        write_run(tmp_path, env, "bc", "uniform", 1, s1, ep_std=4.0)
    write_run(tmp_path, "hopper_medium", "rvs_r", "uniform", 0, 70.0, steps=100)
    write_run(tmp_path, "hopper_medium", "rvs_r", "uniform", 1, 80.0, steps=200)
    rows, notes = table(collect(tmp_path)[0], 2)
    by = {r["dataset"]: r for r in rows}
    assert by["hopper_medium"]["BC"] == 15.0 and by["hopper_medium"]["BC seed std"] == 5.0
    assert by["hopper_medium"]["BC episode std"] == 3.0
    assert by["hopper_medium"]["BC paper"] == 38.01
    assert by["hopper_medium"]["BC diff"] == pytest.approx(15.0 - 38.01)
    assert by["medium average"]["BC"] == pytest.approx((15 + 40 + 40) / 3)
    assert by["medium average"]["Own Return"] is None  # only one dataset has it: not averaged
    assert any("unequal steps" in n for n in notes)
    assert any("Own Return" in n and "not averaged" in n for n in notes)
    assert "hopper_medium / IR: no runs" in notes and "walker2d_medium / Own Return: no runs" in notes
    # a seed the sweep was launched with but that no job finished is flagged everywhere
    (tmp_path / "multirun.yaml").write_text("hydra:\n  sweeper:\n    params:\n      seed: 0,1\n"
                                            "  overrides:\n    task:\n    - seed=range(0,3)\n")
    assert swept_seeds(tmp_path) == [0, 1, 2]
    rows, notes = table(collect(tmp_path)[0], 2, swept_seeds(tmp_path))
    assert "hopper_medium / BC: seeds [0, 1] of [0, 1, 2]" in notes
    assert [r["dataset"] for r in rows][:4] == ["halfcheetah_medium_replay", "hopper_medium_replay",
                                                "walker2d_medium_replay", "medium_replay average"]


def test_report_files_failed_jobs_and_empty_dir(tmp_path):
    write_run(tmp_path, "hopper_medium_expert", "rvs_r", "uniform", 0, 50.0, policy="diag_gaussian")
    bad = tmp_path / "walker2d_medium_expert" / "x" / "seed0"
    bad.mkdir(parents=True)
    (bad / "failed.json").write_text(json.dumps({"error": "no data", "type": "DataError"}))
    md = report(tmp_path, 1).read_text()
    assert "| hopper_medium_expert | 50.0 ± 0.0 | — |" in md
    assert "failed: walker2d_medium_expert/x/seed0: DataError: no data" in md
    assert (tmp_path / "table1.csv").exists() and (tmp_path / "table1.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ReportError):
        collect(tmp_path / "nothing-here")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "wsrl.report", str(empty)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no results.json")


@pytest.mark.slow  # six jobs through the joblib launcher: about two minutes on 2 busy cores
def test_multirun_with_a_failing_job_reports_the_others(minari_root, tmp_path):
    for robot in ("hopper", "walker2d"):
        make_tiny_dataset(f"wsrl/{robot}/medium-expert-v0", robot=robot, n_episodes=3, max_steps=30)
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "wsrl.train", "-m", "hydra/launcher=local",
           "env=hopper_medium_expert,walker2d_medium_expert,halfcheetah_medium_expert", "seed=0,1",
           "generate_if_missing=false", "trainer.max_steps=5", "policy.hidden_dims=[16]", "trainer.batch_size=16",
           "eval.episodes=1", "wandb.mode=disabled", "trainer.progress_bar=false", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "MINARI_DATASETS_PATH": str(minari_root)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs, failed = collect(sweep)
    assert sorted((r["env"], r["seed"]) for r in runs) == [
        ("hopper_medium_expert", 0), ("hopper_medium_expert", 1), ("walker2d_medium_expert", 0),
        ("walker2d_medium_expert", 1)]
    assert len(failed) == 2 and all(f["type"] == "DataError" for f in failed)
    assert {r["config"]["wandb"]["group"] for r in runs} == {"default"}  # one W&B group per sweep: its name
    assert swept_seeds(sweep) == [0, 1]
    # the same sweep directory again, with another seed: extended, nothing replaced
    before = {p: p.stat().st_mtime_ns for p in sweep.rglob("results.json")}
    extend = [c for c in cmd if not c.startswith(("env=", "seed="))] + ["env=hopper_medium_expert", "seed=2"]
    proc = subprocess.run(extend, capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "MINARI_DATASETS_PATH": str(minari_root)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = {p: p.stat().st_mtime_ns for p in sweep.rglob("results.json")}
    assert len(after) == 5 and all(after[p] == t for p, t in before.items())
    runs = collect(sweep)[0]
    rows, _ = table(runs, 3)
    assert {r["dataset"] for r in rows if r.get("BC") is not None} == {"hopper_medium_expert",
                                                                        "walker2d_medium_expert"}


def _pin(args):
    slots, visible = args
    os.environ.pop("WSRL_PINNED_GPU", None)
    if visible is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
    first = pin_worker_gpu(n_gpus=3, slots_dir=slots)
    again = pin_worker_gpu(n_gpus=3, slots_dir=slots)  # idempotent within a process
    return first, again, os.environ.get("CUDA_VISIBLE_DEVICES")


def test_each_worker_process_gets_its_own_gpu(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(6) as pool:
        got = pool.map(_pin, [(tmp_path / "a", None)] * 6, chunksize=1)
    assert sorted(g[0] for g in got) == [0, 0, 1, 1, 2, 2]
    assert all(first == again and visible == str(first) for first, again, visible in got)
    with ctx.Pool(2) as pool:
        got = pool.map(_pin, [(tmp_path / "b", "4,6,7")] * 2, chunksize=1)
    assert sorted(v for _, _, v in got) == ["4", "6"]
    assert _pin((tmp_path / "c", "5")) == (None, None, "5")  # already a single device: left alone
