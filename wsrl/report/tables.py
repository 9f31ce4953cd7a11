"""The report's tables laid out: Markdown, CSV rows and files, the bar figure.

``wsrl.report.rows`` builds the rows (one per dataset and group average; their keys are listed in experiments/README.md)
and the aggregates; this module writes them out, every file whole or not at all (``wsrl.common.files``). The Markdown
has, per table: the scores with their intervals and marks, the differences behind the marks, the episode spread
against the paper's Std, the scores as fractions of the data's expert level, then rliable's aggregates.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wsrl.common.figures import pyplot, save_figure
from wsrl.common.files import write_text_atomic

if TYPE_CHECKING:
    from wsrl.running.results import RunResults

MARKS = {"higher": "↑", "lower": "↓"}
UNREADABLE = "unreadable"  # the type of a missing run whose results.json (or failed.json) cannot be read
NOT_RUN = "not run yet"  # a row's flag, and its cells' text: a dataset of the paper's without a run in the sweeps
# Quoted, not measured here: the coverage of rliable's percentile bootstrap at these tables' spreads
COVERAGE = ("an independent simulation at these tables' spreads with 5 seeds, made for a review of this project, "
            "found that the mean's 95 % interval covered the true mean 86 % of the time over 3 datasets and 91 % "
            "over 9")


@dataclass(frozen=True)
class Layout:
    """What a table shows: its number, columns, the comparison whose mark each column's cell carries (X -> Y),
    every comparison it makes, the columns with the paper's numbers, the level of the marks, and the names of the
    halves a wide table is printed in (the columns whose name starts with each; empty: one table)."""

    number: int
    columns: list[str]
    marked: dict[str, str]
    pairs: list[tuple[str, str]]
    paper_columns: list[str]
    alpha: float
    halves: tuple[str, ...] = ()

    def blocks(self) -> list[tuple[str, list[str]]]:
        """The column blocks printed as separate tables: (title, columns); one untitled block without halves."""
        if not self.halves:
            return [("", self.columns)]
        return [(h, [c for c in self.columns if c.split()[0] == h]) for h in self.halves]


def _fmt(v, spec: str = ".1f") -> str:
    return "" if v is None else format(v, spec)


def _p(v) -> str:
    return "—" if v is None else "<0.001" if v < 0.001 else f"{v:.3f}"


def _interval(row: dict, key: str) -> str:
    low = row.get(f"{key} ci95 low")
    return "" if low is None else f" [{_fmt(low)}, {_fmt(row[f'{key} ci95 high'])}]"


def _cell(row: dict, col: str, layout: Layout) -> str:
    """'mean [low, high]' and the mark of the column's comparison; '—' for an empty cell, 'not run yet' across a row
    of the paper's that has no run."""
    if row.get(col) is None:
        return NOT_RUN if row.get(NOT_RUN) else "—"
    text = _fmt(row[col]) + _interval(row, col)
    base = layout.marked.get(col)
    return text + (f" {MARKS[row[f'{col} vs {base}']]}" if base and row.get(f"{col} vs {base}") in MARKS else "")


def _lines(head: list[str], body: list[list[str]], title: str = "") -> str:
    return (f"**{title}**\n\n" if title else "") + "\n".join(
        ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(line) + " |" for line in body]
    ) + "\n"


def comparisons(rows: list[dict], layout: Layout) -> int:
    """How many comparisons of the table have a p-value (the family of Holm's correction)."""
    return sum(r.get(f"{x} vs {y} p welch") is not None for r in rows for x, y in layout.pairs)


