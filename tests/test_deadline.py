"""The stacked launcher's one deadline (``hydra.launcher.deadline_s``): training, evaluation and writing end before
it; a group that cannot finish says so, saves its checkpoint in time and stops; its evaluation is cut where it does
not fit; the same command resumes it, to the numbers of an uninterrupted launch."""

from __future__ import annotations

import json
import time
import types

import pytest

import wsrl.stacked.clock as clock
from tests.test_reliability import assert_same_metrics
from tests.test_stacked import config, sweep
from wsrl.core.module import WeightedBC
from wsrl.stacked.group import StackedGroup
from wsrl.stacked.launch import DEADLINE_EXIT, Job, Options, launch

STEPS = 60


@pytest.fixture
def cost(monkeypatch):
    """The launch's own clock made exact (Lightning keeps the real one): a training step of the group takes
    ``cost["step"]`` seconds, a member's action in the evaluation ``cost["act"]``, nothing else takes any."""
    cost = {"now": 1000.0, "step": 1.0, "act": 0.0}
    monkeypatch.setattr(clock, "time", types.SimpleNamespace(time=lambda: cost["now"], strftime=time.strftime))
    step, act = StackedGroup.training_step, WeightedBC.act

    def timed_step(self, *args):
        step(self, *args)
        cost["now"] += cost["step"]

    def timed_act(self, *args):
        cost["now"] += cost["act"]
        return act(self, *args)

    monkeypatch.setattr(StackedGroup, "training_step", timed_step)
    monkeypatch.setattr(WeightedBC, "act", timed_act)
    return cost


def run(tmp_path, where: str, deadline_s: float, cost: dict, capsys) -> tuple[int, str]:
    """A two-member launch (bc seed 0, rvs_r seed 1: one group) of ``STEPS`` steps in ``tmp_path/where``: its exit
    code and what it printed on stderr."""
    pairs = (("bc", 0), ("rvs_r", 1))
    jobs = [Job(config(f"method={m}", f"seed={s}", f"trainer.max_steps={STEPS}", "trainer.log_every_n_steps=10"),
                tmp_path / where / f"{m}{s}", [f"method={m}", f"seed={s}"]) for m, s in pairs]
    try:
        launch(jobs, Options(deadline_s=deadline_s), tmp_path / where, cost["now"])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def results(sweep_dir) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.rglob("results.json")}


def group_record(sweep_dir) -> dict:
    (path,) = sweep_dir.glob(".stacked/*.json")
    return json.loads(path.read_text())


def test_training_that_cannot_finish_saves_in_time_and_the_same_command_finishes(tiny_dataset, tmp_path, cost,
                                                                               capsys, caplog, one_thread):
    assert run(tmp_path, "whole", 0, cost, capsys)[0] == 0
    whole = results(tmp_path / "whole")
    # 40 s, a step a second: the group trains while the time left covers two steps, saving (1 s and a little) and
    # the 3 s kept back, so to step 34, with 6 s left
    code, err = run(tmp_path, "cut", 40, cost, capsys)
    assert code == DEADLINE_EXIT and "stopped by the deadline (hydra.launcher.deadline_s: 6 s left" in err
    assert "saved step 34 to" in err and "to resume, run the same command" in err
    assert "cannot finish before the deadline: 49 steps to go at 1000.0 ms" in caplog.text
    assert not results(tmp_path / "cut") and list((tmp_path / "cut").glob(".stacked/*.ckpt"))
    record = group_record(tmp_path / "cut")
    assert record["steps"] == 34 and record["left_s"] == 6.0 and record["ms_per_step"] == 1000.0
    assert record["status"].startswith("stopped by the deadline")
    assert record["members"] == 2 and record["precision"] == "FP32" and record["card"] == "cpu"
    # the same command again: 26 steps, then the evaluation, well before its 40 s
    assert run(tmp_path, "cut", 40, cost, capsys)[0] == 0
    cut = results(tmp_path / "cut")
    assert cut.keys() == whole.keys() and len(cut) == 2
    for name, got in cut.items():
        assert got["steps"] == STEPS and got["started_at_steps"] == [0, 34]
        assert got["returns"] == whole[name]["returns"]  # resumed to the same numbers
        assert_same_metrics(tmp_path / "cut" / name, tmp_path / "whole" / name)  # rows of steps 9-29 kept
    assert group_record(tmp_path / "cut")["status"] == "finished"


def test_an_evaluation_that_does_not_fit_is_cut_and_the_next_call_evaluates(tiny_dataset, tmp_path, cost, capsys,
                                                                            one_thread):
    cost["act"] = 1.0  # each step of the episodes: 2 s (two members)
    # 66 s: training ends at 60 s; the evaluation starts with 6 s left, needs 4.1 s kept for the files, and stops
    code, err = run(tmp_path, "late", 66, cost, capsys)
    assert code == DEADLINE_EXIT, err
    assert "stopped by the deadline (hydra.launcher.deadline_s) during the final evaluation, 1 episode step in" in err
    assert f"saved step {STEPS} to" in err
    assert not results(tmp_path / "late") and group_record(tmp_path / "late")["steps"] == STEPS
    cost["act"] = 0.0
    assert run(tmp_path, "late", 66, cost, capsys)[0] == 0  # only the evaluation is left
    assert [r["steps"] for r in results(tmp_path / "late").values()] == [STEPS, STEPS]
    # too little time to train at all: not started, said, nothing written
    code, err = run(tmp_path, "none", 5, cost, capsys)
    assert code == DEADLINE_EXIT and "not started: 5 s before the deadline (hydra.launcher.deadline_s)" in err
    assert not list((tmp_path / "none").glob(".stacked/*.ckpt")) and group_record(tmp_path / "none")["steps"] == 0


def test_a_sweep_under_a_deadline_it_cannot_meet_ends_in_time(tiny_dataset, minari_root, tmp_path):
    """Real time, through Hydra: 10^6 steps cannot fit in 30 s; the launch saves and exits before its deadline.
    (30 s, not less: on a loaded machine the interpreter's start and Hydra's took 11 s of a 15 s deadline, so the
    group was refused as too late to start, which is another test's case.)"""
    where = tmp_path / "sweep"
    start = time.time()
    proc = sweep("stacked", where, minari_root, "trainer.max_steps=1000000", "hydra.launcher.deadline_s=30")
    elapsed = time.time() - start
    assert proc.returncode == DEADLINE_EXIT, proc.stderr[-3000:]
    assert "cannot finish before the deadline" in proc.stdout + proc.stderr
    assert "stopped by the deadline" in proc.stderr and list(where.glob(".stacked/*.ckpt"))
    record = group_record(where)
    assert 0 < record["steps"] < 1_000_000 and record["left_s"] > 0
    assert elapsed < 30 + 60  # the deadline, and the interpreter's start before it counts
