"""Choosing a run's medium and expert snapshots and shipping them, with the manifest, into the package's assets.

Candidate snapshots are re-scored on many episodes (50 by default): expert is the best of the ``CANDIDATES`` best
by training-time score, medium the earlier snapshot whose score is nearest ``MEDIUM_RATIO`` of the expert's. The
manifest lists every run tried and the chosen figures with their spread and episode count; the snapshots shipped
are those the datasets need: all up to medium (medium-replay replays them) and the expert.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from wsrl.common.files import write_json_atomic
from wsrl.datasets.behavior.actors import score_snapshot
from wsrl.datasets.behavior.locations import ASSETS
from wsrl.datasets.suite import ROBOT

MEDIUM_RATIO = 0.45  # D4RL's medium datasets score 0.41-0.58 of its experts
MEDIUM_RANGE = (0.3, 0.6)  # a medium snapshot outside this fraction of the expert's score is not accepted
CANDIDATES = 5  # snapshots re-scored on many episodes for each of expert and medium, ranked by training-time score


class Rescored:
    """A run's snapshots re-scored on ``episodes`` episodes (seeded ``20_000 + step``), each at most once."""

    def __init__(self, robot_name: str, run: Path, episodes: int) -> None:
        self.robot_name, self.run, self.episodes = robot_name, run, episodes
        self.scores: dict[int, dict] = {}  # step -> score_snapshot's figures

    def __call__(self, entry: dict) -> float:
        step = entry["step"]
        if step not in self.scores:
            self.scores[step] = score_snapshot(self.run / "snapshots" / entry["snapshot"], ROBOT[self.robot_name],
                                               self.episodes, 20_000 + step)
            print(f"[{self.robot_name}] step {step}: {self.scores[step]['normalized_mean']:.1f} "
                  f"over {self.episodes} episodes", flush=True)
        return self.scores[step]["normalized_mean"]


def pick(curve: list[dict], score: Callable[[dict], float]) -> tuple[dict, dict]:
    """The (medium, expert) entries of a training curve, decided by ``score``, ranked by the curve's scores."""
    top = sorted(curve, key=lambda e: e["normalized_mean"], reverse=True)[:CANDIDATES]
    expert = max(top, key=score)
    goal = MEDIUM_RATIO * score(expert)
    before = [e for e in curve if e["step"] < expert["step"]]
    near = sorted(before, key=lambda e: abs(e["normalized_mean"] - goal))[:CANDIDATES]
    return min(near, key=lambda e: abs(score(e) - goal)), expert


def tried_runs(manifest: dict) -> list[dict]:
    """The runs a shipped manifest lists; one from before run records (the first suite) is itself one run."""
    if not manifest or "runs" in manifest:
        return manifest.get("runs", [])
    return [{"run": f"first suite: {manifest['robot']}-{manifest.get('learner', 'sac')}-seed{manifest['seed']}",
             "learner": manifest.get("learner", "sac"), "seed": manifest["seed"],
             "steps_done": manifest.get("steps_done"), "wall_seconds": manifest.get("wall_seconds"),
             "best_normalized": max(e["normalized_mean"] for e in manifest["curve"]),
             "note": "replaced: " + manifest.get("note", manifest.get("algorithm", ""))}]


def runs_with(previous: dict, run: Path, record: dict, note: str) -> list[dict]:
    """The runs of the ``previous`` manifest with ``run`` added (or replaced) as the one kept."""
    runs = [r for r in tried_runs(previous) if r["run"] != run.name]
    runs.append({"run": run.name, "learner": record["learner"], "seed": record["seed"],
                 "steps_done": record.get("steps_done"), "wall_seconds": record["wall_seconds"],
                 "best_normalized": max(e["normalized_mean"] for e in record["curve"]), "kept": True, "note": note})
    for r in runs:
        r["kept"] = r["run"] == run.name
    return runs


def ship(run: Path, curve: list[dict], medium: int, expert: int, out: Path) -> None:
    """Replace ``out`` with the run's snapshots up to step ``medium`` and that of step ``expert``, all at once."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for e in curve:
        if e["step"] <= medium or e["step"] == expert:
            shutil.copy2(run / "snapshots" / e["snapshot"], tmp / e["snapshot"])
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def choose(robot_name: str, run: Path, episodes: int = 50, note: str = "", assets: Path = ASSETS) -> dict:
    """Score candidate snapshots of ``run`` on ``episodes`` episodes, pick medium and expert, ship them."""
    record = json.loads((run / "run.json").read_text())
    score = Rescored(robot_name, run, episodes)
    medium, expert = pick(record["curve"], score)
    ratio = score(medium) / score(expert)
    if not MEDIUM_RANGE[0] <= ratio <= MEDIUM_RANGE[1]:
        print(f"warning: medium scores {ratio:.2f} of expert, outside {MEDIUM_RANGE}", file=sys.stderr)
    path = assets / robot_name / "manifest.json"
    runs = runs_with(json.loads(path.read_text()) if path.exists() else {}, run, record, note)
    scored = score.scores
    manifest = {**{k: v for k, v in record.items() if k != "curve"}, "curve": record["curve"],
                "chosen": {"medium": medium["step"], "expert": expert["step"]},
                "chosen_scores": {"medium": scored[medium["step"]], "expert": scored[expert["step"]],
                                  "medium_to_expert": ratio, "candidates": {str(k): v for k, v in scored.items()}},
                "runs": runs}
    ship(run, record["curve"], medium["step"], expert["step"], assets / robot_name / "snapshots")
    write_json_atomic(path, manifest)
    print(f"[{robot_name}] medium: step {medium['step']} ({score(medium):.1f}), expert: step {expert['step']} "
          f"({score(expert):.1f}), ratio {ratio:.2f}; {path}", flush=True)
    return manifest
