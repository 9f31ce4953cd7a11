"""wsrl's speed against its baselines, each measured in the same run on the same machine (``make bench``).

Sections (``--only``, comma-separated; all by default):

- ``train``: steps/s of the ``wsrl.train`` path (``wsrl.running.build.build_run``'s data module, module and
  Trainer) against a bare PyTorch loop with the same model, optimizer, batch and weighted loss, at ``--sizes``.
- ``usual``: the same path against the usual way (as the RvS code does): automatic optimization, the loss logged
  every step, torch's default Adam, fed by ``DataLoader(TensorDataset(...), shuffle=True)``.
- ``stacked``: member-steps/s of a stacked group (``wsrl.stacked``, fitted as the launcher fits it) against its
  size N, beside the single run, with ``hydra.launcher.compile=true`` against without (its compilation in the
  warm-up), and its Lightning-hosted step against the same step in a bare loop.
- ``eval``: env steps/s of ``run_episodes`` (10 episodes, one batched forward per step) against one by one.
- ``group_eval``: env steps/s of ``evaluate_many`` (8 policies x 10 episodes in lockstep, in this process and over
  2 kept worker processes) against ``run_episodes`` member after member.

The training data is a synthetic Minari dataset (HalfCheetah shapes, random numbers, imbalanced returns): a step's
speed does not depend on the numbers. The ways are timed in turn, ``--rounds`` times, and the best round of each
is kept, so a busy machine hurts both sides alike; the per-round ratios are printed too. Bare loops are timed by
``torch.utils.benchmark``, evaluations by ``timeit``, the Lightning-hosted paths between the ends of two steps.

    python experiments/bench.py [--only train,usual,...] [--rounds R] [--steps N] [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import re
import sys
import tempfile
import timeit
import warnings
from functools import partial
from pathlib import Path
from unittest import mock

import lightning as L
import numpy as np
import torch
from torch.utils.benchmark import Timer

from wsrl.common.files import write_text_atomic

DATASET_ID = "bench/halfcheetah/synthetic-v0"
ENV_ID = "HalfCheetah-v5"  # never ends early: every episode is 1000 steps, whatever the policy
OBS_DIM, ACT_DIM, EPISODE = 17, 6, 1000
SECTIONS = ("train", "usual", "stacked", "eval", "group_eval")
PRECISIONS = {"fp32": ("highest", "none"), "tf32": ("high", "none"), "bf16": ("highest", "bf16")}


def row(section: str, figure: str, value: float, unit: str, ratio: float | None = None, note: str = "") -> dict:
    """One printed line (and one entry of ``--json``)."""
    return {"section": section, "figure": figure, "value": value, "unit": unit, "ratio": ratio, "note": note}


@contextlib.contextmanager
def quiet():
    """Progress bars and chatter of the measured code go nowhere (they are still drawn: part of the cost), MuJoCo's
    C-level warnings and the worker processes' output included."""
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush()
    sys.stderr.flush()
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, old in ((1, saved[0]), (2, saved[1])):
                os.dup2(old, fd)
                os.close(old)


def make_dataset(n: int) -> None:
    """A Minari dataset of ``n`` transitions in 1000-step episodes whose returns are imbalanced (most low)."""
    import minari
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(0)
    episodes = []
    for i, start in enumerate(range(0, n, EPISODE)):
        t = min(EPISODE, n - start)
        quality = rng.beta(0.5, 2.0)  # the episode's skill: a long tail of good episodes
        episodes.append(EpisodeBuffer(
            id=i, observations=rng.standard_normal((t + 1, OBS_DIM)),
            actions=rng.uniform(-1, 1, (t, ACT_DIM)).astype(np.float32), rewards=10 * quality + rng.standard_normal(t),
            terminations=np.zeros(t, dtype=bool), truncations=np.arange(t) == t - 1))
    minari.create_dataset_from_buffers(DATASET_ID, buffer=episodes, env=ENV_ID, algorithm_name="bench-synthetic",
                                       description="random numbers in HalfCheetah shapes, for speed tests")


def train_config(width: int, batch: int, device: str, max_steps: int = 1):
    """The run configuration as ``python -m wsrl.train`` composes it: RvS-R with LDS weights in the loss."""
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


