"""A table's numbers from its runs: one row per dataset in the paper's layout with group averages (per-cell
intervals, Welch differences, Holm's marks, the paper's numbers and expert fractions), rliable's aggregates, the
per-run lines and what the weights of each weighted cell do."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from wsrl.report import statistics as stats
from wsrl.report import tables
from wsrl.report.collect import Run, cells
from wsrl.report.paper import ALPHA, COLUMNS, D4RL_EXPERT, GROUPS, PAPER, expert_level, pairs
from wsrl.report.statistics import seed_interval
from wsrl.report.tables import NOT_RUN


def table(runs: list[Run], number: int, expected_seeds: list[int] = (),
          datasets: Collection[str] | None = None) -> tuple[list[dict], list[str]]:
    """Rows in the paper's layout (datasets then group averages; only ``datasets`` where given) and the notes on
    what is incomplete: missing seeds (of ``expected_seeds`` and of the seeds found in other cells), unequal steps,
    empty cells. A row of the paper's without a run in any column is kept, with the paper's numbers, and marked
    ``NOT_RUN`` (a paper-budget table of the robots done so far). Per compared pair (``pairs``) and dataset: Welch's
    difference, interval and p, the Holm-adjusted p over every comparison of the table that has one, the mark, and
    whether the paper's own difference lies inside the interval."""
    by_cell = cells(runs, number)
    seeds = sorted({r.results.seed for r in runs} | set(expected_seeds))
    notes: list[str] = []
    rows, tested = [], []
    for group, members in GROUPS.items():
        group_rows = []
        for env in members:
            if datasets is not None and env not in datasets:
                continue
            if not any((env, col) in by_cell for col in COLUMNS[number]) and env not in PAPER[number]:
                continue
            row = {"dataset": env}
            if not any((env, col) in by_cell for col in COLUMNS[number]):
                row[NOT_RUN] = True
            scores = {}
            for col in COLUMNS[number]:
                cell = by_cell.get((env, col), [])
                notes += [] if row.get(NOT_RUN) else _cell_notes(f"{env} / {col}", cell, seeds)
                scores[col] = _fill_cell(row, col, cell)
            paper = PAPER[number].get(env, {})
            tested += [(row, key) for key in _compare(row, scores, paper, number)]
            _versus_paper(row, env, paper, by_cell, number, notes)
            group_rows.append(row)
        rows += group_rows
        if number > 1 and group_rows:
            rows.append(average_row(f"{group} average", group_rows, members, notes))
    if pending := [r["dataset"] for r in rows if r.get(NOT_RUN)]:
        notes.append(f"Not run yet: {', '.join(pending)} (the paper's numbers beside them).")
    for (row, key), p in zip(tested, stats.holm([row[f"{key} p welch"] for row, key in tested]), strict=True):
        row[f"{key} p holm"] = p
        row[key] = ("higher" if row[f"{key} difference"] > 0 else "lower") if p < ALPHA else "not significant"
    return rows, notes


def _cell_notes(name: str, cell: list[Run], seeds: list[int]) -> list[str]:
    """What a cell lacks: seeds of ``seeds`` without a run, or all runs; runs of unequal steps."""
    notes = []
    got = sorted(r.results.seed for r in cell)
    if got != seeds:
        notes.append(f"{name}: seeds {got} of {seeds}" if cell else f"{name}: no runs")
    if len({r.results.steps for r in cell}) > 1:
        notes.append(f"{name}: unequal steps {sorted({r.results.steps for r in cell})}")
    return notes


def _fill_cell(row: dict, col: str, cell: list[Run]) -> np.ndarray:
    """Write a cell's mean score with its interval over seeds, the seeds' spread, the mean episode std with its
    interval and the run count into ``row``; return the seeds' scores."""
    scores = np.array([r.results.normalized_score["mean"] for r in cell])
    episode = np.array([r.results.normalized_score["std"] for r in cell])
    seeds_of = stats.spread(scores)
    row[col] = float(scores.mean()) if cell else None
    row[f"{col} ci95 low"], row[f"{col} ci95 high"] = seed_interval(scores) or (None, None)
    row[f"{col} seed sample sd"] = seeds_of["sd"]
    for k in ("median", "min", "max"):
        row[f"{col} {k}"] = seeds_of[k]
    row[f"{col} episode std"] = float(episode.mean()) if cell else None
    row[f"{col} episode std ci95 low"], row[f"{col} episode std ci95 high"] = seed_interval(episode) or (None, None)
    row[f"{col} n"] = len(cell)
    return scores


