"""Damaged files of a run: named in one line, set aside rather than deleted, and costing at most their own work.

This project's writers are atomic (``wsrl.common.files``), so its own crash leaves no damaged file; a cut copy, a
full disk elsewhere or a user's hand can.

- ``read_json``: a JSON record, or ``DamagedFile`` naming the file and what is wrong with it (empty, cut, garbage).
- ``set_aside``: rename a damaged file to ``<name>.damaged`` (``.damaged.1``, ... beside earlier ones); never delete.
- ``resume_checkpoint``: the checkpoint a run or a stacked group resumes from: the last one, or, when it cannot be
  read, the newest readable fallback (the damaged ones set aside, one line logged). When none can be read,
  ``DamagedFile`` names them and how to start over, before anything of the run starts.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterable
from pathlib import Path

from wsrl.common.files import os_reason

log = logging.getLogger("wsrl")


class DamagedFile(ValueError):
    """A file of a run cannot be read; the message names it, says what is wrong and, where it ends the command,
    how to go on."""


def read_json(path: Path) -> dict:
    """The JSON object in ``path``; ``DamagedFile`` names the file and why it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise DamagedFile(f"{path} cannot be read ({os_reason(err)})") from err
    try:
        record = json.loads(data)
    except UnicodeDecodeError as err:
        raise DamagedFile(f"{path} cannot be read (not text: garbage bytes at byte {err.start})") from err
    except json.JSONDecodeError as err:
        why = "empty file" if not data.strip() else f"not whole JSON: {err.msg}, line {err.lineno} column {err.colno}"
        raise DamagedFile(f"{path} cannot be read ({why})") from err
    if not isinstance(record, dict):
        raise DamagedFile(f"{path} cannot be read (a JSON {type(record).__name__}, not an object)")
    return record


def set_aside(path: Path) -> Path:
    """Rename the damaged file ``path`` to ``<name>.damaged``, or ``.damaged.N`` where earlier ones lie, and return
    the new path: kept for whoever wants to look, out of the way of the file that replaces it."""
    aside, n = path.with_name(f"{path.name}.damaged"), 0
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged.{n}")
    path.rename(aside)
    return aside


def checkpoint_step(path: Path) -> int:
    """The step of the Lightning checkpoint ``path``, read as a resumption reads it (``torch.load``, weights_only at
    torch's default as Lightning leaves it) but with its tensors mapped rather than copied: a stacked group's
    checkpoint holds gigabytes at the paper's size. ``DamagedFile`` names the file and why it cannot be read."""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", mmap=True)["global_step"])
    except Exception as err:  # unpickling damaged bytes raises nearly anything: EOFError, KeyError, OSError...
        size = path.stat().st_size if path.exists() else 0
        if size == 0:
            why = "empty file"
        elif not zipfile.is_zipfile(path):
            why = f"{size} bytes, not a whole checkpoint: cut short, or not one"
        else:
            why = f"a damaged checkpoint: {type(err).__name__}: {str(err).split('. ')[0]}"
        raise DamagedFile(f"{path} cannot be read ({why})") from err


def resume_checkpoint(last: Path, fallbacks: Iterable[Path], start_over: str) -> Path | None:
    """The checkpoint to resume from: ``last`` where it can be read; where it cannot, the first of ``fallbacks``
    (newest first) that can, the damaged ones set aside (``set_aside``) and named in one logged line. None where
    ``last`` does not exist (nothing to resume). None readable: ``DamagedFile`` names every file and ends with
    ``start_over``, the way to start over."""
    if not last.exists():
        return None
    damaged: list[tuple[Path, DamagedFile]] = []
    for path in [last, *fallbacks]:
        try:
            step = checkpoint_step(path)
        except DamagedFile as err:
            damaged.append((path, err))
            continue
        if damaged:
            kept = ", ".join(set_aside(bad).name for bad, _ in damaged)
            log.warning("%s: kept as %s; resuming from %s (step %d)", "; ".join(str(err) for _, err in damaged),
                        kept, path, step)
        return path
    raise DamagedFile(f"nothing to resume from: {'; '.join(str(err) for _, err in damaged)}; {start_over}")
