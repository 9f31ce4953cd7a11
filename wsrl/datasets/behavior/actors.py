"""The behaviour actors without stable-baselines3: snapshots saved and loaded, actions drawn as in the data, scores.

A snapshot is the actor's weights in float16 with its learner's name and action noise; ``load_actor`` rebuilds the
policy the datasets are collected with, and ``score_snapshot`` evaluates it the same way.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wsrl.common.episodes import run_episodes
from wsrl.common.files import write_bytes_atomic
from wsrl.datasets.behavior.learners import LEARNERS
from wsrl.datasets.suite import Robot

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # stable-baselines3's clamp


class SquashedGaussianActor(nn.Module):
    """stable-baselines3's SAC actor (tanh-squashed Gaussian) for batched inference without SB3."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.latent_pi = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, act_dim)
        self.log_std = nn.Linear(hidden, act_dim)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None,
            deterministic: bool = False) -> torch.Tensor:
        latent = self.latent_pi(obs)
        mean = self.mu(latent)
        if deterministic:
            return torch.tanh(mean)
        std = self.log_std(latent).clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return torch.tanh(mean + std * noise)


class NoisyDeterministicActor(nn.Module):
    """stable-baselines3's TD3 actor (tanh MLP) with the Gaussian noise it explored with, clipped to [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (400, 300), noise: float = 0.1) -> None:
        super().__init__()
        sizes, layers = (obs_dim, *hidden), []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.mu = nn.Sequential(*layers, nn.Linear(sizes[-1], act_dim), nn.Tanh())
        self.noise = noise

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None,
            deterministic: bool = False) -> torch.Tensor:
        action = self.mu(obs)
        if deterministic:
            return action
        noise = torch.randn(action.shape, generator=generator, dtype=action.dtype, device=action.device)
        return (action + self.noise * noise).clamp(-1.0, 1.0)


Actor = SquashedGaussianActor | NoisyDeterministicActor


def save_snapshot(actor_state: dict[str, torch.Tensor], learner: str, path: Path) -> None:
    """An actor's weights in float16 (half the size; the policy is the rounded one, evaluated as stored)."""
    buf = io.BytesIO()
    torch.save({"learner": learner, "noise": LEARNERS[learner].noise,
                "state": {k: v.detach().to(torch.float16).clone() for k, v in actor_state.items()}}, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_actor(path: Path) -> Actor:
    """The data-collection policy stored in a snapshot (``act`` samples actions as the datasets are made)."""
    snap = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v.float() for k, v in snap["state"].items()}
    if LEARNERS[snap["learner"]].algorithm in ("SAC", "TQC"):  # the same squashed Gaussian actor
        hidden, obs_dim = state["latent_pi.0.weight"].shape
        actor: Actor = SquashedGaussianActor(obs_dim, state["mu.weight"].shape[0], hidden)
    else:
        weights = [state[k] for k in sorted(state) if k.endswith("weight")]
        actor = NoisyDeterministicActor(weights[0].shape[1], weights[-1].shape[0],
                                        tuple(w.shape[0] for w in weights[:-1]), snap["noise"])
    actor.load_state_dict(state)
    return actor.eval()


def evaluate_snapshot(path: Path, robot: Robot, n_episodes: int, seed: int) -> np.ndarray:
    """Returns of ``n_episodes`` episodes with actions drawn from the snapshot as the datasets are made."""
    actor = load_actor(path)
    gen = torch.Generator().manual_seed(seed)

    def act(obs, _returns, _steps):
        return actor.act(torch.as_tensor(obs, dtype=torch.float32), gen).numpy()

    returns, _ = run_episodes(robot.env_id, act, n_episodes, seed)
    return returns


def score_snapshot(path: Path, robot: Robot, episodes: int, seed: int) -> dict:
    """The snapshot's D4RL-normalized score over ``episodes`` episodes: mean, spread and episode count."""
    norm = robot.normalize(evaluate_snapshot(path, robot, episodes, seed))
    return {"normalized_mean": float(norm.mean()), "normalized_std": float(norm.std()), "episodes": episodes}
