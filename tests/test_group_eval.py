"""Group evaluation (``wsrl.common.episodes.run_episodes_many``, ``wsrl.evaluation.scores.evaluate_many``): every
member's episodes
are exactly those of its own ``run_episodes`` / ``evaluate``, in process and spread over worker processes."""

from __future__ import annotations

import numpy as np
import pytest

from wsrl.common.episodes import run_episodes, run_episodes_many

# three robots with different observation and action sizes (11/3, 17/6, 17/6)
ENV_IDS = ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"]
DIMS = {"Hopper-v5": (11, 3), "HalfCheetah-v5": (17, 6), "Walker2d-v5": (17, 6)}
SEEDS = [0, 100, 7]
EPISODES = 3
LIMIT = 60  # HalfCheetah never falls: every episode ends at the limit; the others mostly fall before it


def linear_act(env_id: str, k: int):
    """A fixed random linear map + tanh of (observation, return so far, steps so far): RvS-R-like inputs."""
    obs_dim, act_dim = DIMS[env_id]
    w = np.random.default_rng(k).normal(0, 0.5, (obs_dim + 2, act_dim))

    def act(obs, returns, steps):
        x = np.concatenate([obs, returns[:, None] / 100.0, steps[:, None] / 100.0], axis=1)
        return np.tanh(x @ w)

    return act


def group_act(acts, calls: list):
    def act_many(obs, returns, steps):
        calls.append([o.shape for o in obs])
        return [a(o, r, s) for a, o, r, s in zip(acts, obs, returns, steps, strict=True)]

    return act_many


@pytest.mark.parametrize("workers", [0, 2])
def test_group_episodes_equal_each_members_own_run_episodes(workers):
    env_ids = ENV_IDS + ["Hopper-v5"]  # two members on one robot, with different policies and seeds
    seeds = SEEDS + [3]
    acts = [linear_act(e, k) for k, e in enumerate(env_ids)]
    calls: list = []
    group = run_episodes_many(env_ids, group_act(acts, calls), EPISODES, seeds, workers=workers,
                              max_episode_steps=LIMIT)
    assert len(group) == len(env_ids)
    for k, env_id in enumerate(env_ids):
        returns, lengths = run_episodes(env_id, acts[k], EPISODES, seeds[k], max_episode_steps=LIMIT)
        np.testing.assert_array_equal(group[k][0], returns)  # bit for bit
        np.testing.assert_array_equal(group[k][1], lengths)
        assert group[k][1].dtype == lengths.dtype
    # one call per step, shapes kept for every member until the longest member is done
    assert len(calls) == max(int(lengths.max()) for _, lengths in group)
    assert all(shapes == [(EPISODES, DIMS[e][0]) for e in env_ids] for shapes in calls)
    assert any(group[k][1].min() < LIMIT for k in (0, 2, 3)), "the test should exercise early terminations"


def test_a_pool_of_workers_serves_calls_one_after_another():
    """The same two workers for two groups of different robots and sizes (the second needs only one of them)."""
    from wsrl.common.episodes import EpisodeWorkers

    groups = [(["Walker2d-v5", "Hopper-v5"], [4, 9], 3), (["Hopper-v5"], [21], 1)]
    with EpisodeWorkers(2) as pool:
        for env_ids, seeds, episodes in groups:
            acts = [linear_act(e, 10 + k) for k, e in enumerate(env_ids)]
            group = run_episodes_many(env_ids, group_act(acts, []), episodes, seeds, workers=pool,
                                      max_episode_steps=LIMIT)
            for k, env_id in enumerate(env_ids):
                returns, lengths = run_episodes(env_id, acts[k], episodes, seeds[k], max_episode_steps=LIMIT)
                np.testing.assert_array_equal(group[k][0], returns)
                np.testing.assert_array_equal(group[k][1], lengths)
        assert len(pool) == 2 and all(r.proc.poll() is None for r in pool.remotes)
    assert len(pool) == 0


def test_slices_cover_every_episode_once_cut_at_member_boundaries():
    from wsrl.common.episodes import _split

    for members, episodes, shards in ((4, 3, 2), (3, 3, 4), (1, 2, 2), (2, 5, 3), (1, 1, 1)):
        slices = _split(["Hopper-v5"] * members, episodes, list(range(members)), shards)
        assert len(slices) == shards
        sizes = [sum(p.count for p in pieces) for pieces in slices]
        assert max(sizes) - min(sizes) <= 1
        flat = [(p.member, p.start + j) for pieces in slices for p in pieces for j in range(p.count)]
        assert flat == [(k, i) for k in range(members) for i in range(episodes)]
        assert all(p.count > 0 and p.start + p.count <= episodes for pieces in slices for p in pieces)


def test_a_failing_worker_is_reported_and_its_pool_closed():
    from wsrl.common.episodes import EpisodeWorkers

    pool = EpisodeWorkers(1)
    proc = pool.remotes[0].proc
    with pytest.raises(RuntimeError, match="NoSuchEnv"):
        run_episodes_many(["NoSuchEnv-v0"], group_act([linear_act("Hopper-v5", 0)], []), 1, [0], workers=pool)
    assert len(pool) == 0 and proc.poll() is not None
    with pytest.raises(ValueError, match="seeds"):
        run_episodes_many(["Hopper-v5"], group_act([], []), 1, [0, 1])


def test_evaluate_many_equals_evaluate_for_each_module():
    """Real policies (untrained WeightedBC: BC on hopper, RvS-R with the return to go on walker2d and on hopper):
    the group's dicts are ``evaluate``'s, with a list of modules and with one act_many function."""
    import torch

    from wsrl.core.config import ResolvedEnv
    from wsrl.core.module import WeightedBC
    from wsrl.evaluation.scores import evaluate, evaluate_many

    bc = {"name": "bc"}
    rvs = {"name": "rvs_r", "return_input": "to_go", "return_scale": 100.0}
    members = [("Hopper-v5", bc), ("Walker2d-v5", rvs), ("Hopper-v5", rvs)]  # robots that fall: short episodes
    modules, envs = [], []
    for k, (env_id, method) in enumerate(members):
        obs_dim, act_dim = DIMS[env_id]
        torch.manual_seed(k)
        modules.append(WeightedBC(obs_dim + int(method["name"] == "rvs_r"), act_dim, {"hidden_dims": [16]},
                                  method, {}, target_return=300.0, obs_mean=np.zeros(obs_dim),
                                  obs_std=np.ones(obs_dim)))
        envs.append(ResolvedEnv(f"test/{env_id}", env_id, -20.0 * (k + 1), 3000.0))
    for m in modules:
        m.eval()
    modules[1].train()  # evaluate_many, like evaluate, scores in eval mode and gives the mode back
    seeds = [5, 6, 7]
    expected = [evaluate(m, e, 2, s) for m, e, s in zip(modules, envs, seeds, strict=True)]
    got = evaluate_many(modules, envs, 2, seeds, workers=0)
    assert got == expected
    assert modules[1].training and not modules[0].training

    def act_many(obs, returns, steps):
        return [m.act(o, r, s) for m, o, r, s in zip(modules, obs, returns, steps, strict=True)]

    modules[1].eval()
    assert evaluate_many(act_many, envs, 2, seeds, workers=1) == expected
