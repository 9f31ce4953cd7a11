"""Speed figures of wsrl, each against a baseline measured in the same run on the same machine (``make bench``).

1. Training throughput of the real ``wsrl.train`` path (the data module, module and Trainer that
   ``wsrl.running.build.build_run`` makes for ``train``: on-device sampler, WeightedBC and its weighted loss,
   checkpoints, loggers, callbacks) against a bare PyTorch loop with the same model, optimizer, batch size and loss.
2. The same path against the usual way (as the RvS code does): a LightningModule with automatic optimization
   and the loss logged every step, fed by ``DataLoader(TensorDataset(...), batch_size, shuffle=True)``, with
   torch's default Adam; and how the gap grows with the batch size.
3. Evaluation of 10 episodes: ``run_episodes`` (one vector env, one batched actor call per step) against one
   episode after another with one actor call per observation.
3b. Group evaluation: 8 policies x 10 episodes with ``run_episodes_many`` (every member's episodes in lockstep,
   one batched forward of the stacked policies per step, the environments over 2 worker processes and in process)
   against ``run_episodes`` member after member.
4. LDS weights for 2M labels, and drawing a weighted batch of 512 from 2M weights (IndexSampler) against
   ``np.random.choice(p=...)`` and ``torch.multinomial``.
5. Dataset generation: env steps/s of ``wsrl.datasets.generate.rollout`` against bare env stepping.
6. On a GPU (skipped on CPU): the paper's size with the data on the GPU, against a bare loop, torch.compile
   and a CUDA graph of the whole step.
7. Steady state: ``make run``'s configuration trained for 10k steps in a fresh process, its speed early against
   late (bar: late / early >= 0.9), and bare, wsrl and usual timed again from its trained weights; with
   ``--steady-keep`` also without the subnormal flush, to show what it saves; and this CPU's subnormal slow path
   (one matmul on a weight with subnormal entries against a fresh one, flush off).
8. Behaviour training (only with ``--only behavior``, ~10 min): SAC's speed in process-CPU time with and without
   the subnormal flush, continued from the committed walker2d agent.
9. Stacked training (only with ``--only stacked``; issue 23): member-steps/s of a stacked group (``wsrl.stacked``,
   fitted by its Lightning Trainer as the launcher fits it) against its size N and precision (on a GPU: 2 x 1024,
   batch 512, N = 1, 8, 30, 60, 180 in FP32, TF32 and bf16, with peak memory; on the CPU 2 x 256, batch 256,
   N = 1, 8, 30 in FP32; ``--stacked-n`` chooses N), the single run's steps/s beside it, and that Lightning-hosted
   step against the same step in a bare PyTorch loop.
Plus the peak memory of loading a 2M-transition dataset (in a fresh process).

The data is a synthetic Minari dataset (HalfCheetah shapes, 1000-step episodes of random numbers with
imbalanced returns) written to a temporary MINARI_DATASETS_PATH: the speed of a step does not depend on the
numbers. Timings are interleaved (bare, ours, usual in turn, ``--rounds`` times) and the best round of each
is kept, so a busy machine hurts both sides alike; ``--clock cpu --threads 1`` measures process CPU time,
steadier when other jobs share the cores. Usage:

    python experiments/bench.py [--quick] [--steps N] [--rounds R] [--json PATH] [--only train,eval,...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch

from wsrl.common.files import write_text_atomic
from wsrl.core.data import load_transitions

DATASET_ID = "bench/halfcheetah/synthetic-v0"
ENV_ID = "HalfCheetah-v5"  # episodes always last 1000 steps: every policy does the same amount of work
OBS_DIM, ACT_DIM, EPISODE = 17, 6, 1000
SECTIONS = ("train", "usual", "eval", "group_eval", "lds", "generate", "gpu", "memory", "steady", "behavior",
            "stacked")
DEFAULT_SECTIONS = SECTIONS[:-2]  # sections 8 (behaviour training, ~10 min) and 9 (stacked) run when asked



@dataclass
class Row:
    """One line of the table."""

    section: str
    name: str
    value: float | None  # the figure (None: skipped or failed)
    unit: str
    ratio: float | None = None  # against the section's baseline (meaning given in ``name``/``note``)
    bar: str = ""  # what the ratio or value must satisfy, e.g. ">= 0.95"
    ok: bool | None = None  # None: no bar
    note: str = ""


@dataclass
class Bench:
    """Settings of one run and everything measured."""

    quick: bool
    steps: int  # timed steps at the small size; other sizes scale by their cost
    rounds: int
    warmup: int
    clock: str
    threads: int
    transitions: int
    only: set[str]
    steady_steps: int = 10_000  # steps of the steady-state run (section 7)
    steady_keep: bool = False  # also run section 7 without the subnormal flush (minutes longer)
    behavior_steps: int = 40_000  # transitions per run of section 8
    stacked_n: list[int] | None = None  # group sizes of section 9 (None: its defaults for the device)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wsrl-bench-")))
    rows: list[Row] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    def now(self) -> float:
        return time.process_time() if self.clock == "cpu" else time.perf_counter()

    def add(self, *args, **kwargs) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row


def check(value: float | None, bar: str) -> bool | None:
    """``bar`` is '>= x' or '< x'."""
    if value is None:
        return None
    op, x = bar.split()
    return value >= float(x) if op == ">=" else value < float(x)


@contextlib.contextmanager
def quiet():
    """Progress bars and chatter of the measured code go nowhere (they are still drawn: part of the cost),
    MuJoCo's own C-level warnings included."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _proc_status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process. Linux's VmHWM belongs to this program alone; ru_maxrss (the
    fallback) also counts what the parent held when it forked this process."""
    hwm = _proc_status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float | None:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return _proc_status_mb("VmRSS")


# ---------------------------------------------------------------------------------------------- the data


def make_dataset(root: Path, n: int, seed: int = 0) -> None:
    """A Minari dataset of ``n`` transitions in 1000-step episodes whose returns are imbalanced (most low)."""
    import minari
    from minari.data_collector import EpisodeBuffer

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    rng = np.random.default_rng(seed)
    episodes = []
    for i, start in enumerate(range(0, n, EPISODE)):
        t = min(EPISODE, n - start)
        quality = rng.beta(0.5, 2.0)  # the episode's skill: a long tail of good episodes
        trunc = np.zeros(t, dtype=bool)
        trunc[-1] = True
        episodes.append(EpisodeBuffer(
            id=i, observations=rng.standard_normal((t + 1, OBS_DIM)),
            actions=rng.uniform(-1, 1, (t, ACT_DIM)).astype(np.float32),
            rewards=10 * quality + rng.standard_normal(t), terminations=np.zeros(t, dtype=bool), truncations=trunc))
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(DATASET_ID, buffer=episodes, env=ENV_ID, algorithm_name="bench-synthetic",
                                           description="random numbers in HalfCheetah shapes, for speed tests")


def train_config(width: int, batch: int, max_steps: int, device: str = "cpu"):
    """The run configuration as ``python -m wsrl.train`` composes it: RvS-R with LDS loss weights."""
    from hydra import compose, initialize_config_dir

    from wsrl.core.config import CONF_DIR, register_configs
    from wsrl.core.validation import validate

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            "env=halfcheetah_medium_expert", f"env.dataset_id={DATASET_ID}", "method=rvs_r", "sampler=lds",
            f"policy.hidden_dims=[{width},{width}]", f"trainer.batch_size={batch}", f"trainer.max_steps={max_steps}",
            "wandb.mode=disabled", "generate_if_missing=false", f"device={device}"])
    validate(cfg)
    return cfg


def build(b: Bench, cfg, transitions, signals=None):
    """The run exactly as ``wsrl.train`` builds it (``wsrl.running.build.build_run``), in a new directory under the
    bench's root, from already loaded ``transitions`` (``wsrl.core.data.load_transitions``)."""
    from wsrl.core.config import resolve_env, to_plain
    from wsrl.running.build import build_run
    from wsrl.running.rundir import StopSignals

    run_dir = Path(tempfile.mkdtemp(dir=b.root, prefix="run-"))
    return build_run(cfg, to_plain(cfg), resolve_env(cfg.env), run_dir, signals or StopSignals(), transitions)


