"""Make sure the dataset a run needs exists locally, making it from the configured source if not."""

from __future__ import annotations

from wsrl.datasets.store import DatasetError, exists_locally

__all__ = ["DatasetError", "ensure_dataset"]


def ensure_dataset(dataset_id: str, source: str, robot: str, quality: str, size: str, d4rl_file: str | None) -> None:
    """Return if ``dataset_id`` is local; otherwise generate, convert or download it, saying so."""
    if exists_locally(dataset_id):
        return
    if source == "generated":
        from wsrl.datasets.generate import generate, generated_id

        if dataset_id != generated_id(robot, quality, size):
            raise DatasetError(f"{dataset_id} is not in {_root()} and is not a generated id; make it or set "
                               "env.dataset_id=null")
        print(f"{dataset_id} is not in {_root()}: generating it from the shipped behaviour policies", flush=True)
        generate(robot, quality, size)
    elif source == "d4rl":
        if not d4rl_file:
            raise DatasetError(f"{dataset_id} is not in {_root()}; pass env.d4rl_file=<D4RL .hdf5 file> to convert it")
        from wsrl.datasets.importers import import_d4rl_hdf5

        print(f"converting {d4rl_file} into {dataset_id}", flush=True)
        import_d4rl_hdf5(d4rl_file, dataset_id, robot)
    else:
        from wsrl.datasets.importers import download_minari

        print(f"{dataset_id} is not in {_root()}: downloading Minari's mujoco/{robot} datasets", flush=True)
        download_minari(robot, quality, dataset_id)


def _root() -> str:
    from wsrl.datasets.store import datasets_root

    return str(datasets_root())
