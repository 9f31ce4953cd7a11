"""Tables 1-4 from a sweep: ``python -m wsrl.report multirun/table2 --table 2``.

Reads every ``results.json`` (and ``failed.json``) below a sweep directory and writes the paper's table as
Markdown and CSV, with, per method: the mean over seeds of the normalized score, its 95 % Student-t interval, the
seeds' sample SD, median and range, the mean per-episode std (what the paper reports as "Std") with its interval
against the paper's Std, the paper's number and the difference, and both as fractions of their data's expert
level. For each compared pair of columns (``pairs``: ``COMPARISONS`` and, in Table 4, every column against
``REFERENCE``) and dataset: the difference of means with Welch's 95 % interval and p-value, Holm's correction over
all the table's comparisons, a mark on the cell where the adjusted p is below ``ALPHA``, and whether the paper's
own difference lies inside the interval. Group averages follow each dataset group, as in the paper. Missing
seeds, unequal step counts and failed jobs are listed in the notes, never averaged silently. A PNG shows grouped
bars with the paper's values as markers; ``table<N>_runs.csv`` lists every run behind the table.
Below the table come rliable's aggregates over all datasets and seeds (``wsrl.report.statistics``): IQM and mean per
method, the probability of improvement of each compared pair overall and per dataset, all with 95 %
stratified-bootstrap intervals (``table<N>_aggregates.csv``), and a figure with them and the performance profiles
(``table<N>_statistics.png``). The layout and the files are ``wsrl.report.tables``'; every file is written whole or not
at all.
Table 4 (not in the paper) is the LDS ablation: which label LDS balances, in the loss or in the draw.
Several sweeps of one budget can be pooled into one table (``python -m wsrl.report multirun/table4_cpu
multirun/table2_cpu --table 4``: Table 2's sweep already has Table 4's reference and the paper's LDS cell).
Tables 1 and 4 are on the medium-expert datasets only. Table 5 compares the weighting schemes of
``wsrl.core.weighting`` on the six mixed datasets (pool ``multirun/table5_cpu multirun/table2_cpu
multirun/table4_cpu``).
``--curve ENV COLUMN`` draws one cell's learning curve from its runs' periodic evaluations (``eval.every_steps``).
``--conditioning`` draws, for each medium-expert cell with RvS-R runs, the return-conditioning curve
(``wsrl.evaluation.conditioning``) of its seeds' final checkpoints.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wsrl.common.figures import pyplot, save_figure
from wsrl.common.files import write_json_atomic, write_text_atomic
from wsrl.datasets.behavior.locations import ASSETS
from wsrl.report import statistics as stats
from wsrl.report import tables
from wsrl.report.statistics import seed_interval

GROUPS = {  # the paper's row order
    "medium_replay": ["halfcheetah_medium_replay", "hopper_medium_replay", "walker2d_medium_replay"],
    "medium": ["halfcheetah_medium", "hopper_medium", "walker2d_medium"],
    "medium_expert": ["halfcheetah_medium_expert", "hopper_medium_expert", "walker2d_medium_expert"],
}

# Column name -> (method, sampler, policy, LDS label) of the runs behind it; a label of None matches any run.
_UNCOND = "unconditional"
_TRAJ = "trajectory_return"
COLUMNS: dict[int, dict[str, tuple[str, str, str, str | None]]] = {
    1: {"Old Return": ("rvs_r", "uniform", "diag_gaussian", None), "New Return": ("rvs_r", "uniform", _UNCOND, None)},
    2: {"BC": ("bc", "uniform", _UNCOND, None), "Own Return": ("rvs_r", "uniform", _UNCOND, None),
        "IR": ("rvs_r", "lds", _UNCOND, None), "BC + LDS": ("bc", "lds", _UNCOND, None)},
    3: {"BC": ("bc", "uniform", _UNCOND, None), "RvS-R": ("rvs_r", "uniform", _UNCOND, None)},
    # Table 4: RvS-R with LDS on each label, in the loss (sampler=lds) or the draw (lds_sampling); "uniform" is
    # the reference without weights (Own Return), run into the same sweep (experiments/README.md)
    4: {"uniform": ("rvs_r", "uniform", _UNCOND, None),
        **{f"{name} / {where}": ("rvs_r", sampler, _UNCOND, target)
           for where, sampler in (("loss", "lds"), ("draw", "lds_sampling"))
           for name, target in (("return", "trajectory_return"), ("return-to-go", "return_to_go"),
                                ("action", "action"))}},
    # Table 5: the weighting schemes of the field beside LDS (the new samplers weight the draw, lds the
    # loss); "lds rtg draw" is Table 4's best LDS, on the return-to-go in the draw
    5: {**{f"BC {s}": ("bc", s, _UNCOND, _TRAJ if s == "lds" else None)
           for s in ("uniform", "topk", "rw", "aw", "cwbc", "lds")},
        **{f"RvS-R {s}": ("rvs_r", s, _UNCOND, _TRAJ if s == "lds" else None)
           for s in ("uniform", "rw", "cwbc", "lds", "lds_rw")},
        "RvS-R lds rtg draw": ("rvs_r", "lds_sampling", _UNCOND, "return_to_go")},
}

# The claims each table tests, as column X -> column Y: per dataset the difference of means with Welch's interval
# and test (a mark on X's cell where it is significant after Holm's correction), and P(X > Y) over all runs.
# Table 1: the new policy over the old DiagGaussianActor; Table 2: RvS-R over BC, IR against RvS-R, LDS weights
# without the return input; Table 4: each label and place of the weights against the paper's (trajectory return,
# in the loss), and that against no weights.
COMPARISONS: dict[int, dict[str, str]] = {
    1: {"New Return": "Old Return"},
    2: {"Own Return": "BC", "IR": "Own Return", "BC + LDS": "BC"},
    3: {"RvS-R": "BC"},
    4: {"return / loss": "uniform", **{c: "return / loss" for c in list(COLUMNS[4])[2:]}},
    5: {c: f"{c.split()[0]} uniform" for c in COLUMNS[5] if not c.endswith(" uniform")},  # P(X > uniform), each X
}
# A table's reference column: every other column is also compared with it (its reading asks "better than no
# weights?"); these comparisons are in the differences and P(X > Y), not in the marks on the cells.
REFERENCE: dict[int, str] = {4: "uniform"}
ALPHA = 0.05  # a difference is marked where its Holm-adjusted Welch p-value is below this
# The datasets each table is about, where not all nine: pooled runs of other datasets are left out.
DATASETS: dict[int, list[str]] = {1: GROUPS["medium_expert"], 4: GROUPS["medium_expert"],
                                  5: GROUPS["medium_replay"] + GROUPS["medium_expert"]}

# The paper's numbers (its full citation and these tables: docs/references.md): Table 1 (Old/New Return),
# Table 2 (BC, Own Return, IR with their Std columns), Table 3 (ours and the SOTA RvS paper's BC and RvS-R).
# Keys: dataset -> column -> (score, std).
_T2 = {
    "halfcheetah_medium_replay": ((31.00, 7.40), (21.00, 7.69), (10.10, 5.90)),
    "hopper_medium_replay": ((18.10, 5.97), (35.50, 6.49), (33.50, 5.85)),
    "walker2d_medium_replay": ((10.20, 5.45), (33.00, 16.74), (37.00, 17.35)),
    "halfcheetah_medium": ((42.01, 3.23), (42.10, 3.02), (42.00, 3.02)),
    "hopper_medium": ((38.01, 2.99), (44.00, 3.38), (43.50, 3.70)),
    "walker2d_medium": ((67.40, 10.77), (73.00, 9.55), (70.24, 12.40)),
    "halfcheetah_medium_expert": ((62.00, 20.55), (92.00, 3.66), (92.30, 3.20)),
    "hopper_medium_expert": ((40.00, 7.25), (83.00, 14.16), (64.00, 15.24)),
    "walker2d_medium_expert": ((91.30, 7.18), (106.50, 0.54), (106.00, 3.20)),
}
_SOTA = {  # Table 3: BC (SOTA), RvS-R (SOTA) from Emmons et al., as quoted by the paper
    "halfcheetah_medium_replay": (36.6, 38.0), "hopper_medium_replay": (18.1, 73.5),
    "walker2d_medium_replay": (26.0, 60.6), "halfcheetah_medium": (42.6, 41.6), "hopper_medium": (52.9, 60.0),
    "walker2d_medium": (75.3, 71.7), "halfcheetah_medium_expert": (55.2, 92.2),
    "hopper_medium_expert": (52.5, 101.7), "walker2d_medium_expert": (107.5, 106.0),
}
PAPER: dict[int, dict[str, dict[str, tuple[float, float | None]]]] = {
    1: {"halfcheetah_medium_expert": {"Old Return": (43, None), "New Return": (91.68, None)},
        "hopper_medium_expert": {"Old Return": (48, None), "New Return": (82.89, None)},
        "walker2d_medium_expert": {"Old Return": (47, None), "New Return": (106.45, None)}},
    2: {env: dict(zip(("BC", "Own Return", "IR"), row, strict=True)) for env, row in _T2.items()},
    3: {env: {"BC": (_T2[env][0][0], None), "RvS-R": (_T2[env][1][0], None), "BC (SOTA)": (sota[0], None),
              "RvS-R (SOTA)": (sota[1], None)} for env, sota in _SOTA.items()},
    4: {},  # not in the paper
    5: {},
}
# The expert level of the paper's data: D4RL v2's expert datasets average about these normalized scores.
D4RL_EXPERT = {"halfcheetah": 88.0, "hopper": 108.0, "walker2d": 107.0}
RUN_DIR = "_run_dir"  # where collect() puts a run's directory: the sweep's name and the path inside it


def pairs(number: int) -> list[tuple[str, str]]:
    """Every (X, Y) table ``number`` compares: ``COMPARISONS``, then each other column against its
    ``REFERENCE``."""
    out = list(COMPARISONS[number].items())
    ref = REFERENCE.get(number)
    return out + [(c, ref) for c in COLUMNS[number] if ref and c != ref and (c, ref) not in out]


def expert_level(robot: str, source: str) -> float | None:
    """The normalized score of the expert behind a dataset of ``source``: for the generated suite, the 50-episode
    evaluation of the robot's chosen expert snapshot in its committed manifest
    (``wsrl/assets/behavior/<robot>/manifest.json``, ``chosen_scores.expert``); for D4RL's files, D4RL's expert
    data (``D4RL_EXPERT``); None otherwise."""
    if source == "d4rl":
        return D4RL_EXPERT.get(robot)
    path = ASSETS / robot / "manifest.json"
    if source != "generated" or not path.exists():
        return None
    return json.loads(path.read_text()).get("chosen_scores", {}).get("expert", {}).get("normalized_mean")


class ReportError(ValueError):
    """Nothing to report; the message says where it looked."""


def collect(sweep_dir: Path) -> tuple[list[dict], list[dict]]:
    """All finished runs and all failed jobs (without a later success) below ``sweep_dir``."""
    runs = [{**json.loads(p.read_text()), RUN_DIR: f"{sweep_dir.name}/{p.parent.relative_to(sweep_dir)}"}
            for p in sorted(sweep_dir.rglob("results.json"))]
    failed = [{"dir": str(p.parent.relative_to(sweep_dir)), **json.loads(p.read_text())}
              for p in sorted(sweep_dir.rglob("failed.json")) if not (p.parent / "results.json").exists()]
    if not runs and not failed:
        raise ReportError(f"no results.json or failed.json below {sweep_dir}: is it a sweep directory?")
    return runs, failed


def _budget(run: dict) -> tuple:
    """What a run's score depends on besides its cell and seed: steps, batch size, evaluation episodes, data size."""
    cfg = run.get("config", {})
    return (run["steps"], cfg.get("trainer", {}).get("batch_size"), cfg.get("eval", {}).get("episodes"),
            cfg.get("env", {}).get("size"))


