"""``make bench`` (experiments/bench.py): its command line names and checks every section; a quick run of every
section (marked ``bench``: timings only, excluded by default, ``pytest -m bench`` runs it) prints and saves a
finite figure for each of its rows."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "experiments" / "bench.py"


def load_bench():
    if "wsrl_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("wsrl_bench", BENCH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["wsrl_bench"] = module
        spec.loader.exec_module(module)
    return sys.modules["wsrl_bench"]


def test_only_and_its_help_name_every_section(capsys):
    bench = load_bench()
    with pytest.raises(SystemExit) as done:
        bench.parse(["--help"])
    assert done.value.code == 0
    assert ",".join(bench.SECTIONS) in " ".join(capsys.readouterr().out.split())
    assert all(f"- ``{name}``:" in bench.__doc__ for name in bench.SECTIONS)  # each one described
    assert bench.parse([]).only == set(bench.SECTIONS)  # all by default
    assert bench.parse(["--only", "eval,stacked"]).only == {"eval", "stacked"}


@pytest.mark.parametrize(("argv", "says"), [(["--only", "train,gpu"], "unknown section(s) gpu in --only: choose "
                                             "from train,usual,stacked,eval,group_eval"),
                                            (["--sizes", "256"], "--sizes takes WIDTHxBATCH"),
                                            (["--stacked-n", "1,eight"], "--stacked-n N,...")])
def test_bad_options_are_refused_in_one_line(argv, says, capsys):
    with pytest.raises(SystemExit) as done:
        load_bench().parse(argv)
    assert done.value.code == 2
    assert says in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.bench
def test_quick_bench_measures_every_section(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    out = tmp_path / "bench.json"
    rows = load_bench().main(["--quick", "--json", str(out)])
    printed = capsys.readouterr().out
    kinds = {r["section"].split(",")[0] for r in rows}
    assert kinds == {"training", "stacked training", "evaluation", "group evaluation"}
    assert all(math.isfinite(r["value"]) and r["value"] > 0 for r in rows)
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in rows if r["ratio"] is not None)
    figures = [r["figure"] for r in rows]
    for expected in ("bare PyTorch loop; ratio = wsrl / it",
                     "usual way (DataLoader, automatic opt.); ratio = wsrl / it",
                     "N = 2, fp32; ratio = it / single run",
                     "N = 2, fp32, compiled; ratio = it / uncompiled",
                     "N = 2, fp32, the same step in a bare loop; ratio = Lightning-hosted / bare",
                     "evaluate_many, over 2 kept workers; ratio = speed-up"):
        assert expected in figures, expected
    assert all(f in printed for f in figures)
    assert json.loads(out.read_text())["rows"] == rows
    assert os.environ["MINARI_DATASETS_PATH"] == str(tmp_path / "minari")  # the temporary dataset root is gone
