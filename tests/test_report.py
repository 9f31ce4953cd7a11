"""Reports from sweeps: the paper's layout, averages, flags, failures, per-cell intervals and marks, rliable's
aggregates on known answers, Table 4, learning curves; a real multirun end to end; GPU pinning."""

from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import make_tiny_dataset
from wsrl.environ import scoped_environ
from wsrl.launch import pin_worker_gpu
from wsrl.report import COLUMNS, ReportError, collect, curve_report, main, pool, report, swept_seeds, table
from wsrl.statistics import aggregates, improvement, seed_interval, separation


def write_run(root, env, method, sampler, seed, score, ep_std=1.0, steps=100, policy="unconditional", target=None,
              history=()):
    """A results.json as train.py writes it (the fields the report reads); ``target``: the run's sampler.target,
    ``history``: (step, score) of its periodic evaluations before the final one."""
    d = root / env / f"{method}-{sampler}-{target}-{policy}" / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({
        "env": env, "method": method, "sampler": sampler, "policy": policy, "seed": seed, "steps": steps,
        "normalized_score": {"mean": score, "std": ep_std},
        "eval_history": [{"step": k, "mean": v, "std": 0.0} for k, v in history] + [
            {"step": steps, "mean": score, "std": ep_std}],
        "config": {"sampler": {"target": target or "trajectory_return"}}}))


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
    # Student-t interval of two seeds: t with 1 degree of freedom is Cauchy, quantile tan(pi (p - 1/2)); sem = 5
    half = 5.0 * math.tan(math.pi * 0.475)
    assert (by["hopper_medium"]["BC ci95 low"], by["hopper_medium"]["BC ci95 high"]) == pytest.approx(
        (15 - half, 15 + half))
    assert by["halfcheetah_medium"]["BC ci95 low"] == by["halfcheetah_medium"]["BC ci95 high"] == 40.0
    assert by["hopper_medium"]["Own Return ci95 low"] == pytest.approx(75 - half)
    assert by["hopper_medium"]["Own Return vs BC"] == "overlap" and by["walker2d_medium"]["Own Return vs BC"] is None
    assert "BC ci95 low" not in by["medium average"] and "Own Return vs BC" not in by["medium average"]
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
    md = report(tmp_path, 1, reps=20).read_text()
    assert "| hopper_medium_expert | 50.0 | — |" in md  # one seed: no interval
    assert "aggregates: New Return has no runs" in md and "Old Return has one seed per dataset" in md
    assert "failed: walker2d_medium_expert/x/seed0: DataError: no data" in md
    assert (tmp_path / "table1.csv").exists() and (tmp_path / "table1.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ReportError):
        collect(tmp_path / "nothing-here")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "wsrl.report", str(empty)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no results.json")


def test_interval_helpers():
    # t quantile with 2 degrees of freedom in closed form: t = sqrt(2 / (1 - q^2) - 2), q = 2p - 1
    t2 = math.sqrt(2 / (1 - 0.95**2) - 2)
    sem = 10 / math.sqrt(3)
    assert seed_interval(np.array([10.0, 20.0, 30.0])) == pytest.approx((20 - t2 * sem, 20 + t2 * sem))
    assert seed_interval(np.array([7.0])) is None and seed_interval(np.array([3.0, 3.0])) == (3.0, 3.0)
    assert separation((5, 6), (1, 4.9)) == "higher" and separation((1, 2), (2, 3)) == "overlap"
    assert separation((0, 1), (2, 3)) == "lower" and separation(None, (2, 3)) is None


def test_aggregates_of_a_synthetic_sweep_have_the_known_answers(tmp_path):
    """Table 2 on two datasets x 4 seeds, made so that every statistic is known by hand:
    BC: hopper 0, 1, 2, 3 and walker2d 4, 5, 6, 100; IQM = mean of the middle half of the 8 runs (2, 3, 4, 5) =
    3.5, mean = 121 / 8. Own Return = BC + 1000: every run beats every BC run, P = 1 with interval [1, 1].
    IR = Own Return: P(IR > Own Return) = 0.5. BC + LDS: 10 on every hopper run, 30 on every walker2d run: IQM =
    mean = 20, and a stratified bootstrap (runs resampled within each dataset) cannot move them: interval
    [20, 20]; P(BC + LDS > BC) = (4/4 + 3/4) / 2 = 0.875."""
    bc = {"hopper_medium": [0.0, 1.0, 2.0, 3.0], "walker2d_medium": [4.0, 5.0, 6.0, 100.0]}
    lds = {"hopper_medium": 10.0, "walker2d_medium": 30.0}
    for env, scores in bc.items():
        for seed, score in enumerate(scores):
            write_run(tmp_path, env, "bc", "uniform", seed, score)
            write_run(tmp_path, env, "rvs_r", "uniform", seed, score + 1000)
            write_run(tmp_path, env, "rvs_r", "lds", seed, score + 1000)
            write_run(tmp_path, env, "bc", "lds", seed, lds[env])
    before = np.random.get_state()[1].copy()
    md = report(tmp_path, 2, reps=200).read_text()
    assert (np.random.get_state()[1] == before).all()  # the bootstrap leaves NumPy's global generator as it was
    rows = {(r["statistic"], r["what"]): r for r in csv.DictReader(open(tmp_path / "table2_aggregates.csv"))}
    got = {k: tuple(float(r[c]) for c in ("estimate", "ci95 low", "ci95 high")) for k, r in rows.items()}
    assert got[("IQM", "BC")][0] == pytest.approx(3.5) and got[("mean", "BC")][0] == pytest.approx(121 / 8)
    assert got[("IQM", "Own Return")][0] == pytest.approx(1003.5)
    assert got[("IQM", "BC + LDS")] == pytest.approx((20, 20, 20)) and got[("mean", "BC + LDS")] == pytest.approx(
        (20, 20, 20))
    assert got[("P(X > Y)", "Own Return > BC")] == (1.0, 1.0, 1.0)
    assert got[("P(X > Y)", "IR > Own Return")][0] == 0.5
    assert got[("P(X > Y)", "BC + LDS > BC")][0] == pytest.approx(0.875)
    for est, lo, hi in got.values():
        assert lo <= est <= hi
    lo, hi = got[("mean", "BC")][1:]
    assert lo < 121 / 8 < hi and hi - lo > 10  # the 100 run makes the BC mean uncertain
    assert rows[("IQM", "BC")]["datasets"] == "2" and rows[("IQM", "BC")]["runs per dataset"] == "4"
    assert "| BC | 4 | 3.5 | [" in md and "| Own Return > BC | 1.00 | [1.00, 1.00] |" in md
    assert "| BC + LDS > BC | 0.88 |" in md
    # per cell: 1.5 +- t(3 dof) 3.182 x sem 0.645; Own Return lies above BC; IR (the same scores) overlaps it
    assert "| hopper_medium | 1.5 [-0.6, 3.6] | 1001.5 [999.4, 1003.6] ↑ | 1001.5 [999.4, 1003.6] |" in md
    assert (tmp_path / "table2_statistics.png").read_bytes()[:4] == b"\x89PNG"
    # the same seed gives the same intervals
    matrices = {"a": np.array([[1.0, 5.0], [2.0, 9.0], [4.0, 3.0]]), "b": np.array([[0.0, 4.0], [3.0, 8.0]])}
    assert aggregates(matrices, 50, seed=3) == aggregates(matrices, 50, seed=3)
    assert improvement(matrices, {"a": "b"}, 50, seed=3) == improvement(matrices, {"a": "b"}, 50, seed=3)


def test_table4_reads_the_lds_label_and_marks_separate_intervals(tmp_path, capsys):
    """Table 4's columns are told apart by the runs' sampler.target; a mark where intervals do not overlap."""
    labels = {"trajectory_return": 50.0, "return_to_go": 20.0, "action": 52.0}
    for env in ("hopper_medium_expert", "walker2d_medium_expert"):
        for seed in range(3):
            for target, score in labels.items():
                write_run(tmp_path, env, "rvs_r", "lds", seed, score + seed, target=target)
                write_run(tmp_path, env, "rvs_r", "lds_sampling", seed, score + 2 * seed, target=target)
    rows, notes = table(collect(tmp_path)[0], 4)
    by = {r["dataset"]: r for r in rows}
    hopper = by["hopper_medium_expert"]
    assert hopper["return / loss"] == 51.0 and hopper["return-to-go / loss"] == 21.0 and hopper["action / draw"] == 54
    assert hopper["return-to-go / loss vs return / loss"] == "lower"
    assert hopper["action / loss vs return / loss"] == "overlap"
    assert "hopper_medium_expert / uniform: no runs" in notes and "halfcheetah_medium_expert" not in by
    main([str(tmp_path), "--table", "4", "--reps", "20"])
    md = capsys.readouterr().out
    assert "| hopper_medium_expert | — | 51.0 [48.5, 53.5] | 21.0 [18.5, 23.5] ↓ |" in md
    assert "aggregates: uniform has no runs" in md and "| return-to-go / loss > return / loss | 0.00 |" in md
    assert set(COLUMNS[4]) - {"uniform"} == {f"{n} / {w}" for n in ("return", "return-to-go", "action")
                                             for w in ("loss", "draw")}
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--reps", "0"])
    assert capsys.readouterr().err == "error: --reps 0 must be >= 1\n"


def test_pooled_sweeps_make_one_table(tmp_path, capsys):
    """Table 4 from its own sweep plus Table 2's (the reference and the paper's LDS cell), other datasets left
    out; a run in two sweeps and sweeps of two budgets are refused."""
    ablation, table2 = tmp_path / "table4", tmp_path / "table2"
    for seed in range(2):
        write_run(ablation, "hopper_medium_expert", "rvs_r", "lds", seed, 30.0 + seed, target="return_to_go")
        write_run(table2, "hopper_medium_expert", "rvs_r", "lds", seed, 50.0 + seed)
        write_run(table2, "hopper_medium_expert", "rvs_r", "uniform", seed, 40.0 + seed)
        write_run(table2, "hopper_medium_replay", "rvs_r", "uniform", seed, 10.0)  # not a Table 4 dataset
    main([str(ablation), str(table2), "--table", "4", "--reps", "20"])
    md = capsys.readouterr().out
    assert "| hopper_medium_expert | 40.5 [34.1, 46.9] | 50.5 [44.1, 56.9] | 30.5 [24.1, 36.9] ↓ |" in md
    assert "medium_replay" not in md and (ablation / "table4.md").exists()
    with pytest.raises(ReportError, match="hopper_medium_expert/rvs_r/lds/unconditional/trajectory_return/0 is "
                       "in both"):
        pool([table2, ablation, table2])
    longer = tmp_path / "longer"
    write_run(longer, "hopper_medium_expert", "rvs_r", "lds", 0, 1.0, target="action", steps=200)
    with pytest.raises(ReportError, match="pooled sweeps have different budgets"):
        pool([ablation, longer])


def test_learning_curve_of_one_cell(tmp_path, capsys):
    """Each seed's periodic evaluations and the final one; the mean and interval at the steps all seeds have;
    several sweeps side by side."""
    for seed, (a, b, final) in enumerate([(10.0, 30.0, 40.0), (20.0, 30.0, 44.0), (30.0, 30.0, 42.0)]):
        write_run(tmp_path, "hopper_medium", "rvs_r", "uniform", seed, final, steps=300,
                  history=[(100, a), (200, b)] + ([(250, 35.0)] if seed == 0 else []))
    write_run(tmp_path, "walker2d_medium", "rvs_r", "uniform", 0, 5.0)  # no history
    png = curve_report(tmp_path, 2, "hopper_medium", "Own Return")
    assert png.name == "curve_hopper_medium_own_return.png" and png.read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(open(png.with_suffix(".csv"))))
    assert [int(r["step"]) for r in rows] == [100, 200, 300]  # step 250: only seed 0 has it
    assert [float(r["mean"]) for r in rows] == [20.0, 30.0, 42.0]
    assert float(rows[1]["ci95 low"]) == float(rows[1]["ci95 high"]) == 30.0
    assert [float(rows[0][f"seed {s}"]) for s in range(3)] == [10.0, 20.0, 30.0]
    with pytest.raises(ReportError, match="evaluated only at the end; run the cell with eval.every_steps"):
        curve_report(tmp_path, 2, "walker2d_medium", "Own Return")
    wide = tmp_path.with_name(f"{tmp_path.name}-wide")  # a second sweep (say, another width) on the same axes
    write_run(wide, "hopper_medium", "rvs_r", "uniform", 0, 50.0, steps=200, history=[(100, 45.0)])
    png = curve_report([tmp_path, wide], 2, "hopper_medium", "Own Return", out=tmp_path / "both")
    rows = list(csv.DictReader(open(png.with_suffix(".csv"))))
    assert [(r["sweep"], int(r["step"]), float(r["mean"])) for r in rows] == [
        (tmp_path.name, 100, 20.0), (tmp_path.name, 200, 30.0), (tmp_path.name, 300, 42.0),
        (wide.name, 100, 45.0), (wide.name, 200, 50.0)]
    with pytest.raises(SystemExit):
        main([str(tmp_path), str(wide), "--conditioning"])
    assert "error: 2 sweep directories given; --conditioning takes one" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one drawing instead of the table, not a silent choice between two
        main([str(tmp_path), "--curve", "hopper_medium", "Own Return", "--conditioning"])
    assert "argument --conditioning: not allowed with argument --curve" in capsys.readouterr().err
    with pytest.raises(ReportError, match="no runs of hopper_medium / IR"):
        curve_report(tmp_path, 2, "hopper_medium", "IR")
    with pytest.raises(ReportError, match="Table 2 has no column 'RvS-R'"):
        curve_report(tmp_path, 2, "hopper_medium", "RvS-R")


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
    with scoped_environ("WSRL_PINNED_GPU", "CUDA_VISIBLE_DEVICES"):  # in this process: put back afterwards
        assert _pin((tmp_path / "c", "5")) == (None, None, "5")  # already a single device: left alone