def to_markdown(rows: list[dict], layout: Layout, notes: list[str], failed: list[dict]) -> str:
    """The table, its differences, episode spread and expert fractions, and the notes, as Markdown."""
    tables = []
    for title, cols in layout.blocks():
        paper_cols = [c for c in layout.paper_columns if c in cols or not layout.halves]
        head = ["dataset"] + [f"{c} (95% CI)" for c in cols] + [f"{c} paper" for c in paper_cols] + \
            [f"{c} diff" for c in cols if c in paper_cols]
        body = []
        for r in rows:
            bold = "**" if r["dataset"].endswith("average") else ""
            line = [f"{bold}{r['dataset']}{bold}"] + [_cell(r, c, layout) for c in cols]
            line += [_fmt(r.get(f"{c} paper")) for c in paper_cols]
            line += [_fmt(r.get(f"{c} diff"), "+.1f") for c in cols if c in paper_cols]
            body.append(line)
        tables.append(_lines(head, body, title))
    m = comparisons(rows, layout)
    marked = "; ".join(f"{c} against {b}" for c, b in layout.marked.items())
    text = (f"## Table {layout.number}\n\n" + "\n".join(tables) + "\nCells: mean over seeds [95 % Student-t "
            f"interval over seeds]. ↑ / ↓: the mean is above / below that of the column it is compared with "
            f"({marked}) by Welch's t-test at p < {layout.alpha} after Holm's correction over the table's {m} "
            "comparisons (listed below with their uncorrected p). diff: ours minus "
            "the paper's. Average rows: the mean of the group's rows, recomputed (the paper's printed averages "
            "differ in places).\n")
    text += seeds_markdown(rows, layout) + differences_markdown(rows, layout, m) + spread_markdown(rows, layout)
    text += expert_markdown(rows, layout)
    if notes or failed:
        text += "\nNotes:\n" + "".join(f"- {n}\n" for n in notes)
        text += "".join(f"- failed: {f['dir']}: {f['type']}: {f['error']}\n" for f in failed
                        if f["type"] != UNREADABLE)
        if unreadable := [f["error"] for f in failed if f["type"] == UNREADABLE]:
            text += (f"- {len(unreadable)} run{'s' if len(unreadable) > 1 else ''} unreadable, left out (running "
                     f"the sweep's command again redoes it): {'; '.join(unreadable)}\n")
    return text


def seeds_markdown(rows: list[dict], layout: Layout) -> str:
    """Per cell the seeds' median, range and sample SD: where one seed collapses, the mean and its interval
    describe no seed."""
    tables = []
    for title, cols in layout.blocks():
        body = [[r["dataset"]] + [f"{_fmt(r[f'{c} median'])} [{_fmt(r[f'{c} min'])}, {_fmt(r[f'{c} max'])}]" + (
            f" · sd {_fmt(r[f'{c} seed sample sd'])}" if r.get(f"{c} seed sample sd") is not None else "")
            if r.get(f"{c} median") is not None else "—" for c in cols]
            for r in rows if any(r.get(f"{c} median") is not None for c in cols)]
        tables.append(_lines(["dataset"] + cols, body, title))
    return ("\n### Seeds\n\n" + "\n".join(tables) + "\nPer cell: the median of the "
            "seeds' scores [lowest, highest] · their sample standard deviation (ddof = 1). Where the median is far "
            "from the mean above, some seeds lie far from the others, and the mean and its interval describe none "
            "of them.\n")


def differences_markdown(rows: list[dict], layout: Layout, m: int) -> str:
    """Per dataset and compared pair: the difference of means with Welch's interval and mark, the uncorrected and
    Holm-adjusted p, the paper's own difference and whether our interval holds it."""
    body = []
    for r in rows:
        for x, y in layout.pairs:
            key = f"{x} vs {y}"
            if r.get(f"{key} difference") is None:
                continue
            inside = r.get(f"{key} paper inside")
            body.append([r["dataset"], f"{x} − {y}", _fmt(r[f"{key} difference"], "+.1f") + _interval(r, key) + (
                f" {MARKS[r[key]]}" if r.get(key) in MARKS else ""), _p(r[f"{key} p welch"]), _p(r[f"{key} p holm"]),
                _fmt(r.get(f"{key} paper difference"), "+.1f"), "" if inside is None else "yes" if inside else "no"])
    if not body:
        return ""
    return ("\n### Differences per dataset (Welch's t-test)\n\n" + _lines(
        ["dataset", "X − Y", "difference [95% Welch CI]", "p", f"p Holm (of {m})", "paper's difference",
         "paper's inside"], body) + "\nDifference of the means over seeds with Welch's 95 % interval "
            "(Welch-Satterthwaite degrees of freedom); p: Welch's two-sided p, uncorrected; p Holm: adjusted over "
            f"the table's {m} comparisons, the mark where it is below {layout.alpha}; paper's difference: the same "
            "difference of the paper's printed scores, and whether our interval holds it. — where the test is "
            "undefined (neither column varies over seeds).\n")