# ------------------------------------------------------------------------------------------ 1-2 training


class TimedStream:
    """Wraps the data module's BatchStream and notes the clock when the draws numbered in ``marks`` are fetched:
    times the training loop without adding a hook to it. Lightning fetches one batch ahead, so the time between
    two fetches ``a < b`` is ``b - a`` whole steps."""

    def __init__(self, stream, marks: list[int], now, cuda: bool) -> None:
        self.stream, self.marks, self.now, self.cuda = stream, set(marks), now, cuda
        self.times: dict[int, float] = {}

    def __getattr__(self, name: str):
        if name == "stream":  # not set yet (copying)
            raise AttributeError(name)
        return getattr(self.stream, name)

    def __iter__(self):
        for i, batch in enumerate(self.stream):
            if i in self.marks:
                if self.cuda:
                    torch.cuda.synchronize()
                self.times[i] = self.now()
            yield batch

    def rate(self, start: int, stop: int) -> float:
        return (stop - start) / (self.times[stop] - self.times[start])


class StepTimer(L.Callback):
    """Notes the clock after batch ``start`` and after batch ``stop`` (synchronizing CUDA there)."""

    def __init__(self, start: int, stop: int, now, cuda: bool) -> None:
        self.start, self.stop, self.now, self.cuda = start, stop, now, cuda
        self.t0 = self.t1 = None

    def on_train_batch_end(self, trainer, *_) -> None:
        step = trainer.global_step
        if step in (self.start, self.stop):
            if self.cuda:
                torch.cuda.synchronize()
            if step == self.start:
                self.t0 = self.now()
            else:
                self.t1 = self.now()

    def rate(self) -> float:
        return (self.stop - self.start) / (self.t1 - self.t0)


def trained_state(module, optimizer) -> dict:
    return {"module": {k: v.clone() for k, v in module.state_dict().items()},
            "optimizer": optimizer.state_dict()}


class LoadOptimizerState(L.Callback):
    """Gives the optimizer Lightning builds a trained run's moments (Adam's state holds subnormals too)."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def on_train_start(self, trainer, pl_module) -> None:
        trainer.optimizers[0].load_state_dict(self.state["optimizer"])


def wsrl_rate(b: Bench, cfg, transitions, warmup: int, steps: int, state: dict | None = None) -> float:
    """Steps/s of the real training path (``build``), timed between two draws after ``warmup`` (see TimedStream);
    ``state``: start from a trained run's weights and optimizer moments."""
    return wsrl_run(b, cfg, transitions, [warmup + 1, warmup + steps + 1], warmup + steps + 2, state)[0][0]


def wsrl_run(b: Bench, cfg, transitions, marks: list[int], max_steps: int, state: dict | None = None):
    """Fit the real training path for ``max_steps``; returns (rates between consecutive marks, trained state)."""
    from wsrl.running.rundir import StopSignals

    cfg.trainer.max_steps = max_steps
    with StopSignals() as signals:
        run = build(b, cfg, transitions, signals)
        if state is not None:
            run.module.load_state_dict(state["module"])
            run.trainer.callbacks.append(LoadOptimizerState(state))
        run.data.stream = timer = TimedStream(run.data.stream, marks, b.now, run.device.type == "cuda")
        with quiet():
            run.fit()
    rates = [timer.rate(x, y) for x, y in zip(marks[:-1], marks[1:], strict=True)]
    return rates, trained_state(run.module, run.trainer.optimizers[0])