def _compare(row: dict, scores: dict[str, np.ndarray], paper: dict, number: int) -> list[str]:
    """Write Welch's difference of each compared pair into ``row`` (the Holm-adjusted p and the mark are left to
    fill), with the paper's difference where it has both columns; return the keys of the pairs with a p-value."""
    tested = []
    for x, y in pairs(number):
        key, diff = f"{x} vs {y}", stats.welch(scores[x], scores[y]) or {}
        row[f"{key} difference"] = diff.get("difference")
        row[f"{key} ci95 low"], row[f"{key} ci95 high"] = diff.get("low"), diff.get("high")
        row[f"{key} df"], row[f"{key} p welch"], row[f"{key} p holm"] = diff.get("df"), diff.get("p"), None
        row[key] = None
        if x in paper and y in paper:
            row[f"{key} paper difference"] = paper[x][0] - paper[y][0]
            row[f"{key} paper inside"] = None if diff.get("low") is None else bool(
                diff["low"] <= row[f"{key} paper difference"] <= diff["high"])
        if diff.get("p") is not None:
            tested.append(key)
    return tested


def _versus_paper(row: dict, env: str, paper: dict, by_cell: dict, number: int, notes: list[str]) -> None:
    """The paper's score and Std beside ours (whether its Std lies inside our episode std's interval), and both
    as fractions of their data's expert level (ours from the runs' data source, the paper's from D4RL)."""
    for col, (score, std) in paper.items():
        row[f"{col} paper"] = score
        if row.get(col) is not None:
            row[f"{col} diff"] = row[col] - score
        if std is not None:
            row[f"{col} paper std"] = std
            low, high = row.get(f"{col} episode std ci95 low"), row.get(f"{col} episode std ci95 high")
            row[f"{col} paper std inside"] = None if low is None else bool(low <= std <= high)
    robot = env.split("_")[0]
    sources = {r.results.config.get("env", {}).get("source", "generated")
               for col in COLUMNS[number] for r in by_cell.get((env, col), [])}
    if len(sources) > 1:
        notes.append(f"{env}: runs on data of several sources ({', '.join(sorted(sources))}): no expert level")
    ours = expert_level(robot, next(iter(sources))) if len(sources) == 1 else None
    row["expert level"], row["paper expert level"] = ours, D4RL_EXPERT.get(robot)
    for col in COLUMNS[number]:
        if ours and row.get(col) is not None:
            row[f"{col} of expert"] = row[col] / ours
        if f"{col} paper" in row and row["paper expert level"]:
            row[f"{col} paper of expert"] = row[f"{col} paper"] / row["paper expert level"]


def average_row(name: str, rows: list[dict], members: list[str], notes: list[str]) -> dict:
    """The mean of each numeric column over a group's datasets, recomputed (the paper's printed averages differ
    in places); incomplete groups are noted. Intervals, seed ranges and marks are per dataset only: the
    uncertainty over datasets is in the aggregates."""
    keys = {k for r in rows for k in r if k not in ("dataset", NOT_RUN) and not k.endswith(
        (" n", " median", " min", " max", " inside", "expert level")) and " ci95 " not in k and " vs " not in k}
    out: dict = {"dataset": name}
    pending = [r["dataset"] for r in rows if r.get(NOT_RUN)]
    for k in sorted(keys):
        values = [r.get(k) for r in rows]
        if len(rows) < len(members) or any(v is None for v in values):
            out[k] = None
            if not pending and not k.endswith(("std", "sd", "paper", "diff", "expert")):
                notes.append(f"{name} / {k}: not averaged, datasets missing")
            continue
        out[k] = float(np.mean(values))
    if pending:
        notes.append(f"{name}: ours not averaged, {', '.join(pending)} not run yet")
    return out


