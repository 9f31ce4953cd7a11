"""Behaviour policies: train an online RL agent per robot, keep actor snapshots, pick medium and expert.

Four commands (``python -m wsrl.datasets.behavior <command> --help``):

- ``train <robot>`` trains (or resumes) a run of a stable-baselines3 learner on the robot's v5 environment (the
  default learner per robot, ``DEFAULT_LEARNER``, was chosen by pilot runs, see the README), into the history
  (``--runs``) and the cache (``--cache``); it stops at ``--steps`` or once the mean of the last three evaluations
  reaches ``--stop-at`` (``wsrl.datasets.behavior.training``).
- ``choose <robot> <run>`` picks medium and expert from a run of the history (the expert from another with
  ``--expert-run``) and ships them into the package's assets (``--out``; ``wsrl.datasets.behavior.selection``).
- ``pilot <robot>`` measures each candidate learner's CPU cost.
- ``plot`` draws the training curves of the shipped runs (``--out``) or of every run in ``--runs``.

A run or folder of runs that is not there ends in one line on stderr (naming the command that restores the history
when it is out of the working tree) and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsrl.datasets.behavior.learners import DEFAULT_LEARNER, LEARNERS, pilot
from wsrl.datasets.behavior.locations import ASSETS, CACHE, HISTORY, missing
from wsrl.datasets.behavior.plots import plot_curves
from wsrl.datasets.behavior.selection import choose
from wsrl.datasets.behavior.training import train_behavior
from wsrl.datasets.suite import ROBOTS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wsrl.datasets.behavior", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or resume) a behaviour run")
    t.add_argument("robot", choices=ROBOTS)
    t.add_argument("--learner", choices=LEARNERS, help="default: the robot's in DEFAULT_LEARNER")
    t.add_argument("--steps", type=int, default=2_000_000, help="environment transitions at most")
    t.add_argument("--stop-at", type=float, help="stop once the last 3 evaluations average this normalized score")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--snapshot-every", type=int, default=10_000, help="transitions between actor snapshots")
    t.add_argument("--eval-episodes", type=int, default=10, help="episodes per snapshot evaluation")
    t.add_argument("--checkpoint-minutes", type=float, default=3.0, help="minutes between resumable checkpoints")
    t.add_argument("--runs", type=Path, default=HISTORY, help="run records, snapshots and agents (committed)")
    t.add_argument("--cache", type=Path, default=CACHE, help="replay buffers and RNG states (not committed)")
    c = sub.add_parser("choose", help="pick medium and expert from a run and ship them")
    c.add_argument("robot", choices=ROBOTS)
    c.add_argument("run", type=Path, help="the run's directory (in --runs of train)")
    c.add_argument("--episodes", type=int, default=50, help="episodes per candidate")
    c.add_argument("--expert-run", type=Path, help="take the expert from this run instead (D4RL trained its "
                   "experts apart); medium and medium-replay stay the run's")
    c.add_argument("--note", default="", help="why this run is kept, for the manifest")
    c.add_argument("--out", type=Path, default=ASSETS, help="the shipped snapshots and manifests")
    q = sub.add_parser("pilot", help="CPU cost per 1000 transitions of candidate learners, to choose one")
    q.add_argument("robot", choices=ROBOTS)
    q.add_argument("--learners", default="sac,tqc,td3,sac1", help="comma-separated names from LEARNERS")
    q.add_argument("--transitions", type=int, default=2000, help="timed transitions per learner")
    g = sub.add_parser("plot", help="draw the behaviour curves")
    g.add_argument("--png", type=Path, default=Path("behavior_curves.png"))
    g.add_argument("--out", type=Path, default=ASSETS, help="the shipped manifests to draw")
    g.add_argument("--runs", type=Path, help="draw every run recorded here instead, e.g. experiments/behavior")
    return p


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    if a.command == "pilot":
        pilot(a.robot, a.learners.split(","), a.transitions)
    elif a.command == "plot":
        if a.runs is not None and not a.runs.is_dir():
            sys.exit(missing(a.runs, "is not a folder of runs"))
        plot_curves(a.png, a.out, a.runs)
    elif a.command == "choose":
        for run in (a.run, a.expert_run) if a.expert_run else (a.run,):
            if not (run / "run.json").is_file():
                sys.exit(missing(run, "holds no run.json: pass a directory made by `train`"))
        choose(a.robot, a.run, a.episodes, a.note, a.out, a.expert_run)
    else:
        train_behavior(a.robot, a.learner or DEFAULT_LEARNER[a.robot], a.steps, a.seed, a.stop_at,
                       a.snapshot_every, a.eval_episodes, a.checkpoint_minutes, a.runs, a.cache)


if __name__ == "__main__":
    main()
