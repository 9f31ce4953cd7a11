"""The behaviour training curves: each snapshot's normalized score, the chosen medium and expert marked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wsrl.common.figures import pyplot, save_figure
from wsrl.datasets.behavior.locations import ASSETS
from wsrl.datasets.suite import ROBOT, ROBOTS


def shipped_runs(m: dict) -> list[tuple[dict, tuple[str, ...]]]:
    """The runs of a shipped manifest, each with the snapshots chosen from it: one run, or the medium's run and
    the expert's (``expert_run``)."""
    if "expert_run" not in m:
        return [(m, ("medium", "expert"))]
    return [(m, ("medium",)), ({**m["expert_run"], "chosen": m["chosen"], "chosen_scores": m["chosen_scores"]},
                                ("expert",))]


def draw_run(ax, m: dict, marks: tuple[str, ...] = ("medium", "expert")) -> None:
    """One run's curve (mean and spread of each evaluation) on ``ax``, with its chosen snapshots (``marks``) if
    any."""
    steps = np.array([e["step"] for e in m["curve"]]) / 1000
    mean = np.array([e["normalized_mean"] for e in m["curve"]])
    std = np.array([e["normalized_std"] for e in m["curve"]])
    line, = ax.plot(steps, mean, label=f"{m['learner'].upper()} seed {m['seed']} ({m['eval_episodes']} ep.)")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.25, color=line.get_color())
    for name, color in (("medium", "tab:orange"), ("expert", "tab:green")) if "chosen" in m else ():
        if name not in marks:
            continue
        step = m["chosen"][name]
        # a manifest chosen before the 50-episode re-scoring has only the training-time evaluation
        s = m.get("chosen_scores", {}).get(name) or {**next(e for e in m["curve"] if e["step"] == step),
                                                      "episodes": m["eval_episodes"]}
        ax.errorbar(step / 1000, s["normalized_mean"], s["normalized_std"], fmt="o", color=color,
                    label=f"{name} ({s['episodes']} episodes)")


def plot_curves(png: Path, assets: Path = ASSETS, runs: Path | None = None) -> None:
    """One panel per robot: the normalized score of each snapshot of the shipped run, with the chosen medium and
    expert marked; with ``runs``, every run recorded there instead (runs in progress included)."""
    plt = pyplot()
    paths = sorted(runs.glob("*/run.json")) if runs else [assets / r / "manifest.json" for r in ROBOTS]
    records = [json.loads(path.read_text()) for path in paths if path.exists()]
    fig, axes = plt.subplots(1, len(ROBOTS), figsize=(4 * len(ROBOTS), 3.2), sharey=True)
    for ax, robot in zip(axes, ROBOTS, strict=True):
        for m in (m for m in records if m["robot"] == robot):
            for run, marks in shipped_runs(m) if runs is None else [(m, ())]:
                draw_run(ax, run, marks)
        ax.set(title=f"{robot} ({ROBOT[robot].env_id})", xlabel="transitions (k)")
        if ax.lines:
            ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("D4RL normalized score")
    fig.tight_layout()
    save_figure(fig, png, dpi=100)
