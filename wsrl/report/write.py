"""One table from its sweeps, written out: the Markdown (scores, differences, seeds, spread, expert fractions,
rliable's aggregates, what the weights do), the CSVs and the figures, each whole or not at all, and optionally
the same on W&B."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wsrl.common.files import write_text_atomic
from wsrl.report import statistics as stats
from wsrl.report import tables
from wsrl.report.collect import ReportError, Run, pool, same_data
from wsrl.report.paper import layout
from wsrl.report.rows import per_run, statistics, table, weights_markdown
from wsrl.report.upload import log_report


def write_table(sweep_dirs: Path | Sequence[Path], number: int, out: Path | None = None,
                wandb_project: str | None = None, reps: int = 2000, seeds: Sequence[int] | None = None,
                datasets: Sequence[str] | None = None, strict: bool = False, mixed_data: bool = False) -> Path:
    """Write ``table<N>.md``, ``table<N>.csv``, ``table<N>_runs.csv``, ``table<N>.png``,
    ``table<N>_aggregates.csv`` and ``table<N>_statistics.png`` into ``out`` (default: the first sweep dir), each
    whole or not at all (a generation without aggregates removes the earlier ones); ``reps`` bootstrap resamples;
    ``seeds``: only these seeds' runs, so that every column has the same ones where a pooled sweep has more;
    ``datasets``: only these datasets' rows (a table of one group, e.g. the medium-expert rows at more seeds than
    the others). Several sweep directories are pooled (``pool``). An unreadable ``results.json`` is named, left out
    and counted in the notes; with ``strict`` it is refused. A cell whose runs trained on different data
    (``same_data``) is refused unless ``mixed_data``, which pools and notes it.
    With a ``wandb_project``, the tables and figures are also logged there, grouped by the first sweep's name."""
    sweeps = [sweep_dirs] if isinstance(sweep_dirs, Path) else list(sweep_dirs)
    runs, failed, swept = pool(sweeps, strict)
    if datasets is not None:
        runs = only_datasets(runs, datasets)
    if seeds is not None:
        keep = set(seeds)
        runs = [run for run in runs if run.results.seed in keep]
        swept = sorted(seeds)
    mixed = same_data(runs, number, mixed_data)
    rows, notes = table(runs, number, swept, datasets)
    notes += mixed
    if seeds is not None:
        notes.append(f"Seeds {', '.join(map(str, swept))} only (--seeds): runs of other seeds in the sweeps are left "
                     "out.")
    if datasets is not None:
        notes.append(f"Datasets {', '.join(datasets)} only (--datasets): the sweeps' other datasets are left out.")
    result = statistics(runs, number, reps)
    out = out or sweeps[0]
    out.mkdir(parents=True, exist_ok=True)
    md = (tables.to_markdown(rows, layout(number), notes, failed) + tables.statistics_markdown(result)
          + weights_markdown(runs, number))
    write_text_atomic(out / f"table{number}.md", md)
    tables.write_csv(out / f"table{number}.csv", rows)
    tables.write_csv(out / f"table{number}_runs.csv", per_run(runs, number))
    tables.plot(rows, layout(number), out / f"table{number}.png")
    figures = [out / f"table{number}.png"]
    aggregates_csv, aggregates_png = out / f"table{number}_aggregates.csv", out / f"table{number}_statistics.png"
    if "aggregates" in result:
        tables.write_csv(aggregates_csv, tables.aggregate_rows(result))
        figures.append(aggregates_png)
        stats.plot(result["aggregates"], result["improvement"], result["taus"], result["profiles"],
                   f"Table {number}: over {len(result['envs'])} datasets and all seeds, 95 % stratified-bootstrap "
                   "intervals", aggregates_png)
    else:  # an earlier generation's aggregates would sit beside tables they no longer describe
        aggregates_csv.unlink(missing_ok=True)
        aggregates_png.unlink(missing_ok=True)
    if wandb_project:
        logged = {f"table{number}": rows, f"table{number}_runs": per_run(runs, number),
                  f"table{number}_aggregates": tables.aggregate_rows(result)}
        log_report(wandb_project, sweeps[0].name, f"report-table{number}", out, logged, figures)
    print(md)
    return out / f"table{number}.md"


def only_datasets(runs: list[Run], datasets: Sequence[str]) -> list[Run]:
    """The runs on ``datasets``; a dataset with no run in the sweeps is refused, naming the ones they have."""
    have = sorted({run.results.env for run in runs})
    missing = [name for name in datasets if name not in have]
    if missing:
        raise ReportError(f"--datasets {' '.join(missing)}: no run of it in the sweeps; they have {', '.join(have)}")
    keep = set(datasets)
    return [run for run in runs if run.results.env in keep]
