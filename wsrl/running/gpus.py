"""Parallel sweeps: pin each local worker process to its own GPU before CUDA starts.

Hydra's joblib launcher reuses its worker processes across jobs, so a per-job setting arrives too late once a
worker has touched CUDA. ``pin_worker_gpu`` runs first in every job and sets ``CUDA_VISIBLE_DEVICES`` once per
process: the worker claims the lowest free slot (an exclusive file create in a directory keyed by the sweep's
parent process) and takes GPU ``slot % n_gpus``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_PINNED_ENV = "WSRL_PINNED_GPU"


def visible_gpu_count() -> int:
    """GPUs on this machine, without initialising CUDA: ``WSRL_NUM_GPUS`` or ``nvidia-smi -L``."""
    if "WSRL_NUM_GPUS" in os.environ:
        return int(os.environ["WSRL_NUM_GPUS"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def claim_slot(directory: Path) -> int:
    """The lowest slot number not yet claimed in ``directory`` (atomic across processes)."""
    directory.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        try:
            os.close(os.open(directory / f"slot{slot}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return slot
        except FileExistsError:
            slot += 1


def pin_worker_gpu(n_gpus: int | None = None, slots_dir: Path | None = None) -> int | None:
    """Pin this process to one GPU (idempotent); None when there are fewer than two GPUs or one is pinned."""
    if _PINNED_ENV in os.environ:
        return int(os.environ[_PINNED_ENV])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and "," not in visible:
        return None
    n = visible_gpu_count() if n_gpus is None else n_gpus
    if n < 2:
        return None
    directory = slots_dir or Path(tempfile.gettempdir()) / f"wsrl-gpu-slots-{os.getppid()}"
    gpu = claim_slot(directory) % n
    devices = visible.split(",") if visible else [str(i) for i in range(n)]
    os.environ["CUDA_VISIBLE_DEVICES"] = devices[gpu % len(devices)]
    os.environ[_PINNED_ENV] = str(gpu)
    return gpu