def pool(sweep_dirs: Sequence[Path]) -> tuple[list[dict], list[dict], list[int]]:
    """The runs, failed jobs and swept seeds of several sweeps as one. Refuses sweeps of different budgets and a
    run (dataset, method, sampler, policy, LDS label, seed) that two of them have: pass each cell's sweep once."""
    runs, failed, seeds, origin, budgets = [], [], set(), {}, {}
    for sweep in sweep_dirs:
        got, bad = collect(sweep)
        for r in got:
            key = (r["env"], r["method"], r["sampler"], r["policy"], _label(r), r["seed"])
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


def _label(run: dict) -> str | None:
    """The label the run's LDS weights balance (its sampler.target), None where results.json does not say."""
    return run.get("config", {}).get("sampler", {}).get("target")


def cells(runs: list[dict], number: int) -> dict[tuple[str, str], list[dict]]:
    """The runs behind each (dataset, column) of table ``number``."""
    by_cell: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs:
        if number in DATASETS and r["env"] not in DATASETS[number]:
            continue
        for col, (method, sampler, policy, label) in COLUMNS[number].items():
            if (r["method"], r["sampler"], r["policy"]) == (method, sampler, policy) and label in (None, _label(r)):
                by_cell[(r["env"], col)].append(r)
    return by_cell


