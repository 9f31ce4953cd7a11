"""Where behaviour policies live: shipped in the package, in the training history, in a local cache."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "behavior"
"""The shipped behaviour policies, one folder per robot: ``manifest.json`` (every run tried, the chosen medium and
expert with their scores) and the snapshots generation needs. ``choose`` writes it (``--out``), ``plot`` reads it
(``--out``) and dataset generation reads it."""

HISTORY = Path(__file__).resolve().parents[3] / "experiments" / "behavior"
"""The behaviour-training history, one folder per run (``<robot>-<learner>-seed<seed>``: record, every snapshot,
agent). It is committed at commit 21d7649 (the tag ``behavior-history`` where tags were fetched; a fresh clone has
none) but kept out of the working tree (about 50 MB), so ``RESTORE`` brings it back. ``train`` writes it
(``--runs``), ``choose`` and ``plot --runs`` read it."""

RESTORE = "git checkout 21d7649 -- experiments/behavior"

CACHE = Path(os.environ.get("WSRL_CACHE", Path.home() / ".cache" / "wsrl")) / "behavior"
"""Replay buffers and RNG states of the runs in training (200-300 MB each), never committed (``train --cache``)."""


def missing(path: Path, problem: str) -> str:
    """The one-line error for a run or folder of runs that is not there, naming ``RESTORE`` while the history is
    out of the working tree (the likely reason)."""
    hint = "" if HISTORY.is_dir() else f"; the behaviour-training history is not in the working tree: {RESTORE}"
    return f"error: {path} {problem}{hint}"
