"""A trained policy's D4RL normalized scores over seeded episodes (run by ``wsrl.common.episodes``), and loading a
policy from its checkpoint alone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wsrl.common.episodes import ActManyFn, EpisodeWorkers, run_episodes, run_episodes_many

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from wsrl.core.config import ResolvedEnv
    from wsrl.core.module import WeightedBC


def eval_seed(run_seed: int, step: int) -> int:
    """Evaluation episodes get seeds derived from the run seed and the step, distinct from training's."""
    return 1_000_003 * (run_seed + 1) + step


def evaluate(module: WeightedBC, env: ResolvedEnv, episodes: int, seed: int) -> dict:
    """Run ``episodes`` episodes with the mean action and return raw and normalized scores."""
    was_training = module.training
    module.eval()
    returns, lengths = run_episodes(env.eval_env_id, module.act, episodes, seed)
    module.train(was_training)
    return scores(env, returns, lengths)


def scores(env: ResolvedEnv, returns: np.ndarray, lengths: np.ndarray) -> dict:
    """What ``evaluate`` reports for these episodes."""
    norm = env.normalize(returns)
    return {"normalized_score": {"mean": float(norm.mean()), "std": float(norm.std())},
            "returns": returns.tolist(), "lengths": lengths.tolist()}


def evaluate_many(policies: Sequence[WeightedBC] | ActManyFn, envs: Sequence[ResolvedEnv], episodes: int,
                  seeds: Sequence[int], workers: int | EpisodeWorkers = 0, check: Callable[[], None] | None = None,
                  **kwargs) -> list[dict]:
    """``evaluate`` for a group: member k's ``episodes`` episodes in ``envs[k]`` with seeds ``seeds[k] + i``, all
    members stepped together (``wsrl.common.episodes.run_episodes_many``, environments over ``workers`` processes, or
    over an ``EpisodeWorkers`` pool kept across evaluations).

    ``policies``: the members' modules (each acts on its own slice, in eval mode, as ``evaluate`` runs it), or one
    ``act_many`` function that acts for all members at once (a stacked model's batched forward). Member k's dict
    equals ``evaluate(module_k, envs[k], episodes, seeds[k])``. ``check`` is called before every step (it may raise
    to stop the episodes: a deadline). ``kwargs`` go to ``run_episodes_many``.
    """
    env_ids = [env.eval_env_id for env in envs]
    batched = callable(policies)
    modules = [] if batched else list(policies)
    if not batched and len(modules) != len(envs):
        raise ValueError(f"{len(modules)} policies for {len(envs)} environments")

    def act_many(obs, returns, steps):
        if check is not None:
            check()
        if batched:
            return policies(obs, returns, steps)
        return [m.act(o, r, s) for m, o, r, s in zip(modules, obs, returns, steps, strict=True)]

    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        results = run_episodes_many(env_ids, act_many, episodes, list(seeds), workers, **kwargs)
    finally:
        for m, training in zip(modules, was_training, strict=True):
            m.train(training)
    return [scores(env, returns, lengths) for env, (returns, lengths) in zip(envs, results, strict=True)]


def load_checkpoint(path: str | Path, device: str = "auto") -> tuple[WeightedBC, ResolvedEnv]:
    """A trained policy (in eval mode, on ``device``) and the environment it is scored in, from its checkpoint alone:
    ``evaluate(*load_checkpoint(path), episodes, seed)`` needs no dataset and no results file. ``auto`` is CUDA where
    there is one, as in training, so that the machine that trained a run reproduces its scores to the last bit (a
    CPU's float sums differ from a GPU's in the last bits, and the physics carries the difference on)."""
    from wsrl.core.config import EnvConfig, resolve_device, resolve_env
    from wsrl.core.module import WeightedBC

    module = WeightedBC.load_from_checkpoint(path, map_location=resolve_device(device)).eval()
    if module.hparams.get("config") is None:
        raise ValueError(f"{path} holds no run config (made by an older wsrl): evaluate it with run_episodes")
    return module, resolve_env(EnvConfig(**module.hparams.config["env"]))
