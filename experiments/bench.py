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
import json
import logging
import os
import platform
import shutil
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

# Run as a script, this folder is already on the path; imported as a file (tests), the sections need it there.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks.common import DATASET_ID, Bench, check, make_dataset  # noqa: E402
from benchmarks.data import bench_generate, bench_lds  # noqa: E402
from benchmarks.evaluation import bench_eval, bench_group_eval  # noqa: E402
from benchmarks.memory import bench_memory, memory_child  # noqa: E402
from benchmarks.stacked import bench_stacked  # noqa: E402
from benchmarks.steady import behavior_child, bench_behavior, bench_steady, steady_child  # noqa: E402
from benchmarks.training import bench_batch_sweep, bench_gpu, bench_training  # noqa: E402

from wsrl.common.files import write_text_atomic  # noqa: E402
from wsrl.core.data import load_transitions  # noqa: E402

__all__ = ["check", "main"]  # check: the sections' bar test, which tests/test_bench.py checks here
SECTIONS = ("train", "usual", "eval", "group_eval", "lds", "generate", "gpu", "memory", "steady", "behavior",
            "stacked")
DEFAULT_SECTIONS = SECTIONS[:-2]  # sections 8 (behaviour training, ~10 min) and 9 (stacked) run when asked
MEASURES = (("eval", bench_eval), ("group_eval", bench_group_eval), ("lds", bench_lds), ("generate", bench_generate),
            ("gpu", bench_gpu), ("steady", bench_steady), ("behavior", bench_behavior), ("stacked", bench_stacked))


def table(b: Bench) -> str:
    """Every row under its section's heading, notes indented below their row."""
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
    """The command line; the ``--*-child`` flags are the sections' own, for the processes they start."""
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



def settings(args: argparse.Namespace, only: set[str]) -> Bench:
    """The run's settings from the command line, with the defaults of a full or a ``--quick`` run."""
    return Bench(quick=args.quick, steps=args.steps or (3 if args.quick else 600),
                 rounds=args.rounds or (1 if args.quick else 3), warmup=2 if args.quick else 10, clock=args.clock,
                 threads=torch.get_num_threads(),
                 transitions=args.transitions or (5_000 if args.quick else 2_000_000),
                 only=only, steady_steps=args.steady_steps, steady_keep=args.steady_keep,
                 behavior_steps=args.behavior_steps,
                 stacked_n=[int(n) for n in args.stacked_n.split(",")] if args.stacked_n else None)


def child(args: argparse.Namespace) -> bool:
    """Run the child process a section asked for (``--memory-child`` and the like); whether this was one."""
    if args.memory_child:
        memory_child(args.memory_child)
    elif args.behavior_child:
        behavior_child(args.behavior_child, args.behavior_steps)
    elif args.steady_child:
        steady_child(args.steady_child, args.steady_steps, args.quick)
    else:
        return False
    return True


def measure(b: Bench) -> None:
    """Every chosen section, on the synthetic dataset in ``b.root`` (made when a section needs it, removed after),
    leaving MINARI_DATASETS_PATH as it was."""
    only = b.only
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
        for section, run in MEASURES:
            if section in only:
                run(b)
    finally:
        shutil.rmtree(b.root, ignore_errors=True)
        if minari_path is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = minari_path


def main(argv: list[str] | None = None) -> Bench | None:
    """Measure the chosen sections and print the table (and save it with ``--json``); None in a child process."""
    args = parse(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if child(args):
        return None
    only = set(args.only.split(","))
    if unknown := only - set(SECTIONS):
        raise SystemExit(f"unknown sections {sorted(unknown)}: choose from {','.join(SECTIONS)}")
    b = settings(args, only)
    print(f"wsrl bench: torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, clock={b.clock}, rounds={b.rounds}, steps={b.steps}"
          f"{', QUICK (figures meaningless)' if b.quick else ''}", flush=True)
    start = time.perf_counter()
    measure(b)
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
