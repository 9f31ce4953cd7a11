"""Sections 4 (LDS weights and weighted sampling against numpy and torch) and 5 (dataset generation against bare
env stepping)."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.common import ACT_DIM, ENV_ID, EPISODE, OBS_DIM, Bench, best_time, check, interleaved, quiet


def bench_lds(b: Bench) -> None:
    """Section 4: lds_weights on two kinds of labels, and a weighted batch drawn three ways."""
    from wsrl.core.weighting import IndexSampler, lds_weights

    n = 100_000 if b.quick else 2_000_000
    rng = np.random.default_rng(0)
    episode_returns = 1000 * rng.beta(0.5, 2.0, n // EPISODE + 1)
    labels = np.repeat(episode_returns, EPISODE)[:n]  # trajectory returns, as sampler.target does by default
    rtg = rng.gamma(2.0, 500.0, n)  # return-to-go: every label distinct
    sec = f"4. LDS weights and weighted sampling, N = {n:,}"
    bar = "< 0.5"
    for name, y in (("trajectory return", labels), ("return-to-go", rtg)):
        first = best_time(b, lambda y=y: lds_weights(y), 1)  # what a run pays, once
        warm = best_time(b, lambda y=y: lds_weights(y), 1 if b.quick else 3)
        b.add(sec, f"lds_weights: histogram, smoothing, gather ({name})", first, "s", None, bar + " s",
              check(first, bar), f"first call; best warm call {warm:.3f} s")
    weights = lds_weights(labels)
    w = torch.as_tensor(weights, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    sampler = IndexSampler(n, 512, w, gen)
    ours = best_time(b, sampler, 3, 200 if b.quick else 2000)
    p = weights / weights.sum()
    np_rng = np.random.default_rng(0)
    numpy_choice = best_time(b, lambda: np_rng.choice(n, 512, p=p), 3, 2 if b.quick else 10)
    multinomial = best_time(b, lambda: torch.multinomial(w, 512, replacement=True, generator=gen), 3,
                            5 if b.quick else 30)
    bar = "< 1"
    b.add(sec, "IndexSampler: weighted batch of 512 (cumsum search)", ours * 1e3, "ms", None, bar + " ms",
          check(ours * 1e3, bar))
    b.add(sec, "np.random.choice(p=...); ratio = its time / IndexSampler's", numpy_choice * 1e3, "ms",
          numpy_choice / ours)
    b.add(sec, "torch.multinomial; ratio = its time / IndexSampler's", multinomial * 1e3, "ms", multinomial / ours)


def bench_generate(b: Bench) -> None:
    """Section 5: ``rollout`` with a SAC actor and with random actions against bare env stepping."""
    import gymnasium as gym

    sec = f"5. dataset generation, {ENV_ID}"
    steps = 2_000 if b.quick else 20_000
    with quiet():
        env = gym.make(ENV_ID)
    env.action_space.seed(0)

    def bare() -> float:
        env.reset(seed=0)
        t0 = b.now()
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        return steps / (b.now() - t0)

    from wsrl.datasets.behavior.actors import SquashedGaussianActor
    from wsrl.datasets.generate import rollout

    torch.manual_seed(0)
    actor = SquashedGaussianActor(OBS_DIM, ACT_DIM)  # untrained, the shipped snapshots' architecture
    threads = torch.get_num_threads()

    def path(with_actor: bool) -> float:
        t0 = b.now()
        try:
            with quiet():
                episodes = rollout(ENV_ID, [actor if with_actor else None], steps, 0)
        finally:
            torch.set_num_threads(threads)  # the rollout pins torch to one thread
        done = sum(len(a) for a in episodes["actions"]) if isinstance(episodes, dict) else steps
        return done / (b.now() - t0)

    rates = interleaved(b, {"bare": bare, "actor": lambda: path(True), "random": lambda: path(False)},
                        1 if b.quick else 2)
    b.raw["generate"] = {"steps": steps, **rates}
    best = {k: max(v) for k, v in rates.items()}
    bar = ">= 0.5"
    b.add(sec, "bare env stepping, random actions (one env)", best["bare"], "env steps/s")
    b.add(sec, "rollout, SAC actor (sampled actions); ratio = rollout / bare", best["actor"], "env steps/s",
          best["actor"] / best["bare"], bar, check(best["actor"] / best["bare"], bar))
    b.add(sec, "rollout, random actions; ratio = rollout / bare", best["random"], "env steps/s",
          best["random"] / best["bare"])
