"""Tables 1-3 from a sweep: ``python -m wsrl.report multirun/table2 --table 2``.

Reads every ``results.json`` (and ``failed.json``) below a sweep directory and writes the paper's table as
Markdown and CSV, with, per method: the mean over seeds of the normalized score, its std over seeds, the mean
per-episode std (what the paper reports as "Std"), the paper's number and the difference. Group averages
follow each dataset group, as in the paper. Missing seeds, unequal step counts and failed jobs are listed
in the notes, never averaged silently. A PNG shows grouped bars with the paper's values as markers.
``--conditioning`` draws, for each medium-expert cell with RvS-R runs, the return-conditioning curve
(``wsrl.conditioning``) of its seeds' final checkpoints.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

GROUPS = {  # the paper's row order
    "medium_replay": ["halfcheetah_medium_replay", "hopper_medium_replay", "walker2d_medium_replay"],
    "medium": ["halfcheetah_medium", "hopper_medium", "walker2d_medium"],
    "medium_expert": ["halfcheetah_medium_expert", "hopper_medium_expert", "walker2d_medium_expert"],
}

# Column name -> (method, sampler, policy) of the runs behind it.
COLUMNS = {
    1: {"Old Return": ("rvs_r", "uniform", "diag_gaussian"), "New Return": ("rvs_r", "uniform", "unconditional")},
    2: {"BC": ("bc", "uniform", "unconditional"), "Own Return": ("rvs_r", "uniform", "unconditional"),
        "IR": ("rvs_r", "lds", "unconditional"), "BC + LDS": ("bc", "lds", "unconditional")},
    3: {"BC": ("bc", "uniform", "unconditional"), "RvS-R": ("rvs_r", "uniform", "unconditional")},
}

# The paper's numbers (paper.md): Table 1 (Old/New Return), Table 2 (BC, Own Return, IR with their Std
# columns), Table 3 (ours and the SOTA RvS paper's BC and RvS-R). Keys: dataset -> column -> (score, std).
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
}


class ReportError(ValueError):
    """Nothing to report; the message says where it looked."""


def collect(sweep_dir: Path) -> tuple[list[dict], list[dict]]:
    """All finished runs and all failed jobs (without a later success) below ``sweep_dir``."""
    runs = [json.loads(p.read_text()) for p in sorted(sweep_dir.rglob("results.json"))]
    failed = [{"dir": str(p.parent.relative_to(sweep_dir)), **json.loads(p.read_text())}
              for p in sorted(sweep_dir.rglob("failed.json")) if not (p.parent / "results.json").exists()]
    if not runs and not failed:
        raise ReportError(f"no results.json or failed.json below {sweep_dir}: is it a sweep directory?")
    return runs, failed


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


def table(runs: list[dict], number: int, expected_seeds: list[int] = ()) -> tuple[list[dict], list[str]]:
    """Rows in the paper's layout (datasets then group averages) and the notes on what is incomplete: missing
    seeds (of ``expected_seeds`` and of the seeds found in other cells), unequal steps, empty cells."""
    by_cell: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs:
        for col, key in COLUMNS[number].items():
            if (r["method"], r["sampler"], r["policy"]) == key:
                by_cell[(r["env"], col)].append(r)
    seeds = sorted({r["seed"] for r in runs} | set(expected_seeds))
    notes: list[str] = []
    rows = []
    for group, members in GROUPS.items():
        group_rows = []
        for env in members:
            if not any((env, col) in by_cell for col in COLUMNS[number]) and env not in PAPER[number]:
                continue
            row = {"dataset": env}
            for col in COLUMNS[number]:
                cell = by_cell.get((env, col), [])
                got = sorted(r["seed"] for r in cell)
                if got != seeds:
                    notes.append(f"{env} / {col}: seeds {got} of {seeds}" if cell else f"{env} / {col}: no runs")
                if len({r["steps"] for r in cell}) > 1:
                    notes.append(f"{env} / {col}: unequal steps {sorted({r['steps'] for r in cell})}")
                scores = np.array([r["normalized_score"]["mean"] for r in cell])
                row[col] = float(scores.mean()) if cell else None
                row[f"{col} seed std"] = float(scores.std()) if cell else None
                row[f"{col} episode std"] = float(np.mean([r["normalized_score"]["std"] for r in cell])) \
                    if cell else None
                row[f"{col} n"] = len(cell)
            for col, (score, _std) in PAPER[number].get(env, {}).items():
                row[f"{col} paper"] = score
                if row.get(col) is not None:
                    row[f"{col} diff"] = row[col] - score
            group_rows.append(row)
        rows += group_rows
        if number > 1 and group_rows:
            rows.append(average_row(f"{group} average", group_rows, members, notes))
    return rows, notes


def average_row(name: str, rows: list[dict], members: list[str], notes: list[str]) -> dict:
    """The mean of each numeric column over a group's datasets; incomplete groups are noted."""
    keys = {k for r in rows for k in r if k != "dataset" and not k.endswith(" n")}
    out: dict = {"dataset": name}
    for k in sorted(keys):
        values = [r.get(k) for r in rows]
        if len(rows) < len(members) or any(v is None for v in values):
            out[k] = None
            if not k.endswith(("std", "paper", "diff")):
                notes.append(f"{name} / {k}: not averaged, datasets missing")
            continue
        out[k] = float(np.mean(values))
    return out


def _fmt(v) -> str:
    return "" if v is None else f"{v:.1f}"


