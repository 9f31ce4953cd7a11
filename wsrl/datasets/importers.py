"""Other sources through the same loader: original D4RL HDF5 files, and Minari's remote MuJoCo datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsrl.datasets.store import (
    DatasetError,
    concat_episodes,
    episode_buffers,
    read_episodes,
    scratch_root,
    write_dataset,
)
from wsrl.datasets.suite import MINARI_QUALITIES, ROBOT

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def read_d4rl_hdf5(path: str | Path, robot: str) -> dict[str, np.ndarray]:
    """The flat arrays of a D4RL v2 file for ``robot``; a missing, truncated or malformed file raises DatasetError."""
    import gymnasium as gym
    import h5py

    if not Path(path).is_file():
        raise DatasetError(f"{path} does not exist: give the path of a D4RL v2 .hdf5 file")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in D4RL_KEYS if k not in f]
            if missing:
                raise DatasetError(f"{path} is not a D4RL dataset: missing {', '.join(missing)}")
            data = {k: f[k][()] for k in D4RL_KEYS + (("next_observations",) if "next_observations" in f else ())}
    except (OSError, KeyError, ValueError) as err:  # h5py's errors for truncated or overwritten files
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DatasetError(f"cannot read {path} as HDF5 ({reason}); download the file again") from err
    n = len(data["actions"])
    if any(len(v) != n for v in data.values()) or n == 0:
        raise DatasetError(f"{path}: arrays of lengths {[len(v) for v in data.values()]}; the file is damaged")
    env = gym.make(ROBOT[robot].d4rl_env_id)
    dims = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    if data["observations"].shape[1:] != dims[:1] or data["actions"].shape[1:] != dims[1:]:
        raise DatasetError(f"{path}: observations {data['observations'].shape[1:]} and actions "
                           f"{data['actions'].shape[1:]} do not fit {robot} ({dims[0]}, {dims[1]}); wrong --robot?")
    if not all(np.isfinite(data[k]).all() for k in ("observations", "actions", "rewards")):
        raise DatasetError(f"{path} holds non-finite numbers; the file is damaged, download it again")
    return data


def import_d4rl_hdf5(path: str | Path, dataset_id: str, robot: str, overwrite: bool = False) -> str:
    """Convert a D4RL v2 HDF5 file into a local Minari dataset evaluated on the robot's v4 env.

    Episodes end where ``terminals`` or ``timeouts`` is set (and at the end of the file, truncated). D4RL stores
    no final observation per episode: it is taken from ``next_observations`` when the file has it, otherwise the
    last observation is repeated (it is never a training input: only states before actions are). The arrays
    keep D4RL's dtypes (float32 observations); rewards become float64 as Minari's other datasets have them.
    """
    d = read_d4rl_hdf5(path, robot)
    r = ROBOT[robot]
    terminals = d["terminals"].astype(bool)
    ends = np.flatnonzero(terminals | d["timeouts"].astype(bool))
    if len(ends) == 0 or ends[-1] != len(d["actions"]) - 1:
        ends = np.append(ends, len(d["actions"]) - 1)
    spans = list(zip(np.r_[0, ends[:-1] + 1], ends + 1, strict=True))
    final = d.get("next_observations", d["observations"])[ends]
    episodes = {
        "observations": [np.concatenate([d["observations"][s:e], final[i][None]]) for i, (s, e) in enumerate(spans)],
        "actions": [d["actions"][s:e] for s, e in spans],
        "rewards": [d["rewards"][s:e].astype(np.float64) for s, e in spans],
        "terminations": [terminals[s:e] for s, e in spans],
    }
    episodes["truncations"] = [~t & (np.arange(len(t)) == len(t) - 1) for t in episodes["terminations"]]
    return write_dataset(dataset_id, episode_buffers(**episodes), overwrite=overwrite, env=r.d4rl_env_id,
                         eval_env=r.d4rl_env_id, algorithm_name="D4RL", ref_min_score=r.ref_min_score,
                         ref_max_score=r.ref_max_score,
                         description=f"D4RL file {Path(path).name} converted by wsrl: {len(spans)} episodes; "
                                     "final observations from next_observations (else the last one repeated); "
                                     "D4RL reference scores.")


def download_minari(robot: str, quality: str, dataset_id: str) -> str:
    """Download Minari's ``mujoco/<robot>/{medium,expert}-v0`` and store them (or their concatenation for
    medium_expert) under ``dataset_id`` with the D4RL reference scores, which Minari's copies lack.

    The downloads go to a scratch root that is removed afterwards, so an interrupted download leaves nothing.
    Without network (or without ``minari[hf]``) this fails within seconds, naming the offline alternative.
    """
    import minari

    offline = f"python -m wsrl.datasets generate {robot} {quality}"
    if quality not in MINARI_QUALITIES:
        raise DatasetError(f"Minari publishes no {quality} for the MuJoCo robots, so {dataset_id} cannot be "
                           f"downloaded; use the generated suite: {offline}")
    parts = []
    with scratch_root(".wsrl-download-"):
        for q in ("medium", "expert") if quality == "medium_expert" else (quality,):
            remote = f"mujoco/{robot}/{q}-v0"
            try:
                minari.download_dataset(remote)
            except Exception as err:  # no network, no huggingface extra, unknown id: all end here
                reason = str(err).splitlines()[0] if str(err) else ""
                raise DatasetError(f"cannot download {remote} for {dataset_id} ({type(err).__name__}: {reason}); "
                                   f"offline, use the generated suite: {offline}") from err
            parts.append(read_episodes(remote))
    r = ROBOT[robot]
    return write_dataset(dataset_id, episode_buffers(**concat_episodes(parts)), env=r.env_id, eval_env=r.env_id,
                         algorithm_name="Minari mujoco datasets (stable-baselines3 SAC/TQC)",
                         ref_min_score=r.ref_min_score, ref_max_score=r.ref_max_score,
                         description=f"Minari mujoco/{robot} {quality} with D4RL reference scores, via wsrl")
