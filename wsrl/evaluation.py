"""Policy evaluation: batched rollouts in vectorized Gymnasium environments and D4RL normalized scores.

``python -m wsrl.evaluation <checkpoint> [--episodes N] [--seed S]`` scores a trained policy from its checkpoint
alone (no dataset, no results file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from wsrl.config import ResolvedEnv
    from wsrl.module import WeightedBC

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


def eval_seed(run_seed: int, step: int) -> int:
    """Evaluation episodes get seeds derived from the run seed and the step, distinct from training's."""
    return 1_000_003 * (run_seed + 1) + step


def evaluate(module: WeightedBC, env: ResolvedEnv, episodes: int, seed: int) -> dict:
    """Run ``episodes`` episodes with the mean action and return raw and normalized scores."""
    was_training = module.training
    module.eval()
    returns, lengths = run_episodes(env.eval_env_id, module.act, episodes, seed)
    module.train(was_training)
    norm = env.normalize(returns)
    return {"normalized_score": {"mean": float(norm.mean()), "std": float(norm.std())},
            "returns": returns.tolist(), "lengths": lengths.tolist()}


def load_checkpoint(path: str | Path) -> tuple[WeightedBC, ResolvedEnv]:
    """A trained policy (in eval mode, on the CPU) and the environment it is scored in, from its checkpoint alone:
    ``evaluate(*load_checkpoint(path), episodes, seed)`` needs no dataset and no results file."""
    from wsrl.config import EnvConfig, resolve_env
    from wsrl.module import WeightedBC

    module = WeightedBC.load_from_checkpoint(path, map_location="cpu").eval()
    if module.hparams.get("config") is None:
        raise ValueError(f"{path} holds no run config (made by an older wsrl): evaluate it with run_episodes")
    return module, resolve_env(EnvConfig(**module.hparams.config["env"]))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m wsrl.evaluation", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a run's checkpoints/last.ckpt (or any of its checkpoints)")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes, side by side")
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    a = p.parse_args(argv)
    if not a.checkpoint.is_file():
        sys.exit(f"error: {a.checkpoint} is not a file: pass a run's checkpoints/last.ckpt")
    try:
        module, env = load_checkpoint(a.checkpoint)
    except (ValueError, RuntimeError, KeyError) as err:
        sys.exit(f"error: cannot load {a.checkpoint}: {err}")
    result = evaluate(module, env, a.episodes, a.seed)
    score = result["normalized_score"]
    print(f"{env.eval_env_id}: normalized score {score['mean']:.1f} +- {score['std']:.1f} over {a.episodes} "
          f"episodes (returns {np.round(result['returns'], 1).tolist()})")
    return result


if __name__ == "__main__":
    main()