def bare_rate(b: Bench, cfg, transitions, warmup: int, steps: int, optimizer: str = "module", compiled: str = "",
              state: dict | None = None) -> float:
    """Steps/s of a plain loop: draw indices, gather, weighted NLL, zero_grad, backward, optimizer step.

    ``optimizer='module'`` builds the optimizer exactly as WeightedBC.configure_optimizers does (the fair
    comparison); 'default' uses torch.optim.Adam's defaults. ``compiled``: '' | 'compile' (torch.compile of the
    loss) | 'graph' (CUDA graph of the whole step). ``state``: a trained run's weights and optimizer moments.
    """
    from wsrl.core.module import weighted_nll

    run = build(b, cfg, transitions)  # the same model, inputs and weights as the real path; only the loop differs
    module, data = run.module.to(run.device), run.data
    if state is not None:
        module.load_state_dict(state["module"])
    policy = module.policy
    tc = cfg.trainer
    if optimizer == "module":
        opt = module.configure_optimizers()
    else:
        opt = torch.optim.Adam(policy.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                               **({"capturable": True} if compiled == "graph" else {}))
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    x_all, a_all, w_all = data.inputs, data.actions, data.stream.loss_weights
    n, batch, device = len(a_all), tc.batch_size, data.device
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    cuda = device.type == "cuda"

    def loss_of(idx):
        return weighted_nll(policy.log_prob(x_all[idx], a_all[idx]), None if w_all is None else w_all[idx])

    if compiled == "compile":
        loss_of = torch.compile(loss_of)
    if compiled == "graph":
        idx = torch.randint(n, (batch,), generator=gen, device=device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                loss_of(idx).backward()
                opt.step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            loss_of(idx).backward()
            opt.step()

        def step():
            idx.copy_(torch.randint(n, (batch,), generator=gen, device=device))
            graph.replay()
    else:
        def step():
            idx = torch.randint(n, (batch,), generator=gen, device=device)
            loss = loss_of(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()

    for i in range(warmup + steps):
        if i == warmup:
            if cuda:
                torch.cuda.synchronize()
            t0 = b.now()
        step()
    if cuda:
        torch.cuda.synchronize()
    return steps / (b.now() - t0)


def usual_rate(b: Bench, cfg, transitions, warmup: int, steps: int, state: dict | None = None) -> float:
    """Steps/s of the usual way: automatic optimization, loss logged every step, default Adam, fed by
    DataLoader(TensorDataset, shuffle=True); the same Trainer (``build``), model, batch size and weighted loss.
    Timed by a callback (its few microseconds per step are well under 1% of this path's step). ``state``: a
    trained run's policy weights and optimizer moments."""
    from torch.utils.data import DataLoader, TensorDataset

    from wsrl.core.module import weighted_nll
    from wsrl.running.rundir import StopSignals

    tc = cfg.trainer
    tc.max_steps = warmup + steps + 1
    with StopSignals() as signals:
        run = build(b, cfg, transitions, signals)
        data = run.data

        class UsualBC(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.policy = run.module.policy
                if state is not None:
                    self.policy.load_state_dict({k.removeprefix("policy."): v for k, v in state["module"].items()
                                                 if k.startswith("policy.")})

            def training_step(self, batch, batch_idx):
                inputs, actions, weights = batch
                loss = weighted_nll(self.policy.log_prob(inputs, actions), weights)
                self.log("train_loss", loss, prog_bar=True)
                return loss

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)

        weights = data.stream.loss_weights
        weights = torch.ones(len(data.actions)) if weights is None else weights
        loader = DataLoader(TensorDataset(data.inputs.cpu(), data.actions.cpu(), weights.cpu()),
                            batch_size=tc.batch_size, shuffle=True, drop_last=True)
        timer = StepTimer(warmup, warmup + steps, b.now, run.device.type == "cuda")
        run.trainer.callbacks.append(timer)
        if state:
            run.trainer.callbacks.append(LoadOptimizerState(state))
        with quiet():
            run.trainer.fit(UsualBC(), train_dataloaders=loader)
    return timer.rate()


def steps_for(b: Bench, width: int, batch: int) -> tuple[int, int]:
    """(warmup, timed steps) so that each measurement takes roughly the same time as at 2 x 256, batch 256."""
    cost = max(1.0, (width / 256) ** 2 * (batch / 256) / 7)  # the paper's size is ~9x slower than the small
    return b.warmup, max(3 if b.quick else 8, int(b.steps / cost))


def interleaved(b: Bench, runners: dict, rounds: int) -> dict[str, list[float]]:
    """Run every runner once per round, in turn, and keep all rates."""
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            rates[name].append(run())
    return rates


def bench_training(b: Bench, transitions) -> None:
    sizes = [("paper size (2 x 1024, batch 512)", 1024, 512, 0.95, 1.1),
             ("small size (2 x 256, batch 256)", 256, 256, 0.85, 1.4)]
    for label, width, batch, bar_bare, bar_usual in sizes:
        cfg = train_config(width, batch, 1)
        warmup, steps = steps_for(b, width, batch)
        args = (b, cfg, transitions, warmup, steps)
        runners = {"bare": partial(bare_rate, *args), "wsrl": partial(wsrl_rate, *args)}
        if "usual" in b.only:
            runners["usual"] = partial(usual_rate, *args)
        rates = interleaved(b, runners, b.rounds)
        b.raw[f"train/{width}x{batch}"] = {"steps": steps, "warmup": warmup, **rates}
        best = {k: max(v) for k, v in rates.items()}
        paired = [w / r for w, r in zip(rates["wsrl"], rates["bare"], strict=True)]
        sec = f"1. training, {label}"
        b.add(sec, "bare PyTorch loop (same model, optimizer, loss)", best["bare"], "steps/s")
        bar = f">= {bar_bare}"
        ratio = best["wsrl"] / best["bare"]
        b.add(sec, "wsrl.train path (Lightning); ratio = wsrl / bare", best["wsrl"], "steps/s", ratio, bar,
              check(ratio, bar), f"per-round ratios {fmt_list(paired)}")
        if "usual" in rates:
            bar = f">= {bar_usual}"
            ratio = best["wsrl"] / best["usual"]
            b.add(f"2. vs the usual way, {label}", "usual way: DataLoader(TensorDataset); ratio = wsrl / usual",
                  best["usual"], "steps/s", ratio, bar, check(ratio, bar),
                  f"usual / bare = {best['usual'] / best['bare']:.2f}")


def bench_batch_sweep(b: Bench, transitions) -> None:
    batches = (256, 1024) if b.quick else (256, 1024, 4096, 16384)
    for batch in batches:
        cfg = train_config(256, batch, 1)
        warmup, steps = steps_for(b, 256, batch)
        args = (b, cfg, transitions, warmup, steps)
        rates = interleaved(b, {"wsrl": partial(wsrl_rate, *args), "usual": partial(usual_rate, *args)}, 1)
        b.raw[f"sweep/256x{batch}"] = {"steps": steps, **rates}
        w, u = rates["wsrl"][0], rates["usual"][0]
        b.add("2. gap vs batch size (2 x 256)",
              f"batch {batch}: wsrl {w:.1f}, usual {u:.1f} steps/s; ratio = wsrl / usual", w * batch, "samples/s",
              w / u)


def fmt_list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


# ------------------------------------------------------------------------------------------ 3 evaluation


def bench_eval(b: Bench) -> None:
    import gymnasium as gym

    from wsrl.common.episodes import run_episodes

    episodes = 2 if b.quick else 10
    from omegaconf import OmegaConf

    from wsrl.core.module import WeightedBC

    cfg = train_config(64 if b.quick else 1024, 1, 1)
    plain = OmegaConf.to_container(cfg, resolve=True)
    torch.manual_seed(0)
    # an untrained policy of the paper's size (HalfCheetah never terminates: every episode is 1000 steps)
    module = WeightedBC(OBS_DIM + 1, ACT_DIM, plain["policy"], plain["method"], plain["trainer"], 1000.0).eval()

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

    times: dict[str, list[float]] = {"vectorized": [], "sequential": []}
    steps = {}
    for _ in range(1 if b.quick else 2):
        for name, run in (("sequential", one_by_one), ("vectorized", vectorized)):
            seconds, steps[name] = run()
            times[name].append(seconds)
    b.raw["eval"] = {"episodes": episodes, "env_steps": steps, **times}
    seq, vec = min(times["sequential"]), min(times["vectorized"])
    width = cfg.policy.hidden_dims[0]
    sec = f"3. evaluation, {episodes} episodes of {ENV_ID}, 2 x {width} policy"
    b.add(sec, f"one episode after another ({steps['sequential']} env steps)", steps["sequential"] / seq, "env steps/s")
    bar = ">= 4"
    b.add(sec, f"run_episodes ({steps['vectorized']} env steps); ratio = speed-up", steps["vectorized"] / vec,
          "env steps/s", seq / vec, bar, check(seq / vec, bar), f"{vec:.2f} s against {seq:.2f} s")

    # What bounds the speed-up: one step costs an env step plus the policy's share of a forward pass. Batching
    # divides the forward pass among the episodes only as far as the CPU's matmul scales; the physics stays.
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


# ------------------------------------------------------------------------------------------ 3b group evaluation


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
    from wsrl.common.episodes import EpisodeWorkers, run_episodes, run_episodes_many

    members, episodes = (2, 2) if b.quick else (8, 10)
    limit = 50 if b.quick else None  # HalfCheetah's own 1000 steps, or a short cut for --quick
    workers = min(2, os.cpu_count() or 1)
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

    with quiet():
        pool = EpisodeWorkers(workers)  # started before the clock: what a launcher that keeps its workers pays
    runs = {"one_by_one": one_by_one, "group_in_process": grouped(0), f"group_{workers}_workers": grouped(workers),
            f"group_{workers}_pool": grouped(pool)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    steps = {}
    try:
        for _ in range(1 if b.quick else 2):
            for name, run in runs.items():
                seconds, steps[name] = run()
                times[name].append(seconds)
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


# ------------------------------------------------------------------------------------------ 4 LDS, sampling


def best_time(b: Bench, fn, repeat: int, number: int = 1) -> float:
    """Best over ``repeat`` of the mean time of ``number`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = b.now()
        for _ in range(number):
            fn()
        best = min(best, (b.now() - t0) / number)
    return best


def bench_lds(b: Bench) -> None:
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


# ------------------------------------------------------------------------------------------ 5 generation


def bench_generate(b: Bench) -> None:
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


# ------------------------------------------------------------------------------------------ 6 GPU


def bench_gpu(b: Bench) -> None:
    sec = "6. GPU, paper size (2 x 1024, batch 512), data on the GPU"
    if not torch.cuda.is_available():
        b.add(sec, "skipped: no CUDA device", None, "")
        return
    saved_clock, b.clock = b.clock, "wall"  # CPU time says nothing about the GPU
    try:
        torch.cuda.reset_peak_memory_stats()
        cfg = train_config(1024, 512, 1, device="cuda")
        transitions = load_transitions(DATASET_ID)
        b.add(sec, "device", None, "", note=torch.cuda.get_device_name())
        warmup, steps = (3, 20) if b.quick else (50, 1000)
        args = (b, cfg, transitions, warmup, steps)
        rates = interleaved(b, {"bare": partial(bare_rate, *args), "wsrl": partial(wsrl_rate, *args)},
                            1 if b.quick else 2)
        for variant in ("compile", "graph"):
            try:
                rates[variant] = [bare_rate(b, cfg, transitions, warmup, steps, "default" if variant == "graph" else
                                            "module", compiled=variant)]
            except Exception as err:  # report and go on: these are options, not the product
                b.add(sec, f"bare loop with {variant}", None, "steps/s", note=f"FAILED: {type(err).__name__}: {err}")
        b.raw["gpu"] = rates
        best = {k: max(v) for k, v in rates.items()}
        b.add(sec, "bare loop", best["bare"], "steps/s", note=f"{1e6 / best['bare']:.0f} us/step")
        b.add(sec, "wsrl.train path; ratio = wsrl / bare", best["wsrl"], "steps/s", best["wsrl"] / best["bare"],
              note=f"{1e6 / best['wsrl']:.0f} us/step")
        if "compile" in best:
            b.add(sec, "bare loop, torch.compile(loss); ratio = it / bare", best["compile"], "steps/s",
                  best["compile"] / best["bare"])
        if "graph" in best:
            b.add(sec, "bare loop, CUDA graph of the whole step; ratio = it / bare", best["graph"], "steps/s",
                  best["graph"] / best["bare"],
                  note="the device-bound ceiling; the gap to it is host (Python, launch) time per step")
        b.add(sec, "peak GPU memory (dataset tensors, models, training)", torch.cuda.max_memory_allocated() / 2**20,
              "MiB")
        transitions = None
        torch.cuda.empty_cache()
    finally:
        b.clock = saved_clock


# ------------------------------------------------------------------------------------------ 9 stacked

PRECISIONS = {"fp32": ("highest", "none"), "tf32": ("high", "none"), "bf16": ("highest", "bf16")}


def stacked_group(cfg, n: int):
    """A stacked group (fast rng) of ``n`` copies of ``cfg`` with seeds 0..n-1, as the stacked launcher builds it."""
    from wsrl.core.config import resolve_env
    from wsrl.stacked.group import build_group

    cfgs = []
    for seed in range(n):
        member = cfg.copy()
        member.seed = seed
        cfgs.append(member)
    return build_group(cfgs, [resolve_env(c.env) for c in cfgs], "fast", [str(i) for i in range(n)])


def stacked_rate(b: Bench, group, warmup: int, steps: int) -> float:
    """Member-steps/s of the launcher's path: the group fitted by its Lightning Trainer (``StackedGroup.fit``),
    timed between the ends of two steps after ``warmup``."""
    group.trainer_cfg.max_steps = warmup + steps + 1
    timer = StepTimer(warmup, warmup + steps, b.now, group.train_device.type == "cuda")
    with quiet():
        group.fit(callbacks=[timer])
    return group.model.size * timer.rate()


def bare_stacked_rate(b: Bench, group, warmup: int, steps: int) -> float:
    """Member-steps/s of the same step in a bare PyTorch loop: the group's losses, their sum, backward and one Adam
    built as the group's ``configure_optimizers`` builds it; no Trainer, no hooks, no checkpoints or metrics."""
    cuda = group.train_device.type == "cuda"
    group.to(group.train_device)  # where Lightning's teardown of the last fit did not leave it
    optimizer = group.configure_optimizers()

    def step() -> None:
        losses = group.losses()[0]
        optimizer.zero_grad()
        group.combine(losses).backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = b.now()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return group.model.size * steps / (b.now() - t0)


def bench_stacked(b: Bench) -> None:
    """Member-steps/s of the stacked group (the launcher's Lightning-hosted path) against group size and precision,
    the single run beside it, peak memory, and the same step in a bare loop at 30 members (the issue's bar:
    Lightning under 5 % of a step)."""
    cuda = torch.cuda.is_available()
    width, batch, sizes, precisions = ((1024, 512, b.stacked_n or [1, 8, 30, 60, 180], list(PRECISIONS)) if cuda
                                       else (32 if b.quick else 256, 32 if b.quick else 256,
                                             b.stacked_n or ([1, 2] if b.quick else [1, 8, 30]), ["fp32"]))
    sec = f"9. stacked training (2 x {width}, batch {batch}, {'GPU' if cuda else 'CPU'}); member-steps/s"
    device = "cuda" if cuda else "cpu"
    transitions = load_transitions(DATASET_ID)
    warmup, steps = (2, 3) if b.quick else (10, 50 if cuda else 10)
    b.raw["stacked"] = raw = {}
    for precision in precisions:
        matmul, autocast = PRECISIONS[precision]
        cfg = train_config(width, batch, warmup + steps + 2, device=device)
        cfg.trainer.matmul_precision, cfg.trainer.autocast = matmul, autocast
        single = wsrl_rate(b, cfg, transitions, warmup, steps)
        b.add(sec, f"single run (wsrl.train path), {precision}", single, "steps/s")
        raw[f"single/{precision}"] = single
    for n in sizes:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        group = stacked_group(train_config(width, batch, 1, device=device), n)
        for precision in precisions:
            group.trainer_cfg.matmul_precision, group.trainer_cfg.autocast = PRECISIONS[precision]
            rate = stacked_rate(b, group, warmup, steps)
            raw[f"{n}/{precision}"] = rate
            b.add(sec, f"N = {n}, {precision}; ratio = it / single run", rate, "member-steps/s",
                  rate / raw[f"single/{precision}"], note=f"{1e3 * n / rate:.2f} ms/step")
        group.trainer_cfg.matmul_precision, group.trainer_cfg.autocast = PRECISIONS["fp32"]
        if cuda:
            b.add(sec, f"N = {n}: peak GPU memory", torch.cuda.max_memory_allocated() / 2**20, "MiB")
        if n == max(x for x in sizes if x <= 30):
            bare, hosted = bare_stacked_rate(b, group, warmup, steps), stacked_rate(b, group, warmup, steps)
            b.add(sec, f"N = {n}: Lightning-hosted step; ratio = hosted / bare loop", hosted, "member-steps/s",
                  hosted / bare, ">= 0.95", check(hosted / bare, ">= 0.95"),
                  note="the launcher's path; under 0.95 Lightning would cost > 5 % of a step")
        del group
        torch.set_float32_matmul_precision("highest")

# ------------------------------------------------------------------------------------------ memory


def memory_child(device: str) -> None:
    """Run in a fresh process: load the dataset and build the run on it (``build``); print the memory figures."""
    import wsrl.train  # noqa: F401  (imports before the baseline)

    cfg = train_config(1024, 512, 1, device=device)
    base = peak_rss_mb()
    t0 = time.perf_counter()
    b = Bench(quick=False, steps=0, rounds=1, warmup=0, clock="wall", threads=torch.get_num_threads(),
              transitions=0, only=set(), root=Path(os.environ["MINARI_DATASETS_PATH"]))  # the parent removes it
    data = build(b, cfg, load_transitions(DATASET_ID)).data
    seconds = time.perf_counter() - t0
    tensors = [data.inputs, data.actions, data.stream.loss_weights, data.stream.sampler.cdf]
    out = {"transitions": len(data.actions), "load_seconds": seconds, "rss_before_mb": base,
           "rss_peak_mb": peak_rss_mb(), "rss_after_mb": current_rss_mb(),
           "tensors_mb": sum(t.numel() * t.element_size() for t in tensors if t is not None) / 2**20}
    if device == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def bench_memory(b: Bench) -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        sec = f"memory, {b.transitions:,} transitions (obs {OBS_DIM}, act {ACT_DIM}), loaded on {device}"
        env = {**os.environ, "MINARI_DATASETS_PATH": str(b.root)}
        proc = subprocess.run([sys.executable, __file__, "--memory-child", device], env=env, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            b.add(sec, "load failed", None, "", note=proc.stderr.strip().splitlines()[-1] if proc.stderr else "")
            continue
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        b.raw[f"memory/{device}"] = m
        b.add(sec, "host RSS peak while loading (fresh process)", m["rss_peak_mb"], "MiB",
              note=f"{m['rss_before_mb']:.0f} MiB after imports, {m['rss_after_mb'] or float('nan'):.0f} MiB after "
                   f"setup, load {m['load_seconds']:.1f} s")
        b.add(sec, "training tensors (inputs, actions, weights, sampler cdf)", m["tensors_mb"], "MiB")
        if "cuda_peak_mb" in m:
            b.add(sec, "torch.cuda.max_memory_allocated", m["cuda_peak_mb"], "MiB")


# ------------------------------------------------------------------------------------------ steady state


def flushes_subnormals() -> bool:
    """Whether this process turns subnormal results into zeros (checked on a multi-threaded op)."""
    return bool((torch.full((1 << 22,), 1e-39) * 0.5 == 0).all())


def steady_child(mode: str, steps: int, synthetic: bool) -> None:
    """In a fresh process: ``make run``'s configuration (the quick profile on the small hopper medium-expert set,
    made if missing; ``synthetic``: on the bench's synthetic data instead, for --quick) trained for ``steps`` steps
    through the real path and timed early (steps 5-20 %) and late (the last 20 %); then bare, wsrl and usual timed
    from its trained weights and optimizer moments. ``mode='keep'`` turns the subnormal flush off first, before
    torch starts its threads: a process without wsrl's fix."""
    from hydra import compose, initialize_config_dir

    from wsrl.core.config import CONF_DIR, register_configs, resolve_env
    from wsrl.core.validation import validate
    from wsrl.datasets.sources import ensure_dataset

    if mode == "keep":  # after importing wsrl (which turns the flush on), before any op starts torch's threads
        torch.set_flush_denormal(False)
    if flushes_subnormals() != (mode == "flush"):
        raise SystemExit(f"the subnormal flush is not as mode {mode!r} needs")

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        data_env = ["env=halfcheetah_medium_expert", f"env.dataset_id={DATASET_ID}"] if synthetic else [
            "env=hopper_medium_expert"]
        cfg = compose("train", overrides=["experiment=quick", *data_env, "method=rvs_r", "wandb.mode=disabled",
                                          f"trainer.max_steps={steps}", "generate_if_missing=false"])
    validate(cfg)
    env = resolve_env(cfg.env)
    if not synthetic:
        ensure_dataset(env.dataset_id, cfg.env.source, cfg.env.robot, cfg.env.quality, cfg.env.size, None)
    transitions = load_transitions(env.dataset_id)
    b = Bench(quick=synthetic, steps=0, rounds=1, warmup=0, clock="wall", threads=torch.get_num_threads(),
              transitions=len(transitions.actions), only=set())
    early, late = (steps // 20, steps // 5), (steps - steps // 5, steps)  # 500-2,000 and 8,000-10,000 of 10k
    try:  # b.root holds the runs' directories
        rates, state = wsrl_run(b, cfg, transitions, [early[0], early[1], late[0], late[1]], steps + 1)
        timed = max(3, steps // 50)
        args = (b, cfg, transitions, 2, timed)
        after = {name: fn(*args, state=state) for name, fn in
                 (("bare", bare_rate), ("wsrl", wsrl_rate), ("usual", usual_rate))}
    finally:
        shutil.rmtree(b.root, ignore_errors=True)
    subnormal = sum(int(((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)).sum())
                    for t in state["module"].values() if t.is_floating_point())
    print(json.dumps({"early": rates[0], "late": rates[2], "after": after, "subnormal_weights": subnormal,
                      "transitions": len(transitions.actions)}))


def subnormal_penalty(rounds: int = 5, reps: int = 10) -> tuple[float, float]:
    """This CPU's slow path: ms of one 512 x 1024 x 1024 matmul, one thread, with the flush off, on a weight with
    3.5 % subnormal entries (what issue 9's trained layer held) and on a fresh one; medians of alternating rounds.
    The calling thread's flush bits are toggled and restored, so the rest of the bench is unaffected."""
    g = torch.Generator().manual_seed(0)
    fresh = torch.randn(1024, 1024, generator=g) * 0.03
    trained = fresh.masked_fill(torch.rand(1024, 1024, generator=g) < 0.035, 1e-39)
    x = torch.randn(512, 1024, generator=g).relu()
    threads, times = torch.get_num_threads(), {"trained": [], "fresh": []}
    torch.set_num_threads(1)  # one thread: the op runs on this thread, whose flush bits we set
    torch.set_flush_denormal(False)
    try:
        for _ in range(rounds):
            for name, w in (("trained", trained), ("fresh", fresh)):
                x @ w
                t0 = time.perf_counter()
                for _ in range(reps):
                    x @ w
                times[name].append((time.perf_counter() - t0) / reps * 1e3)
    finally:
        torch.set_flush_denormal(True)
        torch.set_num_threads(threads)
    return float(np.median(times["trained"])), float(np.median(times["fresh"]))


def bench_steady(b: Bench) -> None:
    steps = 100 if b.quick else b.steady_steps
    sub, fresh = subnormal_penalty(rounds=2 if b.quick else 5)
    b.add("7. steady state: this CPU's subnormal slow path (flush off, 1 thread)",
          "512 x 1024 x 1024 matmul, weight with 3.5 % subnormals; ratio = that / fresh weight", sub, "ms",
          sub / fresh, note=f"fresh weight {fresh:.2f} ms; a ratio near 1: no slow path here, the flush is insurance")
    for mode, label in (("flush", "subnormals flushed (wsrl)"), ("keep", "subnormals kept (without the fix)")):
        if mode == "keep" and not b.steady_keep:
            continue
        sec = f"7. steady state, make run's profile ({steps:,} steps of 2 x 1024 at batch 512), {label}"
        command = [sys.executable, __file__, "--steady-child", mode, "--steady-steps", str(steps)]
        env = {**os.environ, "MINARI_DATASETS_PATH": str(b.root)} if b.quick else None  # quick: synthetic data
        proc = subprocess.run(command + (["--quick"] if b.quick else []), capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            b.add(sec, "failed", None, "", note=proc.stderr.strip().splitlines()[-1] if proc.stderr else "")
            continue
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        b.raw[f"steady/{mode}"] = m
        bar = ">= 0.9" if mode == "flush" else ""
        ratio = m["late"] / m["early"]
        b.add(sec, "wsrl.train path, early (steps 5-20 %)", m["early"], "steps/s")
        b.add(sec, "wsrl.train path, late (last 20 %); ratio = late / early", m["late"], "steps/s", ratio, bar,
              check(ratio, bar) if bar else None, f"{m['subnormal_weights']:,} subnormal numbers in the weights")
        after = m["after"]
        b.add(sec, "from the trained state: bare loop", after["bare"], "steps/s")
        b.add(sec, "from the trained state: wsrl; ratio = wsrl / bare", after["wsrl"], "steps/s",
              after["wsrl"] / after["bare"])
        b.add(sec, "from the trained state: usual way; ratio = wsrl / usual", after["usual"], "steps/s",
              after["wsrl"] / after["usual"])


# ------------------------------------------------------------------------------------------ behaviour training


def behavior_child(mode: str, steps: int) -> None:
    """In a fresh process, one thread: SAC with 4 environments (the walker2d behaviour learner) continued from the
    committed walker2d agent (trained weights and Adam moments; a new agent if there is none) for ``steps``
    transitions; prints its process-CPU speed and the subnormal numbers in its networks and optimizer states.
    ``mode='keep'`` turns the subnormal flush off first."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env

    from wsrl.datasets.behavior.locations import HISTORY

    if mode == "keep":  # after importing wsrl (which turns the flush on), before any op starts torch's threads
        torch.set_flush_denormal(False)
    if flushes_subnormals() != (mode == "flush"):
        raise SystemExit(f"the subnormal flush is not as mode {mode!r} needs")
    torch.set_num_threads(1)

    env = make_vec_env("Walker2d-v5", n_envs=4, seed=0)
    agent = HISTORY / "walker2d-sac-seed0" / "model.zip"
    model = SAC.load(agent, env=env, device="cpu") if agent.exists() else SAC("MlpPolicy", env, device="cpu")
    model.learning_starts = model.num_timesteps + min(2_000, steps // 4)  # refill a buffer before updating
    t0 = time.process_time()
    with quiet():
        model.learn(steps, reset_num_timesteps=False)
    cpu = time.process_time() - t0
    tensors = [*model.policy.state_dict().values()] + [
        v for opt in (model.actor.optimizer, model.critic.optimizer)
        for state in opt.state.values() for v in state.values() if torch.is_tensor(v)]
    subnormal = sum(int(((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)).sum()) for t in tensors
                    if t.is_floating_point())
    print(json.dumps({"transitions_per_cpu_s": steps / cpu, "trained_from": str(agent) if agent.exists() else None,
                      "subnormal": subnormal}))


def bench_behavior(b: Bench) -> None:
    steps = 400 if b.quick else b.behavior_steps
    rates = {}
    for mode in ("flush", "keep"):
        proc = subprocess.run([sys.executable, __file__, "--behavior-child", mode, "--behavior-steps", str(steps)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"behaviour child failed: {proc.stderr.strip().splitlines()[-1]}")
        rates[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    b.raw["behavior"] = rates
    sec = f"8. behaviour training, SAC 4 envs on Walker2d-v5, {steps:,} transitions from the committed agent, 1 thread"
    flush, keep = rates["flush"], rates["keep"]
    b.add(sec, "subnormals kept (without the fix)", keep["transitions_per_cpu_s"], "steps/CPU s",
          note=f"{keep['subnormal']:,} subnormal numbers in networks and optimizer states at the end")
    b.add(sec, "subnormals flushed (wsrl); ratio = flushed / kept", flush["transitions_per_cpu_s"], "steps/CPU s",
          flush["transitions_per_cpu_s"] / keep["transitions_per_cpu_s"],
          note=f"{flush['subnormal']:,} subnormal numbers at the end")


# ------------------------------------------------------------------------------------------ output


def table(b: Bench) -> str:
    lines = [f"{'figure':<66} {'value':>12} {'unit':<11} {'ratio':>7}  {'bar':<8} result"]
    section = None
    for r in b.rows:
        if r.section != section:
            section = r.section
            lines.append(section)
        value = "-" if r.value is None else f"{r.value:12.4g}" if abs(r.value) < 1e4 else f"{r.value:12,.0f}"
        ratio = "" if r.ratio is None else f"{r.ratio:7.2f}"
        result = "" if r.ok is None else "PASS" if r.ok else "FAIL"
        lines.append(f"  {r.name:<64} {value:>12} {r.unit:<11} {ratio:>7}  {r.bar:<8} {result}")
        if r.note:
            lines.append(f"  {'':<4}{r.note}")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="wsrl speed figures and ratios (see the module docstring)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps (smoke test; figures meaningless)")
    p.add_argument("--steps", type=int, default=None, help="timed steps at the small size (default 600, quick 3)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved repetitions (default 3, quick 1)")
    p.add_argument("--transitions", type=int, default=None, help="dataset size (default 2M, quick 5k)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time, or process CPU time (use with --threads 1 on a busy machine)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--only", default=",".join(DEFAULT_SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all but behavior)")
    p.add_argument("--behavior-steps", type=int, default=40_000, help="transitions per run of section 8")
    p.add_argument("--behavior-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--stacked-n", default=None, help="group sizes of section 9, comma-separated (default: 1,8,30 "
                   "on the CPU at 2 x 256; 1,8,30,60,180 on a GPU at 2 x 1024 in fp32, tf32 and bf16)")
    p.add_argument("--json", type=Path, default=None, help="also write every figure and raw timing here")
    p.add_argument("--steady-steps", type=int, default=10_000, help="steps of the steady-state run (section 7)")
    p.add_argument("--steady-keep", action="store_true",
                   help="section 7 also without the subnormal flush, to show what it saves (about 10 min more)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--steady-child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Bench:
    args = parse(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child)
        return None
    if args.behavior_child:
        behavior_child(args.behavior_child, args.behavior_steps)
        return None
    if args.steady_child:
        steady_child(args.steady_child, args.steady_steps, args.quick)
        return None
    only = set(args.only.split(","))
    if unknown := only - set(SECTIONS):
        raise SystemExit(f"unknown sections {sorted(unknown)}: choose from {','.join(SECTIONS)}")
    b = Bench(quick=args.quick, steps=args.steps or (3 if args.quick else 600),
              rounds=args.rounds or (1 if args.quick else 3), warmup=2 if args.quick else 10, clock=args.clock,
              threads=torch.get_num_threads(), transitions=args.transitions or (5_000 if args.quick else 2_000_000),
              only=only, steady_steps=args.steady_steps, steady_keep=args.steady_keep,
              behavior_steps=args.behavior_steps,
              stacked_n=[int(n) for n in args.stacked_n.split(",")] if args.stacked_n else None)
    print(f"wsrl bench: torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, clock={b.clock}, rounds={b.rounds}, steps={b.steps}"
          f"{', QUICK (figures meaningless)' if b.quick else ''}", flush=True)
    start = time.perf_counter()
    minari_path = os.environ.get("MINARI_DATASETS_PATH")
    try:
        if only & {"train", "usual", "memory", "gpu", "stacked"} or (b.quick and "steady" in only):
            make_dataset(b.root, b.transitions)
        if "memory" in only:
            bench_memory(b)
        if only & {"train", "usual"}:
            transitions = load_transitions(DATASET_ID)
            bench_training(b, transitions)
            if "usual" in only:
                bench_batch_sweep(b, transitions)
            del transitions
        for section, measure in (("eval", bench_eval), ("group_eval", bench_group_eval), ("lds", bench_lds),
                                 ("generate", bench_generate), ("gpu", bench_gpu), ("steady", bench_steady),
                                 ("behavior", bench_behavior), ("stacked", bench_stacked)):
            if section in only:
                measure(b)
    finally:
        shutil.rmtree(b.root, ignore_errors=True)
        if minari_path is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = minari_path
    print(table(b))
    failed = [r for r in b.rows if r.ok is False]
    print(f"{sum(r.ok is True for r in b.rows)} PASS, {len(failed)} FAIL, {time.perf_counter() - start:.0f} s")
    if args.json:
        write_text_atomic(args.json, json.dumps({
            "settings": {k: v for k, v in asdict(b).items() if k not in ("rows", "raw", "root", "only")},
            "torch": torch.__version__, "cpus": os.cpu_count(), "rows": [asdict(r) for r in b.rows], "raw": b.raw},
            indent=1, default=str))
    return b


if __name__ == "__main__":
    main()
