"""Subnormal floats are flushed to zero on every thread of every process that trains or runs a policy."""

from __future__ import annotations

import subprocess
import sys

# an elementwise op over 4M elements, split across 4 threads, whose exact result is subnormal (2.5e-40)
PROBE = "import torch; torch.set_num_threads(4); print(bool((torch.full((1 << 22,), 1e-39) * 0.5 == 0).all()))"


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_plain_torch_keeps_subnormals():
    """The control: without wsrl the probe sees subnormals, so the tests below can fail."""
    assert run(PROBE) == "False"


def test_importing_wsrl_flushes_subnormals_on_every_thread():
    assert run("import wsrl; " + PROBE) == "True"
    assert run("import wsrl.train; " + PROBE) == "True"  # the entry point and the wsrl-train console script


def test_sweep_and_generation_workers_flush_subnormals():
    """A fresh loky worker (Hydra's joblib launcher) and a forked generation worker, each with 4 threads."""
    code = (
        "from joblib import Parallel, delayed\n"
        "from wsrl import subnormals_flushed\n"
        "from wsrl.datasets.generate import worker_pool\n"
        "print(all(Parallel(n_jobs=2, backend='loky')(delayed(subnormals_flushed)() for _ in range(4))))\n"
        "with worker_pool(2) as pool:\n"
        "    print(all(pool.map(subnormals_flushed, [4, 4])))\n"
    )
    assert run(code).split() == ["True", "True"]
