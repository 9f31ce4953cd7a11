"""Figures drawn headless and written whole or not at all."""

from __future__ import annotations

import io
from pathlib import Path

from wsrl.common.files import write_bytes_atomic


def pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend, imported on first use (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    """Write ``fig`` in the format of ``path``'s suffix, whole or not at all, and close it."""
    path = Path(path)
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=dpi)
        write_bytes_atomic(path, buf.getvalue())
    finally:
        pyplot().close(fig)
