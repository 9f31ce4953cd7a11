"""Behaviour policies: where they live, the shipped actors, training runs resumed, medium and expert chosen."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from wsrl.datasets.behavior import locations, selection
from wsrl.datasets.behavior.__main__ import main as behavior_main
from wsrl.datasets.behavior.locations import ASSETS, HISTORY, RESTORE
from wsrl.datasets.behavior.training import run_dir
from wsrl.datasets.generate import policy_run, snapshot_actor
from wsrl.datasets.suite import ROBOT, ROBOTS

ROOT = Path(__file__).resolve().parents[1]


def test_locations_are_the_repository_s():
    assert ASSETS == ROOT / "wsrl" / "assets" / "behavior" and (ASSETS / "hopper" / "manifest.json").is_file()
    assert HISTORY == ROOT / "experiments" / "behavior"


@pytest.mark.parametrize("robot", ROBOTS)
def test_shipped_chosen_actors_load_and_act_in_the_action_box(robot):
    manifest = json.loads((ASSETS / robot / "manifest.json").read_text())
    env = gym.make(ROBOT[robot].env_id)
    obs = torch.as_tensor(env.reset(seed=0)[0], dtype=torch.float32)[None].repeat(4, 1)  # a state the data starts in
    env.close()
    for quality, step in manifest["chosen"].items():  # the expert from its own run's folder where it has one
        actor = snapshot_actor(robot, policy_run(manifest, quality), step, ASSETS)
        action = actor.act(obs, torch.Generator().manual_seed(0))
        assert action.shape == (4, *env.action_space.shape) and action.abs().max() <= 1.0
        assert not torch.equal(action[0], action[1])  # drawn as in the data, not the mean action


@pytest.mark.parametrize("argv", [["choose", "hopper", "{history}/hopper-sac-seed0"],
                                  ["plot", "--runs", "{history}", "--png", "{tmp}/curves.png"]])
def test_a_missing_history_is_one_line_naming_the_restore_command(tmp_path, monkeypatch, argv):
    history = tmp_path / "experiments" / "behavior"
    monkeypatch.setattr(locations, "HISTORY", history)
    with pytest.raises(SystemExit) as exit_:
        behavior_main([a.format(history=history, tmp=tmp_path) for a in argv])
    message = str(exit_.value.code)
    assert message.startswith("error: ") and RESTORE in message and "\n" not in message
    assert not (tmp_path / "curves.png").exists()


def test_behavior_training_refuses_a_record_without_its_agent(tmp_path):
    run = run_dir("hopper", "sac", 0, tmp_path / "runs")
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"curve": [{"step": 1000}], "restarts": []}))
    with pytest.raises(SystemExit, match="holds no model.zip"):
        behavior_main(["train", "hopper", "--steps", "1000", "--runs", str(tmp_path / "runs"),
                       "--cache", str(tmp_path / "cache")])


@pytest.mark.slow
def test_behavior_training_resumes_and_restarts_warm_without_its_cache(tmp_path):
    args = ["train", "hopper", "--snapshot-every", "500", "--eval-episodes", "1", "--checkpoint-minutes", "0",
            "--runs", str(tmp_path / "runs"), "--cache", str(tmp_path / "cache")]
    behavior_main([*args, "--steps", "1000"])
    behavior_main([*args, "--steps", "1500"])  # exact resume: no restart recorded
    record = json.loads((run_dir("hopper", "sac", 0, tmp_path / "runs") / "run.json").read_text())
    assert record["restarts"] == [] and [e["step"] for e in record["curve"]] == [500, 1000, 1500]
    for f in (tmp_path / "cache").rglob("*.pkl"):
        f.unlink()
    behavior_main([*args, "--steps", "2000"])
    record = json.loads((run_dir("hopper", "sac", 0, tmp_path / "runs") / "run.json").read_text())
    assert [r["step"] for r in record["restarts"]] == [1500] and record["curve"][-1]["step"] == 2000


def fake_run(path: Path, quick: dict[int, float], learner: str = "sac") -> Path:
    """A behaviour run with a snapshot per step of ``quick`` and those training-time (10-episode) scores."""
    (path / "snapshots").mkdir(parents=True)
    curve = []
    for k, score in quick.items():
        (path / "snapshots" / f"step_{k:07d}.pt").write_bytes(b"actor")
        curve.append({"step": k, "snapshot": f"step_{k:07d}.pt", "normalized_mean": score})
    (path / "run.json").write_text(json.dumps({"robot": "hopper", "learner": learner, "seed": 0, "curve": curve,
                                               "wall_seconds": 1.0, "eval_episodes": 10, "env_id": "Hopper-v5"}))
    return path


def scores_on_many_episodes(monkeypatch, many: dict[int, float]) -> list[tuple[int, int]]:
    """Replace the 50-episode scoring by ``many`` (by step); returns the (step, episodes) scored, as they come."""
    seen = []

    def score(path, robot, episodes, seed):
        seen.append((int(path.stem[5:]), episodes))
        return {"normalized_mean": many[int(path.stem[5:])], "normalized_std": 1.0, "episodes": episodes}

    monkeypatch.setattr(selection, "score_snapshot", score)
    return seen


def test_choose_picks_expert_and_medium_on_many_episodes_and_ships_what_generation_needs(tmp_path, monkeypatch):
    """Training scores (10 episodes) rank the candidates; the 50-episode scores decide."""
    run = fake_run(tmp_path / "hopper-sac-seed0", {1: 5.0, 2: 30.0, 3: 42.0, 4: 50.0, 5: 99.0, 6: 97.0, 7: 60.0})
    seen = scores_on_many_episodes(monkeypatch, {1: 5.0, 2: 38.0, 3: 45.0, 4: 52.0, 5: 90.0, 6: 94.0, 7: 60.0})
    first = {"robot": "hopper", "learner": "sac", "seed": 0, "steps_done": 120000, "note": "budget cut",
             "curve": [{"step": 10, "normalized_mean": 17.9}]}  # a manifest from before run records
    (tmp_path / "assets" / "hopper").mkdir(parents=True)
    (tmp_path / "assets" / "hopper" / "manifest.json").write_text(json.dumps(first))
    manifest = selection.choose("hopper", run, episodes=50, assets=tmp_path / "assets")
    assert manifest["chosen"] == {"expert": 6, "medium": 3}  # D4RL's hopper medium is 44: snapshot 3 (45)
    assert {episodes for _, episodes in seen} == {50} and manifest["chosen_scores"]["expert"]["normalized_mean"] == 94.0
    shipped = sorted(p.name for p in (tmp_path / "assets" / "hopper" / "snapshots").iterdir())
    assert shipped == [f"step_{k:07d}.pt" for k in (1, 2, 3, 6)]
    assert [(r["run"], r["kept"]) for r in manifest["runs"]] == [("first suite: hopper-sac-seed0", False),
                                                                 ("hopper-sac-seed0", True)]
    assert manifest["runs"][0]["best_normalized"] == 17.9 and manifest["runs"][0]["note"] == "replaced: budget cut"


def test_choose_takes_medium_at_d4rl_s_level_among_the_first_snapshots_that_reach_it(tmp_path, monkeypatch):
    """Hopper's target is 44. The training-time scores overrate snapshots 2-5 (they fall now and then): the first
    window of two (2, 3) holds none within 2.5 points on 50 episodes (3: 48), the second (4, 5) does, and medium
    is the nearest of the four (4: 43), not a later snapshot (6: 44) nor the one nearest a fixed fraction of the
    expert (0.45 x 80 = 36: 2). A second choose of the same run reuses every recorded score."""
    monkeypatch.setattr(selection, "CANDIDATES", 2)
    quick = {1: 10.0, 2: 46.0, 3: 48.0, 4: 60.0, 5: 62.0, 6: 45.0, 7: 99.0, 8: 97.0}
    many = {1: 10.0, 2: 30.0, 3: 48.0, 4: 43.0, 5: 47.0, 6: 44.0, 7: 60.0, 8: 80.0}
    run = fake_run(tmp_path / "hopper-sac-seed0", quick)
    seen = scores_on_many_episodes(monkeypatch, many)
    manifest = selection.choose("hopper", run, episodes=50, assets=tmp_path / "assets")
    assert manifest["chosen"] == {"expert": 8, "medium": 4}
    assert sorted(step for step, _ in seen) == [2, 3, 4, 5, 7, 8]  # 6 (later) and 1 (below 39) never scored
    assert manifest["chosen_scores"]["medium_target"] == 44.0
    assert sorted(p.name for p in (tmp_path / "assets" / "hopper" / "snapshots").iterdir()) == [
        f"step_{k:07d}.pt" for k in (1, 2, 3, 4, 8)]
    seen.clear()
    assert selection.choose("hopper", run, episodes=50, assets=tmp_path / "assets")["chosen"] == manifest["chosen"]
    assert seen == []
    selection.choose("hopper", run, episodes=20, assets=tmp_path / "assets")  # scored otherwise: again
    assert {episodes for _, episodes in seen} == {20}


def test_choose_takes_the_expert_from_another_run_and_medium_from_the_run_s_whole_curve(tmp_path, monkeypatch):
    """With ``expert_run``, medium is the run's snapshot nearest 44 even past the run's own best (no expert of
    its own bounds it), expert the other run's best on 50 episodes; the expert is shipped under snapshots/expert,
    both runs are listed as kept, and a second choose reuses the recorded scores of both."""
    medium_run = fake_run(tmp_path / "hopper-sac1-seed0", {1: 5.0, 2: 30.0, 3: 50.0, 4: 43.0}, learner="sac1")
    expert_run = fake_run(tmp_path / "hopper-tqc1-seed0", {10: 80.0, 11: 99.0, 12: 97.0}, learner="tqc1")
    seen = scores_on_many_episodes(monkeypatch, {1: 5.0, 2: 30.0, 3: 50.0, 4: 44.5, 10: 80.0, 11: 90.0, 12: 95.0})
    assets = tmp_path / "assets"
    manifest = selection.choose("hopper", medium_run, episodes=50, assets=assets, expert_run=expert_run)
    assert manifest["chosen"] == {"medium": 4, "expert": 12}
    assert manifest["learner"] == "sac1" and manifest["expert_run"]["learner"] == "tqc1"
    assert manifest["chosen_scores"]["expert"]["normalized_mean"] == 95.0
    shipped = sorted(str(p.relative_to(assets / "hopper" / "snapshots")) for p in assets.rglob("*.pt"))
    assert shipped == ["expert/step_0000012.pt"] + [f"step_{k:07d}.pt" for k in (1, 2, 3, 4)]
    assert [(r["run"], r["kept"]) for r in manifest["runs"]] == [("hopper-sac1-seed0", True),
                                                                 ("hopper-tqc1-seed0", True)]
    seen.clear()
    assert selection.choose("hopper", medium_run, episodes=50, assets=assets, expert_run=expert_run)["chosen"] == \
        manifest["chosen"]
    assert seen == []
