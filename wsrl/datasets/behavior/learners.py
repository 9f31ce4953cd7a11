"""The online RL learners behaviour policies are trained with (stable-baselines3), and their CPU cost."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from wsrl.datasets.suite import ROBOT, Robot


@dataclass(frozen=True)
class Learner:
    """An online RL algorithm of stable-baselines3 with the settings a behaviour run uses."""

    algorithm: str  # "SAC", "TD3" (stable-baselines3) or "TQC" (sb3-contrib)
    n_envs: int  # environments stepped side by side; one gradient update per vector step
    kwargs: dict = field(default_factory=dict)  # constructor arguments beyond SB3's defaults
    noise: float = 0.0  # TD3: std of the Gaussian action noise it explores with (and the data is collected with)
    description: str = ""


LEARNERS = {
    "sac1": Learner("SAC", 1, {}, 0.0, "stable-baselines3 SAC, default hyperparameters, one update per transition"),
    "sac": Learner("SAC", 4, {}, 0.0, "stable-baselines3 SAC, default hyperparameters, 4 environments side by side "
                   "(one update per 4 transitions, as Minari's own mujoco datasets); actions sampled from the policy"),
    "td3": Learner("TD3", 1, {"learning_rate": 1e-3, "batch_size": 256, "learning_starts": 10_000,
                              "policy_kwargs": {"net_arch": [400, 300]}}, 0.1,
                   "stable-baselines3 TD3 with RL Zoo's MuJoCo settings (net [400, 300], lr 1e-3, batch 256, "
                   "Gaussian action noise 0.1, 10k random steps first); data collected with that same noise"),
    "tqc": Learner("TQC", 4, {}, 0.0, "sb3-contrib TQC, default hyperparameters, 4 environments side by side "
                   "(as Minari's halfcheetah); actions sampled from the policy"),
    "tqc1": Learner("TQC", 1, {"learning_starts": 10_000}, 0.0,
                    "sb3-contrib TQC with RL Zoo's HalfCheetah settings (defaults, one update per transition, 10k "
                    "random steps first; 99 normalized at 1M on v3); actions sampled from the policy"),
}
DEFAULT_LEARNER = {"halfcheetah": "tqc1", "hopper": "sac", "walker2d": "sac"}  # chosen by pilot runs (README)


def algorithm_class(learner: Learner):
    """The stable-baselines3 (or sb3-contrib) class of a learner."""
    if learner.algorithm == "TQC":
        try:
            import sb3_contrib
        except ImportError:
            sys.exit("error: the TQC learner needs sb3-contrib: pip install sb3-contrib")
        return sb3_contrib.TQC
    import stable_baselines3

    return getattr(stable_baselines3, learner.algorithm)


def make_agent(robot: Robot, learner: Learner, seed: int, buffer_size: int):
    """A new agent for ``learner`` on ``robot``'s environment (``n_envs`` side by side)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise

    env = make_vec_env(robot.env_id, n_envs=learner.n_envs, seed=seed)
    act_dim = env.action_space.shape[0]
    noise = NormalActionNoise(np.zeros(act_dim), learner.noise * np.ones(act_dim)) if learner.noise else None
    return algorithm_class(learner)("MlpPolicy", env, seed=seed, device="cpu", verbose=0, action_noise=noise,
                                    buffer_size=buffer_size, **learner.kwargs)


def pilot(robot_name: str, learners: list[str], transitions: int) -> dict[str, float]:
    """CPU seconds per 1000 transitions of each learner, in this process (one thread), after ``transitions // 10``
    of warm-up with updates on from the start. Process time, so that other jobs on the machine do not count."""
    torch.set_num_threads(1)
    costs = {}
    for name in learners:
        agent = make_agent(ROBOT[robot_name], LEARNERS[name], 0, 100_000)
        agent.learning_starts = 0
        agent.learn(transitions // 10)
        start = time.process_time()
        agent.learn(transitions, reset_num_timesteps=False)
        costs[name] = 1000 * (time.process_time() - start) / transitions
        print(f"{robot_name} {name}: {costs[name]:.2f} CPU s per 1000 transitions", flush=True)
    return costs
