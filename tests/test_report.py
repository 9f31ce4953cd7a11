"""Reports from sweeps: the paper's layout, averages, flags, failures, per-cell intervals, Welch differences and
Holm marks, seeds, spread, expert fractions and the per-run CSV on a synthetic sweep, rliable's aggregates on known
answers, Table 4, learning curves; a real multirun end to end; GPU pinning."""

from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
import os
import statistics
import struct
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tests.conftest import child_env, make_tiny_dataset
from wsrl.common.environ import scoped_environ
from wsrl.core.config import WandbConfig
from wsrl.datasets.behavior.locations import ASSETS
from wsrl.datasets.suite import generated_id
from wsrl.report.__main__ import main
from wsrl.report.collect import ReportError, collect, pool, swept_seeds
from wsrl.report.curves import curve_report
from wsrl.report.paper import COLUMNS
from wsrl.report.rows import table
from wsrl.report.statistics import aggregates, holm, improvement, seed_interval, spread, welch
from wsrl.report.write import write_table
from wsrl.running.gpus import pin_worker_gpu
from wsrl.running.results import RunResults, write_results


def write_run(root, env, method, sampler, seed, score, ep_std=1.0, steps=100, policy="unconditional", target=None,
              history=(), weights=None, wall=None, dataset_hash=None, version=None):
    """A results.json as train.py wrote it before the record had a version (the sweeps behind the committed tables
    hold such files); ``target``: the run's sampler.target, ``history``: (step, score) of its periodic evaluations
    before the final one, ``weights``: its weight statistics, ``wall``: its wall seconds, ``dataset_hash``: its
    dataset's content hash (as runs record it since; None: left out, as before), ``version``: a version suffix of
    its dataset id (``wsrl/<env>-v<version>``; None: ``wsrl/<env>``)."""
    d = root / env / f"{method}-{sampler}-{target}-{policy}" / f"seed{seed}"
    d.mkdir(parents=True)
    record = run_results(env, method, sampler, policy, seed, steps, {"mean": score, "std": ep_std}, weights, wall,
                         [{"step": k, "mean": v, "std": 0.0} for k, v in history], target or "trajectory_return")
    plain = {k: v for k, v in record.to_json().items() if k not in ("version", "precision", "dataset_hash")}
    plain["dataset_id"] += "" if version is None else f"-v{version}"
    (d / "results.json").write_text(json.dumps({**plain, **({"dataset_hash": dataset_hash} if dataset_hash else {})}))


def run_results(env, method, sampler, policy, seed, steps, score, weights, wall, history, target) -> RunResults:
    """A record with the fields the report reads; the others are placeholders."""
    return RunResults(
        env=env, method=method, sampler=sampler, policy=policy, seed=seed, steps=steps, dataset_id=f"wsrl/{env}",
        eval_env_id="Hopper-v5", ref_min_score=0.0, ref_max_score=100.0, target_return=None, weights=weights,
        normalized_score=score, returns=[], lengths=[], eval_history=[*history, {"step": steps, **score}],
        started_at_steps=[0], wall_seconds=wall, device="cpu", config={"sampler": {"target": target}})


def test_the_report_reads_results_of_both_versions(tmp_path):
    """results.json as written today (version 2, with precision) and before it had a version."""
    write_run(tmp_path, "hopper_medium", "bc", "uniform", 0, 10.0)
    new = tmp_path / "hopper_medium" / "bc-uniform-None-unconditional" / "seed1"
    new.mkdir()
    record = run_results("hopper_medium", "bc", "uniform", "unconditional", 1, 100, {"mean": 20.0, "std": 1.0}, None,
                         5.0, [], "trajectory_return")
    write_results(new, RunResults(**{**vars(record), "precision": {"matmul": "highest", "autocast": "none"}}))
    runs = collect(tmp_path)[0]
    assert [(r.results.version, r.results.seed, r.directory) for r in runs] == [
        (1, 0, f"{tmp_path.name}/hopper_medium/bc-uniform-None-unconditional/seed0"),
        (2, 1, f"{tmp_path.name}/hopper_medium/bc-uniform-None-unconditional/seed1")]
    assert runs[0].results.precision is None and runs[1].results.precision["matmul"] == "highest"
    assert {r["dataset"]: r for r in table(runs, 2)[0]}["hopper_medium"]["BC"] == 15.0


