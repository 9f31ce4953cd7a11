"""A damaged file costs at most its own work and is named in one line (issue 34), with real damaged files (a cut
checkpoint or JSON, garbage bytes, an empty file): a run's last checkpoint falls back to its newest readable periodic
one, nothing readable is refused before anything starts (a single run and a stacked group alike), a damaged
results.json is evaluated again, and the report names, counts and skips an unreadable run (``--strict`` refuses)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import child_env
from tests.test_reliability import SMALL, assert_same_metrics, config, final_weights, metrics_rows
from tests.test_report import write_run
from tests.test_runs import snapshot
from tests.test_stacked import sweep
from wsrl.core.config import to_plain
from wsrl.report.__main__ import main as report
from wsrl.report.collect import collect
from wsrl.running.build import resume_point
from wsrl.running.damaged import DamagedFile, read_json, set_aside
from wsrl.running.results import finished_results
from wsrl.running.rundir import check_same_run, record_run, run_identity
from wsrl.train import train

DAMAGE = {  # what a cut copy, a wrong file or a full disk elsewhere leaves
    "cut": lambda data: data[:len(data) // 3],
    "garbage": lambda data: np.random.default_rng(0).bytes(len(data)),
    "empty": lambda data: b"",
}


def damage(path, how: str) -> bytes:
    """Damage the real file ``path`` as ``how`` says; returns the damaged bytes."""
    data = DAMAGE[how](path.read_bytes())
    path.write_bytes(data)
    return data


def checkpoint(path, step: int):
    """A real checkpoint file as Lightning's reader loads it (torch's zip format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "state_dict": {"w": torch.arange(256.0)}}, path)
    return path


@pytest.mark.parametrize("how", DAMAGE)
def test_read_json_names_the_file_and_what_is_wrong(tmp_path, how):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"steps": 12, "returns": [1.5, 2.5], "config": {"seed": 0}}))
    damage(path, how)
    why = {"cut": "not whole JSON", "garbage": "not text: garbage bytes", "empty": "empty file"}[how]
    with pytest.raises(DamagedFile, match=f"^{path} cannot be read \\({why}"):
        read_json(path)


def test_set_aside_keeps_every_damaged_file(tmp_path):
    path = tmp_path / "last.ckpt"
    for k in range(3):
        path.write_bytes(b"damaged %d" % k)
        set_aside(path)
    assert not path.exists()
    assert [(tmp_path / name).read_bytes() for name in ("last.ckpt.damaged", "last.ckpt.damaged.1",
                                                        "last.ckpt.damaged.2")] == [b"damaged 0", b"damaged 1",
                                                                                    b"damaged 2"]


@pytest.mark.parametrize("how", DAMAGE)
def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path, caplog, how):
    cfg, ckpts = config(), tmp_path / "checkpoints"
    last, newer, older = checkpoint(ckpts / "last.ckpt", 50), checkpoint(ckpts / "step=40.ckpt", 40), \
        checkpoint(ckpts / "step=20.ckpt", 20)
    checkpoint(ckpts / "step=x.ckpt", 99)  # not a periodic checkpoint's name: never resumed from
    assert resume_point(cfg, tmp_path) == last  # whole: resumed as it is, nothing moved
    bad_last, bad_newer = damage(last, how), damage(newer, how)
    with caplog.at_level(logging.WARNING, logger="wsrl"):
        assert resume_point(cfg, tmp_path) == older
    assert (ckpts / "last.ckpt.damaged").read_bytes() == bad_last and not last.exists()
    assert (ckpts / "step=40.ckpt.damaged").read_bytes() == bad_newer and not newer.exists()
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"{last} cannot be read (") and f"{newer} cannot be read (" in line
    assert line.endswith(f"kept as last.ckpt.damaged, step=40.ckpt.damaged; resuming from {older} (step 20)")
    assert resume_point(config("resume=false"), tmp_path) is None


