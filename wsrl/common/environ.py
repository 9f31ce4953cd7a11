"""Environment variables set for a stretch of code only: what a library reads from ``os.environ`` is given to it
there, and the process (and every child it starts later) keeps the environment it had. Imports nothing from wsrl.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def scoped_environ(*keep: str, **values: str | None) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the duration (None: unset); on the way out, put the keys of ``values``
    and ``keep`` back as they were, whether the body or a library it called wrote them or not."""
    keys = set(keep) | set(values)
    before = {k: os.environ.get(k) for k in keys}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