class StepClock(L.Callback):
    """The clock at the end of step ``start`` and of step ``stop`` (CUDA synchronized there only)."""

    def __init__(self, start: int, stop: int, cuda: bool) -> None:
        self.marks, self.cuda, self.times = (start, stop), cuda, {}

    def on_train_batch_end(self, trainer: L.Trainer, *_) -> None:
        if trainer.global_step in self.marks:
            if self.cuda:
                torch.cuda.synchronize()
            self.times[trainer.global_step] = timeit.default_timer()

    def rate(self) -> float:
        start, stop = self.marks
        return (stop - start) / (self.times[stop] - self.times[start])


def per_second(step, warmup: int, steps: int) -> float:
    """Calls/s of ``step`` by torch.utils.benchmark (CUDA synchronized, torch's threads kept) after ``warmup``."""
    for _ in range(warmup):
        step()
    timer = Timer("step()", globals={"step": step}, num_threads=torch.get_num_threads())
    return 1.0 / timer.timeit(steps).mean


def build(cfg, transitions, root: Path, signals=None):
    """The run exactly as ``wsrl.train`` builds it, in a new directory under ``root``."""
    from wsrl.core.config import resolve_env, to_plain
    from wsrl.running.build import build_run
    from wsrl.running.rundir import StopSignals

    run_dir = Path(tempfile.mkdtemp(dir=root, prefix="run-"))
    return build_run(cfg, to_plain(cfg), resolve_env(cfg.env), run_dir, signals or StopSignals(), transitions)


def wsrl_rate(cfg, transitions, root: Path, warmup: int, steps: int, usual: bool = False) -> float:
    """Steps/s of the ``wsrl.train`` path; with ``usual``, of the usual way on the same Trainer."""
    from wsrl.running.rundir import StopSignals

    cfg.trainer.max_steps = warmup + steps
    with StopSignals() as signals:
        run = build(cfg, transitions, root, signals)
        clock = StepClock(warmup, warmup + steps, run.device.type == "cuda")
        run.trainer.callbacks.append(clock)
        run.trainer.fit(*usual_way(run, cfg.trainer)) if usual else run.fit()
    return clock.rate()


def usual_way(run, tc) -> tuple[L.LightningModule, torch.utils.data.DataLoader]:
    """The usual way's module and data for ``run``'s policy: automatic optimization, the loss logged every step,
    torch's default Adam, fed by ``DataLoader(TensorDataset, shuffle=True)`` with the same inputs and weights."""
    from torch.utils.data import DataLoader, TensorDataset

    from wsrl.core.module import weighted_nll

    class UsualBC(L.LightningModule):
        def __init__(self, policy: torch.nn.Module) -> None:
            super().__init__()
            self.policy = policy

        def training_step(self, batch, batch_idx):
            loss = weighted_nll(self.policy.log_prob(batch[0], batch[1]), batch[2])
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)

    data = run.data
    dataset = TensorDataset(data.inputs.cpu(), data.actions.cpu(), torch.as_tensor(data.weights, dtype=torch.float32))
    return UsualBC(run.module.policy), DataLoader(dataset, batch_size=tc.batch_size, shuffle=True, drop_last=True)


