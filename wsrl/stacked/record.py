"""What a stacked member leaves in its run directory: what a single run leaves there.

``config.yaml`` and ``run_config.json`` (``wsrl.running.rundir.record_run``), ``returns.png``, the metrics CSV
(``csv/metrics.csv``), ``checkpoints/last.ckpt`` (a ``WeightedBC`` Lightning checkpoint of the member's own,
un-padded weights, which ``wsrl.evaluation.scores.load_checkpoint`` and ``python -m wsrl.evaluation`` load) and
``results.json`` (``wsrl.train.run_results`` plus a ``stacked`` block), or ``failed.json``
for a failed member (``wsrl.running.rundir.write_failed``).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from wsrl.common.files import write_bytes_atomic
from wsrl.evaluation import media
from wsrl.running.rundir import AtomicCheckpointIO
from wsrl.stacked.group import Member


def csv_logger(run_dir: Path) -> L.pytorch.loggers.CSVLogger:
    """The member's metrics CSV, where a single run's Lightning CSVLogger writes it."""
    return L.pytorch.loggers.CSVLogger(run_dir, name="csv", version="")


def log_dataset(member: Member, run_dir: Path, logger: L.pytorch.loggers.CSVLogger, plotted: dict[int, Path]
                ) -> None:
    """The dataset's return plot and the LDS weight statistics, as a single run records them at its start.
    ``plotted``: the plots made so far by data module; members sharing one get a copy (a plot takes ~0.3 s)."""
    data = member.data
    if data.weight_stats is not None:
        logger.log_metrics({f"data/weight_{k}": v for k, v in data.weight_stats.items()}, step=0)
    if id(data) in plotted:
        write_bytes_atomic(run_dir / "returns.png", plotted[id(data)].read_bytes())
    else:
        plotted[id(data)] = media.log_dataset([logger], data, member.env, run_dir)


def write_checkpoint(member: Member, step: int, path: Path) -> None:
    """A Lightning checkpoint of the member's module (evaluation loads it; resuming it as a single run is not
    supported: the optimizer state lives in the group checkpoint)."""
    module = member.module
    checkpoint = {"epoch": 0, "global_step": step, "pytorch-lightning_version": L.__version__,
                  "state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                  "torch_rng": torch.get_rng_state(), "loops": {}, "optimizer_states": [], "lr_schedulers": [],
                  "callbacks": {}}
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)
