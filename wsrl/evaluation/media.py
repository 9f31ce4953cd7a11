"""What a run shows besides its metric curves: the dataset's return distribution with the weights' effect on it,
rollout videos and, for RvS-R, the conditioning curve. Each is a file in the run directory (``returns.png``,
``videos/step<N>.mp4``, ``conditioning.png``) and, when W&B is on, a panel of the run's W&B page next to the
loss, log-std, evaluation and weight-statistics curves that the module and ``train`` log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wsrl.common.figures import pyplot, save_figure
from wsrl.core.methods import conditions_on_return
from wsrl.core.weighting import PLACEMENTS, SCHEMES
from wsrl.evaluation.conditioning import conditioning_curve, default_targets, plot_conditioning
from wsrl.evaluation.video import Recording, record_episode

if TYPE_CHECKING:
    from wsrl.core.config import EvalConfig, ResolvedEnv
    from wsrl.core.data import OfflineDataModule
    from wsrl.core.module import WeightedBC

log = logging.getLogger("wsrl")


def wandb_logger(loggers: list):
    """The run's Lightning WandbLogger, or None when W&B is disabled."""
    from lightning.pytorch.loggers import WandbLogger

    return next((lg for lg in loggers if isinstance(lg, WandbLogger)), None)


def return_distribution(trajectory_returns: np.ndarray, weights: np.ndarray | None, bins: int = 50
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Bin edges over the transitions' trajectory returns, the share of transitions per bin, and the share of the
    weights per bin: the distribution the sampler draws from or the loss sees (None without weights)."""
    returns = np.asarray(trajectory_returns, dtype=np.float64)
    edges = np.histogram_bin_edges(returns, bins)
    data_share = np.histogram(returns, edges)[0] / len(returns)
    weighted = None if weights is None else np.histogram(returns, edges, weights=weights)[0] / np.sum(weights)
    return edges, data_share, weighted


def plot_return_distribution(data: OfflineDataModule, env: ResolvedEnv, title: str, png: Path) -> Path:
    """The set-up dataset's and, with weights, the weighted distribution of trajectory returns (normalized) as a
    PNG, with the weights' effective sample size (``weight_stats``)."""
    plt = pyplot()

    sampler = data.sampler_cfg
    edges, data_share, weighted = return_distribution(data.transitions.trajectory_returns(), data.weights)
    edges = env.normalize(edges)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(edges[:-1], data_share, width=np.diff(edges), align="edge", color="0.7", label="dataset (uniform)")
    if weighted is not None:
        seen = "the sampler draws" if PLACEMENTS[sampler.weighting].in_draw else "the loss sees"
        on = f" on {sampler.target}" if SCHEMES[sampler.scheme].labelled else ""
        ax.stairs(weighted, edges, color="tab:red", linewidth=2, label=f"{sampler.scheme}-weighted{on}: what "
                  f"{seen} (effective size {data.weight_stats['effective_fraction']:.0%} of N)")
    ax.set(xlabel="trajectory return of the transition (D4RL normalized)", ylabel="share of transitions",
           title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, png)
    return png


def log_dataset(loggers: list, data: OfflineDataModule, env: ResolvedEnv, run_dir: Path) -> Path:
    """``returns.png`` in the run directory, and the same figure on the W&B page (``data/returns``)."""
    png = plot_return_distribution(data, env, f"{env.dataset_id}: trajectory returns ({data.sampler_cfg.name} "
                                   "sampler)", run_dir / "returns.png")
    if (wb := wandb_logger(loggers)) is not None:
        wb.log_image("data/returns", [str(png)], step=0)
    return png


def record_and_log(loggers: list, module: WeightedBC, env: ResolvedEnv, cfg: EvalConfig, seed: int, step: int,
                   run_dir: Path) -> Recording:
    """Record the evaluation episode reset with ``seed`` to ``videos/step<step>.mp4`` and log it (``eval/video``)."""
    was_training = module.training
    module.eval()
    try:
        rec = record_episode(env.eval_env_id, module.act, seed, run_dir / "videos" / f"step{step}.mp4",
                             cfg.video_frames, cfg.video_fps, tuple(cfg.video_size))
    finally:
        module.train(was_training)
    score = float(env.normalize(rec.episode_return))
    log.info("video %s: %d frames of a %d-step episode (normalized return %.1f) in %.1f s (%.1f frames/s rendered)",
             rec.path, rec.frames, rec.length, score, rec.seconds, rec.frames / rec.render_seconds)
    if (wb := wandb_logger(loggers)) is not None:
        wb.log_video("eval/video", [str(rec.path)], step=step,
                     caption=[f"step {step}: normalized return {score:.1f} over {rec.length} steps"])
    return rec


def final_media(loggers: list, module: WeightedBC, env: ResolvedEnv, cfg: EvalConfig, seed: int, step: int,
                run_dir: Path, title: str) -> dict:
    """The final policy's video (``eval.video``) and, for RvS-R, its conditioning curve (``eval.conditioning_points``),
    logged and returned as entries for ``results.json``."""
    out: dict = {}
    if cfg.video:
        rec = record_and_log(loggers, module, env, cfg, seed, step, run_dir)
        out["video"] = {"path": str(rec.path.relative_to(run_dir)), "frames": rec.frames, "fps": rec.fps,
                        "episode_return": rec.episode_return, "seconds": rec.seconds}
    if cfg.conditioning_points and conditions_on_return(module.method):
        histogram = module.hparams.dataset_returns
        curve = conditioning_curve(module, env, default_targets(histogram, cfg.conditioning_points), cfg.episodes,
                                   seed)
        png = plot_conditioning(curve, histogram, env, title, run_dir / "conditioning.png")
        if (wb := wandb_logger(loggers)) is not None:
            wb.log_image("eval/conditioning", [str(png)], step=step)
            wb.log_table("eval/conditioning_table", columns=["target", "requested", "achieved_mean", "achieved_std"],
                         data=[list(row) for row in zip(curve["targets"], curve["requested"], curve["achieved_mean"],
                                                         curve["achieved_std"], strict=True)], step=step)
        out["conditioning"] = curve
    return out
