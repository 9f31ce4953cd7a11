"""Command line: ``python -m wsrl.datasets {generate,info,import-d4rl,download} ...``.

Errors (a missing or damaged dataset, bad arguments) end in one line on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from wsrl.datasets.parallel import make, sigterm_interrupts
from wsrl.datasets.store import DatasetError
from wsrl.datasets.suite import D4RL_QUALITIES, GENERATED_QUALITIES, MINARI_QUALITIES, ROBOTS, SIZES, dataset_id


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (the usage stays available through --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def parser() -> OneLineParser:
    """The command line: generate, info, import-d4rl, download."""
    p = OneLineParser(prog="python -m wsrl.datasets", description="wsrl's dataset suite")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    g = sub.add_parser("generate", help="make datasets from the shipped behaviour policies")
    g.add_argument("robot", choices=(*ROBOTS, "all"))
    g.add_argument("quality", choices=(*GENERATED_QUALITIES, "all"),
                   help="'all' makes the nine (and expert), keeping existing")
    g.add_argument("--size", choices=SIZES, default="full", help="small: a tenth of D4RL's size")
    g.add_argument("--overwrite", action="store_true", help="replace datasets that already exist")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes: several datasets side by side, each with its rollout shards (default: one per "
                   "core, %(default)s); the data are the same whatever the number")
    i = sub.add_parser("info", help="summary and return histogram of local datasets (one panel each)")
    i.add_argument("dataset_id", nargs="+")
    i.add_argument("--png", type=Path, help="where the histograms go (default: <first id>_returns.png)")
    d = sub.add_parser("import-d4rl", help="convert a D4RL v2 HDF5 file to a local Minari dataset")
    d.add_argument("file")
    d.add_argument("--robot", choices=ROBOTS, required=True)
    d.add_argument("--quality", choices=D4RL_QUALITIES, required=True, help="the id becomes d4rl/<robot>/<quality>-v2")
    d.add_argument("--overwrite", action="store_true")
    m = sub.add_parser("download", help="download Minari's mujoco datasets, with D4RL reference scores attached")
    m.add_argument("robot", choices=ROBOTS)
    m.add_argument("quality", choices=MINARI_QUALITIES)
    return p


def generate_all(a: argparse.Namespace) -> None:
    """``generate``: the asked datasets made with ``--jobs`` processes; with quality ``all``, existing ones kept."""
    robots = ROBOTS if a.robot == "all" else (a.robot,)
    qualities = GENERATED_QUALITIES if a.quality == "all" else (a.quality,)
    wanted = [(robot, quality) for robot in robots for quality in qualities]
    sigterm_interrupts()  # stopped (a deadline's SIGTERM) as when interrupted: nothing half-written, no process left
    for made in make(wanted, a.size, a.jobs, a.overwrite, keep=a.quality == "all", seed=a.seed):
        print(f"{made}: written")


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    try:
        if a.command == "generate":
            generate_all(a)
        elif a.command == "info":
            from wsrl.datasets.info import info

            info(a.dataset_id, a.png)
        elif a.command == "import-d4rl":
            from wsrl.datasets.importers import import_d4rl_hdf5

            target = dataset_id(a.robot, a.quality, "d4rl")
            print(f"{import_d4rl_hdf5(a.file, target, a.robot, a.overwrite)}: written")
        else:
            from wsrl.datasets.importers import download_minari

            target = dataset_id(a.robot, a.quality, "minari")
            print(f"{download_minari(a.robot, a.quality, target)}: written")
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written for the dataset in progress", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
