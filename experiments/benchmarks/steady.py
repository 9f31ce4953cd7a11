"""Sections 7 (steady state: ``make run``'s profile early against late, and this CPU's subnormal slow path) and 8
(behaviour training with and without the subnormal flush), each run in fresh processes (the bench run again as a
child with ``--steady-child`` or ``--behavior-child``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch

from benchmarks.common import DATASET_ID, SCRIPT, Bench, check, quiet
from benchmarks.rates import bare_rate, usual_rate, wsrl_rate, wsrl_run
from wsrl.core.data import load_transitions


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
    """Section 7: the subnormal slow path here, then the steady-state run in a child, flushed (and kept)."""
    steps = 100 if b.quick else b.steady_steps
    sub, fresh = subnormal_penalty(rounds=2 if b.quick else 5)
    b.add("7. steady state: this CPU's subnormal slow path (flush off, 1 thread)",
          "512 x 1024 x 1024 matmul, weight with 3.5 % subnormals; ratio = that / fresh weight", sub, "ms",
          sub / fresh, note=f"fresh weight {fresh:.2f} ms; a ratio near 1: no slow path here, the flush is insurance")
    for mode, label in (("flush", "subnormals flushed (wsrl)"), ("keep", "subnormals kept (without the fix)")):
        if mode == "keep" and not b.steady_keep:
            continue
        sec = f"7. steady state, make run's profile ({steps:,} steps of 2 x 1024 at batch 512), {label}"
        command = [sys.executable, str(SCRIPT), "--steady-child", mode, "--steady-steps", str(steps)]
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
    """Section 8: the behaviour learner's speed in a child with the flush and in one without."""
    steps = 400 if b.quick else b.behavior_steps
    rates = {}
    for mode in ("flush", "keep"):
        proc = subprocess.run([sys.executable, str(SCRIPT), "--behavior-child", mode, "--behavior-steps", str(steps)],
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
