"""Tables 1-5 from a sweep: ``python -m wsrl.report multirun/table2 --table 2``.

Reads every ``results.json`` (and ``failed.json``) below a sweep directory (``wsrl.report.collect``) and writes the
paper's table as Markdown and CSV (``wsrl.report.write``), with, per method: the mean over seeds of the normalized
score, its 95 % Student-t interval, the seeds' sample SD, median and range, the mean per-episode std (what the paper
reports as "Std") with its interval against the paper's Std, the paper's number and the difference, and both as
fractions of their data's expert level. For each compared pair of columns (``wsrl.report.paper.pairs``:
``COMPARISONS`` and, in Table 4, every column against ``REFERENCE``) and dataset: the difference of means with
Welch's 95 % interval and p-value, Holm's correction over all the table's comparisons, a mark on the cell where the
adjusted p is below ``ALPHA``, and whether the paper's own difference lies inside the interval
(``wsrl.report.rows``). Group averages follow each dataset group, as in the paper. Missing seeds, unequal step
counts and failed jobs are listed in the notes, never averaged silently; a run whose ``results.json`` cannot be read
is named in one line, left out and counted in the notes (``--strict`` refuses instead); a cell whose runs trained on
different data (dataset id or content hash, ``results.json``'s ``dataset_hash``) is refused unless ``--mixed-data``.
A PNG shows grouped bars with the paper's values as markers; ``table<N>_runs.csv`` lists every run behind the table,
with its dataset's id and hash.
Below the table come rliable's aggregates over all datasets and seeds (``wsrl.report.statistics``): IQM and mean per
method, the probability of improvement of each compared pair overall and per dataset, all with 95 %
stratified-bootstrap intervals (``table<N>_aggregates.csv``), and a figure with them and the performance profiles
(``table<N>_statistics.png``). The layout and the files are ``wsrl.report.tables``'; every file is written whole or not
at all. ``--wandb`` also logs them to W&B (``wsrl.report.upload``).
Table 4 (not in the paper) is the LDS ablation: which label LDS balances, in the loss or in the draw.
Several sweeps of one budget can be pooled into one table (``python -m wsrl.report multirun/table4_cpu
multirun/table2_cpu --table 4``: Table 2's sweep already has Table 4's reference and the paper's LDS cell).
Tables 1 and 4 are on the medium-expert datasets only. Table 5 compares the weighting schemes of
``wsrl.core.weighting`` on the six mixed datasets (pool ``multirun/table5_cpu multirun/table2_cpu
multirun/table4_cpu``).
``--curve ENV COLUMN`` draws one cell's learning curve from its runs' periodic evaluations (``eval.every_steps``).
``--conditioning`` draws, for each medium-expert cell with RvS-R runs, the return-conditioning curve
(``wsrl.evaluation.conditioning``) of its seeds' final checkpoints (``wsrl.report.curves``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsrl.core.config import WandbConfig
from wsrl.report.collect import ReportError
from wsrl.report.curves import conditioning_report, curve_report
from wsrl.report.paper import COLUMNS
from wsrl.report.write import write_table


def parser() -> argparse.ArgumentParser:
    """The command line: sweep directories, the table, and what to draw instead of it."""
    p = argparse.ArgumentParser(prog="python -m wsrl.report", description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", type=Path, nargs="+", help="a sweep's directory; several: one table of their "
                   "runs pooled (same budget, no run twice), or with --curve one curve each")
    p.add_argument("--table", type=int, choices=sorted(COLUMNS), default=2,
                   help="1-3: the paper's tables; 4: the LDS ablation (which label, loss or draw); 5: the "
                   "weighting schemes of the field beside LDS")
    p.add_argument("--out", type=Path, help="output directory (default: the sweep directory)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the aggregates' intervals")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="only these seeds' runs (default: all), e.g. "
                   "when a pooled sweep has more seeds in some columns than the others")
    p.add_argument("--datasets", nargs="+", metavar="ENV", help="only these datasets' rows (default: all the sweeps "
                   "have), e.g. the medium-expert rows of a sweep that has them at more seeds")
    p.add_argument("--strict", action="store_true", help="refuse a sweep with an unreadable results.json (or "
                   "failed.json) instead of naming it and leaving its run out")
    p.add_argument("--mixed-data", action="store_true", help="pool a cell's runs even where they trained on "
                   "different data (dataset ids or content hashes, e.g. one dataset generated on two machines); the "
                   "table's notes name each group. Without it such a cell is refused")
    p.add_argument("--wandb", action="store_true", help="also log the tables and figures to W&B")
    p.add_argument("--wandb-project", default=WandbConfig().project,
                   help="with --wandb: the W&B project (default: the training runs' default, %(default)s)")
    instead = p.add_mutually_exclusive_group()  # what to draw instead of the table: one or the other
    instead.add_argument("--curve", nargs=2, metavar=("ENV", "COLUMN"), help="instead: the learning curve of one "
                         "cell of --table from its runs' periodic evaluations, e.g. --curve hopper_medium_expert "
                         "'Own Return'; with several sweep directories, one curve each on the same axes")
    instead.add_argument("--conditioning", action="store_true", help="instead: the RvS-R conditioning curve of each "
                         "medium-expert cell (scores every seed's checkpoint at --points targets, --episodes each)")
    p.add_argument("--points", type=int, default=8, help="--conditioning: targets per curve")
    p.add_argument("--episodes", type=int, default=5, help="--conditioning: episodes per target and seed")
    return p


def main(argv: list[str] | None = None) -> None:
    """Write the table, or the curve asked for instead; a ``ReportError`` ends in one line and exit status 2."""
    a = parser().parse_args(argv)
    try:
        if len(a.sweep_dir) > 1 and a.conditioning:
            raise ReportError(f"{len(a.sweep_dir)} sweep directories given; --conditioning takes one")
        if a.curve:
            curve_report(a.sweep_dir, a.table, *a.curve, a.out, a.strict)
        elif a.conditioning:
            if a.points < 2 or a.episodes < 1:
                raise ReportError(f"--points {a.points} must be >= 2 and --episodes {a.episodes} >= 1")
            conditioning_report(a.sweep_dir[0], a.out, a.points, a.episodes, strict=a.strict)
        else:
            if a.reps < 1:
                raise ReportError(f"--reps {a.reps} must be >= 1")
            write_table(a.sweep_dir, a.table, a.out, a.wandb_project if a.wandb else None, a.reps, a.seeds, a.datasets,
                        a.strict, a.mixed_data)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
