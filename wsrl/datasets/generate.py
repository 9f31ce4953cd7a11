"""Generate the suite from the shipped behaviour policies, following D4RL's protocol on Gymnasium v5.

- medium: 1M steps of the medium snapshot; expert: 1M steps of the expert snapshot (both chosen in the
  manifest, see ``wsrl.datasets.behavior.selection``); actions drawn as the learner explored: sampled from SAC's
  stochastic policy (as D4RL did), or TD3's action plus the Gaussian noise it explored with. The expert may come
  from another run than medium (the manifest's ``expert_run``), as D4RL trained its experts apart. Expert is not one of
  the nine but is kept as its own dataset, ``wsrl/<robot>/expert-v0``, to build medium_expert from.
- medium_replay: the learner's replay buffer at the moment the medium snapshot was taken, regenerated in one
  rollout whose policy changes every ``snapshot_every`` steps. The learner saved a snapshot every
  ``snapshot_every`` steps; the data of steps ``s .. s + snapshot_every`` was collected by the policies in
  between, here by the snapshot at step ``s``. The first share has no snapshot before it and takes uniform random
  actions in [-1, 1], like the learner's warm-up and its untrained policy. Episodes run on across a change of
  policy, as in the buffer. So the dataset has as many steps as the learner had taken when medium was saved,
  collected by a piecewise-constant policy instead of one that changed at every step (the shipped artifacts would
  otherwise have to include the buffer itself).
- medium_expert: the medium and expert datasets concatenated (2M steps), with the reference scores (Minari's
  ``combine_datasets`` would drop them). Missing parts are generated first; existing ones are reused.

Rollouts step a vector of environments with one batched actor call per step; episodes end at termination or at
the 1000-step limit of the v5 environments. Episodes still running when the budget is spent are run to their end,
so every episode is whole and each policy contributes its budget plus less than one episode per environment. The
vector is split into ``SHARDS`` independently seeded shards, run in parallel processes when there are cores for
them; the data does not depend on how many run at once. ``size='small'`` makes the same datasets at a tenth of
the size, for quick runs and CPU sweeps.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from wsrl.datasets.behavior.actors import Actor, load_actor
from wsrl.datasets.behavior.locations import ASSETS
from wsrl.datasets.store import (
    KEYS,
    DatasetError,
    Episodes,
    concat_episodes,
    episode_buffers,
    exists_locally,
    read_episodes,
    write_dataset,
)
from wsrl.datasets.suite import GENERATED_QUALITIES, ROBOT, generated_id

FULL_STEPS = 1_000_000  # D4RL's medium and expert sizes
SMALL_FRACTION = 10
SHARDS = 2  # independent vector envs per rollout, each in its own process when cores allow
ENVS_PER_SHARD = 16  # 8 to 64 run at the same speed per core here; fewer pay more per-step overhead
EPISODE_LIMIT = 1000  # the v5 environments' time limit, when the spec does not say
PARALLEL_MIN_STEPS = 20_000  # below this budget per policy, starting worker processes costs more than it saves


def derive_seed(*keys: int) -> int:
    """An independent 32-bit seed for each combination of keys (dataset, chunk, shard)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def load_manifest(robot: str, assets: Path) -> dict:
    path = assets / robot / "manifest.json"
    if not path.exists():
        raise DatasetError(f"no behaviour policies for {robot} in {assets}: train them with "
                           f"`python -m wsrl.datasets.behavior train {robot}`, then `choose`")
    manifest = json.loads(path.read_text())
    if not manifest.get("chosen"):
        raise DatasetError(f"{path} has chosen no medium and expert policies yet: let "
                           f"`python -m wsrl.datasets.behavior choose {robot} <run>` pick them")
    return manifest


