"""Sections 1-2 (training against a bare loop and the usual way, and the gap against the batch size) and 6 (the
paper's size on a GPU, against a bare loop, torch.compile and a CUDA graph)."""

from __future__ import annotations

from functools import partial

import torch

from benchmarks.common import DATASET_ID, Bench, check, fmt_list, interleaved, train_config
from benchmarks.rates import bare_rate, steps_for, usual_rate, wsrl_rate
from wsrl.core.data import load_transitions


def bench_training(b: Bench, transitions) -> None:
    """Sections 1-2 at the paper's and the small size: bare, wsrl and (with ``usual``) the usual way, interleaved."""
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
    """Section 2's gap between wsrl and the usual way as the batch grows, at 2 x 256."""
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


def bench_gpu(b: Bench) -> None:
    """Section 6, on the wall clock: the paper's size with the data on the GPU; a row saying so without one."""
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
