"""Curves from a sweep's runs: one cell's learning curve from its periodic evaluations, and the return-conditioning
curve of each medium-expert RvS-R cell from its seeds' final checkpoints."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wsrl.common.figures import pyplot, save_figure
from wsrl.common.files import write_json_atomic
from wsrl.report import tables
from wsrl.report.collect import ReportError, cells, collect, results_below
from wsrl.report.paper import COLUMNS, GROUPS
from wsrl.report.statistics import seed_interval


def _cell_history(sweep_dir: Path, number: int, env: str, column: str, strict: bool = False
                  ) -> dict[int, dict[int, float]]:
    """Each seed's normalized score at each evaluation step of one cell's runs below ``sweep_dir`` (``strict``:
    refuse an unreadable run rather than skip it)."""
    cell = cells(collect(sweep_dir, strict)[0], number).get((env, column))
    if not cell:
        raise ReportError(f"no runs of {env} / {column} (Table {number}) below {sweep_dir}")
    history = {r.results.seed: {h["step"]: h["mean"] for h in r.results.eval_history} for r in sorted(
        cell, key=lambda r: r.results.seed)}
    if max(len(h) for h in history.values()) < 2:
        raise ReportError(f"{env} / {column}: the runs below {sweep_dir} were evaluated only at the end; run the "
                          "cell with eval.every_steps=N (and its own name=) for a learning curve")
    return history


def curve_report(sweep_dirs: Path | Sequence[Path], number: int, env: str, column: str,
                 out: Path | None = None, strict: bool = False) -> Path:
    """``curve_<env>_<column>.png`` and ``.csv``: one cell's learning curve, the normalized score of each seed at
    each periodic evaluation (``eval.every_steps``) and the final one, with the mean over seeds and its 95 %
    interval at the steps every seed has, to show where training flattens. Several sweeps (say, one per policy
    width) share the axes, one colour each, named by their directory; the CSV then has a ``sweep`` column."""
    if column not in COLUMNS[number]:
        raise ReportError(f"--curve: Table {number} has no column {column!r} (it has {', '.join(COLUMNS[number])})")
    sweeps = [sweep_dirs] if isinstance(sweep_dirs, Path) else list(sweep_dirs)
    histories = {sweep: _cell_history(sweep, number, env, column, strict) for sweep in sweeps}
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
    _plot_curves(curves, f"Table {number}: {env} / {column}", out / f"{stem}.png")
    counts = "; ".join(f"{len(history)} seeds, {len(steps)} common evaluations" for _, history, steps, *_ in curves)
    print(f"learning curve of {env} / {column}: {counts} -> {out / (stem + '.png')}, {out / (stem + '.csv')}")
    return out / f"{stem}.png"


def _plot_curves(curves: list[tuple], title: str, png: Path) -> None:
    """Each sweep's seeds, mean and 95 % band over seeds (``curves``: (sweep, history, steps, mean, lows, highs))
    on one pair of axes."""
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
           title=title, ylim=(min(scores) - margin, max(scores) + margin))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, png, dpi=100)


def conditioning_report(sweep_dir: Path, out: Path | None = None, points: int = 8, episodes: int = 5,
                        seed: int = 0, strict: bool = False) -> Path:
    """``conditioning.png`` and ``conditioning.json``: per medium-expert cell (env, sampler, policy) with RvS-R runs,
    the conditioning curve of each seed's ``checkpoints/last.ckpt`` at the same targets (the dataset's lowest
    episode return to 1.2x its highest), averaged over seeds, one panel per cell."""
    plt = pyplot()

    from wsrl.evaluation.conditioning import conditioning_curve, dataset_histogram, default_targets, draw
    from wsrl.evaluation.scores import load_checkpoint

    by_cell: dict[tuple[str, str, str], list[Path]] = defaultdict(list)
    for run_dir, r in results_below(sweep_dir, strict):
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if r.method == "rvs_r" and r.env in GROUPS["medium_expert"] and ckpt.exists():
            by_cell[(r.env, r.sampler, r.policy)].append(ckpt)
    if not by_cell:
        raise ReportError(f"no RvS-R run on a medium-expert dataset with a checkpoint below {sweep_dir}")
    envs = [e for e in GROUPS["medium_expert"] if any(k[0] == e for k in by_cell)]
    columns = sorted({k[1:] for k in by_cell})
    fig = plt.figure(figsize=(5.5 * len(columns), 5.5 * len(envs)), layout="constrained")
    panels = np.atleast_2d(fig.subfigures(len(envs), len(columns), squeeze=False))
    summary = []
    for (env_name, sampler, policy), ckpts in sorted(by_cell.items()):
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
    print(f"conditioning curves of {len(by_cell)} cells ({points} targets x {episodes} episodes per seed) -> "
          f"{out / 'conditioning.png'}, {numbers}")
    return out / "conditioning.png"