def score_matrices(runs: list[Run], number: int) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Per column with runs, its (seeds x datasets) matrix of normalized scores for rliable, over the datasets
    that every such column has runs on and, per column, the seeds that all those datasets have; the datasets
    used and notes on what was left out."""
    by_cell = cells(runs, number)
    columns = [c for c in COLUMNS[number] if any(col == c for _, col in by_cell)]
    envs = [e for members in GROUPS.values() for e in members if all((e, c) in by_cell for c in columns)]
    notes = [f"aggregates: {c} has no runs" for c in COLUMNS[number] if c not in columns]
    left = sorted({e for e, _ in by_cell} - set(envs))
    if left:
        notes.append(f"aggregates: {', '.join(left)} left out (not every column has runs there)")
    matrices = {}
    for c in columns if envs else []:
        seeds = sorted(set.intersection(*({r.results.seed for r in by_cell[(e, c)]} for e in envs)))
        if not seeds:
            notes.append(f"aggregates: {c} left out (no seed has runs on every dataset)")
            continue
        if len(seeds) == 1:
            notes.append(f"aggregates: {c} has one seed per dataset, so its intervals cannot show the seed spread")
        dropped = sum(len(by_cell[(e, c)]) for e in envs) - len(seeds) * len(envs)
        if dropped:
            notes.append(f"aggregates: {c} uses seeds {seeds}, the ones every dataset has ({dropped} runs left out)")
        matrices[c] = np.array([[next(r.results.normalized_score["mean"] for r in by_cell[(e, c)]
                                      if r.results.seed == s) for e in envs] for s in seeds])
    return matrices, envs, notes


def statistics(runs: list[Run], number: int, reps: int, seed: int = 0) -> dict:
    """rliable's aggregates of table ``number``: IQM and mean per column, P(X > Y) per compared pair (``pairs``)
    whose columns both have runs, performance profiles, with 95 % stratified-bootstrap intervals (``reps``
    resamples), and P(X > Y) on each dataset (``per_task``, in the order of ``envs``)."""
    matrices, envs, notes = score_matrices(runs, number)
    if not matrices:
        return {"envs": envs, "notes": notes or ["aggregates: no dataset has runs of every column"]}
    compared = [(x, y) for x, y in pairs(number) if x in matrices and y in matrices]
    taus = stats.thresholds(matrices)
    return {"envs": envs, "notes": notes, "runs": {c: m.shape[0] for c, m in matrices.items()},
            "aggregates": stats.aggregates(matrices, reps, seed), "improvement": stats.improvement(
                matrices, compared, reps, seed), "taus": taus, "profiles": stats.profiles(matrices, taus, reps, seed),
            "per_task": {(x, y): stats.improvement_per_task(matrices[x], matrices[y]) for x, y in compared},
            "reps": reps}


def per_run(runs: list[Run], number: int) -> list[dict]:
    """The rows of ``table<N>_runs.csv``: every run behind table ``number``, in its row and column order."""
    by_cell = cells(runs, number)
    return tables.run_rows([(env, col, r.results, r.directory) for members in GROUPS.values() for env in members
                            for col in COLUMNS[number]
                            for r in sorted(by_cell.get((env, col), []), key=lambda r: r.results.seed)])


WEIGHT_STATS = {"effective_fraction": "ESS", "max": "max", "top10_share": "top-10 %", "between_modes_share": "between"}


def weights_markdown(runs: list[Run], number: int) -> str:
    """Beside the scores, what each weighted cell's weights do (``results.json``'s ``weights``, the same for every
    seed of a cell): Kish's effective sample fraction, the largest weight (mean 1), the weight's share on the top
    10 % of trajectories and between the dataset's two modes (``wsrl.core.diagnostics.weight_diagnostics``; "—" for a
    unimodal dataset), with the unweighted shares in the header. Empty where no run has these statistics."""
    by_cell = cells(runs, number)
    first = {key: cell[0].results.weights or {} for key, cell in by_cell.items()}  # a cell's runs share them
    weighted = [c for c in COLUMNS[number] if any(first.get((e, c)) for e, _ in by_cell)]
    envs = [e for members in GROUPS.values() for e in members if any((e, c) in by_cell for c in weighted)]
    rows = []
    for env in envs:
        shown = {c: first.get((env, c), {}) for c in weighted}
        if not any("top10_share" in w for w in shown.values()):
            continue
        base = next(w for w in shown.values() if "top10_share" in w)
        between = base.get("between_modes_share_uniform")
        line = [f"{env} (top-10 % {base['top10_share_uniform']:.2f}, between "
                f"{'—' if between is None else f'{between:.2f}'})"]
        for c in weighted:
            w = shown[c]
            line.append(" / ".join("—" if w.get(k) is None else f"{w[k]:.2f}" for k in WEIGHT_STATS) if w else "")
        rows.append("| " + " | ".join(line) + " |")
    if not rows:
        return ""
    return (f"\n### What the weights do\n\nPer cell: {' / '.join(WEIGHT_STATS.values())} (effective sample fraction, "
            "largest weight of mean 1, share of the weight on the top 10 % of trajectories by return and between the "
            "dataset's two modes; the dataset's own shares beside its name).\n\n| dataset | "
            + " | ".join(weighted) + " |\n|" + "---|" * (len(weighted) + 1) + "\n" + "\n".join(rows) + "\n")
