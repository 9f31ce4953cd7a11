"""Running episodes: a policy's rollouts in vectorized Gymnasium environments, one batched call per step.

The bottom layer of evaluation, behaviour-policy scoring and the rollout video: it knows nothing of configs,
datasets or Lightning, only an ``act`` function.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

# act(observations [n, obs_dim], returns so far [n], steps so far [n]) -> actions [n, act_dim]
ActFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def run_episodes(env_id: str, act: ActFn, n_episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Run ``n_episodes`` episodes side by side, one environment each, with one batched ``act`` call per step.

    Episode ``i`` is reset with seed ``seed + i``, so a policy's returns are reproducible. Environments whose
    episode has ended keep stepping (auto-reset) until the last one ends; their rewards are masked out.
    Returns the undiscounted episode returns and lengths.
    """
    envs = gym.make_vec(
        env_id,
        num_envs=n_episodes,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    try:
        obs, _ = envs.reset(seed=[seed + i for i in range(n_episodes)])
        returns = np.zeros(n_episodes)
        lengths = np.zeros(n_episodes, dtype=np.int64)
        alive = np.ones(n_episodes, dtype=bool)
        while alive.any():
            obs, reward, terminated, truncated, _ = envs.step(act(obs, returns, lengths))
            returns += np.where(alive, reward, 0.0)
            lengths += alive
            alive &= ~(terminated | truncated)
    finally:
        envs.close()
    return returns, lengths