def bare_rate(cfg, transitions, root: Path, warmup: int, steps: int) -> float:
    """Steps/s of a plain loop on the same run's model, data and optimizer: draw indices, gather, weighted NLL,
    zero_grad, backward, step."""
    from wsrl.core.module import weighted_nll

    run = build(cfg, transitions, root)
    module, data, device = run.module.to(run.device), run.data, run.device
    optimizer = module.configure_optimizers()
    x, a = data.inputs, data.actions
    w = torch.as_tensor(data.weights, dtype=torch.float32, device=device)  # sampler=lds: the loss weights
    generator = torch.Generator(device=device).manual_seed(cfg.seed)

    def step() -> None:
        idx = torch.randint(len(a), (cfg.trainer.batch_size,), generator=generator, device=device)
        loss = weighted_nll(module.policy.log_prob(x[idx], a[idx]), w[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return per_second(step, warmup, steps)


def timed_steps(args, width: int, batch: int) -> tuple[int, int]:
    """(warm-up, timed steps): ``--steps`` at 2 x 256, batch 256, fewer where a step costs more."""
    cost = max(1.0, (width / 256) ** 2 * (batch / 256) / 7)  # the paper's size is about 9x the small one's step
    return (2, args.steps) if args.quick else (10, max(8, int(args.steps / cost)))


def best_of_rounds(ways: dict, rounds: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every way once per round, in turn: (best rate, all rates) by name."""
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            rates[name].append(way())
    return {name: max(r) for name, r in rates.items()}, rates


def training(args, transitions, root: Path) -> list[dict]:
    """Sections train and usual, at each size: the ways in turn, ``--rounds`` times."""
    rows = []
    for size in args.sizes.split(","):
        width, batch = (int(x) for x in size.split("x"))
        cfg = train_config(width, batch, args.device)
        warmup, steps = timed_steps(args, width, batch)
        ways = {"wsrl": partial(wsrl_rate, cfg, transitions, root, warmup, steps)}
        if "train" in args.only:
            ways["bare"] = partial(bare_rate, cfg, transitions, root, warmup, steps)
        if "usual" in args.only:
            ways["usual"] = partial(wsrl_rate, cfg, transitions, root, warmup, steps, usual=True)
        best, rates = best_of_rounds(ways, args.rounds)
        sec = f"training, 2 x {width} at batch {batch}, {cfg.device} ({steps} timed steps)"
        rows.append(row(sec, "wsrl.train path (Lightning, data module, weighted loss)", best["wsrl"], "steps/s"))
        for name, label in (("bare", "bare PyTorch loop"), ("usual", "usual way (DataLoader, automatic opt.)")):
            if name in best:
                per_round = ", ".join(f"{w / u:.2f}" for w, u in zip(rates["wsrl"], rates[name], strict=True))
                rows.append(row(sec, f"{label}; ratio = wsrl / it", best[name], "steps/s", best["wsrl"] / best[name],
                                f"per round {per_round}"))
    return rows


def stacked(args, transitions, root: Path) -> list[dict]:
    """Section stacked: a group of N copies of one run (seeds 0..N-1, fast rng) fitted as the launcher fits it."""
    from wsrl.core.config import resolve_env
    from wsrl.stacked.group import build_group

    cuda = torch.device(args.device).type == "cuda"
    width, batch = (32, 32) if args.quick else (1024, 512) if cuda else (256, 256)
    sizes = [int(n) for n in args.stacked_n.split(",")] if args.stacked_n else [1, 2] if args.quick else (
        [1, 8, 30, 60, 180] if cuda else [1, 8, 30])
    precisions = list(PRECISIONS) if cuda else ["fp32"]
    warmup, steps = timed_steps(args, width, batch)
    sec = f"stacked training, 2 x {width} at batch {batch}, {args.device} ({steps} timed steps)"
    rows, single, cfg = [], {}, train_config(width, batch, args.device)
    for precision in precisions:
        cfg.trainer.matmul_precision, cfg.trainer.autocast = PRECISIONS[precision]
        single[precision] = wsrl_rate(cfg, transitions, root, warmup, steps)
        rows.append(row(sec, f"single run (wsrl.train path), {precision}", single[precision], "steps/s"))
    for n in sizes:
        cfgs = [cfg.copy() for _ in range(n)]
        for seed, member in enumerate(cfgs):
            member.seed = seed
        plain = {}
        for compile in (False, True):
            torch._dynamo.reset()  # each group compiles afresh: Dynamo's recompile limit never falls back to eager
            group = build_group(cfgs, [resolve_env(c.env) for c in cfgs], "fast", [str(k) for k in range(n)],
                                compile=compile)
            group.trainer_cfg.max_steps = warmup + steps
            for precision in precisions:
                group.trainer_cfg.matmul_precision, group.trainer_cfg.autocast = PRECISIONS[precision]
                clock = StepClock(warmup, warmup + steps, cuda)
                group.fit(callbacks=[clock])
                rate = n * clock.rate()
                plain.setdefault(precision, rate)
                rows.append(row(sec, f"N = {n}, {precision}, compiled; ratio = it / uncompiled", rate,
                                "member-steps/s", rate / plain[precision]) if compile else
                            row(sec, f"N = {n}, {precision}; ratio = it / single run", rate, "member-steps/s",
                                rate / single[precision]))
            if not compile and n == max((x for x in sizes if x <= 30), default=sizes[0]):
                rows.append(hosted_vs_bare(group, sec, precision, warmup, steps, rate))
    torch.set_float32_matmul_precision("highest")
    return rows


def hosted_vs_bare(group, sec: str, precision: str, warmup: int, steps: int, hosted: float) -> dict:
    """The group's step in a bare loop (its losses, their sum, backward, its Adam; no Trainer, hooks, checkpoints
    or metrics) against ``hosted``, its member-steps/s fitted by Lightning, both in ``precision`` (the last fitted)."""
    group.to(group.train_device)  # where Lightning's teardown of the last fit did not leave it
    optimizer = group.configure_optimizers()

    def step() -> None:
        losses = group.losses()[0]
        optimizer.zero_grad()
        group.combine(losses).backward()
        optimizer.step()

    bare = group.model.size * per_second(step, warmup, steps)
    return row(sec, f"N = {group.model.size}, {precision}, the same step in a bare loop; ratio = Lightning-hosted / "
               "bare", bare, "member-steps/s", hosted / bare)


def policies(n: int, width: int) -> list:
    """``n`` untrained RvS-R policies of ``width`` for HalfCheetah, in eval mode."""
    from wsrl.core.config import to_plain
    from wsrl.core.module import WeightedBC

    plain = to_plain(train_config(width, 1, "cpu"))
    torch.manual_seed(0)
    return [WeightedBC(OBS_DIM + 1, ACT_DIM, plain["policy"], plain["method"], plain["trainer"], 1000.0).eval()
            for _ in range(n)]


def evaluation(args) -> list[dict]:
    """Section eval: ``run_episodes`` against one episode after another, 2 x 1024 policy."""
    from wsrl.common.episodes import run_episodes

    episodes, limit = (2, 50) if args.quick else (10, None)
    act = policies(1, 64 if args.quick else 1024)[0].act
    env_steps = episodes * (limit or EPISODE)
    ways = {"batched": lambda: run_episodes(ENV_ID, act, episodes, 0, limit),
            "one by one": lambda: [run_episodes(ENV_ID, act, 1, i, limit) for i in range(episodes)]}
    best = env_steps_per_second(ways, env_steps, args.rounds)
    sec = f"evaluation, {episodes} episodes of {ENV_ID} ({env_steps:,} env steps)"
    return [row(sec, "one episode after another", best["one by one"], "env steps/s"),
            row(sec, "run_episodes, one batched forward per step; ratio = speed-up", best["batched"], "env steps/s",
                best["batched"] / best["one by one"])]


def group_evaluation(args) -> list[dict]:
    """Section group_eval: ``evaluate_many`` in process and over kept workers against ``run_episodes`` (what
    ``evaluate`` runs) member after member."""
    from wsrl.common.episodes import EpisodeWorkers, run_episodes
    from wsrl.core.config import ResolvedEnv
    from wsrl.evaluation.scores import evaluate_many

    members, episodes, limit = (2, 2, 50) if args.quick else (8, 10, None)
    workers = min(2, os.cpu_count() or 1)
    modules = policies(members, 64 if args.quick else 256)
    envs = [ResolvedEnv(DATASET_ID, ENV_ID, 0.0, 1000.0)] * members
    seeds = [1000 * k for k in range(members)]
    env_steps = members * episodes * (limit or EPISODE)
    one_by_one = [partial(run_episodes, ENV_ID, m.act, episodes, s, limit) for m, s in zip(modules, seeds, strict=True)]
    with EpisodeWorkers(workers) as pool:
        evaluate_many(modules, envs, 1, seeds, pool, max_episode_steps=1)  # the workers' start, before the clock
        best = env_steps_per_second({
            "one by one": lambda: [run() for run in one_by_one],
            "in process": partial(evaluate_many, modules, envs, episodes, seeds, 0, max_episode_steps=limit),
            f"over {workers} kept workers": partial(evaluate_many, modules, envs, episodes, seeds, pool,
                                                    max_episode_steps=limit)}, env_steps, args.rounds)
    sec = f"group evaluation, {members} policies x {episodes} episodes of {ENV_ID} ({env_steps:,} env steps)"
    one = best.pop("one by one")
    return [row(sec, "run_episodes, member after member", one, "env steps/s")] + [
        row(sec, f"evaluate_many, {name}; ratio = speed-up", rate, "env steps/s", rate / one)
        for name, rate in best.items()]


def env_steps_per_second(ways: dict, env_steps: int, rounds: int) -> dict[str, float]:
    """The best env steps/s of each way (one ``timeit`` call a round, the ways in turn)."""
    return best_of_rounds({k: lambda f=f: env_steps / timeit.timeit(f, number=1) for k, f in ways.items()},
                          rounds)[0]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="wsrl's speed against its baselines (see the module docstring)")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all of them)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved repetitions (default 3; --quick 1)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps at 2 x 256, batch 256, fewer at costlier sizes (default 300; --quick 3)")
    p.add_argument("--sizes", default=None, help="training sizes, WIDTHxBATCH comma-separated (default "
                   "1024x512,256x256; --quick 32x32); e.g. 256x1024,256x4096 for the gap against the batch size")
    p.add_argument("--stacked-n", default=None, help="group sizes of section stacked, comma-separated (default "
                   "1,8,30 on the CPU, 1,8,30,60,180 on a GPU; --quick 1,2)")
    p.add_argument("--transitions", type=int, default=None, help="dataset size (default 2M; --quick 5k)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", type=Path, default=None, help="also write every row here")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps (a smoke test; figures meaningless)")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    if unknown := only - set(SECTIONS):
        p.error(f"unknown section(s) {','.join(sorted(unknown))} in --only: choose from {','.join(SECTIONS)}")
    q = args.quick
    args.only = only
    args.rounds = args.rounds or (1 if q else 3)
    args.steps = args.steps or (3 if q else 300)
    args.sizes = args.sizes or ("32x32" if q else "1024x512,256x256")
    args.transitions = args.transitions or (5_000 if q else 2_000_000)
    if not re.fullmatch(r"\d+x\d+(,\d+x\d+)*", args.sizes) or not re.fullmatch(r"\d+(,\d+)*", args.stacked_n or "1"):
        p.error("--sizes takes WIDTHxBATCH,... (e.g. 1024x512,256x256), --stacked-n N,... (e.g. 1,8,30)")
    return args


def measure(args) -> list[dict]:
    """The chosen sections, each quietly, its rows printed as it ends; the synthetic dataset lives in a temporary
    MINARI_DATASETS_PATH meanwhile."""
    from wsrl.core.data import load_transitions

    rows: list[dict] = []
    with (tempfile.TemporaryDirectory(prefix="wsrl-bench-", ignore_cleanup_errors=True) as tmp,
          mock.patch.dict(os.environ, MINARI_DATASETS_PATH=tmp)):
        transitions = None
        if args.only & {"train", "usual", "stacked"}:
            with quiet():
                make_dataset(args.transitions)
                transitions = load_transitions(DATASET_ID)
        for chosen, section in ((args.only & {"train", "usual"}, partial(training, args, transitions, Path(tmp))),
                                ("stacked" in args.only, partial(stacked, args, transitions, Path(tmp))),
                                ("eval" in args.only, partial(evaluation, args)),
                                ("group_eval" in args.only, partial(group_evaluation, args))):
            if chosen:
                with quiet():
                    new = section()
                show(new)
                rows += new
    return rows


def show(rows: list[dict]) -> None:
    """The rows under their sections' headings."""
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            print(section)
        ratio = "" if r["ratio"] is None else f"{r['ratio']:7.2f}"
        print(f"  {r['figure']:<72} {r['value']:>10.4g} {r['unit']:<14} {ratio:>7}  {r['note']}".rstrip(), flush=True)


def main(argv: list[str] | None = None) -> list[dict]:
    """Measure the chosen sections and print their rows (and save them with ``--json``); returns the rows."""
    args = parse(argv)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"wsrl bench: torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, {args.device}, best of {args.rounds} rounds"
          f"{', QUICK (figures meaningless)' if args.quick else ''}", flush=True)
    rows = measure(args)
    if args.json:
        write_text_atomic(args.json, json.dumps({"torch": torch.__version__, "cpus": os.cpu_count(),
                                                 "device": args.device, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