def spread_markdown(rows: list[dict], layout: Layout) -> str:
    """Per cell our per-episode std (mean over seeds, with its interval) and the paper's Std where it has one."""
    body = []
    for r in rows:
        if not any(r.get(f"{c} episode std") is not None or r.get(f"{c} paper std") is not None
                   for c in layout.columns):
            continue
        line = [r["dataset"]]
        for c in layout.columns:
            text = _fmt(r.get(f"{c} episode std")) + _interval(r, f"{c} episode std") or "—"
            if r.get(f"{c} paper std") is not None:
                inside = r.get(f"{c} paper std inside")
                text += f" · paper {_fmt(r[f'{c} paper std'])}" + (
                    "" if inside is None else ", inside" if inside else ", outside")
            line.append(text)
        body.append(line)
    has_paper = any(r.get(f"{c} paper std") is not None for r in rows for c in layout.columns)
    return ("\n### Episode spread (stability)\n\n" + _lines(["dataset"] + layout.columns, body) + "\nPer cell: "
            "the std of the normalized score over a run's evaluation episodes, mean over seeds [95 % Student-t "
            "interval over seeds]" + ("; paper: the paper's Std column, and whether it lies inside our "
                                      "interval" if has_paper else "") + ".\n")


def expert_markdown(rows: list[dict], layout: Layout) -> str:
    """Per cell the mean as a fraction of the expert level of our data, and the paper's of D4RL's."""
    body = []
    for r in rows:
        if not any(r.get(f"{c} of expert") is not None or r.get(f"{c} paper of expert") is not None
                   for c in layout.columns):
            continue
        line = [r["dataset"], f"{_fmt(r.get('expert level'))} · {_fmt(r.get('paper expert level'), '.0f')}"
                if r.get("expert level") or r.get("paper expert level") else ""]
        for c in layout.columns:
            text = _fmt(r.get(f"{c} of expert"), ".2f") or "—"
            if r.get(f"{c} paper of expert") is not None:
                text += f" · paper {_fmt(r[f'{c} paper of expert'], '.2f')}"
            line.append(text)
        body.append(line)
    return ("\n### Scores as a fraction of the data's expert level\n\n" + _lines(
        ["dataset", "expert: ours · D4RL"] + layout.columns, body) + "\nPer cell: the mean score over the expert "
            "level of the data it learnt from; paper: the paper's score over D4RL's expert level. Expert levels: "
            "ours, the chosen expert policy's 50-episode evaluation in the robot's behaviour manifest "
            "(wsrl/assets/behavior/<robot>/manifest.json) for the generated suite; D4RL's, its expert data's "
            "average normalized score, about.\n")


def statistics_markdown(result: dict) -> str:
    """The aggregates as Markdown: IQM and mean per column, P(X > Y) per comparison with its value on each
    dataset, the caveat on the bootstrap's width, and the notes."""
    text = "\n### Aggregates over all datasets and seeds (rliable)\n\n"
    if "aggregates" in result:
        runs = sorted(set(result["runs"].values()))
        n = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]}-{runs[-1]}"
        text += (f"Over {len(result['envs'])} datasets ({', '.join(result['envs'])}); 95 % stratified-bootstrap "
                 f"intervals (percentile), {result['reps']} resamples. Caveat: with {n} runs per dataset a "
                 "percentile bootstrap is too narrow, its intervals hold the true value less often than 95 % of "
                 f"the time ({COVERAGE}); the uncertainty is larger than they show.\n\n"
                 "| method | runs per dataset | IQM | IQM 95% CI | mean | mean 95% CI |\n|---|---|---|---|---|---|\n")
        for col, agg in result["aggregates"].items():
            (iqm, ilo, ihi), (mean, mlo, mhi) = agg["IQM"], agg["mean"]
            text += (f"| {col} | {result['runs'][col]} | {iqm:.1f} | [{ilo:.1f}, {ihi:.1f}] | {mean:.1f} | "
                     f"[{mlo:.1f}, {mhi:.1f}] |\n")
        if result["improvement"]:
            text += "\n| claim | P(X > Y) | 95% CI | per dataset |\n|---|---|---|---|\n"
            text += "".join(f"| {x} > {y} | {p:.2f} | [{lo:.2f}, {hi:.2f}] | "
                            f"{', '.join(f'{v:.2f}' for v in result['per_task'][(x, y)])} |\n"
                            for (x, y), (p, lo, hi) in result["improvement"].items())
            text += ("\nP(X > Y): the chance that a run of X beats a run of Y on the same dataset (ties count half), "
                     "averaged over the datasets; 0.5 is no difference. Per dataset: the same on each dataset, in "
                     "the order listed above.\n")
    if result["notes"]:
        text += "\n" + "".join(f"- {n}\n" for n in result["notes"])
    return text


