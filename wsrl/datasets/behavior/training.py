"""One behaviour run: a stable-baselines3 learner trained on a robot, its actor saved and scored as it goes.

Every ``snapshot_every`` transitions the actor is saved (float16, 150-260 kB) and scored on ``eval_episodes``
episodes with the actions drawn as the data will be collected. The run directory (in the history, committed) holds
the record (``run.json``), the snapshots and the agent without its replay buffer (``model.zip``: networks and
optimizers); the cache holds the replay buffer and RNG states of the same step. Both are saved every few minutes.
Both present: an exact resume. Only the committed part (a new machine): a warm restart with an empty replay
buffer, and the record says so.
"""

from __future__ import annotations

import io
import json
import pickle
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from wsrl.common.files import write_bytes_atomic, write_json_atomic
from wsrl.datasets.behavior.actors import save_snapshot, score_snapshot
from wsrl.datasets.behavior.learners import LEARNERS, make_agent
from wsrl.datasets.behavior.locations import CACHE, HISTORY
from wsrl.datasets.suite import ROBOT

WARM_FILL = 10_000  # transitions collected into a new replay buffer before a warm restart updates again
STOP_WINDOW = 3  # evaluations averaged for --stop-at


def run_dir(robot: str, learner: str, seed: int, runs: Path = HISTORY) -> Path:
    """The folder of one run in ``runs``, named after what sets it apart."""
    return runs / f"{robot}-{learner}-seed{seed}"


@dataclass
class RunFiles:
    """A run's files: the committed part in ``out``, the cached part (replay buffer, RNG states) in ``scratch``."""

    out: Path
    scratch: Path

    def __post_init__(self) -> None:
        self.record, self.snapshots, self.agent = self.out / "run.json", self.out / "snapshots", self.out / "model.zip"
        self.replay, self.rng = self.scratch / "replay.pkl", self.scratch / "rng.pkl"


@dataclass
class Progress:
    """A run's record as it grows, and its wall time over every session (this one began at ``start``)."""

    record: dict
    path: Path
    start: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.earlier = self.record["wall_seconds"]  # the sessions before this one

    def write(self) -> None:
        self.record["wall_seconds"] = self.earlier + time.time() - self.start
        write_json_atomic(self.path, self.record)


def new_record(robot_name: str, learner_name: str, seed: int, snapshot_every: int, eval_episodes: int) -> dict:
    """The record of a run not started yet: its settings and the versions it trains with."""
    return {
        "robot": robot_name, "env_id": ROBOT[robot_name].env_id, "learner": learner_name,
        "algorithm": LEARNERS[learner_name].description, "seed": seed, "snapshot_every": snapshot_every,
        "eval_episodes": eval_episodes, "eval_protocol": "actions drawn as in the data, episodes seeded 10_000 + step",
        "versions": {"stable_baselines3": stable_baselines3.__version__, "gymnasium": gym.__version__,
                     "torch": torch.__version__, "python": platform.python_version()},
        "curve": [], "wall_seconds": 0.0, "restarts": [],
    }


def _saved(save: Callable[[io.BytesIO], None]) -> bytes:
    buf = io.BytesIO()
    save(buf)
    return buf.getvalue()


def save_checkpoint(model: BaseAlgorithm, files: RunFiles, progress: Progress) -> None:
    """The agent, its replay buffer and the RNG states of this step, then the record."""
    agent = _saved(model.save)
    write_bytes_atomic(files.replay, _saved(model.save_replay_buffer))
    write_bytes_atomic(files.rng, pickle.dumps({"step": model.num_timesteps, "python": random.getstate(),
                                                "numpy": np.random.get_state(), "torch": torch.get_rng_state()}))
    # the agent last: interrupted before, the cache is of a later step than the agent, read as a warm restart
    write_bytes_atomic(files.agent, agent)
    progress.record["checkpoint_step"] = model.num_timesteps
    progress.write()


