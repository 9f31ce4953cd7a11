"""Train and evaluate one policy: ``python -m wsrl.train env=hopper_medium_expert method=rvs_r``.

The entry point, read top to bottom: ``cli`` checks the command line (``wsrl.running.refusals``), ``main`` is the thin
Hydra job, and ``train(cfg, run_dir)`` does one run: compose (validate, resolve the env, refuse whatever cannot run
here, then, the first work, make the dataset if missing), build (``wsrl.running.build``), fit for ``trainer.max_steps``
steps (resuming from the run directory's last checkpoint), evaluate, and record (``results.json`` and the run
directory's other files, ``wsrl.running.rundir``).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from wsrl.core.config import (
    CONF_DIR,
    ConfigError,
    ResolvedEnv,
    TrainConfig,
    register_configs,
    resolve_device,
    resolve_env,
    to_plain,
)
from wsrl.core.validation import validate
from wsrl.evaluation import media
from wsrl.evaluation.scores import eval_seed, evaluate
from wsrl.evaluation.video import VideoUnavailable, check_video
from wsrl.running import lightning_fixes
from wsrl.running.build import Run, build_run, check_shapes_early, checkpoint_interval, resume_point
from wsrl.running.datasets import ensure_run_dataset
from wsrl.running.refusals import check_command_line, report_failure
from wsrl.running.results import RunResults, finished_results, write_results
from wsrl.running.rundir import RunInterrupted, StopSignals, check_same_run, record_run, run_lock

log = logging.getLogger("wsrl")
register_configs()


def train(cfg: TrainConfig, run_dir: Path) -> RunResults:
    """Train and evaluate one configuration; returns (and writes) the results.

    The run holds ``run_dir`` for its whole life (another process on it is refused) and stops cleanly on
    SIGTERM / SIGINT (``wsrl.running.rundir``)."""
    validate(cfg)
    with run_lock(run_dir), StopSignals() as signals:
        return _train(cfg, run_dir, signals)


def _train(cfg: TrainConfig, run_dir: Path, signals: StopSignals) -> RunResults:
    # compose: everything that can refuse the run does so before any data is made or loaded and before any file is
    # written, the quickest first: the device, the video, the run directory's identity, the data's shapes
    env = resolve_env(cfg.env)
    refuse_early(cfg, env)
    plain = to_plain(cfg)  # the one conversion: what run_config.json, config.yaml, W&B, checkpoints and results hold
    identity = check_same_run(plain, run_dir, env.dataset_id)
    if (done := finished_results(run_dir, cfg.trainer.max_steps)) is not None:
        log.info("%s already finished (%s steps): choose another name= to run again", run_dir, done.steps)
        return done
    resume = resume_point(cfg, run_dir)  # a damaged checkpoint falls back, or refuses here
    check_shapes_early(cfg.env, env)
    ensure_run_dataset(cfg)  # the first work: minutes of CPU for a missing full-size generated dataset
    start = time.time()
    run = build_run(cfg, plain, env, run_dir, signals, resume=resume)
    try:
        record_run(run_dir, identity, plain)
        log_dataset(run, env, run_dir)
        fit(run, cfg, resume)
        final, extras = evaluate_final(run, cfg, env, run_dir)
    except RunInterrupted:
        for lg in run.trainer.loggers:  # already done if the signal came while training; harmless twice
            lg.finalize("failed")
        raise
    results = RunResults.of_run(plain, env, run.data.transitions.content_hash, run.trainer.global_step,
                                run.target_return, run.data.weight_stats, final, run.evaluator.history,
                                run.stopper.starts, time.time() - start, run.device, extras)
    record(run, cfg, results, run_dir)
    return results


def refuse_early(cfg: TrainConfig, env: ResolvedEnv) -> None:
    """Refuse what this machine cannot do before any data or training: CUDA without CUDA (``build_run`` resolves
    the device again, for the run), a video where rendering fails."""
    resolve_device(cfg.device)
    if cfg.eval.video:
        try:
            check_video(env.eval_env_id)
        except VideoUnavailable as err:
            raise ConfigError(f"eval.video=true: {err}") from err


def log_dataset(run: Run, env: ResolvedEnv, run_dir: Path) -> None:
    """What the run starts from: the weights' diagnostics (how uneven, where their mass lies; null: a unimodal
    dataset has no share between modes) and the dataset's returns figure."""
    if run.data.weight_stats is not None:
        for lg in run.trainer.loggers:
            lg.log_metrics({f"data/weight_{k}": v for k, v in run.data.weight_stats.items() if v is not None}, step=0)
    media.log_dataset(run.trainer.loggers, run.data, env, run_dir)


def fit(run: Run, cfg: TrainConfig, resume: Path | None) -> None:
    """Fit to ``trainer.max_steps`` from the checkpoint ``resume`` (``resume_point``; None: from step 0)."""
    if resume is not None:
        log.info("resuming from %s", resume)
    run.fit(str(resume) if resume is not None else None)
    lightning_fixes.save_final_step(run.trainer, run.last, checkpoint_interval(cfg))


def evaluate_final(run: Run, cfg: TrainConfig, env: ResolvedEnv, run_dir: Path) -> tuple[dict, dict]:
    """The final evaluation and the media asked for (video, conditioning curve)."""
    lightning_fixes.back_on(run.module, run.device)
    seed, step = eval_seed(cfg.seed, cfg.trainer.max_steps), run.trainer.global_step
    final = evaluate(run.module, env, cfg.eval.episodes, seed)
    extras = media.final_media(run.trainer.loggers, run.module, env, cfg.eval, seed, step, run_dir,
                               f"{cfg.env.name} {cfg.method.name}/{cfg.sampler.name}/{cfg.policy.name} "
                               f"seed {cfg.seed}, step {step}")
    return final, extras


def record(run: Run, cfg: TrainConfig, results: RunResults, run_dir: Path) -> None:
    """Write ``results.json``, close the loggers with the final score and print the one-line summary."""
    results_path = write_results(run_dir, results)
    score = results.normalized_score
    for lg in run.trainer.loggers:
        lg.log_metrics({"eval/final_normalized_mean": score["mean"], "eval/final_normalized_std": score["std"]},
                       step=results.steps)
        lg.finalize("success")
    if cfg.wandb.mode != "disabled":
        import wandb

        wandb.finish()
    print(f"{cfg.env.name} {cfg.method.name}/{cfg.sampler.name}/{cfg.policy.name} seed {cfg.seed}: normalized "
          f"score {score['mean']:.1f} +- {score['std']:.1f} over {cfg.eval.episodes} episodes "
          f"({results.steps} steps, {results.wall_seconds:.0f} s) -> {results_path}")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float:
    """Run one job and return its mean normalized score (what a sweeper optimizes). A failure ends the job as
    ``wsrl.running.refusals.report_failure`` says: in a sweep the other jobs go on."""
    from hydra.types import RunMode

    from wsrl.running.gpus import pin_worker_gpu

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    if sweep:
        pin_worker_gpu()  # a local sweep's worker takes its own GPU; a single run sees them all (device=cuda:N)
        if cfg.wandb.group is None:
            cfg.wandb.group = cfg.name  # one W&B group per sweep
    try:
        return train(cfg, run_dir).normalized_score["mean"]
    except Exception as err:
        return report_failure(err, run_dir, sweep, list(hydra_cfg.overrides.task))


def cli() -> None:
    """``python -m wsrl.train`` and the ``wsrl-train`` script: refuse a bad command line in one line, then run."""
    check_command_line(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
