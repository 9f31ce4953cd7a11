"""Running episodes: a policy's rollouts in vectorized Gymnasium environments, one batched call per step.

The bottom layer of evaluation, behaviour-policy scoring and the rollout video: it knows nothing of configs,
datasets or Lightning, only an ``act`` function.

Why ``run_episodes_many`` has workers of its own rather than Gymnasium's ``AsyncVectorEnv`` (issue 33):
AsyncVectorEnv runs one sub-env per process and batches through the sub-envs' common spaces, so a group (robots
of different sizes, 10 episodes a member, a few workers) fits it only with each worker's slice disguised as one
env of a custom space, re-cut through ``set_attr``. Built so (a prototype, 2026-12-06), it gave the same episodes
bit for bit (four members on three robots, early terminations), but for 8 HalfCheetah policies x 10 episodes over
2 workers (8 interleaved repetitions on the busy 2-core machine, single repetitions 0.6x-3x apart) it took 1.11x
the time of these workers kept across calls (median of the per-repetition ratios; 1.23x as a ratio of medians)
and 1.04x (1.08x) with workers started per call: not shown within 10 %. It would save about 50 lines, and its
workers are forked or spawned by multiprocessing, which the fresh interpreters of ``_Remote`` avoid.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

import gymnasium as gym
import numpy as np

# act(observations [n, obs_dim], returns so far [n], steps so far [n]) -> actions [n, act_dim]
ActFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def run_episodes(env_id: str, act: ActFn, n_episodes: int, seed: int,
                 max_episode_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run ``n_episodes`` episodes side by side, one environment each, with one batched ``act`` call per step.

    Episode ``i`` is reset with seed ``seed + i``, so a policy's returns are reproducible. Environments whose
    episode has ended keep stepping (auto-reset) until the last one ends; their rewards are masked out.
    Returns the undiscounted episode returns and lengths. ``max_episode_steps`` shortens the env's own limit.
    """
    envs = _make_envs(env_id, n_episodes, max_episode_steps)
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


# act_many(observations per member [n, obs_dim_k], returns so far per member [n], steps so far per member [n])
#   -> actions per member [n, act_dim_k]: one call per step for every member of a group (one batched forward)
ActManyFn = Callable[[list[np.ndarray], list[np.ndarray], list[np.ndarray]], list[np.ndarray]]


def _make_envs(env_id: str, n: int, max_episode_steps: int | None) -> gym.vector.VectorEnv:
    """The vector env of ``run_episodes`` (also what ``run_episodes_many`` builds its pieces from)."""
    return gym.make_vec(
        env_id,
        num_envs=n,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **({} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}),
    )


@dataclass(frozen=True)
class _Piece:
    """Episodes ``start .. start + count`` of member ``member``, in one vector env of one worker."""

    member: int
    env_id: str
    start: int
    count: int
    seed: int  # the member's seed: episode i is reset with seed + i