@pytest.mark.parametrize("how", DAMAGE)
def test_nothing_readable_is_refused_naming_every_file(tmp_path, how):
    ckpts = tmp_path / "checkpoints"
    files = [checkpoint(ckpts / "last.ckpt", 50), checkpoint(ckpts / "step=40.ckpt", 40)]
    for path in files:
        damage(path, how)
    before = snapshot(tmp_path)
    with pytest.raises(DamagedFile) as refused:
        resume_point(config(), tmp_path)
    message = str(refused.value)
    assert message.startswith("nothing to resume from: ") and "\n" not in message
    assert all(f"{path} cannot be read (" in message for path in files)
    assert message.endswith(f"to start over from step 0, move them out of {ckpts} and run the same command again")
    assert snapshot(tmp_path) == before  # refused as found: nothing moved


def test_a_cut_last_checkpoint_resumes_from_the_periodic_one_as_an_uninterrupted_run(tiny_dataset, tmp_path,
                                                                                   caplog, one_thread):
    """The issue's run: 50 steps with a checkpoint every 20, last.ckpt cut to 1,000 bytes, the same command to 80
    steps: it resumes from step=40.ckpt and ends exactly where an uninterrupted run of 80 steps does."""
    every = "trainer.checkpoint_every_steps=20"
    run, clean = tmp_path / "run", tmp_path / "clean"
    train(config("trainer.max_steps=50", every), run)
    last = run / "checkpoints" / "last.ckpt"
    cut = last.read_bytes()[:1000]
    last.write_bytes(cut)
    with caplog.at_level(logging.WARNING, logger="wsrl"):
        resumed = train(config("trainer.max_steps=80", every), run)
    assert resumed.started_at_steps == [0, 40] and resumed.steps == 80
    assert (run / "checkpoints" / "last.ckpt.damaged").read_bytes() == cut
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"{last} cannot be read (1000 bytes, not a whole checkpoint: cut short, or not one): kept as "
        f"last.ckpt.damaged; resuming from {run / 'checkpoints' / 'step=40.ckpt'} (step 40)"]
    whole = train(config("trainer.max_steps=80", every), clean)
    assert resumed.returns == whole.returns
    ours, theirs = final_weights(run), final_weights(clean)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert_same_metrics(run, clean)  # the first process's rows up to step 40 kept, its row of step 49 replaced


def test_nothing_readable_ends_the_command_in_one_line_before_anything_starts(tiny_dataset, minari_root, tmp_path):
    """No W&B run, no log directory, no file touched: the refusal comes before the run is built."""
    run = tmp_path / "run"
    for name, how in (("last.ckpt", "garbage"), ("step=20.ckpt", "empty")):
        damage(checkpoint(run / "checkpoints" / name, 20), how)
    before = snapshot(run)
    proc = subprocess.run([sys.executable, "-m", "wsrl.train", *SMALL, "wandb.mode=offline", "trainer.max_steps=40",
                           f"hydra.run.dir={run}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=child_env(MINARI_DATASETS_PATH=str(minari_root), WANDB_DIR=str(tmp_path / "wandb")))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: nothing to resume from: {run}/checkpoints/last.ckpt cannot be read (")
    assert f"{run}/checkpoints/step=20.ckpt cannot be read (empty file)" in line
    assert snapshot(run) == before and sorted(p.name for p in run.iterdir()) == ["checkpoints"]
    assert not (tmp_path / "wandb").exists()


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_results_json_is_no_finished_run(tmp_path, caplog, how):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"steps": 12, "returns": [1.5], "config": {"seed": 0}}))
    bad = damage(path, how)
    with caplog.at_level(logging.WARNING, logger="wsrl"):
        assert finished_results(tmp_path, 12) is None
    assert (tmp_path / "results.json.damaged").read_bytes() == bad and not path.exists()
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"{path} cannot be read (") and "kept as results.json.damaged" in line


def test_a_damaged_identity_is_refused_naming_it(tmp_path):
    plain = to_plain(config())
    record_run(tmp_path, run_identity(plain), plain)
    damage(tmp_path / "run_config.json", "cut")
    with pytest.raises(DamagedFile, match=f"^{tmp_path}/run_config.json cannot be read \\(not whole JSON: .*\\): it "
                       "is the run's identity; restore it, or pass name=<new name>"):
        check_same_run(plain, tmp_path, "wsrl/hopper/medium-expert-v0")


