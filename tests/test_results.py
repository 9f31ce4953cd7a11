"""``results.json`` as a named record: written whole from one type, read back through it, old files included."""

from __future__ import annotations

import json

import pytest

from wsrl.core.config import EnvConfig, resolve_env
from wsrl.running.damaged import DamagedFile
from wsrl.running.results import VERSION, RunResults, finished_results, read_results, write_results

PLAIN = {"env": {"name": "hopper_medium_expert"}, "method": {"name": "rvs_r"}, "sampler": {"name": "lds"},
         "policy": {"name": "unconditional"}, "seed": 3, "trainer": {"matmul_precision": "highest", "autocast": "none"}}
FINAL = {"normalized_score": {"mean": 50.0, "std": 2.0}, "returns": [1600.0, 1700.0], "lengths": [500, 520]}
# a file as wsrl wrote it before the record had a name: no version, no precision, a key this version does not know
VERSION_1 = {"env": "hopper_medium_expert", "method": "rvs_r", "sampler": "lds", "policy": "unconditional", "seed": 3,
             "steps": 5000, "dataset_id": "wsrl/hopper/medium-expert-v0", "eval_env_id": "Hopper-v5",
             "ref_min_score": -20.272305, "ref_max_score": 3234.3, "target_return": 3300.0,
             "weights": {"min": 0.5, "max": 4.0, "effective_fraction": 0.7}, **FINAL,
             "eval_history": [{"step": 5000, "mean": 50.0, "std": 2.0}], "started_at_steps": [0],
             "wall_seconds": 61.5, "device": "cpu", "config": PLAIN, "retired_field": 1}


def record(**media) -> RunResults:
    env = resolve_env(EnvConfig(name="hopper_medium_expert", robot="hopper", quality="medium_expert"))
    return RunResults.of_run(PLAIN, env, "0123456789abcdef", 5000, 3300.0, None, FINAL,
                             [{"step": 2500, "mean": 40.0, "std": 1.0}], [0, 2500], 12.5, "cpu", media)


def test_a_run_written_and_read_back_is_the_same_record(tmp_path):
    results = record(video={"path": "videos/step5000.mp4", "frames": 5})
    path = write_results(tmp_path, results)
    saved = json.loads(path.read_text())
    assert saved["version"] == VERSION and "conditioning" not in saved and "stacked" not in saved
    assert saved["eval_history"] == [{"step": 2500, "mean": 40.0, "std": 1.0}, {"step": 5000, "mean": 50.0, "std": 2.0}]
    assert saved["precision"] == {"matmul": "highest", "autocast": "none"}
    assert (saved["dataset_id"], saved["dataset_hash"]) == ("wsrl/hopper/medium-expert-v0", "0123456789abcdef")
    assert (saved["env"], saved["method"], saved["sampler"], saved["policy"]) == (
        "hopper_medium_expert", "rvs_r", "lds", "unconditional")
    assert read_results(path) == results


def test_a_version_1_file_still_reads(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(VERSION_1))
    old = read_results(tmp_path / "results.json")
    assert old.version == 1 and old.precision is None and old.stacked is None and old.dataset_hash is None
    assert old.normalized_score == {"mean": 50.0, "std": 2.0} and old.weights["max"] == 4.0
    assert finished_results(tmp_path, 5000) == old
    assert finished_results(tmp_path, 5001) is None  # a longer budget: not finished
    assert finished_results(tmp_path / "absent", 1) is None


def test_a_file_missing_a_required_field_is_refused(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({k: v for k, v in VERSION_1.items() if k != "steps"}))
    with pytest.raises(DamagedFile, match="results.json cannot be read \\(not a run's results: .*'steps'"):
        read_results(tmp_path / "results.json")
