"""Choosing a run's medium and expert snapshots and shipping them, with the manifest, into the package's assets.

Candidate snapshots are re-scored on many episodes (50 by default): expert is the best of the ``CANDIDATES`` best
by training-time score, medium the earlier snapshot whose score is nearest D4RL's medium level (``Robot.d4rl_medium``)
among the first ones that reach it (``pick_medium``). Scores a previous ``choose`` recorded for the same
snapshots are reused, not computed again. The manifest lists every run tried and the chosen figures with their
spread and episode count; the snapshots shipped are those the datasets need: all up to medium (medium-replay
replays them) and the expert.

The expert may come from another run (``expert_run``), as D4RL trained its experts apart from its medium learners:
a learner fast enough to reach the expert level reaches medium so early that its medium-replay is small and low.
The manifest then stays the medium run's record and holds the expert's run under ``expert_run`` (its record,
scores and ``snapshot_dir``, the folder under ``snapshots/`` that its expert snapshot is shipped to).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from wsrl.common.files import write_json_atomic
from wsrl.datasets.behavior.actors import score_snapshot
from wsrl.datasets.behavior.locations import ASSETS
from wsrl.datasets.suite import ROBOT

MEDIUM_TOLERANCE = 5.0  # points from D4RL's medium level that a medium may lie (issue 30's bound), on many episodes
MEDIUM_AIM = 2.5  # points from it that end the search: a medium policy's 50-episode score is itself 2-4 points off
# its mean (its episodes spread by 15-30), so a snapshot at the tolerance's edge would make a dataset past it
CANDIDATES = 5  # snapshots re-scored on many episodes for expert, and per window for medium
MEDIUM_WINDOWS = 4  # windows of CANDIDATES snapshots re-scored for medium at most


class Rescored:
    """A run's snapshots re-scored on ``episodes`` episodes (seeded ``20_000 + step``), each at most once."""

    def __init__(self, robot_name: str, run: Path, episodes: int, known: dict[int, dict] | None = None) -> None:
        self.robot_name, self.run, self.episodes = robot_name, run, episodes
        self.scores: dict[int, dict] = dict(known or {})  # step -> score_snapshot's figures

    def __call__(self, entry: dict) -> float:
        step = entry["step"]
        if step not in self.scores:
            self.scores[step] = score_snapshot(self.run / "snapshots" / entry["snapshot"], ROBOT[self.robot_name],
                                               self.episodes, 20_000 + step)
            print(f"[{self.robot_name}] step {step}: {self.scores[step]['normalized_mean']:.1f} "
                  f"over {self.episodes} episodes", flush=True)
        return self.scores[step]["normalized_mean"]


def pick_medium(curve: list[dict], expert_step: int, score: Callable[[dict], float], target: float) -> dict:
    """The medium entry of a training curve: the snapshots before the expert whose training-time score reaches
    ``target - MEDIUM_TOLERANCE`` are re-scored in step order, ``CANDIDATES`` at a time, until a window holds one
    within ``MEDIUM_AIM`` of ``target`` (at most ``MEDIUM_WINDOWS``); medium is the one nearest ``target`` of
    those re-scored. In step order, because D4RL stopped its medium learner once it reached the level and
    medium-replay is the learner's data up to medium: a later snapshot at the same level would make medium-replay
    larger and richer in good episodes than D4RL's. By windows, because the training-time scores (10 episodes,
    the best of noisy ones) overrate a snapshot that still falls now and then. Where no snapshot reaches it, the
    ``CANDIDATES`` nearest by training-time score are re-scored."""
    before = [e for e in curve if e["step"] < expert_step]
    reached = [e for e in before if e["normalized_mean"] >= target - MEDIUM_TOLERANCE]
    scored: list[dict] = []
    for start in range(0, min(len(reached), CANDIDATES * MEDIUM_WINDOWS), CANDIDATES):
        scored += reached[start:start + CANDIDATES]
        if any(abs(score(e) - target) <= MEDIUM_AIM for e in scored):
            break
    scored = scored or sorted(before, key=lambda e: abs(e["normalized_mean"] - target))[:CANDIDATES]
    return min(scored, key=lambda e: abs(score(e) - target))


def pick_expert(curve: list[dict], score: Callable[[dict], float]) -> dict:
    """The expert entry of a training curve: the best by ``score`` of the ``CANDIDATES`` best by training-time
    score."""
    return max(sorted(curve, key=lambda e: e["normalized_mean"], reverse=True)[:CANDIDATES], key=score)


def recorded_scores(manifest: dict, curve: list[dict], episodes: int) -> dict[int, dict]:
    """The scores on ``episodes`` episodes that a shipped manifest recorded for snapshots of ``curve``: those whose
    curve entry (step, file, training-time score) the manifest (or its expert's run) has too, so the same snapshot
    scored the same way."""
    known = {}
    for record, recorded in ((manifest, manifest.get("chosen_scores", {}).get("candidates", {})),
                             (manifest.get("expert_run", {}), manifest.get("expert_run", {}).get("candidates", {}))):
        same = {e["step"] for e in record.get("curve", []) if e in curve}
        known |= {int(k): v for k, v in recorded.items() if int(k) in same and v["episodes"] == episodes}
    return known