def test_a_cut_results_json_is_evaluated_again_from_the_final_checkpoint(tiny_dataset, tmp_path, one_thread):
    run = tmp_path / "run"
    first = train(config("trainer.max_steps=20"), run)
    cut = (run / "results.json").read_bytes()[:300]
    (run / "results.json").write_bytes(cut)
    rows = metrics_rows(run)
    again = train(config("trainer.max_steps=20"), run)
    assert metrics_rows(run) == rows  # the training rows kept, the final evaluation's logged again in its place
    assert again.returns == first.returns and again.normalized_score == first.normalized_score
    assert again.started_at_steps == [0] and again.steps == 20  # evaluated, not trained
    assert json.loads((run / "results.json").read_text())["returns"] == first.returns
    assert (run / "results.json.damaged").read_bytes() == cut


def test_a_damaged_group_checkpoint_ends_the_launch_in_one_line(tiny_dataset, minari_root, tmp_path):
    """A group saves one checkpoint: damaged, there is nothing to fall back to, and the launch is refused before
    any group starts, every file as it was."""
    where = tmp_path / "sweep"
    assert sweep("stacked", where, minari_root).returncode == 0
    for results in where.rglob("results.json"):  # the members unfinished again: the group resumes its checkpoint
        results.unlink()
    [group] = where.glob(".stacked/*.ckpt")
    whole = group.read_bytes()
    damage(group, "cut")
    before = {k: v for k, v in snapshot(where).items() if k != "multirun.yaml"}
    proc = sweep("stacked", where, minari_root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: nothing to resume from: {group} cannot be read ({len(whole) // 3} bytes, not a whole checkpoint: "
        f"cut short, or not one); to start the group over from step 0, move it out of {group.parent} and run the "
        "same command again")
    assert {k: v for k, v in snapshot(where).items() if k != "multirun.yaml"} == before


def sweep_of_three(root):
    """Three BC seeds of Table 2's hopper_medium_expert row (scores 10, 20, 30)."""
    for seed in range(3):
        write_run(root, "hopper_medium_expert", "bc", "uniform", seed, 10.0 * (seed + 1))
    return root / "hopper_medium_expert" / "bc-uniform-None-unconditional"


@pytest.mark.parametrize("how", DAMAGE)
def test_the_report_names_and_skips_an_unreadable_run(tmp_path, capsys, how):
    cell = sweep_of_three(tmp_path)
    damage(cell / "seed2" / "results.json", how)
    runs, missing = collect(tmp_path)
    assert sorted(r.results.seed for r in runs) == [0, 1]
    assert [(m["dir"], m["type"]) for m in missing] == [("hopper_medium_expert/bc-uniform-None-unconditional/seed2",
                                                        "unreadable")]
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"skipped: {cell / 'seed2' / 'results.json'} cannot be read (")


def test_the_table_counts_unreadable_runs_and_strict_refuses(tmp_path, capsys):
    cell = sweep_of_three(tmp_path)
    damage(cell / "seed2" / "results.json", "cut")
    failed = tmp_path / "walker2d_medium_expert" / "bc-uniform-None-unconditional" / "seed0"
    failed.mkdir(parents=True)
    (failed / "failed.json").write_bytes(b"")
    report([str(tmp_path), "--table", "2", "--reps", "20"])
    out, err = capsys.readouterr()
    assert [line.split(" cannot be read")[0] for line in err.strip().splitlines()] == [
        f"skipped: {cell / 'seed2' / 'results.json'}", f"skipped: {failed / 'failed.json'}"]
    md = (tmp_path / "table2.md").read_text()
    assert "| hopper_medium_expert | 15.0 [" in md  # the mean of the two readable seeds
    notes = [line for line in md.splitlines() if "unreadable" in line]
    assert len(notes) == 1 and notes[0].startswith("- 2 runs unreadable, left out")
    assert f"{cell / 'seed2' / 'results.json'} cannot be read (not whole JSON" in notes[0]
    (tmp_path / "table2.md").unlink()
    with pytest.raises(SystemExit) as refused:
        report([str(tmp_path), "--table", "2", "--reps", "20", "--strict"])
    assert refused.value.code == 2 and not (tmp_path / "table2.md").exists()
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {cell / 'seed2' / 'results.json'} cannot be read (not whole JSON")
    assert line.endswith("or leave out --strict to skip it")