def test_table2_rows_averages_and_flags(tmp_path):
    scores = {"hopper_medium": [10.0, 20.0], "walker2d_medium": [30.0, 50.0], "halfcheetah_medium": [40.0, 40.0]}
    for env, (s0, s1) in scores.items():
        write_run(tmp_path, env, "bc", "uniform", 0, s0, ep_std=2.0)
        write_run(tmp_path, env, "bc", "uniform", 1, s1, ep_std=4.0)
    write_run(tmp_path, "hopper_medium", "rvs_r", "uniform", 0, 70.0, steps=100)
    write_run(tmp_path, "hopper_medium", "rvs_r", "uniform", 1, 80.0, steps=200)
    rows, notes = table(collect(tmp_path)[0], 2)
    by = {r["dataset"]: r for r in rows}
    assert by["hopper_medium"]["BC"] == 15.0 and by["hopper_medium"]["BC seed sample sd"] == pytest.approx(
        math.sqrt(50))  # ddof=1: the two seeds differ by 10
    assert by["hopper_medium"]["BC episode std"] == 3.0
    # Student-t interval of two seeds: t with 1 degree of freedom is Cauchy, quantile tan(pi (p - 1/2)); sem = 5
    half = 5.0 * math.tan(math.pi * 0.475)
    assert (by["hopper_medium"]["BC ci95 low"], by["hopper_medium"]["BC ci95 high"]) == pytest.approx(
        (15 - half, 15 + half))
    assert by["halfcheetah_medium"]["BC ci95 low"] == by["halfcheetah_medium"]["BC ci95 high"] == 40.0
    assert by["hopper_medium"]["Own Return ci95 low"] == pytest.approx(75 - half)
    # the two intervals overlap, yet Welch (t = 60 / sqrt(50), 2 dof, p = 0.014; the table's only test) separates
    assert by["hopper_medium"]["Own Return vs BC"] == "higher"
    assert by["hopper_medium"]["Own Return vs BC p holm"] == by["hopper_medium"]["Own Return vs BC p welch"]
    assert by["walker2d_medium"]["Own Return vs BC"] is None
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
    md = write_table(tmp_path, 1, reps=20).read_text()
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


