"""What a stacked member leaves in its run directory: what a single run leaves there.

``config.yaml`` and ``run_config.json`` (``wsrl.running.rundir.record_run``), ``returns.png``, the metrics CSV
(``csv/metrics.csv``) and the W&B run of ``wsrl.running.build.make_loggers``, ``checkpoints/last.ckpt`` (a
``WeightedBC`` Lightning checkpoint of the member's own, un-padded weights, which
``wsrl.evaluation.scores.load_checkpoint`` and ``python -m wsrl.evaluation`` load) and ``results.json``
(``wsrl.running.results.RunResults`` plus a ``stacked`` block), or ``failed.json`` for a failed member
(``wsrl.running.rundir.write_failed``).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from wsrl.common.files import write_bytes_atomic
from wsrl.evaluation import media
from wsrl.running.rundir import AtomicCheckpointIO
from wsrl.stacked.group import Member


def log_dataset(member: Member, run_dir: Path, loggers: list, plotted: dict[int, Path]) -> None:
    """The dataset's return plot and the weight statistics, as a single run records them at its start.
    ``plotted``: the plots made so far by data module; members sharing one get a copy (a plot takes ~0.3 s)."""
    data = member.data
    if data.weight_stats is not None:
        for logger in loggers:
            logger.log_metrics({f"data/weight_{k}": v for k, v in data.weight_stats.items() if v is not None}, step=0)
    if id(data) not in plotted:
        plotted[id(data)] = media.log_dataset(loggers, data, member.env, run_dir)
        return
    write_bytes_atomic(run_dir / "returns.png", plotted[id(data)].read_bytes())
    if (wb := media.wandb_logger(loggers)) is not None:
        wb.log_image("data/returns", [str(run_dir / "returns.png")], step=0)


def close_loggers(loggers: list, status: str) -> None:
    """Finalize a member's loggers with ``status`` ("success" or "failed") and finish its W&B run, one of several
    open in this process (the single run finishes the process's one run with ``wandb.finish``)."""
    for logger in loggers:
        logger.finalize(status)
    if (wb := media.wandb_logger(loggers)) is not None:
        wb.experiment.finish(exit_code=0 if status == "success" else 1)


def write_checkpoint(member: Member, step: int, path: Path) -> None:
    """A Lightning checkpoint of the member's module (evaluation loads it; resuming it as a single run is not
    supported: the optimizer state lives in the group checkpoint)."""
    module = member.module
    checkpoint = {"epoch": 0, "global_step": step, "pytorch-lightning_version": L.__version__,
                  "state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                  "torch_rng": torch.get_rng_state(), "loops": {}, "optimizer_states": [], "lr_schedulers": [],
                  "callbacks": {}}
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)
