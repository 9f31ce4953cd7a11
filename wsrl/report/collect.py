"""Reading sweeps: every finished run (its ``results.json`` as ``wsrl.running.results.RunResults``) and failed job
below a sweep directory, several sweeps pooled into one, the seeds a sweep was launched with, the runs behind
each cell of a table, and whether each cell's runs trained on the same data."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from wsrl.report.paper import COLUMNS, DATASETS
from wsrl.report.tables import UNREADABLE
from wsrl.running.damaged import DamagedFile, read_json
from wsrl.running.results import RESULTS, RunResults, read_results

T = TypeVar("T")


class ReportError(ValueError):
    """Nothing to report; the message says where it looked."""


@dataclass(frozen=True)
class Run:
    """A finished run of a sweep: its results and where they lie."""

    results: RunResults
    directory: str  # the sweep's name and the run's path inside it, as the per-run CSV names it

    @property
    def label(self) -> str | None:
        """The label the run's LDS weights balance (its sampler.target), None where its config does not say."""
        return self.results.config.get("sampler", {}).get("target")


def read_below(sweep_dir: Path, name: str, read: Callable[[Path], T], strict: bool = False
               ) -> tuple[list[tuple[Path, T]], list[dict]]:
    """Every file ``name`` below ``sweep_dir``, in path order, with what ``read`` makes of it; and for each that
    cannot be read (``DamagedFile``) an entry of the notes' missing runs (type ``UNREADABLE``), named in one line
    on stderr and skipped; with ``strict`` it is refused instead (``ReportError``)."""
    read_ok, unreadable = [], []
    for path in sorted(sweep_dir.rglob(name)):
        try:
            read_ok.append((path, read(path)))
        except DamagedFile as err:
            if strict:
                raise ReportError(f"{err}; run the sweep's command again to redo the run, or leave out --strict "
                                  "to skip it") from err
            print(f"skipped: {err}; running the sweep's command again redoes the run (--strict refuses instead)",
                  file=sys.stderr)
            unreadable.append({"dir": str(path.parent.relative_to(sweep_dir)), "type": UNREADABLE, "error": str(err)})
    return read_ok, unreadable


def results_below(sweep_dir: Path, strict: bool = False) -> list[tuple[Path, RunResults]]:
    """Each run directory below ``sweep_dir`` that holds a readable ``results.json``, with its record, in path
    order (``read_below``: an unreadable one is named and skipped, or with ``strict`` refused)."""
    return [(path.parent, results) for path, results in read_below(sweep_dir, RESULTS, read_results, strict)[0]]


def collect(sweep_dir: Path, strict: bool = False) -> tuple[list[Run], list[dict]]:
    """All finished runs below ``sweep_dir``, and all failed jobs (without a later success) and unreadable files
    (``read_below``, each named on stderr; ``strict``: refused)."""
    finished, unreadable = read_below(sweep_dir, RESULTS, read_results, strict)
    runs = [Run(results, f"{sweep_dir.name}/{path.parent.relative_to(sweep_dir)}") for path, results in finished]
    failures, damaged = read_below(sweep_dir, "failed.json", read_json, strict)
    failed = [{"dir": str(p.parent.relative_to(sweep_dir)), **record} for p, record in failures
              if not (p.parent / RESULTS).exists()]
    failed += unreadable + damaged
    if not runs and not failed:
        raise ReportError(f"no results.json or failed.json below {sweep_dir}: is it a sweep directory?")
    return runs, failed


def _budget(run: Run) -> tuple:
    """What a run's score depends on besides its cell and seed: steps, batch size, evaluation episodes, data size."""
    cfg = run.results.config
    return (run.results.steps, cfg.get("trainer", {}).get("batch_size"), cfg.get("eval", {}).get("episodes"),
            cfg.get("env", {}).get("size"))


def pool(sweep_dirs: Sequence[Path], strict: bool = False) -> tuple[list[Run], list[dict], list[int]]:
    """The runs, failed jobs (and unreadable files) and swept seeds of several sweeps as one (``collect``). Refuses
    sweeps of different budgets and a run (dataset, method, sampler, policy, LDS label, seed) that two of them
    have: pass each cell's sweep once."""
    runs, failed, seeds, origin, budgets = [], [], set(), {}, {}
    for sweep in sweep_dirs:
        got, bad = collect(sweep, strict)
        for run in got:
            r = run.results
            key = (r.env, r.method, r.sampler, r.policy, run.label, r.seed)
            if key in origin:
                raise ReportError(f"{'/'.join(map(str, key))} is in both {origin[key]} and {sweep}: pool sweeps "
                                  "that share no run")
            origin[key] = sweep
        budgets[sweep] = tuple(sorted({_budget(r) for r in got}, key=str))
        runs += got
        failed += bad
        seeds |= set(swept_seeds(sweep))
    if len(set(budgets.values())) > 1:
        raise ReportError("pooled sweeps have different budgets (steps, batch size, evaluation episodes, data "
                          f"size): {'; '.join(f'{s}: {b}' for s, b in budgets.items())}")
    return runs, failed, sorted(seeds)