def wandb_records(run_file):
    """The protobuf records of an offline W&B run file (``run-<id>.wandb``): W&B's 7-byte header, then LevelDB's log
    format (32 KiB blocks of fragments, each with a 7-byte header: checksum, length, type 1 whole, 2-4 first, middle,
    last; a block's tail under 7 bytes is padding)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, fragments = run_file.read_bytes(), 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        fragments, pos = fragments + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(fragments)
            fragments = b""
            yield record


def offline_report(out):
    """The one offline W&B run below ``out``: its run record and its logged values by key (``{table: {"path": ..,
    "_type": ..}}`` for a table or image)."""
    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    records = list(wandb_records(run_file))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    logged = {}
    for item in (i for r in records if r.WhichOneof("record_type") == "history" for i in r.history.item):
        *key, field = item.nested_key or [item.key]
        logged.setdefault("/".join(key), {})[field] = json.loads(item.value_json)
    return run, run_file.parent / "files", {k: v for k, v in logged.items() if k and not k.startswith("_")}


def test_wandb_logs_the_tables_and_figures_to_the_chosen_project(tmp_path, monkeypatch, capsys):
    """--wandb, against the real wandb offline (WANDB_MODE unset; its folders in tmp_path): one report run in the
    sweep's group, in --wandb-project (default: the training runs'), with every table (its rows those of the CSV)
    and figure (the PNG written) under its own key; without --wandb nothing is logged."""
    import wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    for var in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))
    sweep = tmp_path / "sweep"
    for seed in range(2):
        write_run(sweep, "hopper_medium_expert", "rvs_r", "uniform", seed, 50.0 + seed)
    try:
        main([str(sweep), "--table", "1", "--reps", "20", "--out", str(tmp_path / "a"), "--wandb"])
        main([str(sweep), "--table", "1", "--reps", "20", "--out", str(tmp_path / "b"), "--wandb", "--wandb-project",
              "elsewhere"])
    finally:
        wandb.teardown()  # stops the W&B service this process started, and takes WANDB_SERVICE out of its environment
    run, files, logged = offline_report(tmp_path / "a")
    assert (run.project, run.run_group, run.display_name, run.job_type) == (WandbConfig().project, "sweep",
                                                                            "report-table1", "report")
    assert offline_report(tmp_path / "b")[0].project == "elsewhere"
    assert sorted(logged) == ["figures/table1", "figures/table1_statistics", "table1", "table1_aggregates",
                              "table1_runs"]
    for key in ("table1", "table1_aggregates", "table1_runs"):
        assert logged[key]["_type"] == "table-file"
        table = json.loads((files / logged[key]["path"]).read_text())
        with open(tmp_path / "a" / f"{key}.csv") as f:
            rows = list(csv.reader(f))
        assert table["columns"] == rows[0] and len(table["data"]) == len(rows) - 1
        assert [["" if v is None else str(v) for v in row] for row in table["data"]] == rows[1:]
    for stem in ("table1", "table1_statistics"):
        image = logged[f"figures/{stem}"]
        assert image["_type"] == "image-file"
        assert (files / image["path"]).read_bytes() == (tmp_path / "a" / f"{stem}.png").read_bytes()
    main([str(sweep), "--table", "1", "--reps", "20", "--out", str(tmp_path / "c"), "--wandb-project", "elsewhere"])
    assert not (tmp_path / "c" / "wandb").exists()  # without --wandb nothing is logged
    capsys.readouterr()


def test_interval_helpers():
    # t quantile with 2 degrees of freedom in closed form: t = sqrt(2 / (1 - q^2) - 2), q = 2p - 1
    t2 = math.sqrt(2 / (1 - 0.95**2) - 2)
    sem = 10 / math.sqrt(3)
    assert seed_interval(np.array([10.0, 20.0, 30.0])) == pytest.approx((20 - t2 * sem, 20 + t2 * sem))
    assert seed_interval(np.array([7.0])) is None and seed_interval(np.array([3.0, 3.0])) == (3.0, 3.0)
    assert spread(np.array([3.0, 1.0, 2.0, 10.0])) == {"median": 2.5, "min": 1.0, "max": 10.0,
                                                       "sd": pytest.approx(np.std([3, 1, 2, 10], ddof=1))}
    assert spread(np.array([4.0]))["sd"] is None
    assert welch([1.0], [2.0, 3.0]) is None
    assert welch([2.0, 2.0], [1.0, 1.0]) == {"difference": 1.0, "low": None, "high": None, "df": None, "p": None}
    # Holm by hand: sorted 0.01, 0.02, 0.04, 0.3 -> 0.04, 0.06, 0.08, 0.3 (kept monotone), back in input order
    assert holm([0.04, 0.01, 0.3, 0.02]) == pytest.approx([0.08, 0.04, 0.3, 0.06])
    assert holm([0.02, 0.5, 0.5]) == pytest.approx([0.06, 1.0, 1.0]) and holm([]) == []


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
    md = write_table(tmp_path, 2, reps=200).read_text()
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


def test_a_generation_without_aggregates_removes_the_earlier_ones(tmp_path):
    """Aggregates need a dataset with runs of every column; when a later generation of the same table has none (IR
    lost its hopper runs, and has walker2d's only, where BC + LDS has none), the earlier generation's aggregates CSV
    and figure are removed, not left beside tables they no longer describe."""
    cols = (("bc", "uniform", 1.0), ("rvs_r", "uniform", 2.0), ("rvs_r", "lds", 3.0), ("bc", "lds", 4.0))
    for seed in range(3):
        for method, sampler, score in cols:
            write_run(tmp_path / "runs", "hopper_medium", method, sampler, seed, score + seed)
        for method, sampler, score in cols[:3]:
            write_run(tmp_path / "runs", "walker2d_medium", method, sampler, seed, score + seed)
    out = tmp_path / "out"
    write_table(tmp_path / "runs", 2, out=out, reps=20)
    assert (out / "table2_aggregates.csv").exists() and (out / "table2_statistics.png").exists()
    for f in (tmp_path / "runs" / "hopper_medium").glob("rvs_r-lds-*/seed*/results.json"):
        f.unlink()
    md = write_table(tmp_path / "runs", 2, out=out, reps=20).read_text()
    assert "not every column has runs there" in md
    assert not (out / "table2_aggregates.csv").exists() and not (out / "table2_statistics.png").exists()
    assert "IR" in next(csv.DictReader(open(out / "table2.csv")))  # the table itself is written


def test_tied_scores_count_half_in_p_of_improvement(tmp_path):
    """Table 2 with tied scores: P(X > Y) counts a tie as half a win, on each dataset and over datasets (rliable's
    rule). hopper: Own Return 1, 2, 3 against BC 2, 2, 0 wins 5 of the 9 pairs and ties 2: P = (5 + 2/2) / 9 = 2/3
    (5/9 if ties counted nothing, 7/9 if they counted whole); BC + LDS 2, 2, 2 against BC wins 3 and ties 6: 2/3.
    walker2d: every pair a win or, for IR = Own Return, P = 1/2."""
    cols = {"hopper_medium": {("rvs_r", "uniform"): [1, 2, 3], ("bc", "uniform"): [2, 2, 0],
                              ("rvs_r", "lds"): [1, 2, 3], ("bc", "lds"): [2, 2, 2]},
            "walker2d_medium": {("rvs_r", "uniform"): [10, 11, 12], ("bc", "uniform"): [0, 0, 0],
                                ("rvs_r", "lds"): [10, 11, 12], ("bc", "lds"): [5, 5, 5]}}
    for env, runs in cols.items():
        for (method, sampler), scores in runs.items():
            for seed, score in enumerate(scores):
                write_run(tmp_path, env, method, sampler, seed, float(score))
    write_table(tmp_path, 2, reps=20)
    rows = {r["what"]: r for r in csv.DictReader(open(tmp_path / "table2_aggregates.csv"))
            if r["statistic"] == "P(X > Y)"}
    per_task = {what: (float(r["P on hopper_medium"]), float(r["P on walker2d_medium"])) for what, r in rows.items()}
    assert per_task == {"Own Return > BC": pytest.approx((2 / 3, 1.0)), "IR > Own Return": (0.5, 0.5),
                        "BC + LDS > BC": pytest.approx((2 / 3, 1.0))}
    assert float(rows["Own Return > BC"]["estimate"]) == pytest.approx((2 / 3 + 1) / 2)


def _welch_by_hand(x, y):
    """Welch's difference, Welch-Satterthwaite 95 % interval (written out) and scipy's p-value."""
    x, y = np.asarray(x), np.asarray(y)
    a, b = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    df = (a + b) ** 2 / (a**2 / (len(x) - 1) + b**2 / (len(y) - 1))
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(a + b)
    d = x.mean() - y.mean()
    return d, d - half, d + half, scipy_stats.ttest_ind(x, y, equal_var=False).pvalue


def test_synthetic_sweep_differences_marks_spread_and_runs(tmp_path):
    """Table 2 on two datasets x 5 seeds with known scores: every per-dataset statistic against one computed here
    independently (scipy's Welch test, the Welch-Satterthwaite interval, Holm by hand, Python's sample SD), the
    per-dataset P(X > Y), the seeds' median and range, the paper's Std and expert fractions, the per-run CSV."""
    scores = {  # hopper's Own Return has one collapsed seed; BC + LDS carries weights
        "hopper_medium_expert": {"BC": [40, 42, 44, 46, 48], "Own Return": [35.6, 85, 90, 95, 95.3],
                                 "IR": [60, 62, 64, 66, 68], "BC + LDS": [41, 43, 45, 47, 52]},
        "walker2d_medium_expert": {"BC": [90, 91, 92, 93, 94], "Own Return": [100, 101, 102, 103, 104],
                                   "IR": [97, 98.5, 100, 101.5, 103], "BC + LDS": [90.5, 91, 92, 93, 93.5]}}
    runs = {"BC": ("bc", "uniform"), "Own Return": ("rvs_r", "uniform"), "IR": ("rvs_r", "lds"),
            "BC + LDS": ("bc", "lds")}
    episode = {"BC": lambda s: 7.0, "Own Return": lambda s: 10.0 + s, "IR": lambda s: 14.0 + s,
               "BC + LDS": lambda s: 2.0}
    for env, cols in scores.items():
        for col, values in cols.items():
            for seed, score in enumerate(values):
                lds = runs[col][1] == "lds"
                write_run(tmp_path, env, *runs[col], seed, float(score), ep_std=episode[col](seed), wall=60.0 + seed,
                          weights={"min": 0.2, "max": 5.0 + seed, "effective_fraction": 0.6,
                                   "bins": {"count": 50}} if lds else None)
    write_table(tmp_path, 2, reps=50)
    rows = {r["dataset"]: r for r in csv.DictReader(open(tmp_path / "table2.csv"))}
    md = (tmp_path / "table2.md").read_text()
    num = lambda v: float(v) if v not in ("", None) else None  # noqa: E731

    # Welch per dataset and pair against scipy and the interval written out; Holm over the table's 6 comparisons
    pairs = [("Own Return", "BC"), ("IR", "Own Return"), ("BC + LDS", "BC")]
    tests = [(env, x, y, *_welch_by_hand(scores[env][x], scores[env][y])) for env in scores for x, y in pairs]
    for env, x, y, d, lo, hi, p in tests:
        row, key = rows[env], f"{x} vs {y}"
        assert num(row[f"{key} difference"]) == pytest.approx(d)
        assert (num(row[f"{key} ci95 low"]), num(row[f"{key} ci95 high"])) == pytest.approx((lo, hi))
        assert num(row[f"{key} p welch"]) == pytest.approx(p)
        scipy_ci = scipy_stats.ttest_ind(scores[env][x], scores[env][y], equal_var=False).confidence_interval()
        assert (lo, hi) == pytest.approx((scipy_ci.low, scipy_ci.high))  # the written-out interval is scipy's
    ps = [p for *_, p in tests]
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    adjusted = {order[k]: max(min(1.0, (len(ps) - j) * ps[order[j]]) for j in range(k + 1)) for k in range(len(ps))}
    for i, (env, x, y, d, *_rest) in enumerate(tests):
        key = f"{x} vs {y}"
        assert num(rows[env][f"{key} p holm"]) == pytest.approx(adjusted[i])
        assert rows[env][key] == (("higher" if d > 0 else "lower") if adjusted[i] < 0.05 else "not significant")
    # hopper's Own Return over BC: p = 0.032 alone, 0.16 after Holm: no mark; walker2d's stays marked
    hop, walker = rows["hopper_medium_expert"], rows["walker2d_medium_expert"]
    assert num(hop["Own Return vs BC p welch"]) < 0.05 and hop["Own Return vs BC"] == "not significant"
    assert walker["Own Return vs BC"] == "higher" and walker["BC + LDS vs BC"] == "not significant"
    assert "after Holm's correction over the table's 6 comparisons" in md and "p Holm (of 6)" in md
    # the paper's own difference (83 - 40 on hopper, 106.5 - 91.3 on walker2d) inside our interval or not
    assert num(hop["Own Return vs BC paper difference"]) == pytest.approx(43.0)
    assert hop["Own Return vs BC paper inside"] == "True" and walker["Own Return vs BC paper inside"] == "False"
    assert "BC + LDS vs BC paper difference" not in rows["hopper_medium_expert"]  # not in the paper
    assert "| walker2d_medium_expert | Own Return − BC | +10.0 [7.7, 12.3] ↑ | <0.001 | <0.001 | +15.2 | no |" in md

    # the seeds: sample SD (ddof=1), median and range, in the CSV and in the Markdown's Seeds table
    own = scores["hopper_medium_expert"]["Own Return"]
    assert num(hop["Own Return seed sample sd"]) == pytest.approx(statistics.stdev(own))
    assert (num(hop["Own Return median"]), num(hop["Own Return min"]), num(hop["Own Return max"])) == (90, 35.6, 95.3)
    assert f"| hopper_medium_expert | 44.0 [40.0, 48.0] · sd {statistics.stdev([40, 42, 44, 46, 48]):.1f} | 90.0 " \
           f"[35.6, 95.3] · sd {statistics.stdev(own):.1f} |" in md

    # the episode spread against the paper's Std: BC 7 on every seed (paper 7.25: outside), IR 14-18 (15.24: inside)
    assert num(hop["BC episode std"]) == 7.0 and hop["BC paper std inside"] == "False"
    assert num(hop["IR paper std"]) == 15.24 and hop["IR paper std inside"] == "True"
    assert "| hopper_medium_expert | 7.0 [7.0, 7.0] · paper 7.2, outside |" in md

    # fractions of the data's expert level: ours from the hopper manifest, the paper's from D4RL's 108
    expert = json.loads((ASSETS / "hopper" / "manifest.json").read_text())["chosen_scores"]["expert"]
    assert num(hop["expert level"]) == pytest.approx(expert["normalized_mean"])
    assert num(hop["Own Return of expert"]) == pytest.approx(np.mean(own) / expert["normalized_mean"])
    assert num(hop["Own Return paper of expert"]) == pytest.approx(83.0 / 108.0)

    # P(X > Y) per dataset beside the average: 35.6 loses to all five BC seeds on hopper, 20 of 25 pairs won
    agg = {r["what"]: r for r in csv.DictReader(open(tmp_path / "table2_aggregates.csv"))}
    own_bc = agg["Own Return > BC"]
    assert num(own_bc["P on hopper_medium_expert"]) == 0.8 and num(own_bc["P on walker2d_medium_expert"]) == 1.0
    assert num(own_bc["estimate"]) == pytest.approx(0.9)  # rliable's average of the two
    assert "| Own Return > BC | 0.90 | [" in md and "| 0.80, 1.00 |" in md
    assert "Caveat: with 5 runs per dataset a percentile bootstrap is too narrow" in md and "86 %" in md

    # every run behind the table, one row each, with its weights flattened and its directory
    runs_csv = list(csv.DictReader(open(tmp_path / "table2_runs.csv")))
    assert len(runs_csv) == 2 * 4 * 5
    assert list(runs_csv[0])[:5] == ["dataset", "column", "seed", "score", "episode std"]
    assert list(runs_csv[0])[-5:] == ["steps", "wall seconds", "dataset id", "dataset hash", "run dir"]
    lds = next(r for r in runs_csv if r["dataset"] == "hopper_medium_expert" and r["column"] == "BC + LDS"
               and r["seed"] == "3")
    assert (num(lds["score"]), num(lds["episode std"]), num(lds["weights max"]), num(lds["weights bins.count"])) == (
        47.0, 2.0, 8.0, 50.0)
    assert (lds["steps"], num(lds["wall seconds"])) == ("100", 63.0)
    assert lds["run dir"] == f"{tmp_path.name}/hopper_medium_expert/bc-lds-None-unconditional/seed3"
    bc = next(r for r in runs_csv if r["column"] == "BC")
    assert bc["weights min"] == "" and bc["dataset"] == "hopper_medium_expert" and bc["seed"] == "0"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_table4_reads_the_lds_label_and_marks_welch_differences(tmp_path, capsys):
    """Table 4's columns are told apart by the runs' sampler.target; a mark where Welch's test separates them."""
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
    assert hopper["action / loss vs return / loss"] == "not significant"  # +2, Welch p = 0.07
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
    # return / loss against uniform (+10, Welch p = 0.005, Holm 0.010 of the 3 comparisons) is marked too
    assert "| hopper_medium_expert | 40.5 [34.1, 46.9] | 50.5 [44.1, 56.9] ↑ | 30.5 [24.1, 36.9] ↓ |" in md
    assert "medium_replay" not in md and (ablation / "table4.md").exists()
    # every column against no weights too (Table 4's REFERENCE), per dataset and in P(X > Y)
    assert "| hopper_medium_expert | return-to-go / loss − uniform | -10.0 [-13.0, -7.0] ↓ | 0.005 | 0.010 |" in md
    assert "| return-to-go / loss > uniform | 0.00 | [0.00, 0.00] | 0.00 |" in md
    with pytest.raises(ReportError, match="hopper_medium_expert/rvs_r/lds/unconditional/trajectory_return/0 is "
                       "in both"):
        pool([table2, ablation, table2])
    longer = tmp_path / "longer"
    write_run(longer, "hopper_medium_expert", "rvs_r", "lds", 0, 1.0, target="action", steps=200)
    with pytest.raises(ReportError, match="pooled sweeps have different budgets"):
        pool([ablation, longer])


def test_a_cell_of_runs_on_different_data_is_refused_unless_pooled_on_purpose(tmp_path, capsys):
    """Seeds 0-1 on one generation of a dataset and seed 2 on another (differing in the last digits): refused in one
    line naming both hashes and --mixed-data, no file written; --mixed-data pools them and says so. Runs older than
    hashes are one group: pooled with each other, not with runs that recorded one. The per-run CSV names each
    run's dataset and hash."""
    old, new = tmp_path / "old", tmp_path / "new"
    for seed in range(2):
        write_run(old, "hopper_medium", "bc", "uniform", seed, 40.0 + seed)
        write_run(new, "hopper_medium", "bc", "uniform", seed, 40.0 + seed, dataset_hash="aaaa0000aaaa0000")
    write_run(new, "hopper_medium", "bc", "uniform", 2, 45.0, dataset_hash="bbbb1111bbbb1111")
    write_table(old, 2, reps=20)
    assert [(r["dataset id"], r["dataset hash"]) for r in csv.DictReader(open(old / "table2_runs.csv"))] == [
        ("wsrl/hopper_medium", "")] * 2
    with pytest.raises(SystemExit):
        main([str(new), "--table", "2", "--reps", "20"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hopper_medium / BC: runs on different data" in err and "--mixed-data" in err
    assert "2 runs on wsrl/hopper_medium (hash aaaa0000aaaa0000)" in err and "(hash bbbb1111bbbb1111)" in err
    assert not (new / "table2.md").exists()
    main([str(new), "--table", "2", "--reps", "20", "--mixed-data"])
    assert "runs on different data pooled (--mixed-data)" in (new / "table2.md").read_text()
    assert [r["dataset hash"] for r in csv.DictReader(open(new / "table2_runs.csv"))] == [
        "aaaa0000aaaa0000", "aaaa0000aaaa0000", "bbbb1111bbbb1111"]
    later = tmp_path / "later"
    write_run(later, "hopper_medium", "bc", "uniform", 2, 45.0, dataset_hash="aaaa0000aaaa0000")
    with pytest.raises(ReportError, match=r"2 runs on wsrl/hopper_medium \(hash unknown\).*1 run on "):
        write_table([old, later], 2, reps=20)


def test_a_row_whose_columns_ran_on_different_versions_of_its_dataset_is_refused(tmp_path, capsys):
    """BC re-run on a dataset's new version beside RvS-R still on the old: each cell is on one dataset, but the row
    compares the two as equals; refused in one line naming both versions and a run of each, unless --mixed-data,
    which compares them and says so. Columns on one version (even where one predates hashes) pass."""
    sweep = tmp_path / "sweep"
    for seed in range(2):
        write_run(sweep, "hopper_medium", "bc", "uniform", seed, 40.0 + seed, version=1, dataset_hash="aaaa0000")
        write_run(sweep, "hopper_medium", "rvs_r", "uniform", seed, 50.0 + seed, version=0)
        write_run(sweep, "walker2d_medium", "bc", "uniform", seed, 40.0 + seed, version=1)
        write_run(sweep, "walker2d_medium", "rvs_r", "uniform", seed, 50.0 + seed, version=1,
                  dataset_hash="bbbb1111bbbb1111")
    with pytest.raises(SystemExit):
        main([str(sweep), "--table", "2", "--reps", "20"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hopper_medium: columns on different versions of the dataset" in err
    assert "BC on wsrl/hopper_medium-v1 (e.g. sweep/hopper_medium/bc-uniform-None-unconditional/seed0)" in err
    assert "Own Return on wsrl/hopper_medium-v0" in err and "--mixed-data" in err and "walker2d" not in err
    assert not (sweep / "table2.md").exists()
    main([str(sweep), "--table", "2", "--reps", "20", "--mixed-data"])
    assert "hopper_medium: columns on different versions of the dataset (--mixed-data)" in (
        sweep / "table2.md").read_text()


def test_seeds_option_keeps_the_same_seeds_in_every_column(tmp_path, capsys):
    """A pooled sweep with seeds 0-3 in one column and 0-1 in the other: --seeds 0 1 gives both columns the same."""
    for seed in range(4):
        write_run(tmp_path, "hopper_medium_expert", "rvs_r", "uniform", seed, 40.0 + 10 * seed)
    for seed in range(2):
        write_run(tmp_path, "hopper_medium_expert", "rvs_r", "lds", seed, 30.0 + seed)
    main([str(tmp_path), "--table", "2", "--reps", "20", "--seeds", "0", "1"])
    rows = {r["dataset"]: r for r in csv.DictReader((tmp_path / "table2.csv").open())}
    assert float(rows["hopper_medium_expert"]["Own Return"]) == 45.0  # seeds 0 and 1: 40, 50
    assert "Seeds 0, 1 only (--seeds)" in capsys.readouterr().out
    assert {r["seed"] for r in csv.DictReader((tmp_path / "table2_runs.csv").open())} == {"0", "1"}


def test_a_paper_budget_table_of_the_robots_done_marks_the_others_not_run_yet(tmp_path, capsys):
    """Hopper alone at the paper's budget: its rows have our numbers, the other robots' rows the paper's beside "not
    run yet", said once, not as empty cells; the group averages keep the paper's and leave ours out."""
    hopper = ("hopper_medium_replay", "hopper_medium", "hopper_medium_expert")
    for k, env in enumerate(hopper):
        for method, sampler in (("bc", "uniform"), ("rvs_r", "uniform"), ("rvs_r", "lds"), ("bc", "lds")):
            for seed in range(2):
                write_run(tmp_path, env, method, sampler, seed, 20.0 + 10 * k + seed)
    main([str(tmp_path), "--table", "2", "--reps", "20"])
    md = capsys.readouterr().out
    pending = [f"{robot}_{q}" for q in ("medium_replay", "medium", "medium_expert")
               for robot in ("halfcheetah", "walker2d")]
    assert "| walker2d_medium_replay | not run yet | not run yet | not run yet | not run yet | 10.2 | 33.0 | 37.0 |" \
        in md
    assert f"- Not run yet: {', '.join(pending)} (the paper's numbers beside them)." in md
    assert "- medium average: ours not averaged, halfcheetah_medium, walker2d_medium not run yet" in md
    assert "no runs" not in md and "datasets missing" not in md
    rows = {r["dataset"]: r for r in csv.DictReader((tmp_path / "table2.csv").open())}
    assert [d for d, r in rows.items() if r["not run yet"] == "True"] == pending
    assert float(rows["hopper_medium"]["BC"]) == 30.5 and rows["medium average"]["BC"] == ""
    assert float(rows["medium average"]["BC paper"]) == pytest.approx((42.01 + 38.01 + 67.40) / 3)


def test_datasets_option_keeps_only_those_rows(tmp_path, capsys):
    """--datasets renders the rows asked for (e.g. medium-expert at 10 seeds) and refuses one the sweeps lack."""
    for seed in range(3):
        write_run(tmp_path, "hopper_medium_expert", "rvs_r", "uniform", seed, 40.0 + 10 * seed)
    write_run(tmp_path, "hopper_medium", "rvs_r", "uniform", 0, 10.0)
    main([str(tmp_path), "--table", "2", "--reps", "20", "--datasets", "hopper_medium_expert"])
    rows = {r["dataset"]: r for r in csv.DictReader((tmp_path / "table2.csv").open())}
    assert list(rows) == ["hopper_medium_expert", "medium_expert average"]  # no other row, not even the paper's
    assert float(rows["hopper_medium_expert"]["Own Return"]) == 50.0
    assert {r["dataset"] for r in csv.DictReader((tmp_path / "table2_runs.csv").open())} == {"hopper_medium_expert"}
    md = capsys.readouterr().out
    assert "Datasets hopper_medium_expert only (--datasets)" in md and "hopper_medium /" not in md
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), "--table", "2", "--datasets", "walker2d_medium"])
    assert stop.value.code == 2
    assert "--datasets walker2d_medium: no run of it in the sweeps; they have hopper_medium, hopper_medium_expert" \
        in capsys.readouterr().err


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
        make_tiny_dataset(generated_id(robot, "medium_expert"), robot=robot, n_episodes=3, max_steps=30)
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "wsrl.train", "-m", "hydra/launcher=local",
           "env=hopper_medium_expert,walker2d_medium_expert,halfcheetah_medium_expert", "seed=0,1",
           "generate_if_missing=false", "trainer.max_steps=5", "policy.hidden_dims=[16]", "trainer.batch_size=16",
           "eval.episodes=1", "wandb.mode=disabled", "trainer.progress_bar=false", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                          env=child_env(MINARI_DATASETS_PATH=str(minari_root)), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs, failed = collect(sweep)
    assert sorted((r.results.env, r.results.seed) for r in runs) == [
        ("hopper_medium_expert", 0), ("hopper_medium_expert", 1), ("walker2d_medium_expert", 0),
        ("walker2d_medium_expert", 1)]
    assert len(failed) == 2 and all(f["type"] == "DataError" for f in failed)
    assert {r.results.config["wandb"]["group"] for r in runs} == {"default"}  # one W&B group per sweep: its name
    assert swept_seeds(sweep) == [0, 1]
    # the same sweep directory again, with another seed: extended, nothing replaced
    before = {p: p.stat().st_mtime_ns for p in sweep.rglob("results.json")}
    extend = [c for c in cmd if not c.startswith(("env=", "seed="))] + ["env=hopper_medium_expert", "seed=2"]
    proc = subprocess.run(extend, capture_output=True, text=True, cwd=tmp_path,
                          env=child_env(MINARI_DATASETS_PATH=str(minari_root)), timeout=600)
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
