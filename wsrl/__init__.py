"""wsrl: weighted sampling for offline RL on imbalanced datasets."""

import sys

import torch

from wsrl.common.environ import scoped_environ


def flush_subnormals() -> None:
    """Treat subnormal floats as zero on this thread and on every thread created after it.

    Weight decay drives weights that ReLU has switched off towards zero until they leave the normal float range;
    on x86 CPUs every multiply-add that touches such a subnormal takes a slow path (one 512x1024x1024 matmul: 137 ms
    instead of 3.6 ms), so a long CPU run slows to a third of its speed. The flag lives in each thread's control
    register and threads copy it from their creator, so it must be set before torch starts its thread pool: this is
    why importing ``wsrl`` calls it, and every entry point (training, sweep workers, dataset generation, behaviour
    training, evaluation, the benchmark) imports ``wsrl`` before it computes anything.
    """
    torch.set_flush_denormal(True)


def subnormals_flushed(threads: int = 4) -> bool:
    """Whether an elementwise op spread over ``threads`` threads turns subnormal inputs into exact zeros everywhere."""
    torch.set_num_threads(threads)
    return bool((torch.full((1 << 22,), 1e-39) * 0.5 == 0).all())


def import_mujoco() -> None:
    """Import MuJoCo without its OpenGL context (``MUJOCO_GL=disable`` for the import only).

    ``import mujoco`` otherwise imports the OpenGL backend that ``MUJOCO_GL`` names, and with ``MUJOCO_GL=osmesa``
    (or ``egl``) on a machine without that library the import itself fails, physics included. Nothing here needs
    MuJoCo's own context: only rendering needs OpenGL, and Gymnasium's renderer imports the backend that
    ``MUJOCO_GL`` names when it renders (``wsrl.evaluation.video``). So a run without a video never depends on OpenGL,
    and importing ``wsrl`` first makes every later ``import mujoco`` (Gymnasium's, Minari's) this one."""
    if "mujoco" not in sys.modules:
        with scoped_environ(MUJOCO_GL="disable"):
            import mujoco  # noqa: F401


flush_subnormals()
import_mujoco()

__version__ = "0.1.0"
