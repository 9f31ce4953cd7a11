"""Shared fixtures: tiny Minari datasets built with Minari's own API, in a temporary MINARI_DATASETS_PATH."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from wsrl.datasets.suite import ROBOT

ROOT = Path(__file__).resolve().parents[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a test's child process: this checkout first on PYTHONPATH, then any path already there
    (a machine whose packages come from PYTHONPATH keeps them), plus ``extra``."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def random_episodes(env_id: str, n_episodes: int, max_steps: int, seed: int) -> list:
    """Episodes of uniform random actions in the real environment, cut at ``max_steps``."""
    from minari.data_collector import EpisodeBuffer

    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(n_episodes):
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        for t in range(max_steps):
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            obs, reward, term, trunc, _ = env.step(action)
            trunc = trunc or t == max_steps - 1
            observations.append(obs)
            actions.append(action)
            rewards.append(float(reward))
            terms.append(bool(term))
            truncs.append(bool(trunc and not term))
            if term or trunc:
                break
        episodes.append(EpisodeBuffer(id=i, observations=np.array(observations), actions=np.array(actions),
                                      rewards=rewards, terminations=terms, truncations=truncs))
    env.close()
    return episodes


def make_tiny_dataset(dataset_id: str, robot: str = "hopper", n_episodes: int = 6, max_steps: int = 60,
                      seed: int = 0) -> str:
    """Write a small Minari dataset of random-action episodes with the robot's D4RL reference scores."""
    import minari

    r = ROBOT[robot]
    minari.create_dataset_from_buffers(
        dataset_id, buffer=random_episodes(r.env_id, n_episodes, max_steps, seed), env=r.env_id,
        algorithm_name="random", ref_min_score=r.ref_min_score, ref_max_score=r.ref_max_score,
        description="tiny test dataset")
    return dataset_id


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    """A private MINARI_DATASETS_PATH so tests never touch ~/.minari."""
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture
def tiny_dataset(minari_root) -> str:
    return make_tiny_dataset("wsrl/hopper/medium-expert-v0")