def aggregate_rows(result: dict) -> list[dict]:
    """The aggregates as CSV rows: statistic, what, estimate, interval, datasets and runs per dataset, and for
    P(X > Y) its value on each dataset (``P on <dataset>``)."""
    rows = [{"statistic": name, "what": col, "estimate": est, "ci95 low": lo, "ci95 high": hi,
             "datasets": len(result["envs"]), "runs per dataset": str(result["runs"][col])}
            for col, agg in result.get("aggregates", {}).items() for name, (est, lo, hi) in agg.items()]
    rows += [{"statistic": "P(X > Y)", "what": f"{x} > {y}", "estimate": p, "ci95 low": lo, "ci95 high": hi,
              "datasets": len(result["envs"]), "runs per dataset": f"{result['runs'][x]}, {result['runs'][y]}",
              **{f"P on {env}": v for env, v in zip(result["envs"], result["per_task"][(x, y)], strict=True)}}
             for (x, y), (p, lo, hi) in result.get("improvement", {}).items()]
    return rows


def _flat(d: dict, prefix: str) -> dict:
    """A nested dict as one level, keys joined with '.'."""
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def run_rows(runs: list[tuple[str, str, RunResults, str]]) -> list[dict]:
    """One CSV row per (dataset, column, run's results, run directory): seed, score, episode std, the run's
    ``weights`` block flattened (``weights <key>``, empty for runs without weights), steps, wall seconds, the
    dataset's id and content hash (empty for runs older than hashes) and the run's directory."""
    weights = [_flat(run.weights or {}, "weights ") for _, _, run, _ in runs]
    names = list(dict.fromkeys(k for w in weights for k in w))
    return [{"dataset": env, "column": col, "seed": run.seed, "score": run.normalized_score["mean"],
             "episode std": run.normalized_score["std"], **{k: w.get(k) for k in names}, "steps": run.steps,
             "wall seconds": run.wall_seconds, "dataset id": run.dataset_id, "dataset hash": run.dataset_hash,
             "run dir": directory}
            for (env, col, run, directory), w in zip(runs, weights, strict=True)]


def keys(rows: list[dict]) -> list[str]:
    """Every key of ``rows`` in order of appearance: the CSV and W&B table columns."""
    return list(dict.fromkeys(k for r in rows for k in r))


def write_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` as CSV (columns: ``keys``), whole or not at all."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, keys(rows))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def plot(rows: list[dict], layout: Layout, png: Path) -> None:
    """Grouped bars: mean over seeds with the 95 % interval over seeds per dataset, the paper's values as marks."""
    plt = pyplot()

    data = [r for r in rows if not r["dataset"].endswith("average")]
    cols = layout.columns
    x = np.arange(len(data))
    width = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(data) * max(1, len(cols) / 4)), 4))
    colors = plt.get_cmap("tab20" if len(cols) > 10 else "tab10")  # beyond ten columns tab10 repeats its colours
    for i, col in enumerate(cols):
        pos = x + (i - (len(cols) - 1) / 2) * width
        means = np.array([r.get(col) or 0 for r in data])
        lo = np.array([r[f"{col} ci95 low"] if r.get(f"{col} ci95 low") is not None else m
                       for r, m in zip(data, means, strict=True)])
        hi = np.array([r[f"{col} ci95 high"] if r.get(f"{col} ci95 high") is not None else m
                       for r, m in zip(data, means, strict=True)])
        ax.bar(pos, means, width, yerr=[means - lo, hi - means], capsize=2, label=col, color=colors(i))
        paper = [r.get(f"{col} paper") for r in data]
        ax.plot([p for p, v in zip(pos, paper, strict=True) if v is not None], [v for v in paper if v is not None],
                "k_", markersize=12, markeredgewidth=2)
    if layout.paper_columns:
        ax.plot([], [], "k_", markersize=12, markeredgewidth=2, label="paper")
    ax.set_xticks(x, [r["dataset"].replace("_", "\n", 1) + (f"\n({NOT_RUN})" if r.get(NOT_RUN) else "")
                      for r in data], fontsize=8)
    ax.set(ylabel="D4RL normalized score", title=f"Table {layout.number}: mean over seeds, 95 % interval over seeds")
    many = len(cols) > 6  # a legend of many columns would cover bars: beside the axes instead
    ax.legend(fontsize=8, **({"loc": "upper left", "bbox_to_anchor": (1.0, 1.0)} if many else {}))
    fig.tight_layout()
    save_figure(fig, png, dpi=100)
