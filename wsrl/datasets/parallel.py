"""Several generated datasets at once: ``python -m wsrl.datasets generate ROBOT QUALITY --jobs N``.

A dataset's rollouts are cut into ``SHARDS`` independently seeded shards (``wsrl.datasets.generate``), so its data
do not depend on how many processes make it. ``make`` spreads ``jobs`` processes over the datasets asked for: up to
``jobs // SHARDS`` datasets at once, each in its own process with ``SHARDS`` rollout processes, each writing its own
dataset (atomically, as ``generate`` always does); medium_expert, the concatenation of medium and expert, comes
once they are made. So ``--jobs N`` makes the same datasets as ``--jobs 1``, byte for byte, on the same machine.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, wait
from functools import partial
from pathlib import Path

from wsrl.datasets.generate import SHARDS, generate, worker_pool
from wsrl.datasets.store import DatasetError, exists_locally
from wsrl.datasets.suite import generated_id

Item = tuple[str, str]  # (robot, quality)
# the 1M-step rollouts first: a medium_replay is shorter (hopper's 380k steps, halfcheetah's 60k)
ROUND_ORDER = {"medium": 0, "expert": 0, "medium_replay": 1}


def plan(wanted: Sequence[Item], size: str, overwrite: bool, keep: bool) -> tuple[list[Item], list[Item], list[str]]:
    """What to make, in two rounds: medium, expert and medium_replay (with medium_expert's missing parts), then
    medium_expert; and the ids kept. An existing dataset is replaced with ``overwrite``, kept with ``keep`` and
    refused otherwise, before anything is made."""
    first: list[Item] = []
    second: list[Item] = []
    kept: list[str] = []
    for robot, quality in dict.fromkeys(wanted):
        made = generated_id(robot, quality, size)
        if exists_locally(made) and not overwrite:
            if not keep:
                raise DatasetError(f"{made} already exists; pass --overwrite to replace it")
            kept.append(made)
            continue
        if quality != "medium_expert":
            first.append((robot, quality))
            continue
        second.append((robot, quality))
        first += [(robot, q) for q in ("medium", "expert") if not exists_locally(generated_id(robot, q, size))]
    return sorted(dict.fromkeys(first), key=lambda item: ROUND_ORDER[item[1]]), second, kept


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def sigterm_interrupts() -> None:
    """SIGTERM unwinds this process as Ctrl-C does: its worker processes are stopped and its scratch directory is
    removed on the way out."""
    signal.signal(signal.SIGTERM, _interrupt)


def _stop(signum: int, frame: object) -> None:
    """SIGTERM in a dataset process: unwind the dataset in progress (``_make_one`` then ends the process), or end
    at once between datasets."""
    if _busy:
        raise KeyboardInterrupt
    os._exit(128 + signum)


_busy = False  # in a dataset process: whether a dataset is being made


def dataset_worker() -> None:
    """A dataset process's signals: Ctrl-C is the parent's to handle; SIGTERM (the parent stopping it) ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)


def _make_one(call: partial) -> str:
    """One dataset in a dataset process. Stopped, it unwinds (its rollout workers stopped, its scratch directory
    removed), then the process ends rather than take the next dataset queued for it."""
    global _busy
    _busy = True
    try:
        return call()
    except KeyboardInterrupt:
        os._exit(128 + signal.SIGTERM)
    finally:
        _busy = False


def _run(calls: list[partial], at_once: int) -> list[str]:
    """Each call's dataset id, ``at_once`` calls in processes side by side (one: here, in turn); the first error
    stops the others and is raised."""
    with worker_pool(min(at_once, len(calls)), dataset_worker) as pool:
        if pool is None:
            return [call() for call in calls]
        futures = [pool.submit(_make_one, call) for call in calls]
        wait(futures, return_when=FIRST_EXCEPTION)
        return [future.result() for future in futures]


def make(wanted: Sequence[Item], size: str = "full", jobs: int = 1, overwrite: bool = False, keep: bool = False,
         seed: int = 0, assets: Path | None = None, steps_per_policy: int | None = None) -> list[str]:
    """Make the generated datasets ``wanted`` ((robot, quality) pairs) with ``jobs`` processes; returns the ids
    written (medium_expert's missing parts included), after saying which existing ones were kept (``keep``).
    ``seed``, ``assets`` and ``steps_per_policy`` are ``generate``'s."""
    if jobs < 1:
        raise DatasetError(f"--jobs {jobs}: use 1 or more processes")
    first, second, kept = plan(wanted, size, overwrite, keep)
    for made in kept:
        print(f"{made}: exists, kept", flush=True)
    common = {"assets": assets, "seed": seed, "steps_per_policy": steps_per_policy}
    rollouts = [partial(generate, robot, quality, size, overwrite, workers=min(SHARDS, jobs), **common)
                for robot, quality in first]
    # medium_expert only reads its parts, made by now, and writes their concatenation
    joins = [partial(generate, robot, quality, size, overwrite, workers=1, **common) for robot, quality in second]
    return _run(rollouts, max(1, jobs // SHARDS)) + _run(joins, jobs)