def table(runs: list[dict], number: int, expected_seeds: list[int] = ()) -> tuple[list[dict], list[str]]:
    """Rows in the paper's layout (datasets then group averages) and the notes on what is incomplete: missing
    seeds (of ``expected_seeds`` and of the seeds found in other cells), unequal steps, empty cells. Per compared
    pair (``pairs``) and dataset: Welch's difference, interval and p, the Holm-adjusted p over every comparison
    of the table that has one, the mark, and whether the paper's own difference lies inside the interval."""
    by_cell = cells(runs, number)
    seeds = sorted({r["seed"] for r in runs} | set(expected_seeds))
    notes: list[str] = []
    rows, tested = [], []
    for group, members in GROUPS.items():
        group_rows = []
        for env in members:
            if not any((env, col) in by_cell for col in COLUMNS[number]) and env not in PAPER[number]:
                continue
            row = {"dataset": env}
            scores = {}
            for col in COLUMNS[number]:
                cell = by_cell.get((env, col), [])
                got = sorted(r["seed"] for r in cell)
                if got != seeds:
                    notes.append(f"{env} / {col}: seeds {got} of {seeds}" if cell else f"{env} / {col}: no runs")
                if len({r["steps"] for r in cell}) > 1:
                    notes.append(f"{env} / {col}: unequal steps {sorted({r['steps'] for r in cell})}")
                scores[col] = np.array([r["normalized_score"]["mean"] for r in cell])
                episode = np.array([r["normalized_score"]["std"] for r in cell])
                seeds_of = stats.spread(scores[col])
                row[col] = float(scores[col].mean()) if cell else None
                row[f"{col} ci95 low"], row[f"{col} ci95 high"] = seed_interval(scores[col]) or (None, None)
                row[f"{col} seed sample sd"] = seeds_of["sd"]
                for k in ("median", "min", "max"):
                    row[f"{col} {k}"] = seeds_of[k]
                row[f"{col} episode std"] = float(episode.mean()) if cell else None
                row[f"{col} episode std ci95 low"], row[f"{col} episode std ci95 high"] = \
                    seed_interval(episode) or (None, None)
                row[f"{col} n"] = len(cell)
            paper = PAPER[number].get(env, {})
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
                    tested.append((row, key))
            _versus_paper(row, env, paper, by_cell, number, notes)
            group_rows.append(row)
        rows += group_rows
        if number > 1 and group_rows:
            rows.append(average_row(f"{group} average", group_rows, members, notes))
    for (row, key), p in zip(tested, stats.holm([row[f"{key} p welch"] for row, key in tested]), strict=True):
        row[f"{key} p holm"] = p
        row[key] = ("higher" if row[f"{key} difference"] > 0 else "lower") if p < ALPHA else "not significant"
    return rows, notes


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
    sources = {r.get("config", {}).get("env", {}).get("source", "generated")
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
    keys = {k for r in rows for k in r if k != "dataset" and not k.endswith((" n", " median", " min", " max",
                                                                             " inside", "expert level"))
            and " ci95 " not in k and " vs " not in k}
    out: dict = {"dataset": name}
    for k in sorted(keys):
        values = [r.get(k) for r in rows]
        if len(rows) < len(members) or any(v is None for v in values):
            out[k] = None
            if not k.endswith(("std", "sd", "paper", "diff", "expert")):
                notes.append(f"{name} / {k}: not averaged, datasets missing")
            continue
        out[k] = float(np.mean(values))
    return out


def score_matrices(runs: list[dict], number: int) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
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
        seeds = sorted(set.intersection(*({r["seed"] for r in by_cell[(e, c)]} for e in envs)))
        if not seeds:
            notes.append(f"aggregates: {c} left out (no seed has runs on every dataset)")
            continue
        if len(seeds) == 1:
            notes.append(f"aggregates: {c} has one seed per dataset, so its intervals cannot show the seed spread")
        dropped = sum(len(by_cell[(e, c)]) for e in envs) - len(seeds) * len(envs)
        if dropped:
            notes.append(f"aggregates: {c} uses seeds {seeds}, the ones every dataset has ({dropped} runs left out)")
        matrices[c] = np.array([[next(r["normalized_score"]["mean"] for r in by_cell[(e, c)] if r["seed"] == s)
                                 for e in envs] for s in seeds])
    return matrices, envs, notes


def statistics(runs: list[dict], number: int, reps: int, seed: int = 0) -> dict:
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


def layout(number: int) -> tables.Layout:
    """What table ``number`` shows (``wsrl.report.tables``)."""
    return tables.Layout(number, list(COLUMNS[number]), COMPARISONS[number], pairs(number),
                         list(dict.fromkeys(k for env in PAPER[number].values() for k in env)), ALPHA)


def per_run(runs: list[dict], number: int) -> list[dict]:
    """The rows of ``table<N>_runs.csv``: every run behind table ``number``, in its row and column order."""
    by_cell = cells(runs, number)
    return tables.run_rows([(env, col, r) for members in GROUPS.values() for env in members
                            for col in COLUMNS[number] for r in sorted(by_cell.get((env, col), []),
                                                                       key=lambda r: r["seed"])], RUN_DIR)


WEIGHT_STATS = {"effective_fraction": "ESS", "max": "max", "top10_share": "top-10 %", "between_modes_share": "between"}


def weights_markdown(runs: list[dict], number: int) -> str:
    """Beside the scores, what each weighted cell's weights do (``results.json``'s ``weights``, the same for every
    seed of a cell): Kish's effective sample fraction, the largest weight (mean 1), the weight's share on the top
    10 % of trajectories and between the dataset's two modes (``wsrl.core.weighting.weight_diagnostics``; "—" for a
    unimodal dataset), with the unweighted shares in the header. Empty where no run has these statistics."""
    by_cell = cells(runs, number)
    weighted = [c for c in COLUMNS[number] if any((by_cell.get((e, c)) or [{}])[0].get("weights") for e, _ in by_cell)]
    envs = [e for members in GROUPS.values() for e in members if any((e, c) in by_cell for c in weighted)]
    rows = []
    for env in envs:
        first = {c: (by_cell.get((env, c)) or [{}])[0].get("weights") or {} for c in weighted}
        if not any("top10_share" in w for w in first.values()):
            continue
        base = next(w for w in first.values() if "top10_share" in w)
        between = base.get("between_modes_share_uniform")
        line = [f"{env} (top-10 % {base['top10_share_uniform']:.2f}, between "
                f"{'—' if between is None else f'{between:.2f}'})"]
        for c in weighted:
            w = first[c]
            line.append(" / ".join("—" if w.get(k) is None else f"{w[k]:.2f}" for k in WEIGHT_STATS) if w else "")
        rows.append("| " + " | ".join(line) + " |")
    if not rows:
        return ""
    return (f"\n### What the weights do\n\nPer cell: {' / '.join(WEIGHT_STATS.values())} (effective sample fraction, "
            "largest weight of mean 1, share of the weight on the top 10 % of trajectories by return and between the "
            "dataset's two modes; the dataset's own shares beside its name).\n\n| dataset | "
            + " | ".join(weighted) + " |\n|" + "---|" * (len(weighted) + 1) + "\n" + "\n".join(rows) + "\n")


def report(sweep_dirs: Path | Sequence[Path], number: int, out: Path | None = None, wandb_log: bool = False,
           reps: int = 2000) -> Path:
    """Write ``table<N>.md``, ``table<N>.csv``, ``table<N>_runs.csv``, ``table<N>.png``,
    ``table<N>_aggregates.csv`` and ``table<N>_statistics.png`` into ``out`` (default: the first sweep dir), each
    whole or not at all; ``reps`` bootstrap resamples. Several sweep directories are pooled (``pool``)."""
    sweeps = [sweep_dirs] if isinstance(sweep_dirs, Path) else list(sweep_dirs)
    runs, failed, seeds = pool(sweeps)
    rows, notes = table(runs, number, seeds)
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
    if "aggregates" in result:
        tables.write_csv(out / f"table{number}_aggregates.csv", tables.aggregate_rows(result))
        figures.append(out / f"table{number}_statistics.png")
        stats.plot(result["aggregates"], result["improvement"], result["taus"], result["profiles"],
                   f"Table {number}: over {len(result['envs'])} datasets and all seeds, 95 % stratified-bootstrap "
                   "intervals", figures[-1])
    if wandb_log:
        import os

        import wandb

        run = wandb.init(project="wsrl", group=sweeps[0].name, name=f"report-table{number}", job_type="report",
                         mode=os.environ.get("WANDB_MODE", "offline"), dir=str(out))
        logged = {f"table{number}": rows, f"table{number}_runs": per_run(runs, number),
                  f"table{number}_aggregates": tables.aggregate_rows(result)}
        run.log({name: wandb.Table(columns=tables.keys(rs), data=[[r.get(k) for k in tables.keys(rs)] for r in rs])
                 for name, rs in logged.items() if rs} | {png.stem: wandb.Image(str(png)) for png in figures})
        run.finish()
    print(md)
    return out / f"table{number}.md"


def _cell_history(sweep_dir: Path, number: int, env: str, column: str) -> dict[int, dict[int, float]]:
    """Each seed's normalized score at each evaluation step of one cell's runs below ``sweep_dir``."""
    cell = cells(collect(sweep_dir)[0], number).get((env, column))
    if not cell:
        raise ReportError(f"no runs of {env} / {column} (Table {number}) below {sweep_dir}")
    history = {r["seed"]: {h["step"]: h["mean"] for h in r.get("eval_history", [])} for r in sorted(
        cell, key=lambda r: r["seed"])}
    if max(len(h) for h in history.values()) < 2:
        raise ReportError(f"{env} / {column}: the runs below {sweep_dir} were evaluated only at the end; run the "
                          "cell with eval.every_steps=N (and its own name=) for a learning curve")
    return history


def curve_report(sweep_dirs: Path | Sequence[Path], number: int, env: str, column: str,
                 out: Path | None = None) -> Path:
    """``curve_<env>_<column>.png`` and ``.csv``: one cell's learning curve, the normalized score of each seed at
    each periodic evaluation (``eval.every_steps``) and the final one, with the mean over seeds and its 95 %
    interval at the steps every seed has, to show where training flattens. Several sweeps (say, one per policy
    width) share the axes, one colour each, named by their directory; the CSV then has a ``sweep`` column."""
    if column not in COLUMNS[number]:
        raise ReportError(f"--curve: Table {number} has no column {column!r} (it has {', '.join(COLUMNS[number])})")
    sweeps = [sweep_dirs] if isinstance(sweep_dirs, Path) else list(sweep_dirs)
    histories = {sweep: _cell_history(sweep, number, env, column) for sweep in sweeps}
    rows, curves = [], []
    for sweep, history in histories.items():
        steps = sorted(set.intersection(*(set(h) for h in history.values())))
        mean, lows, highs = [], [], []
        for step in steps:
            scores = np.array([h[step] for h in history.values()])
            lo, hi = seed_interval(scores) or (None, None)
            mean.append(float(scores.mean()))
            lows.append(lo)
            highs.append(hi)
            rows.append({**({"sweep": sweep.name} if len(sweeps) > 1 else {}), "step": step, "mean": mean[-1],
                         "ci95 low": lo, "ci95 high": hi, **{f"seed {s}": h[step] for s, h in history.items()}})
        curves.append((sweep, history, steps, mean, lows, highs))
    out = out or sweeps[0]
    out.mkdir(parents=True, exist_ok=True)
    stem = f"curve_{env}_{re.sub(r'[^a-z0-9]+', '_', column.lower()).strip('_')}"
    tables.write_csv(out / f"{stem}.csv", rows)

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (sweep, history, steps, mean, lows, highs) in enumerate(curves):
        color = f"C{i}"
        name = f"{sweep.name}: " if len(curves) > 1 else ""
        for s, h in history.items():
            ax.plot(sorted(h), [h[k] for k in sorted(h)], color="tab:gray" if len(curves) == 1 else color,
                    lw=0.8, alpha=0.4, label="each seed" if len(curves) == 1 and s == next(iter(history)) else None)
        ax.plot(steps, mean, "o-", color=color, label=f"{name}mean of {len(history)} seeds")
        if len(history) > 1:
            ax.fill_between(steps, lows, highs, color=color, alpha=0.15,
                            label="95 % interval over seeds" if i == 0 else None)
    scores = [v for _, history, *_ in curves for h in history.values() for v in h.values()]
    margin = max(5.0, 0.1 * (max(scores) - min(scores)))  # with few seeds the t band can be far wider than the
    ax.set(xlabel="gradient steps", ylabel="D4RL normalized score",  # scores: keep the scores in view
           title=f"Table {number}: {env} / {column}", ylim=(min(scores) - margin, max(scores) + margin))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / f"{stem}.png", dpi=100)
    plt.close(fig)
    counts = "; ".join(f"{len(history)} seeds, {len(steps)} common evaluations" for _, history, steps, *_ in curves)
    print(f"learning curve of {env} / {column}: {counts} -> {out / (stem + '.png')}, {out / (stem + '.csv')}")
    return out / f"{stem}.png"


