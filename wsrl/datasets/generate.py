"""Generate the suite from the shipped behaviour policies, following D4RL's protocol on Gymnasium v5.

- medium: ~1M steps of the medium snapshot; expert: ~1M steps of the expert snapshot (both chosen in the
  manifest, see ``behavior.py``); actions sampled from the stochastic policy, as D4RL did.
- medium_replay: SAC's collected data up to medium, regenerated chunk by chunk: the first ``snapshot_every``
  steps with uniform random actions (SAC's warm-up and early policy), then each snapshot before medium for
  ``snapshot_every`` steps. This approximates the real replay buffer, whose policy changed at every step, by
  a piecewise-constant one (the shipped artifacts would otherwise have to include the buffer itself).
- medium_expert: the medium and expert datasets concatenated (2M steps).

Rollouts step a vector of environments with one batched actor call per step; episodes end at termination or
at the 1000-step limit, and episodes still running when the budget is spent are cut (truncated).
``size='small'`` makes the same datasets at a tenth of the size, for quick runs and CPU sweeps.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from wsrl.datasets.behavior import ASSETS, SquashedGaussianActor
from wsrl.datasets.store import DatasetError, episode_buffers, exists_locally, write_dataset
from wsrl.datasets.suite import ROBOT

FULL_STEPS = 1_000_000  # D4RL's medium and expert sizes
SMALL_FRACTION = 10
QUALITIES = ("medium", "expert", "medium_replay", "medium_expert")


def generated_id(robot: str, quality: str, size: str = "full") -> str:
    """``wsrl/hopper/medium-expert-v0``, or ``wsrl/hopper/medium-expert-small-v0`` for the small size."""
    return f"wsrl/{robot}/{quality.replace('_', '-')}{'-small' if size == 'small' else ''}-v0"


def load_manifest(robot: str, assets: Path) -> dict:
    path = assets / robot / "manifest.json"
    if not path.exists():
        raise DatasetError(f"no behaviour policies for {robot} in {assets}: train them with "
                           f"`python -m wsrl.datasets.behavior {robot}`")
    return json.loads(path.read_text())


def rollout(env_id: str, actor: SquashedGaussianActor | None, steps: int, seed: int, n_envs: int = 20,
            desc: str = "") -> dict[str, list[np.ndarray]]:
    """About ``steps`` transitions from ``n_envs`` environments side by side, cut into episodes.

    ``actor=None`` takes uniform random actions. Returns per-episode arrays (observations with the final one).
    """
    torch.set_num_threads(1)
    envs = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    envs.action_space.seed(seed)
    gen = torch.Generator().manual_seed(seed)
    horizon = -(-steps // n_envs)
    obs, _ = envs.reset(seed=seed)
    obs_buf = np.empty((horizon + 1, n_envs, obs.shape[1]), dtype=np.float64)
    final_buf = np.empty_like(obs_buf[1:])
    act_buf = np.empty((horizon, n_envs, envs.single_action_space.shape[0]), dtype=np.float32)
    rew_buf = np.empty((horizon, n_envs))
    term_buf = np.empty((horizon, n_envs), dtype=bool)
    trunc_buf = np.empty((horizon, n_envs), dtype=bool)
    obs_buf[0] = obs
    try:
        for t in tqdm(range(horizon), desc=desc or env_id, unit_scale=n_envs, unit="step", leave=False):
            if actor is None:
                action = envs.action_space.sample()
            else:
                action = actor.act(torch.as_tensor(obs, dtype=torch.float32), gen).numpy()
            obs, rew, term, trunc, info = envs.step(action)
            act_buf[t], rew_buf[t], term_buf[t], trunc_buf[t] = action, rew, term, trunc
            done = term | trunc
            final_buf[t] = obs
            if done.any():
                final_buf[t, done] = np.stack(info["final_obs"][done])
            obs_buf[t + 1] = obs
    finally:
        envs.close()
    trunc_buf[-1] |= ~term_buf[-1]  # the budget cuts whatever is still running
    episodes: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "rewards", "terminations",
                                                             "truncations")}
    for i in range(n_envs):
        ends = np.flatnonzero(term_buf[:, i] | trunc_buf[:, i])
        for start, end in zip(np.r_[0, ends[:-1] + 1], ends, strict=True):
            episodes["observations"].append(np.concatenate([obs_buf[start:end + 1, i], final_buf[end, i][None]]))
            episodes["actions"].append(act_buf[start:end + 1, i])
            episodes["rewards"].append(rew_buf[start:end + 1, i])
            episodes["terminations"].append(term_buf[start:end + 1, i])
            episodes["truncations"].append(trunc_buf[start:end + 1, i])
    return episodes


def _concat(parts: list[dict[str, list[np.ndarray]]]) -> dict[str, list[np.ndarray]]:
    return {k: [ep for part in parts for ep in part[k]] for k in parts[0]}


def _episodes_of(dataset_id: str) -> dict[str, list[np.ndarray]]:
    import minari

    out: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "rewards", "terminations",
                                                        "truncations")}
    for ep in minari.load_dataset(dataset_id).iterate_episodes():
        for k in out:
            out[k].append(np.asarray(getattr(ep, k)))
    return out


def _snapshot(robot: str, manifest: dict, step: int, assets: Path) -> SquashedGaussianActor:
    entry = next(e for e in manifest["curve"] if e["step"] == step)
    return SquashedGaussianActor.from_snapshot(assets / robot / "snapshots" / entry["snapshot"])


def generate(robot: str, quality: str, size: str = "full", overwrite: bool = False, assets: Path | None = None,
             seed: int = 0, steps_per_policy: int | None = None) -> str:
    """Write one generated dataset (and, for medium_expert, its two parts if missing); returns its id.

    ``assets`` holds the behaviour policies (default: the ones shipped in the package).
    """
    assets = assets or ASSETS
    if quality not in QUALITIES:
        raise DatasetError(f"unknown quality {quality!r}: use one of {', '.join(QUALITIES)}")
    r = ROBOT[robot]
    manifest = load_manifest(robot, assets)
    dataset_id = generated_id(robot, quality, size)
    if exists_locally(dataset_id) and not overwrite:
        raise DatasetError(f"{dataset_id} already exists; pass --overwrite to replace it")
    n = steps_per_policy or (FULL_STEPS // SMALL_FRACTION if size == "small" else FULL_STEPS)
    chosen = manifest["chosen"]
    label = f"{robot} {quality}"
    if quality in ("medium", "expert"):
        episodes = rollout(r.env_id, _snapshot(robot, manifest, chosen[quality], assets), n, seed, desc=label)
        policy = f"SAC snapshot at step {chosen[quality]}"
    elif quality == "medium_replay":
        every = manifest["snapshot_every"]
        chunk = max(1, every * n // FULL_STEPS)
        steps = [e["step"] for e in manifest["curve"] if e["step"] < chosen["medium"]]
        actors = [None] + [_snapshot(robot, manifest, s, assets) for s in steps]
        episodes = _concat([rollout(r.env_id, a, chunk, seed + k, desc=f"{label} {k + 1}/{len(actors)}")
                            for k, a in enumerate(actors)])
        policy = f"random actions, then SAC snapshots every {every} steps up to step {chosen['medium']}"
    else:
        parts = []
        for q in ("medium", "expert"):
            part_id = generated_id(robot, q, size)
            if not exists_locally(part_id):
                generate(robot, q, size, assets=assets, seed=seed, steps_per_policy=steps_per_policy)
            parts.append(_episodes_of(part_id))
        episodes = _concat(parts)
        policy = "medium and expert datasets concatenated"
    steps_made = sum(len(a) for a in episodes["actions"])
    write_dataset(dataset_id, episode_buffers(**episodes), overwrite=overwrite, env=r.env_id, eval_env=r.env_id,
                  algorithm_name="stable-baselines3 SAC (D4RL protocol)", ref_min_score=r.ref_min_score,
                  ref_max_score=r.ref_max_score,
                  description=f"wsrl {label} ({size}): {steps_made} steps, {len(episodes['actions'])} episodes; "
                              f"{policy}; stochastic actions; D4RL reference scores.")
    return dataset_id
