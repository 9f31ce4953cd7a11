"""The memory section: peak memory of loading the dataset and building the run on it, in a fresh process (the
bench run again as a child with ``--memory-child``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import (
    ACT_DIM,
    DATASET_ID,
    OBS_DIM,
    SCRIPT,
    Bench,
    build,
    current_rss_mb,
    peak_rss_mb,
    train_config,
)
from wsrl.core.data import load_transitions


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
    tensors = [data.inputs, data.actions, data.draws.loss_weights, data.draws.sampler.cdf]
    out = {"transitions": len(data.actions), "load_seconds": seconds, "rss_before_mb": base,
           "rss_peak_mb": peak_rss_mb(), "rss_after_mb": current_rss_mb(),
           "tensors_mb": sum(t.numel() * t.element_size() for t in tensors if t is not None) / 2**20}
    if device == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def bench_memory(b: Bench) -> None:
    """The memory rows for the CPU (and CUDA where there is one), each from a fresh child process."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        sec = f"memory, {b.transitions:,} transitions (obs {OBS_DIM}, act {ACT_DIM}), loaded on {device}"
        env = {**os.environ, "MINARI_DATASETS_PATH": str(b.root)}
        proc = subprocess.run([sys.executable, str(SCRIPT), "--memory-child", device], env=env, capture_output=True,
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