def restore(model: BaseAlgorithm, files: RunFiles, record: dict) -> BaseAlgorithm:
    """The saved agent in place of the new ``model``: exactly, with the replay buffer and RNG states of its step, or
    warm with an empty buffer when the cache lacks them (then ``record`` notes the restart). The curve loses the
    evaluations after the agent's step, to be made again."""
    model = type(model).load(files.agent, env=model.env, device="cpu", action_noise=model.action_noise)
    states = pickle.loads(files.rng.read_bytes()) if files.rng.exists() else {}
    name = record["robot"]
    if files.replay.exists() and states.get("step") == model.num_timesteps:
        model.load_replay_buffer(files.replay)
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        torch.set_rng_state(states["torch"])
        print(f"[{name}] resuming at step {model.num_timesteps} from {files.out}", flush=True)
    else:
        record["restarts"].append({"step": model.num_timesteps, "reason": f"no replay buffer of this step in "
                                   f"{files.scratch}: warm restart from model.zip (networks and optimizers), new "
                                   f"buffer filled for {WARM_FILL} steps before updates resume"})
        model.learning_starts = model.num_timesteps + WARM_FILL
        print(f"[{name}] warm restart at step {model.num_timesteps}: the replay buffer starts empty", flush=True)
    record["curve"] = [e for e in record["curve"] if e["step"] <= model.num_timesteps]
    return model


class SnapshotCallback(BaseCallback):
    """Every ``every`` transitions: the actor saved, scored on ``episodes`` episodes and recorded; every
    ``checkpoint_minutes``: a checkpoint. Stops training once the last evaluations average ``stop_at``."""

    def __init__(self, files: RunFiles, progress: Progress, every: int, episodes: int, stop_at: float | None,
                 checkpoint_minutes: float) -> None:
        super().__init__()
        self.files, self.progress = files, progress
        self.every, self.episodes, self.stop_at = every, episodes, stop_at
        self.checkpoint_seconds = 60 * checkpoint_minutes
        self.learner = progress.record["learner"]
        self.last_save = time.time()

    def _on_step(self) -> bool:
        step = self.num_timesteps
        # the vector step crossed a multiple of ``every``
        if step % self.every < LEARNERS[self.learner].n_envs and not self._snapshot(step - step % self.every):
            return False
        if time.time() - self.last_save > self.checkpoint_seconds:
            save_checkpoint(self.model, self.files, self.progress)
            self.last_save = time.time()
        return True

    def _snapshot(self, step: int) -> bool:
        """Save, score and record the actor at ``step``; False once the run has reached ``stop_at``."""
        record = self.progress.record
        path = self.files.snapshots / f"step_{step:07d}.pt"
        save_snapshot(self.model.actor.state_dict(), self.learner, path)
        entry = {"step": step, "snapshot": path.name,
                 **score_snapshot(path, ROBOT[record["robot"]], self.episodes, 10_000 + step)}
        record["curve"].append(entry)
        record["steps_done"] = step
        self.progress.write()
        print(f"[{record['robot']} {self.learner}] step {step}: normalized {entry['normalized_mean']:.1f} +- "
              f"{entry['normalized_std']:.1f} ({record['wall_seconds'] / 60:.0f} min)", flush=True)
        recent = [e["normalized_mean"] for e in record["curve"][-STOP_WINDOW:]]
        if self.stop_at is not None and len(recent) == STOP_WINDOW and np.mean(recent) >= self.stop_at:
            record["stopped"] = f"mean of the last {STOP_WINDOW} evaluations {np.mean(recent):.1f} >= {self.stop_at}"
            return False
        return True


def train_behavior(robot_name: str, learner_name: str, steps: int, seed: int, stop_at: float | None,
                   snapshot_every: int = 10_000, eval_episodes: int = 10, checkpoint_minutes: float = 3.0,
                   runs: Path = HISTORY, cache: Path = CACHE) -> dict:
    """Train (or resume) one behaviour run until ``steps`` transitions or ``stop_at``; returns its record."""
    torch.set_num_threads(1)  # one process per core
    out = run_dir(robot_name, learner_name, seed, runs)
    files = RunFiles(out, cache / out.name)
    files.snapshots.mkdir(parents=True, exist_ok=True)
    files.scratch.mkdir(parents=True, exist_ok=True)
    record = json.loads(files.record.read_text()) if files.record.exists() else new_record(
        robot_name, learner_name, seed, snapshot_every, eval_episodes)
    record.update(budget_steps=steps, stop_at=stop_at)
    model = make_agent(ROBOT[robot_name], LEARNERS[learner_name], seed, min(steps, 1_000_000))
    if files.agent.exists():
        model = restore(model, files, record)
    elif record["curve"]:
        sys.exit(f"error: {out} records a run but holds no model.zip to continue it: delete {out} to start over")
    progress = Progress(record, files.record)
    if model.num_timesteps < steps and "stopped" not in record:
        callback = SnapshotCallback(files, progress, snapshot_every, eval_episodes, stop_at, checkpoint_minutes)
        model.learn(total_timesteps=steps - model.num_timesteps, callback=callback, reset_num_timesteps=False)
        save_checkpoint(model, files, progress)
    return record
