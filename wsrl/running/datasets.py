"""The datasets runs need, made before any training: one run's (``ensure_run_dataset``, when ``generate_if_missing``)
or a whole sweep's at once:

    python -m wsrl.running.datasets [--jobs N] [--list] OVERRIDE...

takes a sweep's overrides (what follows ``python -m wsrl.train -m``), expands them as Hydra's basic sweeper expands
a sweep (``sweep_envs``), prints the id of every dataset its jobs read, and makes the missing ones: the generated
ones with ``N`` processes (``wsrl.datasets.parallel``), the others from their source (``ensure_dataset``). ``--list``
only prints. The device script runs it before a sweep whose launcher then makes none (``generate_if_missing=false``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from wsrl.core.config import CONF_DIR, ConfigError, register_configs, resolve_env
from wsrl.datasets.sources import DatasetError, ensure_dataset
from wsrl.datasets.store import exists_locally
from wsrl.datasets.suite import generated_id


def ensure_env(env: Any) -> None:
    """The dataset of the env config ``env``, made from its source if it is missing."""
    ensure_dataset(resolve_env(env).dataset_id, env.source, env.robot, env.quality, env.size, env.d4rl_file)


def ensure_run_dataset(cfg: Any) -> None:
    """A run's dataset, made from its source if it is missing and ``generate_if_missing`` allows (the first work of a
    run: minutes of CPU for a full-size generated dataset)."""
    if cfg.generate_if_missing:
        ensure_env(cfg.env)


def reads_data(key: str) -> bool:
    """Whether an override of ``key`` can change which dataset a job reads: ``env`` and its fields, or an experiment
    preset (the only configs that set keys outside their own group)."""
    return key in ("env", "experiment") or key.startswith("env.")


def sweep_envs(overrides: Sequence[str]) -> list[Any]:
    """Each env config the jobs of the sweep ``python -m wsrl.train -m OVERRIDES`` read, expanded as Hydra's basic
    sweeper expands the sweep (the experiment's ``hydra.sweeper.params``, then the command line, a later value of a
    key winning) over the keys that choose the data only (``reads_data``): one config per dataset choice, not per
    job."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    register_configs()
    parser = OverridesParser.create()
    given = [o for o in parser.parse_overrides([o for o in overrides if o not in ("-m", "--multirun")])
             if reads_data(o.key_or_group)]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        base = [o.input_line for o in given if not o.is_sweep_override()]
        params = compose("train", base, return_hydra_config=True).hydra.sweeper.params or {}
        swept = [o for o in parser.parse_overrides([f"{key}={value}" for key, value in params.items()])
                 if reads_data(o.key_or_group)]
        [jobs] = BasicSweeper.split_arguments(swept + given, None)
        return [compose("train", job).env for job in dict.fromkeys(map(tuple, jobs))]


def needed(envs: Sequence[Any]) -> dict[str, Any]:
    """The datasets of the env configs ``envs``: dataset id -> the first env config that reads it."""
    out: dict[str, Any] = {}
    for env in envs:
        out.setdefault(resolve_env(env).dataset_id, env)
    return out


def make_missing(datasets: dict[str, Any], jobs: int) -> None:
    """Make the datasets of ``datasets`` (``needed``'s) that are missing: the generated ones with ``jobs`` processes,
    size by size, then the others, one after another, from their sources."""
    from wsrl.datasets.parallel import make  # rollouts: gymnasium, the behaviour policies

    missing = {dataset_id: e for dataset_id, e in datasets.items() if not exists_locally(dataset_id)}
    generated = {i: e for i, e in missing.items() if e.source == "generated"
                 and i == generated_id(e.robot, e.quality, e.size)}
    for size in dict.fromkeys(e.size for e in generated.values()):
        make([(e.robot, e.quality) for e in generated.values() if e.size == size], size, jobs, keep=True)
    for dataset_id, e in missing.items():
        if dataset_id not in generated:
            ensure_env(e)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m wsrl.running.datasets", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for generation (default: "
                   "one per core, %(default)s)")
    p.add_argument("--list", action="store_true", help="only print the ids of the datasets the sweep needs")
    p.add_argument("overrides", nargs="*", help="the sweep's overrides, as given to python -m wsrl.train -m")
    a, rest = p.parse_known_args(argv)  # "-m" and Hydra's other flags are the sweep's, not ours
    try:
        datasets = needed(sweep_envs([*rest, *a.overrides]))
        print("\n".join(datasets), flush=True)
        if not a.list:
            make_missing(datasets, a.jobs)
    except (ConfigError, DatasetError, HydraException, OmegaConfBaseException) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
