"""Other sources through the same loader: original D4RL HDF5 files, and Minari's remote MuJoCo datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsrl.datasets.store import DatasetError, episode_buffers, write_dataset
from wsrl.datasets.suite import ROBOT

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def read_d4rl_hdf5(path: str | Path) -> dict[str, np.ndarray]:
    """The flat arrays of a D4RL v2 file; a missing, truncated or malformed file raises DatasetError."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in D4RL_KEYS if k not in f]
            if missing:
                raise DatasetError(f"{path} is not a D4RL dataset: missing {', '.join(missing)}")
            data = {k: f[k][()] for k in D4RL_KEYS + (("next_observations",) if "next_observations" in f else ())}
    except OSError as err:
        raise DatasetError(f"cannot read {path} as HDF5 ({err}); download the file again") from err
    n = len(data["actions"])
    if any(len(v) != n for v in data.values()):
        raise DatasetError(f"{path}: arrays of unequal length {[len(v) for v in data.values()]}; the file is damaged")
    return data


def import_d4rl_hdf5(path: str | Path, dataset_id: str, robot: str, overwrite: bool = False) -> str:
    """Convert a D4RL v2 HDF5 file into a local Minari dataset evaluated on the robot's v4 env.

    Episodes end where ``terminals`` or ``timeouts`` is set (and at the end of the file). D4RL stores no final
    observation per episode: it is taken from ``next_observations`` when the file has it, otherwise the last
    observation is repeated (it is never a training input: only states before actions are).
    """
    d = read_d4rl_hdf5(path)
    r = ROBOT[robot]
    ends = np.flatnonzero(d["terminals"].astype(bool) | d["timeouts"].astype(bool))
    if len(ends) == 0 or ends[-1] != len(d["actions"]) - 1:
        ends = np.append(ends, len(d["actions"]) - 1)
    starts = np.r_[0, ends[:-1] + 1]
    final = d.get("next_observations", d["observations"])[ends]
    episodes = {
        "observations": [np.concatenate([d["observations"][s:e + 1], final[i][None]])
                         for i, (s, e) in enumerate(zip(starts, ends, strict=True))],
        "actions": [d["actions"][s:e + 1] for s, e in zip(starts, ends, strict=True)],
        "rewards": [d["rewards"][s:e + 1].astype(np.float64) for s, e in zip(starts, ends, strict=True)],
        "terminations": [d["terminals"][s:e + 1].astype(bool) for s, e in zip(starts, ends, strict=True)],
    }
    episodes["truncations"] = [~t & (np.arange(len(t)) == len(t) - 1) for t in episodes["terminations"]]
    return write_dataset(dataset_id, episode_buffers(**episodes), overwrite=overwrite, env=r.d4rl_env_id,
                         eval_env=r.d4rl_env_id, algorithm_name="D4RL", ref_min_score=r.ref_min_score,
                         ref_max_score=r.ref_max_score, description=f"D4RL file {Path(path).name} converted by wsrl")


def download_minari(robot: str, quality: str, dataset_id: str) -> str:
    """Download Minari's ``mujoco/<robot>/{medium,expert}-v0`` and store them (or their concatenation for
    medium_expert) under ``dataset_id`` with the D4RL reference scores, which Minari's copies lack."""
    import minari

    from wsrl.datasets.generate import _concat, _episodes_of

    if quality == "medium_replay":
        raise DatasetError("Minari publishes no medium-replay for the MuJoCo robots; use env.source=generated")
    parts = []
    for q in ("medium", "expert") if quality == "medium_expert" else (quality,):
        remote = f"mujoco/{robot}/{q}-v0"
        try:
            minari.download_dataset(remote)
        except Exception as err:  # no network, no huggingface extra, unknown id: all end here
            raise DatasetError(f"cannot download {remote} ({type(err).__name__}); without network use the "
                               f"generated suite: python -m wsrl.datasets generate {robot} {quality}") from err
        parts.append(_episodes_of(remote))
    r = ROBOT[robot]
    return write_dataset(dataset_id, episode_buffers(**_concat(parts)), env=r.env_id, eval_env=r.env_id,
                         algorithm_name="Minari mujoco datasets", ref_min_score=r.ref_min_score,
                         ref_max_score=r.ref_max_score, description=f"Minari mujoco/{robot} {quality} via wsrl")
