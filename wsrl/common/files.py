"""Whole-or-absent file writes: a temporary file beside the target, synced, then renamed over it.

A failed write (disk full, read-only directory) removes the temporary file, keeps the previous file and raises
``WriteError`` naming the path and the reason. The bottom layer: run directories, behaviour records and every
other writer of the project use it; it imports nothing from wsrl.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


class WriteError(RuntimeError):
    """A file could not be written; the message names the path and the operating system's reason."""


def os_reason(err: OSError) -> str:
    """The operating system's reason for a failed file operation, in a few words."""
    return err.strerror or str(err) or type(err).__name__


def _write_fully(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole or not at all; WriteError names the path and the reason."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_fully(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise WriteError(f"cannot write {path}: {os_reason(err)}; the previous file (if any) is kept") from err
        raise


def write_json_atomic(path: Path, data: dict) -> None:
    """``data`` as indented JSON, whole or not at all."""
    write_bytes_atomic(path, json.dumps(data, indent=1).encode())


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` as UTF-8, whole or not at all."""
    write_bytes_atomic(path, text.encode())



@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (an encoder, a library's ``save``): renamed
    over ``path`` when the block succeeds, removed when it fails, so ``path`` is whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
