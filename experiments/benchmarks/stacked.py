"""Section 9: member-steps/s of a stacked group (``wsrl.stacked``) against its size and precision, beside the
single run, and its Lightning-hosted step against the same step in a bare loop."""

from __future__ import annotations

import torch

from benchmarks.common import DATASET_ID, Bench, check, quiet, train_config
from benchmarks.rates import StepTimer, timed_steps, wsrl_rate
from wsrl.core.data import load_transitions

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
    group.to(group.train_device)  # where Lightning's teardown of the last fit did not leave it
    optimizer = group.configure_optimizers()

    def step() -> None:
        losses = group.losses()[0]
        optimizer.zero_grad()
        group.combine(losses).backward()
        optimizer.step()

    return group.model.size * timed_steps(b, step, warmup, steps, group.train_device.type == "cuda")


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
