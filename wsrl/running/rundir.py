"""A run directory: what a run records there, and what keeps it sound (one process at a time, a clean stop).

- ``check_same_run``, ``record_run``: the run's identity (``run_config.json``, the config minus what may change
  between a run and its resumption) and the full config (``config.yaml``); ``results.json`` and "already finished"
  are ``wsrl.running.results``'. The directory is a function of the command, so the same command resumes or
  reports the run; a directory holding another configuration is refused.
- ``discard_if_empty``: a run refused before it wrote anything leaves no empty directories behind.

- ``run_lock``: an exclusive lock on ``<run dir>/.wsrl.lock`` for the run's life (``wsrl.common.locks``). A second
  process on the same directory is refused (``RunLockedError``, naming the directory and the holder's PID) before
  it writes anything; a killed run leaves no stale lock.
- ``StopSignals`` and ``StopAtStep``: SIGTERM and SIGINT (and, inside a submitit job, submitit's pre-emption
  signal) ask the run to stop. While training, the step in progress finishes, ``last.ckpt`` is written for it and
  ``RunInterrupted`` is raised; outside training it is raised at once. A second signal exits at once.
- ``AtomicCheckpointIO``: Lightning's checkpoints, whole or not at all like every file here (``wsrl.common.files``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import lightning as L
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from wsrl.common.files import WriteError, os_reason, write_bytes_atomic, write_json_atomic
from wsrl.common.locks import PidLock
from wsrl.core.config import ConfigError, SamplerConfig, read_method
from wsrl.running import lightning_fixes
from wsrl.running.damaged import DamagedFile, read_json
from wsrl.running.results import RESULTS

LOCK_NAME = ".wsrl.lock"
IDENTITY = "run_config.json"
PRECISION_DEFAULTS = {"matmul_precision": "highest", "autocast": "none"}


class RunLockedError(RuntimeError):
    """Another live process holds the run directory."""


class RunInterrupted(Exception):
    """A stop signal ended the run; ``checkpoint`` holds the last step taken (None: nothing new was saved)."""

    def __init__(self, signum: int, step: int | None = None, checkpoint: Path | None = None,
                 requeue: Callable[[int, FrameType | None], object] | None = None) -> None:
        self.signum, self.step, self.checkpoint, self.requeue = signum, step, checkpoint, requeue
        saved = (f"saved step {step} to {checkpoint}" if checkpoint is not None
                 else "the run directory keeps its last checkpoint")
        super().__init__(f"stopped by {signal.Signals(signum).name}: {saved}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, whole or not at all (``write_bytes_atomic``)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        import io

        import torch

        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes_atomic(Path(path), buffer.getvalue())


def run_identity(plain: dict) -> dict:
    """What makes two runs the same run: the config without what may change between a run and its resumption
    (budget, logging, W&B, resume) and without the looks-only evaluation extras (videos, the conditioning curve),
    so runs made before those existed stay the same run."""
    keep = {k: v for k, v in plain.items() if k not in ("trainer", "wandb", "resume")}
    keep["trainer"] = {k: v for k, v in plain["trainer"].items() if k not in ("max_steps", "progress_bar")
                       and PRECISION_DEFAULTS.get(k) != v}  # precision at its default: as runs made before it
    keep["eval"] = {k: v for k, v in plain["eval"].items() if k in ("episodes", "every_steps")}
    keep["sampler"] = _sampler_identity(plain["sampler"])
    return keep


# The sampler fields added with the weighting schemes. Runs made before them had LDS or no weights and
# these defaults, so at those values the fields stay out of the identity and those runs stay the same run.
_SCHEME_DEFAULTS = {k: getattr(SamplerConfig(), k) for k in (
    "top_fraction", "alpha", "aw_ridge", "cwbc_bins", "cwbc_lambda", "cwbc_percentile", "conservative_percentile",
    "conservative_std", "conservative_weight")}


def _sampler_identity(sampler: dict) -> dict:
    """The sampler config less the scheme where it does not act (no weights) or is LDS, and less the schemes'
    knobs at their defaults."""
    keep = {k: v for k, v in sampler.items() if not (k in _SCHEME_DEFAULTS and v == _SCHEME_DEFAULTS[k])}
    if "scheme" in keep and (keep["weighting"] == "none" or keep["scheme"] == "lds"):
        del keep["scheme"]
    return keep


def check_same_run(plain: dict, run_dir: Path, dataset_id: str) -> dict | None:
    """Refuse to resume, extend or report a run directory that holds a run with another configuration (``plain``:
    the config as plain data) or on other data (``dataset_id``, the resolved id: a new version of a dataset has a
    new id); return the identity to record when the directory holds no run yet."""
    keep = {**run_identity(plain), "dataset_id": dataset_id}
    path = run_dir / IDENTITY
    if path.exists():
        check_same_data(run_dir, dataset_id)
        try:
            before = read_json(path)
        except DamagedFile as err:
            raise DamagedFile(f"{err}: it is the run's identity; restore it, or pass name=<new name> (or "
                              "hydra.run.dir=...) to run again beside it") from err
        before["method"] = read_method(before["method"], str(path), "pass name=<new name> (or hydra.run.dir=...) "
                                       "to run it again beside it")
        if "dataset_id" not in before:  # recorded before the id was: its results.json (if any) said it
            del keep["dataset_id"]
        if before != keep:
            diff = sorted(k for k in set(before) | set(keep) if before.get(k) != keep.get(k))
            raise ConfigError(f"{run_dir} holds a run with a different {', '.join(diff)} config; pass name=<new "
                              "name> (or hydra.run.dir=...) to keep both runs")
        return None
    return keep


def check_same_data(run_dir: Path, dataset_id: str) -> None:
    """Refuse a run directory whose run was on another dataset than ``dataset_id`` (its recorded identity's, or
    its ``results.json``'s for runs recorded before identities held the id)."""
    recorded = []
    for name in (IDENTITY, RESULTS):
        with contextlib.suppress(DamagedFile):  # missing, or damaged: named where it is read for itself
            if (value := read_json(run_dir / name).get("dataset_id")) is not None:
                recorded.append(value)
    if recorded and recorded[0] != dataset_id:
        raise ConfigError(f"{run_dir} holds a run on {recorded[0]} and this config trains on {dataset_id} (another "
                          "version of the data): pass name=<new name> (or hydra.run.dir=...) to run beside it, or "
                          "move the old run aside")


def record_run(run_dir: Path, identity: dict | None, plain: dict) -> None:
    """Record a newly accepted run (``identity`` from ``check_same_run``; None: recorded before) and its config."""
    if identity is not None:
        write_json_atomic(run_dir / IDENTITY, identity)
        write_bytes_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(plain)).encode())