def conditioning_report(sweep_dir: Path, out: Path | None = None, points: int = 8, episodes: int = 5,
                        seed: int = 0) -> Path:
    """``conditioning.png`` and ``conditioning.json``: per medium-expert cell (env, sampler, policy) with RvS-R runs,
    the conditioning curve of each seed's ``checkpoints/last.ckpt`` at the same targets (the dataset's lowest
    episode return to 1.2x its highest), averaged over seeds, one panel per cell."""
    plt = pyplot()

    from wsrl.evaluation.conditioning import conditioning_curve, dataset_histogram, default_targets, draw
    from wsrl.evaluation.scores import load_checkpoint

    cells: dict[tuple[str, str, str], list[Path]] = defaultdict(list)
    for path in sorted(sweep_dir.rglob("results.json")):
        r = json.loads(path.read_text())
        ckpt = path.parent / "checkpoints" / "last.ckpt"
        if r["method"] == "rvs_r" and r["env"] in GROUPS["medium_expert"] and ckpt.exists():
            cells[(r["env"], r["sampler"], r["policy"])].append(ckpt)
    if not cells:
        raise ReportError(f"no RvS-R run on a medium-expert dataset with a checkpoint below {sweep_dir}")
    envs = [e for e in GROUPS["medium_expert"] if any(k[0] == e for k in cells)]
    columns = sorted({k[1:] for k in cells})
    fig = plt.figure(figsize=(5.5 * len(columns), 5.5 * len(envs)), layout="constrained")
    panels = np.atleast_2d(fig.subfigures(len(envs), len(columns), squeeze=False))
    summary = []
    for (env_name, sampler, policy), ckpts in sorted(cells.items()):
        loaded = [load_checkpoint(c) for c in ckpts]
        env, histogram = loaded[0][1], dataset_histogram(*loaded[0])
        if histogram is None:
            raise ReportError(f"{ckpts[0]} stores no dataset returns and {env.dataset_id} is not on this machine: "
                              "no default targets for the conditioning curve")
        targets = default_targets(histogram, points)
        curves = [conditioning_curve(module, env, targets, episodes, seed) for module, _ in loaded]
        by_seed = np.array([c["achieved_mean"] for c in curves])
        merged = {**curves[0], "achieved_mean": by_seed.mean(0).tolist(), "achieved_std": by_seed.std(0).tolist(),
                  "seeds": [str(c.parent.parent.relative_to(sweep_dir)) for c in ckpts]}
        summary.append({"env": env_name, "sampler": sampler, "policy": policy, **merged})
        panel = panels[envs.index(env_name), columns.index((sampler, policy))]
        ax, ax_hist = panel.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        draw(ax, ax_hist, merged, histogram, env, label=f"mean of {len(ckpts)} seed(s) (± std over seeds)")
        ax.set_title(f"{env_name}: rvs_r/{sampler}/{policy}", fontsize=10)
    out = out or sweep_dir
    save_figure(fig, out / "conditioning.png")
    numbers = out / "conditioning.json"
    write_json_atomic(numbers, {"episodes": episodes, "seed": seed, "cells": summary})
    print(f"conditioning curves of {len(cells)} cells ({points} targets x {episodes} episodes per seed) -> "
          f"{out / 'conditioning.png'}, {numbers}")
    return out / "conditioning.png"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m wsrl.report", description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", type=Path, nargs="+", help="a sweep's directory; several: one table of their "
                   "runs pooled (same budget, no run twice), or with --curve one curve each")
    p.add_argument("--table", type=int, choices=sorted(COLUMNS), default=2,
                   help="1-3: the paper's tables; 4: the LDS ablation (which label, loss or draw); 5: the "
                   "weighting schemes of the field beside LDS")
    p.add_argument("--out", type=Path, help="output directory (default: the sweep directory)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the aggregates' intervals")
    p.add_argument("--wandb", action="store_true", help="also log the tables and figures to W&B")
    instead = p.add_mutually_exclusive_group()  # what to draw instead of the table: one or the other
    instead.add_argument("--curve", nargs=2, metavar=("ENV", "COLUMN"), help="instead: the learning curve of one "
                         "cell of --table from its runs' periodic evaluations, e.g. --curve hopper_medium_expert "
                         "'Own Return'; with several sweep directories, one curve each on the same axes")
    instead.add_argument("--conditioning", action="store_true", help="instead: the RvS-R conditioning curve of each "
                         "medium-expert cell (scores every seed's checkpoint at --points targets, --episodes each)")
    p.add_argument("--points", type=int, default=8, help="--conditioning: targets per curve")
    p.add_argument("--episodes", type=int, default=5, help="--conditioning: episodes per target and seed")
    a = p.parse_args(argv)
    try:
        if len(a.sweep_dir) > 1 and a.conditioning:
            raise ReportError(f"{len(a.sweep_dir)} sweep directories given; --conditioning takes one")
        if a.curve:
            curve_report(a.sweep_dir, a.table, *a.curve, a.out)
        elif a.conditioning:
            if a.points < 2 or a.episodes < 1:
                raise ReportError(f"--points {a.points} must be >= 2 and --episodes {a.episodes} >= 1")
            conditioning_report(a.sweep_dir[0], a.out, a.points, a.episodes)
        else:
            if a.reps < 1:
                raise ReportError(f"--reps {a.reps} must be >= 1")
            report(a.sweep_dir, a.table, a.out, a.wandb, a.reps)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
