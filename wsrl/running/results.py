"""``results.json``: what one run leaves for the report, as a named record written in one place and read back
through the same type (single runs and stacked members alike)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wsrl.common.files import write_json_atomic
from wsrl.running.damaged import DamagedFile, read_json, set_aside

if TYPE_CHECKING:
    from wsrl.core.config import ResolvedEnv

log = logging.getLogger("wsrl")
RESULTS = "results.json"
VERSION = 2  # 1: the files written before this record had a name (no ``version`` field); they read the same


@dataclass
class RunResults:
    """One run's results. The JSON file holds these fields by name; ``video``, ``conditioning`` and ``stacked`` only
    when the run made them."""

    env: str  # the chosen options' names: env.name, method.name, sampler.name, policy.name
    method: str
    sampler: str
    policy: str
    seed: int  # the run's seed
    steps: int  # gradient steps taken
    dataset_id: str  # the dataset trained on, resolved
    eval_env_id: str  # the evaluation environment, resolved
    ref_min_score: float  # the reference returns the normalized scores use (0 and 100)
    ref_max_score: float
    target_return: float | None  # RvS-R's evaluation target (raw return); None for BC
    weights: dict | None  # the sample weights' diagnostics (wsrl.core.diagnostics.weight_diagnostics); None: uniform
    normalized_score: dict  # {mean, std} of the final evaluation's normalized returns over episodes
    returns: list[float]  # the final evaluation's raw return of each episode
    lengths: list[int]  # and its length
    eval_history: list[dict]  # [{step, mean, std}, ...]: each periodic evaluation and the final one
    started_at_steps: list[int]  # the step each process of the run started from ([0]: never interrupted)
    wall_seconds: float  # the last process's wall time, from building the run to the end of the evaluation
    device: str  # where it trained and was evaluated
    config: dict  # the full composed config, as plain data
    dataset_hash: str | None = None  # the dataset's content hash (wsrl.datasets.store.dataset_hash), so that the
    # report pools only runs on the same data; None in files older than it
    precision: dict | None = None  # {matmul, autocast}: the training precision (None in files older than it)
    video: dict | None = None  # eval.video=true: {path, frames, fps, episode_return, seconds}
    conditioning: dict | None = None  # eval.conditioning_points (RvS-R): the conditioning curve's numbers
    stacked: dict | None = None  # a stacked launcher's member: {group, size, slot, rng, precision}
    version: int = field(default=VERSION)  # this record's format

    @classmethod
    def of_run(cls, plain: dict, env: ResolvedEnv, dataset_hash: str | None, steps: int, target_return: float | None,
               weights: dict | None, final: dict, history: list[dict], starts: list[int], seconds: float,
               device: object, media: dict) -> RunResults:
        """The record of a finished run: its plain config, resolved env and its dataset's content hash, final
        evaluation (``evaluate``'s dict), evaluation history, process starts and the media
        ``wsrl.evaluation.media.final_media`` made."""
        return cls(
            env=plain["env"]["name"], method=plain["method"]["name"], sampler=plain["sampler"]["name"],
            policy=plain["policy"]["name"], seed=plain["seed"], steps=steps, dataset_id=env.dataset_id,
            dataset_hash=dataset_hash,
            eval_env_id=env.eval_env_id, ref_min_score=env.ref_min_score, ref_max_score=env.ref_max_score,
            target_return=target_return, weights=weights, normalized_score=final["normalized_score"],
            returns=final["returns"], lengths=final["lengths"],
            eval_history=[*history, {"step": steps, **final["normalized_score"]}], started_at_steps=starts,
            wall_seconds=seconds, device=str(device), config=plain,
            precision={"matmul": plain["trainer"]["matmul_precision"], "autocast": plain["trainer"]["autocast"]},
            **media)

    def to_json(self) -> dict:
        """The file's content: every field, the optional blocks only when present."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if v is not None or k not in OPTIONAL}

    @classmethod
    def from_json(cls, data: dict) -> RunResults:
        """A record from a file of any version (keys this version does not know are left out)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"version": 1, **{k: v for k, v in data.items() if k in names}})


OPTIONAL = ("precision", "video", "conditioning", "stacked")


def read_results(path: Path) -> RunResults:
    """``results.json`` at ``path`` as a record; ``DamagedFile`` names a file that is not one (empty, cut, garbage,
    fields missing)."""
    data = read_json(path)
    try:
        return RunResults.from_json(data)
    except TypeError as err:  # required fields missing
        raise DamagedFile(f"{path} cannot be read (not a run's results: {err})") from err


def write_results(run_dir: Path, results: RunResults) -> Path:
    """Write ``results.json`` (whole or not at all) and return its path."""
    path = run_dir / RESULTS
    write_json_atomic(path, results.to_json())
    return path


def finished_results(run_dir: Path, max_steps: int) -> RunResults | None:
    """The results of a run that already reached ``max_steps`` in ``run_dir``, or None. A damaged ``results.json``
    is no finished run: it is set aside (``results.json.damaged``) and named in one logged line, and the run goes
    on as unfinished: evaluated again from its final checkpoint, or trained on from its last."""
    path = run_dir / RESULTS
    if not path.exists():
        return None
    try:
        done = read_results(path)
    except DamagedFile as err:
        log.warning("%s: kept as %s; the run is evaluated again from its final checkpoint, or trained on from its "
                    "last", err, set_aside(path).name)
        return None
    return done if done.steps >= max_steps else None
