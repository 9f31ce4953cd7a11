"""Smoke test of ``make bench`` (experiments/bench.py): every section runs at minimal sizes and reports."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "experiments" / "bench.py"


def load_bench():
    if "wsrl_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("wsrl_bench", BENCH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["wsrl_bench"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["wsrl_bench"]


def test_bar_check():
    bench = load_bench()
    assert bench.check(0.96, ">= 0.95") and not bench.check(0.94, ">= 0.95")
    assert bench.check(0.4, "< 0.5") and not bench.check(0.5, "< 0.5")
    assert bench.check(None, ">= 1") is None


def test_quick_bench_reports_every_section(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    threads = torch.get_num_threads()
    bench = load_bench()
    out = tmp_path / "bench.json"
    try:
        b = bench.main(["--quick", "--threads", "1", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    sections = {r.section.split(",")[0].split(" (")[0] for r in b.rows}
    for prefix in ("1. training", "2. vs the usual way", "2. gap vs batch size", "3. evaluation",
                   "3b. group evaluation", "4. LDS weights and weighted sampling", "5. dataset generation", "6. GPU",
                   "7. steady state", "memory"):
        assert prefix in sections, (prefix, sections)
    measured = [r for r in b.rows if r.value is not None]
    assert all(math.isfinite(r.value) and r.value > 0 for r in measured)
    assert all(r.ok is not None for r in b.rows if r.bar and r.value is not None)
    train = [r for r in b.rows if r.section.startswith("1. training") and r.ratio is not None]
    assert len(train) == 2 and all(r.ratio > 0 for r in train)
    if not torch.cuda.is_available():
        assert any(r.section.startswith("6. GPU") and "skipped" in r.name for r in b.rows)
    assert "figure" in printed and ("PASS" in printed or "FAIL" in printed)
    saved = json.loads(out.read_text())
    assert len(saved["rows"]) == len(b.rows) and saved["raw"]
    assert not b.root.exists()  # the temporary dataset is removed


@pytest.mark.slow
def test_behavior_section_reports_both_modes(capsys):
    b = load_bench().main(["--quick", "--only", "behavior"])
    rows = [r for r in b.rows if r.section.startswith("8. behaviour training")]
    assert [r.name.split(" (")[0].split(";")[0] for r in rows] == ["subnormals kept", "subnormals flushed"]
    assert all(r.value > 0 for r in rows) and rows[1].ratio > 0
