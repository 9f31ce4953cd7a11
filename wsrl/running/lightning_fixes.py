"""wsrl's workarounds on Lightning, all here, each with one line on why (docs/architecture.md lists them).

None of them reads Lightning's internals: each answers a side effect of a public call. Without one, a test fails
where a CPU can show it: the suite's check of ``os.environ`` (``seed_everything``), ``tests/test_reliability.py``
(``save_final_step``, ``keep_metrics``, ``write_stopped_steps_row``), ``tests/test_lightning_fixes.py``
(``install_over_lightning``); ``fit`` and ``back_on`` act on a GPU only, and the warning filter keeps the log clean.
Drawing the batches needs none: a single run and a stacked group both draw inside ``training_step`` from step tokens
(``wsrl.core.data.step_tokens``), whatever the loop fetches ahead.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Protocol, TypeVar

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from wsrl.common.environ import scoped_environ
from wsrl.core.module import logs_metrics

Module = TypeVar("Module", bound=torch.nn.Module)
_METRICS = "metrics.csv"  # CSVLogger's file in its log_dir


class Installable(Protocol):
    def install(self) -> None: ...


def seed_everything(seed: int) -> None:
    """``L.seed_everything``: it also writes PL_GLOBAL_SEED and PL_SEED_WORKERS into os.environ (for DDP processes
    and DataLoader workers), kept out of the caller's environment."""
    with scoped_environ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        L.seed_everything(seed, workers=True, verbose=False)


def fit(trainer: L.Trainer, module: L.LightningModule, datamodule: L.LightningDataModule | None = None,
        ckpt_path: str | Path | None = None) -> None:
    """``trainer.fit``: its CUDA set-up writes CUDA_DEVICE_ORDER into os.environ (for processes it would start),
    kept out of the caller's environment."""
    with scoped_environ("CUDA_DEVICE_ORDER"):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)


def manual_optimization_checkpoints() -> None:
    """Silence ModelCheckpoint's warning about manual optimization: the module steps its optimizer inside
    ``training_step``, so a checkpoint holds the state after the step, which is what resuming expects."""
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")


def save_final_step(trainer: L.Trainer, last: Path, interval: int) -> None:
    """ModelCheckpoint writes ``last`` at the end only where it saved nothing before: save the final step when it
    is not a multiple of the checkpoint ``interval``."""
    if trainer.global_step % interval:
        trainer.save_checkpoint(last)


def back_on(module: Module, device: torch.device) -> Module:
    """Lightning's teardown moves the module to the CPU after fitting: evaluating after training must run where it
    trained, as the periodic evaluations did (a GPU's float sums differ from the CPU's in the last bits)."""
    return module.to(device)


def install_over_lightning(signals: Installable) -> None:
    """Lightning's fit installs a SIGTERM handler of its own when training starts, whose flag makes its loop raise
    SIGTERMException after a step's callbacks: a signal that came after ``StopAtStep``'s turn would end the run
    without saving a step or the resume hint. Called from ``on_train_start``, this puts wsrl's handlers
    (``signals``) back alone."""
    signals.install()


def write_stopped_steps_row(trainer: L.Trainer) -> None:
    """Lightning writes a step's logged row after ``on_train_batch_end``: a run stopped there (``StopAtStep``) writes
    the row of the step just taken itself, where that step logs (``logs_metrics``), from the metrics the module
    logged (``trainer.callback_metrics``)."""
    step = trainer.global_step - 1
    if logs_metrics(step, trainer.log_every_n_steps):
        row = {k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        for logger in trainer.loggers:
            logger.log_metrics({**row, "epoch": trainer.current_epoch}, step=step)


def keep_metrics(logger: CSVLogger, step: int, again: tuple[str, ...] = ()) -> None:
    """CSVLogger deletes an existing ``metrics.csv`` when it makes its writer: a run resumed from its checkpoint at
    ``step`` keeps the earlier rows of the steps before it (from there on it logs its own), except rows with a key
    that starts with one of ``again`` (what each start logs afresh). The old file is set aside as
    ``metrics.csv.before-resume`` until the kept rows are written whole; one left there by a process killed in
    between is the one read."""
    path = Path(logger.log_dir) / _METRICS
    aside = path.with_name(f"{_METRICS}.before-resume")
    if not aside.exists():
        if not path.exists():
            return
        path.rename(aside)
    rows = [row for row in _metrics_rows(aside)
            if int(row["step"]) < step and not any(key.startswith(again) for key in row)]
    with warnings.catch_warnings():  # its warning that the old logs will be deleted: they are not
        warnings.filterwarnings("ignore", message="Experiment logs directory")
        writer = logger.experiment  # made now, with no metrics.csv to delete
    for row in rows:
        writer.log_metrics({k: v for k, v in row.items() if k != "step"}, int(row["step"]))
    logger.save()  # the kept rows, the union of their keys as the header
    aside.unlink()


def _metrics_rows(path: Path) -> list[dict[str, str]]:
    """The whole rows of a ``metrics.csv`` as Lightning wrote them (text kept as written, empty cells left out);
    a row cut short by a killed process, or with no step, is left out."""
    lines = path.read_text(errors="replace").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(lines)
            if None not in row and None not in row.values() and row.get("step", "").isdigit()]
