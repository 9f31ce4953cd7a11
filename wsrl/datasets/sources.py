"""Make sure the dataset a run needs exists locally, making it from the configured source if not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from wsrl.common.locks import PidLock
from wsrl.datasets.store import DatasetError, datasets_root, exists_locally
from wsrl.datasets.suite import generated_id

__all__ = ["DatasetError", "ensure_dataset"]  # DatasetError lives in store.py, below every writer


def ensure_dataset(dataset_id: str, source: str, robot: str, quality: str, size: str, d4rl_file: str | None) -> None:
    """Return if ``dataset_id`` is local (checked on disk, no network); otherwise make it from ``source``.

    generated: from the shipped behaviour policies (medium_expert also makes medium and expert if missing);
    d4rl: converted from ``d4rl_file``; minari: downloaded. Says so in one line before the long work; what
    cannot be done raises DatasetError naming the dataset and the command that makes it.
    """
    if exists_locally(dataset_id):
        return
    with making_lock():
        if not exists_locally(dataset_id):  # another job may have made it while this one waited
            _make(dataset_id, source, robot, quality, size, d4rl_file)


@contextmanager
def making_lock() -> Iterator[None]:
    """One process at a time makes datasets in this Minari root: the jobs of a parallel sweep that need the same
    missing dataset wait for the first one's (``wsrl.common.locks`` on a hidden file, which Minari ignores)."""
    root = datasets_root()
    root.mkdir(parents=True, exist_ok=True)
    lock = PidLock(root / ".wsrl-make.lock")
    lock.acquire(lambda holder: print(f"waiting for another process (PID {holder}) that is making a dataset in "
                                      f"{root}", flush=True))
    try:
        yield
    finally:
        lock.release()


def _make(dataset_id: str, source: str, robot: str, quality: str, size: str, d4rl_file: str | None) -> None:
    where = f"{dataset_id} is not in {datasets_root()}"
    if source == "generated":
        from wsrl.datasets.generate import generate

        if dataset_id != generated_id(robot, quality, size):
            raise DatasetError(f"{where} and is not a generated id ({generated_id(robot, quality, size)}); make it "
                               "yourself or set env.dataset_id=null")
        print(f"{where}: generating it from the shipped behaviour policies "
              f"(python -m wsrl.datasets generate {robot} {quality} --size {size})", flush=True)
        generate(robot, quality, size)
    elif source == "d4rl":
        if not d4rl_file:
            raise DatasetError(f"{where}; convert a D4RL file with `python -m wsrl.datasets import-d4rl <file.hdf5> "
                               f"--robot {robot} --quality {quality}` or pass env.d4rl_file=<file.hdf5>")
        from wsrl.datasets.importers import import_d4rl_hdf5

        print(f"{where}: converting {d4rl_file} into it", flush=True)
        import_d4rl_hdf5(d4rl_file, dataset_id, robot)
    elif source == "minari":
        from wsrl.datasets.importers import download_minari

        print(f"{where}: downloading Minari's mujoco/{robot} datasets for it", flush=True)
        download_minari(robot, quality, dataset_id)
    else:
        raise DatasetError(f"{where} and source {source!r} is unknown: use generated, d4rl or minari")
