"""The plumbing every section shares: the table's rows and the run's settings (Row, Bench), bars, silencing,
memory readers, the synthetic dataset, the run as ``wsrl.train`` builds it, and the timing helpers."""

from __future__ import annotations

import contextlib
import io
import os
import resource
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATASET_ID = "bench/halfcheetah/synthetic-v0"
ENV_ID = "HalfCheetah-v5"  # episodes always last 1000 steps: every policy does the same amount of work
OBS_DIM, ACT_DIM, EPISODE = 17, 6, 1000
SCRIPT = Path(__file__).resolve().parents[1] / "bench.py"  # the command line, which child processes run again


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
    """A size line (kB) of /proc/self/status in MiB; None where there is no such file (not Linux)."""
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
    """Resident memory of this process now (psutil where installed, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return _proc_status_mb("VmRSS")


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


def interleaved(b: Bench, runners: dict, rounds: int) -> dict[str, list[float]]:
    """Run every runner once per round, in turn, and keep all rates."""
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            rates[name].append(run())
    return rates


def best_time(b: Bench, fn, repeat: int, number: int = 1) -> float:
    """Best over ``repeat`` of the mean time of ``number`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = b.now()
        for _ in range(number):
            fn()
        best = min(best, (b.now() - t0) / number)
    return best


def fmt_list(values: list[float]) -> str:
    """Ratios as the table's notes print them, two decimals each."""
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"