def swept_seeds(sweep_dir: Path) -> list[int]:
    """The seeds the sweep was launched with, from Hydra's ``multirun.yaml`` (sweeper params or command line);
    [] when there is no such file or no seed sweep."""
    path = sweep_dir / "multirun.yaml"
    if not path.exists():
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    hydra_cfg = OmegaConf.load(path).hydra
    specs = [f"seed={v}" for k, v in (hydra_cfg.sweeper.get("params") or {}).items() if k == "seed"]
    specs += [o for o in hydra_cfg.overrides.task if o.startswith("seed=")]  # the command line wins
    if not specs:
        return []
    override = OverridesParser.create().parse_override(specs[-1])
    values = override.sweep_string_iterator() if override.is_sweep_override() else [override.value()]
    return sorted(int(v) for v in values)


def cells(runs: list[Run], number: int) -> dict[tuple[str, str], list[Run]]:
    """The runs behind each (dataset, column) of table ``number``."""
    by_cell: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        r = run.results
        if number in DATASETS and r.env not in DATASETS[number]:
            continue
        for col, (method, sampler, policy, label) in COLUMNS[number].items():
            if (r.method, r.sampler, r.policy) == (method, sampler, policy) and label in (None, run.label):
                by_cell[(r.env, col)].append(run)
    return by_cell


UNKNOWN_HASH = "unknown"  # the data group of results.json files written before runs recorded their dataset's hash


def data_of(run: Run) -> str:
    """What a run trained on: its dataset id and content hash (``UNKNOWN_HASH`` in files older than hashes)."""
    return f"{run.results.dataset_id} (hash {run.results.dataset_hash or UNKNOWN_HASH})"


def same_data(runs: list[Run], number: int, mixed: bool = False) -> list[str]:
    """Refuse a cell of table ``number`` whose runs trained on different data (dataset ids or content hashes: the
    same generated dataset made on two machines differs in the last digits), naming each group with a run of it;
    with ``mixed``, pool them and return a note per such cell instead. The runs of files older than hashes
    are one group per dataset id, pooled with each other but not with runs that recorded a hash. Also refuse (or
    note) a row whose columns ran on different versions of its dataset (ids): they would be compared as equals."""
    notes = []
    by_cell = cells(runs, number)
    for (env, col), cell in sorted(by_cell.items()):
        groups: dict[str, list[Run]] = defaultdict(list)
        for run in cell:
            groups[data_of(run)].append(run)
        if len(groups) == 1:
            continue
        found = "; ".join(f"{len(members)} run{'s' * (len(members) > 1)} on {data} (e.g. {members[0].directory})"
                          for data, members in groups.items())
        if not mixed:
            raise ReportError(f"{env} / {col}: runs on different data pooled in one cell: {found}; re-run one group "
                              "on the other's data, leave it out (--seeds, --datasets, fewer sweeps), or pass "
                              "--mixed-data to pool them on purpose")
        notes.append(f"{env} / {col}: runs on different data pooled (--mixed-data): {found}")
    rows: dict[str, dict[str, dict[str, Run]]] = defaultdict(lambda: defaultdict(dict))  # env -> id -> col -> a run
    for (env, col), cell in by_cell.items():
        for run in cell:
            rows[env][run.results.dataset_id].setdefault(col, run)
    for env, versions in sorted(rows.items()):
        if len(versions) == 1:
            continue
        found = "; ".join(f"{', '.join(cols)} on {dataset_id} (e.g. {next(iter(cols.values())).directory})"
                          for dataset_id, cols in sorted(versions.items()))
        if not mixed:
            raise ReportError(f"{env}: columns on different versions of the dataset compared in one row: {found}; "
                              "re-run the older columns on the new version, or pass --mixed-data to compare them "
                              "on purpose")
        notes.append(f"{env}: columns on different versions of the dataset (--mixed-data): {found}")
    return notes
