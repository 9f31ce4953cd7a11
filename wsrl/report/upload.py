"""A report's tables and figures as one W&B run (``job_type="report"``), offline unless ``WANDB_MODE`` says
otherwise, like the training runs it sits beside."""

from __future__ import annotations

import os
from pathlib import Path

from wsrl.report import tables


def log_report(project: str, group: str, name: str, out: Path, logged: dict[str, list[dict]],
               figures: list[Path]) -> None:
    """Log each non-empty list of rows of ``logged`` as a W&B table under its key and each PNG of ``figures`` as an
    image under ``figures/<stem>`` (apart, as a table and its figure share a stem), in one run ``name`` of
    ``project`` and ``group`` whose files go below ``out``."""
    import wandb

    run = wandb.init(project=project, group=group, name=name, job_type="report",
                     mode=os.environ.get("WANDB_MODE", "offline"), dir=str(out))
    shown = {key: wandb.Table(columns=tables.keys(rows), data=[[r.get(k) for k in tables.keys(rows)] for r in rows])
             for key, rows in logged.items() if rows}
    run.log(shown | {f"figures/{png.stem}": wandb.Image(str(png)) for png in figures})
    run.finish()