def rollout_shard(env_id: str, actors: list[Actor | None], steps: int, seed: int, n_envs: int,
                  desc: str | None = None) -> Episodes:
    """At least ``steps`` transitions from ``n_envs`` environments side by side, in whole episodes.

    Each environment has an equal share of ``steps``; once its share is spent it runs its current episode to the
    end (termination or the time limit), as Minari's own generation scripts do, so the total exceeds ``steps`` by
    less than one episode per environment and no episode is cut short. The actors take turns in equal shares of
    the steps, episodes running on across a change of actor (as in an off-policy learner's replay buffer, where
    the policy changes under a running episode); ``None`` takes uniform random actions. Per step: one vector-env
    call and one batched actor call; the arrays are cut into episodes afterwards. ``desc`` draws a progress bar
    (scaled to ``SHARDS`` shards) on a terminal, none in a log (datasets made side by side would fill it).
    """
    threads = torch.get_num_threads()  # restored on the way out: the caller may be a training process
    torch.set_num_threads(1)  # a 256-wide MLP on 16 rows: threads cost more than they give
    n_envs = max(1, min(n_envs, steps))
    horizon = -(-steps // n_envs)
    share = np.full(n_envs, horizon)  # the last step row is shared out so that the shares sum to ``steps``
    share[steps - (horizon - 1) * n_envs:] -= 1
    envs = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    try:
        rows = horizon + (envs.spec.max_episode_steps or EPISODE_LIMIT)  # room to finish the last episodes
        envs.action_space.seed(seed)
        gen = torch.Generator().manual_seed(seed)
        obs, _ = envs.reset(seed=seed)
        obs_buf = np.empty((rows + 1, n_envs, obs.shape[1]), dtype=obs.dtype)
        act_buf = np.empty((rows, n_envs, envs.single_action_space.shape[0]), dtype=np.float32)
        rew_buf = np.empty((rows, n_envs))
        term_buf = np.empty((rows, n_envs), dtype=bool)
        trunc_buf = np.empty((rows, n_envs), dtype=bool)
        final_obs: dict[tuple[int, int], np.ndarray] = {}  # (step, env) of each ended episode -> its last obs
        length = np.zeros(n_envs, dtype=np.int64)  # 0 while an environment still collects
        obs_buf[0] = obs
        bar = tqdm(total=horizon, desc=desc, unit="step", unit_scale=n_envs * SHARDS, disable=desc is None or None,
                   mininterval=1.0, leave=False)
        t = 0
        while not length.all():
            actor = actors[min(t * len(actors) // horizon, len(actors) - 1)]
            if actor is None:
                action = envs.action_space.sample()
            else:
                action = actor.act(torch.as_tensor(obs, dtype=torch.float32), gen).numpy()
            obs, rew, term, trunc, info = envs.step(action)
            act_buf[t], rew_buf[t], term_buf[t], trunc_buf[t], obs_buf[t + 1] = action, rew, term, trunc, obs
            for i in np.flatnonzero(term | trunc):  # once per episode, not per step
                final_obs[t, i] = info["final_obs"][i]
            t += 1
            finished = (length == 0) & (term | trunc) & (t >= share)
            length[finished] = t
            bar.update(int(t <= horizon))
        bar.close()
    finally:
        envs.close()
        torch.set_num_threads(threads)
    return cut_episodes(length, final_obs, obs_buf, act_buf, rew_buf, term_buf, trunc_buf)


def cut_episodes(length: np.ndarray, final_obs: dict[tuple[int, int], np.ndarray], obs_buf: np.ndarray,
                 act_buf: np.ndarray, rew_buf: np.ndarray, term_buf: np.ndarray, trunc_buf: np.ndarray) -> Episodes:
    """The step arrays of a rollout ([step, env, ...]; environment i's first ``length[i]`` steps) cut into whole
    episodes at their termination or truncation flags, each ending with its final observation."""
    episodes: Episodes = {k: [] for k in KEYS}
    for i in range(len(length)):
        n = length[i]
        term, trunc = term_buf[:n, i], trunc_buf[:n, i]
        ends = np.flatnonzero(term | trunc)
        for start, end in zip(np.r_[0, ends[:-1] + 1], ends, strict=True):
            episodes["observations"].append(np.concatenate([obs_buf[start:end + 1, i], final_obs[end, i][None]]))
            episodes["actions"].append(act_buf[start:end + 1, i])
            episodes["rewards"].append(rew_buf[start:end + 1, i])
            episodes["terminations"].append(term[start:end + 1])
            episodes["truncations"].append(trunc[start:end + 1])
    return episodes


def _shard(args: tuple) -> Episodes:
    return rollout_shard(*args)


def rollout(env_id: str, actors: list[Actor | None], steps: int, seed: int,
            n_envs: int = ENVS_PER_SHARD, desc: str = "", pool: ProcessPoolExecutor | None = None) -> Episodes:
    """Exactly ``steps`` transitions in ``SHARDS`` shards of ``n_envs`` environments (see ``rollout_shard``).

    Shard ``k`` is seeded ``derive_seed(seed, k)``; with a ``pool`` the shards run in its processes, otherwise
    one after another, with the same result. Only the first shard draws the progress bar.
    """
    jobs = [(env_id, actors, steps // SHARDS + (k < steps % SHARDS), derive_seed(seed, k), n_envs,
             (desc or env_id) if k == 0 else None) for k in range(SHARDS)]
    jobs = [job for job in jobs if job[2] > 0]
    return concat_episodes(list(pool.map(_shard, jobs)) if pool is not None else [_shard(job) for job in jobs])


def policy_run(manifest: dict, quality: str) -> dict:
    """The record of the run whose snapshots make ``quality``: the expert's own run where the manifest names one
    (``expert_run``; D4RL trained its experts apart), else the manifest's."""
    return manifest.get("expert_run", manifest) if quality == "expert" else manifest


def snapshot_actor(robot: str, run: dict, step: int, assets: Path) -> Actor:
    """The actor of ``run``'s snapshot at ``step``, from the shipped ``assets``."""
    entry = next((e for e in run["curve"] if e["step"] == step), None)
    folder = assets / robot / "snapshots" / run.get("snapshot_dir", "")
    path = folder / (entry["snapshot"] if entry else f"step_{step:07d}.pt")
    if entry is None or not path.exists():
        raise DatasetError(f"behaviour snapshot {path} is missing; restore {assets / robot} or retrain it")
    return load_actor(path)


def rollout_worker() -> None:
    """A rollout worker's signals: Ctrl-C is the parent's to handle (it stops the workers); SIGTERM, how the parent
    stops them, ends the worker at once, even where its parent had turned SIGTERM into an exception."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def worker_pool(workers: int, initializer: Callable[[], None] = rollout_worker
                ) -> Iterator[ProcessPoolExecutor | None]:
    """``workers`` forked processes (as torch's DataLoader uses: nothing is re-imported), each set up by
    ``initializer``, or None for one.

    A worker that dies raises BrokenProcessPool rather than hanging; on an error or interrupt the workers are
    stopped at once (SIGTERM) instead of finishing their work.
    """
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=initializer)
    try:
        yield pool
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())  # no public terminate before 3.14
        for process in processes:
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


def generate(robot: str, quality: str, size: str = "full", overwrite: bool = False, assets: Path | None = None,
             seed: int = 0, steps_per_policy: int | None = None, workers: int | None = None) -> str:
    """Write one generated dataset (and, for medium_expert, its two parts if missing); returns its id.

    ``assets`` holds the behaviour policies (default: the ones shipped in the package). ``steps_per_policy``
    overrides the budget of 1M (full) or 100k (small) steps per policy, and scales medium_replay's chunks
    alike. ``workers``: processes for the rollout shards (default: one per shard if the cores allow and the
    budget is worth it). The same arguments give the same data whatever ``workers`` is.
    """
    assets = assets or ASSETS
    if quality not in GENERATED_QUALITIES:
        raise DatasetError(f"unknown quality {quality!r}: use one of {', '.join(GENERATED_QUALITIES)}")
    if robot not in ROBOT:
        raise DatasetError(f"unknown robot {robot!r}: use one of {', '.join(ROBOT)}")
    manifest = load_manifest(robot, assets)
    dataset_id = generated_id(robot, quality, size)
    if exists_locally(dataset_id) and not overwrite:
        raise DatasetError(f"{dataset_id} already exists; pass --overwrite to replace it")
    n = steps_per_policy or (FULL_STEPS // SMALL_FRACTION if size == "small" else FULL_STEPS)
    if workers is None:
        workers = min(SHARDS, os.cpu_count() or 1) if n >= PARALLEL_MIN_STEPS else 1
    with worker_pool(workers) as pool:
        return _generate(robot, quality, size, assets, manifest, seed, n, steps_per_policy, pool, overwrite)


def _generate(robot: str, quality: str, size: str, assets: Path, manifest: dict, seed: int, n: int,
              steps_per_policy: int | None, pool: ProcessPoolExecutor | None, overwrite: bool) -> str:
    r = ROBOT[robot]
    chosen = manifest["chosen"]
    source = policy_run(manifest, quality)
    learner = source["learner"].upper()
    label = f"{robot} {quality}"
    quality_seed = derive_seed(seed, GENERATED_QUALITIES.index(quality))
    algorithm = source["algorithm"]
    if quality in ("medium", "expert"):
        actor = snapshot_actor(robot, source, chosen[quality], assets)
        episodes = rollout(r.env_id, [actor], n, quality_seed, desc=label, pool=pool)
        policy = f"{learner} snapshot at step {chosen[quality]}"
    elif quality == "medium_replay":
        every = manifest["snapshot_every"]
        chunk = max(1, every * n // FULL_STEPS)
        steps = [e["step"] for e in manifest["curve"] if e["step"] < chosen["medium"]]
        actors = [None] + [snapshot_actor(robot, manifest, s, assets) for s in steps]
        # few enough environments that each actor's share spans whole episodes in every one of them
        n_envs = max(1, min(ENVS_PER_SHARD, chunk // (1000 * SHARDS)))
        episodes = rollout(r.env_id, actors, chunk * len(actors), quality_seed, n_envs, desc=label, pool=pool)
        policy = f"uniform random actions for {chunk} steps" + (
            f", then the {learner} snapshots of steps {steps[0]} to {steps[-1]} (one every {every}) for {chunk} "
            "steps each" if steps else "") + f": the replay buffer up to the medium snapshot (step {chosen['medium']})"
    else:
        parts = []
        for q in ("medium", "expert"):
            part_id = generated_id(robot, q, size)
            if not exists_locally(part_id):
                _generate(robot, q, size, assets, manifest, seed, n, steps_per_policy, pool, False)
            parts.append(read_episodes(part_id))
        episodes = concat_episodes(parts)
        policy = f"{generated_id(robot, 'medium', size)} followed by {generated_id(robot, 'expert', size)}"
        algorithm = " / ".join(dict.fromkeys(policy_run(manifest, q)["algorithm"] for q in ("medium", "expert")))
    steps_made = sum(len(a) for a in episodes["actions"])
    print(f"{generated_id(robot, quality, size)}: {steps_made} steps, {len(episodes['actions'])} episodes, "
          "writing", flush=True)
    return write_dataset(
        generated_id(robot, quality, size), episode_buffers(**episodes), overwrite=overwrite, env=r.env_id,
        eval_env=r.env_id, algorithm_name=algorithm, ref_min_score=r.ref_min_score,
        ref_max_score=r.ref_max_score,
        description=f"wsrl {label} ({size}): {steps_made} steps, {len(episodes['actions'])} episodes; {policy}; "
                    f"actions drawn as the learner explored; seed {seed}; D4RL reference scores.")