def tried_runs(manifest: dict) -> list[dict]:
    """The runs a shipped manifest lists; one from before run records (the first suite) is itself one run."""
    if not manifest or "runs" in manifest:
        return manifest.get("runs", [])
    return [{"run": f"first suite: {manifest['robot']}-{manifest.get('learner', 'sac')}-seed{manifest['seed']}",
             "learner": manifest.get("learner", "sac"), "seed": manifest["seed"],
             "steps_done": manifest.get("steps_done"), "wall_seconds": manifest.get("wall_seconds"),
             "best_normalized": max(e["normalized_mean"] for e in manifest["curve"]),
             "note": "replaced: " + manifest.get("note", manifest.get("algorithm", ""))}]


def runs_with(previous: dict, kept: dict[Path, dict], note: str) -> list[dict]:
    """The runs of the ``previous`` manifest with the ``kept`` runs (directory -> record) added (or replaced) as
    the ones kept."""
    runs = [r for r in tried_runs(previous) if r["run"] not in {run.name for run in kept}]
    for run, record in kept.items():
        runs.append({"run": run.name, "learner": record["learner"], "seed": record["seed"],
                     "steps_done": record.get("steps_done"), "wall_seconds": record["wall_seconds"],
                     "best_normalized": max(e["normalized_mean"] for e in record["curve"]), "note": note})
    for r in runs:
        r["kept"] = r["run"] in {run.name for run in kept}
    return runs


def ship(files: dict[Path, str], out: Path) -> None:
    """Replace ``out`` with the snapshot ``files`` (source -> path under ``out``), all at once."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for source, name in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, tmp / name)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


EXPERT_DIR = "expert"  # where an expert from another run is shipped, under snapshots/


def choose(robot_name: str, run: Path, episodes: int = 50, note: str = "", assets: Path = ASSETS,
           expert_run: Path | None = None) -> dict:
    """Score candidate snapshots of ``run`` (and ``expert_run``) on ``episodes`` episodes, pick medium (from
    ``run``) and expert (from ``expert_run`` if given, else from ``run``), ship them."""
    record = json.loads((run / "run.json").read_text())
    path = assets / robot_name / "manifest.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    score = Rescored(robot_name, run, episodes, recorded_scores(previous, record["curve"], episodes))
    target = ROBOT[robot_name].d4rl_medium
    snaps = run / "snapshots"
    if expert_run is None:
        expert = pick_expert(record["curve"], score)
        medium = pick_medium(record["curve"], expert["step"], score, target)
        expert_score, files = score, {snaps / expert["snapshot"]: expert["snapshot"]}
    else:
        expert_record = json.loads((expert_run / "run.json").read_text())
        expert_score = Rescored(robot_name, expert_run, episodes,
                                recorded_scores(previous, expert_record["curve"], episodes))
        expert = pick_expert(expert_record["curve"], expert_score)
        medium = pick_medium(record["curve"], math.inf, score, target)  # no later expert bounds this run
        files = {expert_run / "snapshots" / expert["snapshot"]: f"{EXPERT_DIR}/{expert['snapshot']}"}
    files |= {snaps / e["snapshot"]: e["snapshot"] for e in record["curve"] if e["step"] <= medium["step"]}
    medium_score, best_score = score(medium), expert_score(expert)
    if abs(medium_score - target) > MEDIUM_TOLERANCE:
        print(f"warning: medium scores {medium_score:.1f}, more than {MEDIUM_TOLERANCE:g} from D4RL's {target:g}",
              file=sys.stderr)
    manifest = {**record, "chosen": {"medium": medium["step"], "expert": expert["step"]},
                "chosen_scores": {"medium": score.scores[medium["step"]], "expert": expert_score.scores[expert["step"]],
                                  "medium_target": target, "medium_to_expert": medium_score / best_score,
                                  "candidates": {str(k): v for k, v in sorted(score.scores.items())}},
                "runs": runs_with(previous, {run: record} | ({expert_run: expert_record} if expert_run else {}),
                                  note)}
    if expert_run is not None:
        manifest["expert_run"] = {**expert_record, "run": expert_run.name, "snapshot_dir": EXPERT_DIR,
                                  "candidates": {str(k): v for k, v in sorted(expert_score.scores.items())}}
    ship(files, assets / robot_name / "snapshots")
    write_json_atomic(path, manifest)
    print(f"[{robot_name}] medium: step {medium['step']} ({medium_score:.1f}), expert: step {expert['step']} "
          f"({best_score:.1f}{f', {expert_run.name}' if expert_run else ''}), ratio "
          f"{medium_score / best_score:.2f}; {path}", flush=True)
    return manifest