class _Shard:
    """The environments of one worker: one vector env per piece, reset on construction. ``step`` steps the pieces
    whose action is given (a member whose episodes have all ended is no longer stepped) and returns, per piece,
    (observations, rewards, done) or None."""

    def __init__(self, pieces: list[_Piece], max_episode_steps: int | None) -> None:
        self.envs = [_make_envs(p.env_id, p.count, max_episode_steps) for p in pieces]
        self.first = [env.reset(seed=[p.seed + p.start + j for j in range(p.count)])[0]
                      for p, env in zip(pieces, self.envs, strict=True)]

    def step(self, actions: list[np.ndarray | None]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        out = []
        for env, action in zip(self.envs, actions, strict=True):
            if action is None:
                out.append(None)
                continue
            obs, reward, terminated, truncated, _ = env.step(action)
            out.append((obs, reward, terminated | truncated))
        return out

    def close(self) -> None:
        for env in self.envs:
            env.close()


def serve(fd: int) -> None:
    """A worker process (``python -c "from wsrl.common.episodes import serve; serve(FD)"``), driven over the socket
    ``fd``:
    ``("reset", (pieces, max_episode_steps))`` builds and resets a new shard and answers its first observations,
    ``("step", actions)`` steps it and answers the results, ``None`` ends the worker."""
    conn = Connection(fd)
    shard = None
    try:
        while (message := conn.recv()) is not None:
            kind, payload = message
            if kind == "reset":
                if shard is not None:
                    shard.close()
                    shard = None
                shard = _Shard(*payload)
                conn.send(("ok", shard.first))
            else:
                conn.send(("ok", shard.step(payload)))
    except EOFError:
        pass
    except BaseException as err:  # noqa: BLE001 - handed to the parent, which raises it
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
    finally:
        if shard is not None:
            shard.close()
        conn.close()


def _split(env_ids: list[str], n_episodes: int, seeds: list[int], shards: int) -> list[list[_Piece]]:
    """All members' episodes in order, cut into ``shards`` contiguous slices of near-equal size; each slice is cut
    again at member boundaries into pieces."""
    total = len(env_ids) * n_episodes
    bounds = np.linspace(0, total, shards + 1).round().astype(int)
    out = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        pieces = []
        pos = lo
        while pos < hi:
            k, start = divmod(pos, n_episodes)
            count = min(hi - pos, n_episodes - start)
            pieces.append(_Piece(k, env_ids[k], start, count, int(seeds[k])))
            pos += count
        out.append(pieces)
    return out


class _Remote:
    """A worker process, driven through a socket. The worker is a fresh interpreter that imports only
    ``wsrl.common.episodes`` (so gymnasium, MuJoCo and torch, whose import sets the subnormal flush that the physics of
    ``run_episodes`` runs under): not a fork of a process whose torch or CUDA threads are running, and not a copy
    of the program's main module, as multiprocessing's spawn and forkserver would import."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        path = os.pathsep.join([p for p in sys.path if p] + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        with theirs:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from wsrl.common.episodes import serve; serve(int(sys.argv[1]))",
                 str(theirs.fileno())], pass_fds=[theirs.fileno()], env={**os.environ, "PYTHONPATH": path},
                stdin=subprocess.DEVNULL)
        self.conn = Connection(ours.detach())

    def send(self, kind: str, payload) -> None:
        try:
            self.conn.send((kind, payload))
        except OSError:
            raise RuntimeError(f"evaluation worker {self.proc.pid} is gone (exit code {self.proc.poll()})") from None

    def receive(self):
        try:
            status, payload = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"evaluation worker {self.proc.pid} died (exit code {self.proc.poll()})") from None
        if status != "ok":
            raise RuntimeError(f"evaluation worker {self.proc.pid} failed: {payload}")
        return payload

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.conn.close()


class EpisodeWorkers:
    """``n`` worker processes for ``run_episodes_many`` that outlive one call: ``with EpisodeWorkers(14) as pool:
    run_episodes_many(..., workers=pool)`` as often as needed (one call at a time), paying their start (about an
    import of torch, gymnasium and MuJoCo each, side by side) once. A call that fails closes them."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"EpisodeWorkers({n}): need at least one worker")
        self.remotes: list[_Remote] = []
        try:
            for _ in range(n):
                self.remotes.append(_Remote())
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.remotes)

    def close(self) -> None:
        remotes, self.remotes = self.remotes, []
        for remote in remotes:
            remote.close()

    def __enter__(self) -> EpisodeWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_episodes_many(env_ids: list[str], act_many: ActManyFn, n_episodes: int, seeds: list[int],
                      workers: int | EpisodeWorkers = 0,
                      max_episode_steps: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``run_episodes`` for a group of policies at once: member ``k`` runs ``n_episodes`` episodes in ``env_ids[k]``,
    episode ``i`` reset with seed ``seeds[k] + i``, and every member's episodes are stepped in lockstep with one
    ``act_many`` call per step (lists over members; members may differ in observation and action sizes).

    Member k's returns and lengths are identical (bit for bit) to ``run_episodes(env_ids[k], act_k, n_episodes,
    seeds[k])`` when ``act_many`` applies ``act_k`` to member k's arrays: the same vector envs, cut into pieces, see
    the same seeds and actions. A member whose episodes have all ended is no longer stepped; ``act_many`` still gets
    its last observations (and its actions are ignored), so that a batched forward keeps its shapes.

    ``workers``: the environments are spread over this many processes (each steps a contiguous slice of all
    members' episodes), started for this call, or over an ``EpisodeWorkers`` pool kept across calls; 0 steps them
    in this process.
    """
    m = len(env_ids)
    if len(seeds) != m:
        raise ValueError(f"{m} env ids but {len(seeds)} seeds")
    if n_episodes < 1 or m == 0:
        raise ValueError("need at least one member and one episode")
    n_workers = len(workers) if isinstance(workers, EpisodeWorkers) else workers
    if n_workers < 0:
        raise ValueError(f"workers={n_workers} must be 0 (in this process) or more")
    shards = _split(env_ids, n_episodes, seeds, max(1, min(n_workers, m * n_episodes)))
    if n_workers == 0:
        local = _Shard(shards[0], max_episode_steps)
        try:
            return _lockstep(shards, local, None, act_many, n_episodes, m)
        finally:
            local.close()
    pool = workers if isinstance(workers, EpisodeWorkers) else EpisodeWorkers(n_workers)
    try:
        remotes = pool.remotes[:len(shards)]
        for remote, pieces in zip(remotes, shards, strict=True):
            remote.send("reset", (pieces, max_episode_steps))
        return _lockstep(shards, None, remotes, act_many, n_episodes, m)
    except BaseException:
        pool.close()  # replies may be left in the pipes: the pool cannot serve another call
        raise
    finally:
        if pool is not workers:
            pool.close()


def _lockstep(shards: list[list[_Piece]], local: _Shard | None, remotes: list[_Remote] | None, act_many: ActManyFn,
              n_episodes: int, m: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The per-step loop over the group: gather observations, one ``act_many`` call, scatter actions. The shards are
    stepped by ``local`` (in this process) or by ``remotes`` (already sent their pieces), one each."""
    firsts = [r.receive() for r in remotes] if remotes is not None else [local.first]
    obs: list[list[np.ndarray]] = [[] for _ in range(m)]
    for pieces, first in zip(shards, firsts, strict=True):
        for p, o in zip(pieces, first, strict=True):
            obs[p.member].append(o)
    observations = [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in obs]
    returns = [np.zeros(n_episodes) for _ in range(m)]
    lengths = [np.zeros(n_episodes, dtype=np.int64) for _ in range(m)]
    alive = [np.ones(n_episodes, dtype=bool) for _ in range(m)]
    running = [True] * m
    while any(running):
        actions = act_many(observations, returns, lengths)
        orders = [[actions[p.member][p.start:p.start + p.count] if running[p.member] else None for p in pieces]
                  for pieces in shards]
        if remotes is not None:
            for r, order in zip(remotes, orders, strict=True):
                r.send("step", order)
            results = [r.receive() for r in remotes]
        else:
            results = [local.step(orders[0])]
        parts: list[list] = [[] for _ in range(m)]
        for pieces, result in zip(shards, results, strict=True):
            for p, r in zip(pieces, result, strict=True):
                if r is not None:
                    parts[p.member].append(r)
        for k in range(m):
            if not running[k]:
                continue
            if len(parts[k]) == 1:
                o, reward, done = parts[k][0]
            else:
                o, reward, done = (np.concatenate(x) for x in zip(*parts[k], strict=True))
            observations[k] = o
            returns[k] += np.where(alive[k], reward, 0.0)
            lengths[k] += alive[k]
            alive[k] &= ~done
            running[k] = bool(alive[k].any())
    return list(zip(returns, lengths, strict=True))
