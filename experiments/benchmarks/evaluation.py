"""Sections 3 (``run_episodes`` against one episode after another) and 3b (``run_episodes_many`` for a group of
policies against ``run_episodes`` member after member)."""

from __future__ import annotations

import os

import numpy as np
import torch

from benchmarks.common import ACT_DIM, ENV_ID, OBS_DIM, Bench, best_time, check, quiet, train_config


def timed_runs(b: Bench, runs: dict, rounds: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Every run once per round, in turn: (seconds of each try, env steps of the last) by run name."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    steps = {}
    for _ in range(rounds):
        for name, run in runs.items():
            seconds, steps[name] = run()
            times[name].append(seconds)
    return times, steps


def bench_eval(b: Bench) -> None:
    """Env steps/s of ``run_episodes`` against one episode after another, and what bounds the speed-up."""
    from omegaconf import OmegaConf

    from wsrl.core.module import WeightedBC

    episodes = 2 if b.quick else 10
    cfg = train_config(64 if b.quick else 1024, 1, 1)
    plain = OmegaConf.to_container(cfg, resolve=True)
    torch.manual_seed(0)
    # an untrained policy of the paper's size (HalfCheetah never terminates: every episode is 1000 steps)
    module = WeightedBC(OBS_DIM + 1, ACT_DIM, plain["policy"], plain["method"], plain["trainer"], 1000.0).eval()
    times, steps = timed_runs(b, episode_runs(b, module, episodes), 1 if b.quick else 2)
    b.raw["eval"] = {"episodes": episodes, "env_steps": steps, "vectorized": times["vectorized"],
                     "sequential": times["sequential"]}
    seq, vec = min(times["sequential"]), min(times["vectorized"])
    width = cfg.policy.hidden_dims[0]
    sec = f"3. evaluation, {episodes} episodes of {ENV_ID}, 2 x {width} policy"
    b.add(sec, f"one episode after another ({steps['sequential']} env steps)", steps["sequential"] / seq, "env steps/s")
    bar = ">= 4"
    b.add(sec, f"run_episodes ({steps['vectorized']} env steps); ratio = speed-up", steps["vectorized"] / vec,
          "env steps/s", seq / vec, bar, check(seq / vec, bar), f"{vec:.2f} s against {seq:.2f} s")
    eval_bound(b, sec, module, episodes)


def episode_runs(b: Bench, module, episodes: int) -> dict:
    """The two ways of section 3, each returning (seconds, env steps): one episode after another first."""
    import gymnasium as gym

    from wsrl.common.episodes import run_episodes

    def vectorized() -> tuple[float, int]:
        t0 = b.now()
        with quiet():
            _, lengths = run_episodes(ENV_ID, module.act, episodes, seed=0)
        return b.now() - t0, int(lengths.sum())

    def one_by_one() -> tuple[float, int]:
        t0 = b.now()
        total = 0
        with quiet():
            env = gym.make(ENV_ID)
        for i in range(episodes):
            obs, _ = env.reset(seed=i)
            ret, t, done = 0.0, 0, False
            while not done:
                action = module.act(obs[None], np.array([ret]), np.array([t]))[0]
                obs, reward, term, trunc, _ = env.step(action)
                ret, t, done = ret + reward, t + 1, term or trunc
            total += t
        env.close()
        return b.now() - t0, total

    return {"sequential": one_by_one, "vectorized": vectorized}


def eval_bound(b: Bench, sec: str, module, episodes: int) -> None:
    """What bounds the speed-up: one step costs an env step plus the policy's share of a forward pass. Batching
    divides the forward pass among the episodes only as far as the CPU's matmul scales; the physics stays."""
    import gymnasium as gym

    with quiet():
        env = gym.make(ENV_ID)
    env.reset(seed=0)
    zero = np.zeros(ACT_DIM)
    env_step = best_time(b, lambda: env.step(zero), 3, 2000)
    env.close()
    one = np.zeros((1, OBS_DIM))
    batch = np.zeros((episodes, OBS_DIM))
    act_one = best_time(b, lambda: module.act(one, np.zeros(1), np.zeros(1)), 3, 300)
    act_batch = best_time(b, lambda: module.act(batch, np.zeros(episodes), np.zeros(episodes)), 3, 300)
    bound = (env_step + act_one) / (env_step + act_batch / episodes)
    b.raw["eval"] |= {"env_step_s": env_step, "act_1_s": act_one, f"act_{episodes}_s": act_batch}
    b.add(sec, "bound with no overhead: (env + act(1)) / (env + act(N) / N)", None, "", bound, "", None,
          f"env step {env_step * 1e6:.0f} us, act at batch 1 {act_one * 1e6:.0f} us, at batch {episodes} "
          f"{act_batch * 1e6:.0f} us ({act_batch / act_one:.1f}x)")


class StackedMLP:
    """``members`` 2-layer tanh policies with their weights stacked on a leading member axis: ``act_many`` is one
    batched forward for the whole group (as a stacked model's), ``act(k)`` member k's own forward."""

    def __init__(self, members: int, obs_dim: int, act_dim: int, width: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(members, obs_dim + 1, width, generator=g) / (obs_dim + 1) ** 0.5
        self.w2 = torch.randn(members, width, act_dim, generator=g) / width ** 0.5

    def _inputs(self, obs, returns):
        return torch.cat([torch.as_tensor(obs, dtype=torch.float32),
                          torch.as_tensor(returns, dtype=torch.float32)[:, None] / 1000.0], dim=1)

    @torch.no_grad()
    def act_many(self, obs, returns, steps):
        x = torch.stack([self._inputs(o, r) for o, r in zip(obs, returns, strict=True)])
        return list(torch.tanh(torch.bmm(torch.relu(torch.bmm(x, self.w1)), self.w2)).numpy())

    def act(self, k: int):
        @torch.no_grad()
        def act(obs, returns, steps):
            return torch.tanh(torch.relu(self._inputs(obs, returns) @ self.w1[k]) @ self.w2[k]).numpy()

        return act


def bench_group_eval(b: Bench) -> None:
    """Env steps/s of ``run_episodes_many`` (a group of policies, one batched forward per step, the environments
    over worker processes) against ``run_episodes`` member after member, in HalfCheetah (fixed-length episodes)."""
    from wsrl.common.episodes import EpisodeWorkers

    members, episodes = (2, 2) if b.quick else (8, 10)
    workers = min(2, os.cpu_count() or 1)
    with quiet():
        pool = EpisodeWorkers(workers)  # started before the clock: what a launcher that keeps its workers pays
    try:
        runs = group_runs(b, members, episodes, workers, pool)
        times, steps = timed_runs(b, runs, 1 if b.quick else 2)
    finally:
        pool.close()
    b.raw["group_eval"] = {"members": members, "episodes": episodes, "workers": workers, "env_steps": steps, **times}
    base = min(times["one_by_one"])
    sec = (f"3b. group evaluation (run_episodes_many), {members} policies x {episodes} episodes of {ENV_ID}, "
           f"{b.clock} clock (worker processes' time counts only on the wall clock)")
    b.add(sec, f"run_episodes member after member ({steps['one_by_one']:,} env steps)",
          steps["one_by_one"] / base, "env steps/s")
    for name in runs:
        if name == "one_by_one":
            continue
        best = min(times[name])
        label = {"process": "group in this process", "workers": f"group, {workers} worker processes started per call",
                 "pool": f"group, {workers} worker processes kept (EpisodeWorkers)"}[name.rsplit("_", 1)[1]]
        b.add(sec, f"{label}; ratio = speed-up", steps[name] / best, "env steps/s", base / best,
              note=f"{best:.2f} s against {base:.2f} s")


def group_runs(b: Bench, members: int, episodes: int, workers: int, pool) -> dict:
    """The ways of section 3b, each returning (seconds, env steps): member after member, then the group in this
    process, over ``workers`` processes started per call, and over the kept ``pool``."""
    from wsrl.common.episodes import run_episodes, run_episodes_many

    limit = 50 if b.quick else None  # HalfCheetah's own 1000 steps, or a short cut for --quick
    policy = StackedMLP(members, OBS_DIM, ACT_DIM, 64 if b.quick else 256)
    seeds = [1000 * k for k in range(members)]

    def one_by_one() -> tuple[float, int]:
        t0 = b.now()
        with quiet():
            lengths = [run_episodes(ENV_ID, policy.act(k), episodes, seeds[k], max_episode_steps=limit)[1]
                       for k in range(members)]
        return b.now() - t0, int(sum(x.sum() for x in lengths))

    def grouped(n_workers):
        def run() -> tuple[float, int]:
            t0 = b.now()
            with quiet():
                out = run_episodes_many([ENV_ID] * members, policy.act_many, episodes, seeds, n_workers,
                                        max_episode_steps=limit)
            return b.now() - t0, int(sum(lengths.sum() for _, lengths in out))

        return run

    return {"one_by_one": one_by_one, "group_in_process": grouped(0), f"group_{workers}_workers": grouped(workers),
            f"group_{workers}_pool": grouped(pool)}
