"""The launch's one deadline (``hydra.launcher.deadline_s``), which training, evaluation and writing all end before.

A group trains while the time left covers another step and saving its checkpoint (``TrainingClock``): it projects
its finish from its measured step time, says once whether it can finish, and otherwise trains until it must save,
saves and stops, and the same command resumes it. Its evaluation checks the clock at every step of the episodes
(``EvaluationClock``) and stops where the time left no longer covers writing the members' files; the group
checkpoint then holds the last step and the next call only evaluates. What a write costs is estimated from the
bytes it writes at ``WRITE_RATE``; ``MARGIN_S`` is kept back from every decision. The media extras of a run
(``eval.video``, ``eval.conditioning_points``, off by default) are not bounded. Each group's time is recorded in
``<sweep dir>/.stacked/<group>.json`` (``record``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from wsrl.common.files import write_json_atomic

log = logging.getLogger("wsrl")
WRITE_RATE = 100e6  # bytes per second assumed for writing a checkpoint (a slow local disk)
MARGIN_S = 3.0  # seconds kept back from every decision: a late step, the logs, the process's exit
KEY = "hydra.launcher.deadline_s"


class OutOfTime(Exception):
    """The deadline leaves no time for the work that was to start or go on."""


@dataclass(frozen=True)
class Deadline:
    """When the launch must be done: a ``time.time()``, or None for no deadline."""

    end: float | None

    @classmethod
    def after(cls, seconds: float, start: float) -> Deadline:
        return cls(start + seconds if seconds > 0 else None)

    def left(self) -> float:
        return math.inf if self.end is None else self.end - time.time()


def write_seconds(tensors: list[torch.Tensor], copies: int = 1) -> float:
    """The estimated time to write ``copies`` of ``tensors`` (a checkpoint of parameters and Adam's two moments:
    3), one second of overhead included."""
    return 1.0 + copies * sum(t.numel() * t.element_size() for t in tensors) / WRITE_RATE


class TrainingClock(L.Callback):
    """A group's measured step time (the first step, which warms up, left out) and the stop rule of its training:
    ``reason()`` names the deadline once the time left no longer covers two more steps and saving (``save_s``)."""

    def __init__(self, deadline: Deadline, save_s: float, name: str) -> None:
        self.deadline, self.save_s, self.name = deadline, save_s, name
        self.first: tuple[float, int] | None = None  # (time, step) at the end of the first step of this process
        self.step_s: float | None = None
        self.said = False

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        now, step = time.time(), trainer.global_step
        if self.first is None:
            self.first = (now, step)
            return
        self.step_s = (now - self.first[0]) / (step - self.first[1])
        if not self.said and step - self.first[1] >= 10:
            self.said = True
            self.project(trainer.max_steps - step)

    def project(self, steps: int) -> None:
        """Say when training ends at the measured step time, and whether that is before the deadline."""
        need, left = steps * self.step_s + self.save_s + MARGIN_S, self.deadline.left()
        if need <= left:
            log.info("group %s: %.1f ms per step, trained and saved in about %.0f s, %.0f s before the deadline",
                     self.name, 1e3 * self.step_s, need - MARGIN_S, left - need + MARGIN_S)
        else:
            log.warning("group %s cannot finish before the deadline: %d steps to go at %.1f ms need %.0f s, %.0f s "
                        "are left; it trains until it must save its checkpoint (about %.0f s), saves and stops, and "
                        "the same command resumes it", self.name, steps, 1e3 * self.step_s, need, left, self.save_s)

    def reason(self) -> str | None:
        left = self.deadline.left()
        if left < self.save_s + 2 * (self.step_s or 0.0) + MARGIN_S:
            return f"the deadline ({KEY}: {left:.0f} s left, saving takes about {self.save_s:.0f} s)"
        return None


class EvaluationClock:
    """Called at every step of a group's evaluation episodes: raises ``OutOfTime`` once the time left no longer
    covers writing the members' files (``write_s``), saying how far the evaluation got."""

    def __init__(self, deadline: Deadline, write_s: float) -> None:
        self.deadline, self.write_s = deadline, write_s
        self.start, self.steps = time.time(), 0

    def enough(self) -> None:
        """Raise ``OutOfTime`` if the time left no longer covers the members' files."""
        if self.deadline.left() < self.write_s + MARGIN_S:
            got = (f", {self.steps} episode step{'s' * (self.steps != 1)} in, after {time.time() - self.start:.0f} s"
                   if self.steps else "")
            raise OutOfTime(f"the deadline ({KEY}) during the final evaluation{got}: too little time left to finish it "
                            "and write the members' files")

    def __call__(self) -> None:
        """Before each step of the episodes."""
        self.enough()
        self.steps += 1


def precision(trainer: dict) -> str:
    """The training precision in a word: bf16 (autocast), TF32 or FP32 (float32 matmuls)."""
    if trainer["autocast"] != "none":
        return str(trainer["autocast"])
    return {"highest": "FP32", "high": "TF32"}.get(trainer["matmul_precision"], trainer["matmul_precision"])


def record(path: Path, name: str, members: int, trainer: dict, device: torch.device, clock: TrainingClock,
           reached: int, seconds: dict[str, float], status: str) -> None:
    """The group's time, ``<sweep dir>/.stacked/<group>.json``: the card, precision, N, the measured time per step,
    the seconds of each phase, how far it got, how it ended and how long before the deadline."""
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    write_json_atomic(path, {
        "group": name, "date": time.strftime("%Y-%m-%d"), "card": card, "precision": precision(trainer),
        "members": members, "batch_size": trainer["batch_size"], "steps": reached, "max_steps": trainer["max_steps"],
        "ms_per_step": None if clock.step_s is None else round(1e3 * clock.step_s, 3),
        "seconds": {k: round(v, 1) for k, v in seconds.items()}, "status": status,
        "left_s": None if clock.deadline.end is None else round(clock.deadline.left(), 1)})