def to_markdown(rows: list[dict], number: int, notes: list[str], failed: list[dict]) -> str:
    cols = list(COLUMNS[number])
    paper_cols = list(dict.fromkeys(k for env in PAPER[number].values() for k in env))
    head = ["dataset"] + [f"{c} (± seeds)" for c in cols] + [f"{c} ep. std" for c in cols] + \
        [f"{c} paper" for c in paper_cols] + [f"{c} diff" for c in cols if c in paper_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        bold = "**" if r["dataset"].endswith("average") else ""
        cells = [f"{bold}{r['dataset']}{bold}"]
        cells += [f"{_fmt(r.get(c))} ± {_fmt(r.get(f'{c} seed std'))}" if r.get(c) is not None else "—" for c in cols]
        cells += [_fmt(r.get(f"{c} episode std")) for c in cols]
        cells += [_fmt(r.get(f"{c} paper")) for c in paper_cols]
        cells += [f"{r[f'{c} diff']:+.1f}" if r.get(f"{c} diff") is not None else "" for c in cols if c in paper_cols]
        lines.append("| " + " | ".join(cells) + " |")
    text = f"## Table {number}\n\n" + "\n".join(lines) + "\n"
    if notes or failed:
        text += "\nNotes:\n" + "".join(f"- {n}\n" for n in notes)
        text += "".join(f"- failed: {f['dir']}: {f['type']}: {f['error']}\n" for f in failed)
    return text


def plot(rows: list[dict], number: int, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [r for r in rows if not r["dataset"].endswith("average")]
    cols = list(COLUMNS[number])
    x = np.arange(len(data))
    width = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(data)), 4))
    for i, col in enumerate(cols):
        pos = x + (i - (len(cols) - 1) / 2) * width
        means = [r.get(col) or 0 for r in data]
        ax.bar(pos, means, width, yerr=[r.get(f"{col} seed std") or 0 for r in data], capsize=2, label=col)
        paper = [r.get(f"{col} paper") for r in data]
        ax.plot([p for p, v in zip(pos, paper, strict=True) if v is not None], [v for v in paper if v is not None],
                "k_", markersize=12, markeredgewidth=2)
    ax.plot([], [], "k_", markersize=12, markeredgewidth=2, label="paper")
    ax.set_xticks(x, [r["dataset"].replace("_", "\n", 1) for r in data], fontsize=8)
    ax.set(ylabel="D4RL normalized score", title=f"Table {number}: mean over seeds ± std over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def report(sweep_dir: Path, number: int, out: Path | None = None, wandb_log: bool = False) -> Path:
    """Write ``table<N>.md``, ``table<N>.csv`` and ``table<N>.png`` into ``out`` (default: the sweep dir)."""
    runs, failed = collect(sweep_dir)
    rows, notes = table(runs, number, swept_seeds(sweep_dir))
    out = out or sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(rows, number, notes, failed)
    (out / f"table{number}.md").write_text(md)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / f"table{number}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, number, out / f"table{number}.png")
    if wandb_log:
        import os

        import wandb

        run = wandb.init(project="wsrl", group=sweep_dir.name, name=f"report-table{number}", job_type="report",
                         mode=os.environ.get("WANDB_MODE", "offline"))
        run.log({f"table{number}": wandb.Table(columns=keys, data=[[r.get(k) for k in keys] for r in rows]),
                 f"table{number}_figure": wandb.Image(str(out / f"table{number}.png"))})
        run.finish()
    print(md)
    return out / f"table{number}.md"


def conditioning_report(sweep_dir: Path, out: Path | None = None, points: int = 8, episodes: int = 5,
                        seed: int = 0) -> Path:
    """``conditioning.png`` and ``conditioning.json``: per medium-expert cell (env, sampler, policy) with RvS-R runs,
    the conditioning curve of each seed's ``checkpoints/last.ckpt`` at the same targets (the dataset's lowest
    episode return to 1.2x its highest), averaged over seeds, one panel per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wsrl.conditioning import conditioning_curve, dataset_histogram, default_targets, draw, save_figure
    from wsrl.evaluation import load_checkpoint

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
    tmp = numbers.with_name(".conditioning.json.tmp")
    tmp.write_text(json.dumps({"episodes": episodes, "seed": seed, "cells": summary}, indent=1))
    tmp.replace(numbers)
    print(f"conditioning curves of {len(cells)} cells ({points} targets x {episodes} episodes per seed) -> "
          f"{out / 'conditioning.png'}, {numbers}")
    return out / "conditioning.png"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m wsrl.report", description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--table", type=int, choices=(1, 2, 3), default=2)
    p.add_argument("--out", type=Path, help="output directory (default: the sweep directory)")
    p.add_argument("--wandb", action="store_true", help="also log the table and figure to W&B")
    p.add_argument("--conditioning", action="store_true", help="instead: the RvS-R conditioning curve of each "
                   "medium-expert cell (scores every seed's checkpoint at --points targets, --episodes each)")
    p.add_argument("--points", type=int, default=8, help="--conditioning: targets per curve")
    p.add_argument("--episodes", type=int, default=5, help="--conditioning: episodes per target and seed")
    a = p.parse_args(argv)
    try:
        if a.conditioning:
            if a.points < 2 or a.episodes < 1:
                raise ReportError(f"--points {a.points} must be >= 2 and --episodes {a.episodes} >= 1")
            conditioning_report(a.sweep_dir, a.out, a.points, a.episodes)
        else:
            report(a.sweep_dir, a.table, a.out, a.wandb)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