def write_failed(run_dir: Path, error: str, kind: str, overrides: list[str]) -> None:
    """``failed.json``: a sweep job's failure (its error, the error's type and the job's overrides), so the report
    lists it as missing with the reason."""
    write_json_atomic(run_dir / "failed.json", {"error": error, "type": kind, "overrides": overrides})


def discard_if_empty(run_dir: Path) -> None:
    """Remove the directories Hydra made for a run that was refused before writing anything (empty ones only,
    up to the working directory), so a refusal leaves no trace."""
    run_dir, cwd = run_dir.resolve(), Path.cwd().resolve()
    for path in [run_dir, *(parent for parent in run_dir.parents if cwd in parent.parents)]:
        try:
            path.rmdir()
        except OSError:  # not empty: someone else's
            break


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` exclusively for the duration; the lock file goes away with the hold."""
    lock = PidLock(run_dir / LOCK_NAME)

    def refuse(holder: str) -> None:
        raise RunLockedError(f"{run_dir} is in use by another run (PID {holder}); wait for it to end or stop it, "
                             "or pass name=<new name> to run separately")

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire(refuse)
    except OSError as err:
        raise WriteError(f"cannot lock the run directory {run_dir} ({lock.path}: {os_reason(err)}); it must be "
                         "writable: fix its permissions or choose another hydra.run.dir") from err
    try:
        yield
    finally:
        lock.release()


def preemption_signal() -> signal.Signals | None:
    """The signal submitit sends before a pre-emption or time-out (USR2 by default), inside a submitit job."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return None
    from submitit.core.job_environment import JobEnvironment

    return JobEnvironment._usr_sig()


class StopSignals:
    """Turn SIGTERM, SIGINT and submitit's pre-emption signal into ``RunInterrupted``; a second signal exits at once.

    ``deferred`` (set by ``StopAtStep`` while training) postpones the exception to the end of the step in progress.
    On submitit's signal, submitit's own handler (which requeues the job) is kept in ``requeue`` to call once the
    run has saved and closed. Outside the main thread (where handlers cannot be set) this does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT, preemption_signal()):
            if sig is not None:
                previous = signal.signal(sig, self._handle)
                self._previous.setdefault(sig, previous)

    def requeue_handler(self, signum: int) -> Callable | None:
        previous = self._previous.get(signum)
        return previous if signum == preemption_signal() and callable(previous) else None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            os._exit(128 + signum)  # the second signal: no more waiting
        self.signum = signum
        if not self.deferred:
            raise RunInterrupted(signum, requeue=self.requeue_handler(signum))

    def __enter__(self) -> StopSignals:
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


class StopAtStep(L.Callback):
    """Acts on a stop signal at the end of the step in progress: writes ``last`` for it and raises
    ``RunInterrupted``. Also records the step each process started training from (kept in checkpoints), so
    ``results.json`` shows where a run was resumed."""

    def __init__(self, signals: StopSignals, last: Path) -> None:
        self.signals, self.last = signals, last
        self.starts: list[int] = []

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.starts.append(trainer.global_step)
        lightning_fixes.install_over_lightning(self.signals)
        self.signals.deferred = True

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if self.signals.signum is not None:
            self.signals.deferred = False
            lightning_fixes.write_stopped_steps_row(trainer)
            trainer.save_checkpoint(self.last)
            raise RunInterrupted(self.signals.signum, trainer.global_step, self.last,
                                 self.signals.requeue_handler(self.signals.signum))

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.signals.deferred = False

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self.signals.deferred = False

    def state_dict(self) -> dict:
        return {"starts": self.starts}

    def load_state_dict(self, state: dict) -> None:
        self.starts = list(state["starts"])
