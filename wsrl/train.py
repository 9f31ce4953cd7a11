"""Train and evaluate one policy: ``python -m wsrl.train env=hopper_medium_expert method=rvs_r``.

``main`` is the thin Hydra entry point; ``train(cfg)`` does the work: make sure the dataset exists, build the
data module and the LightningModule, fit for ``trainer.max_steps`` steps (resuming from the run directory's
last checkpoint), evaluate, and write ``results.json`` in the run directory.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shlex
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from wsrl import dashboard
from wsrl.conditioning import return_histogram
from wsrl.config import ConfigError, EvalConfig, ResolvedEnv, TrainConfig, register_configs, resolve_env, validate
from wsrl.data import DataError, OfflineDataModule
from wsrl.evaluation import eval_seed, evaluate
from wsrl.module import NonFiniteLossError, WeightedBC
from wsrl.runs import (
    AtomicCheckpointIO,
    RunInterrupted,
    RunLockedError,
    StopAtStep,
    StopSignals,
    WriteError,
    run_lock,
    write_bytes_atomic,
    write_json_atomic,
)
from wsrl.video import VideoUnavailable, check_video

log = logging.getLogger("wsrl")
register_configs()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return device


class PeriodicEval(L.Callback):
    """Evaluates every ``every_steps`` steps; with ``video`` (the eval config, when eval.video_periodic) it also
    records the first episode into ``run_dir/videos``. The history is saved in checkpoints."""

    def __init__(self, env: ResolvedEnv, episodes: int, every_steps: int, seed: int, video: EvalConfig | None = None,
                 run_dir: Path | None = None) -> None:
        self.env, self.episodes, self.every_steps, self.seed = env, episodes, every_steps, seed
        self.video, self.run_dir = video, run_dir
        self.history: list[dict] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_steps and step % self.every_steps == 0 and step < trainer.max_steps:
            result = evaluate(module, self.env, self.episodes, eval_seed(self.seed, step))
            self.history.append({"step": step, **result["normalized_score"]})
            module.log_dict({"eval/normalized_mean": result["normalized_score"]["mean"],
                             "eval/normalized_std": result["normalized_score"]["std"]})
            if self.video is not None:
                dashboard.record_and_log(trainer.loggers, module, self.env, self.video, eval_seed(self.seed, step),
                                         step, self.run_dir)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.history = state["history"]


def wandb_reachable(timeout: float = 3.0) -> bool:
    """Whether the W&B server answers a TCP connection (online mode would otherwise hang or fail)."""
    import socket

    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def make_loggers(cfg: TrainConfig, run_dir: Path) -> list:
    loggers: list = [L.pytorch.loggers.CSVLogger(run_dir, name="csv", version="")]
    mode = cfg.wandb.mode
    if mode == "online" and not wandb_reachable():
        log.warning("W&B is not reachable: logging offline instead (sync later with `wandb sync %s/wandb`)", run_dir)
        mode = "offline"
    if mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        group = cfg.wandb.group or f"{cfg.env.name}/{cfg.method.name}/{cfg.sampler.name}/{cfg.policy.name}"
        loggers.append(WandbLogger(project=cfg.wandb.project, entity=cfg.wandb.entity, group=group,
                                   name=f"{group}/seed{cfg.seed}", save_dir=str(run_dir), mode=mode,
                                   config=OmegaConf.to_container(cfg, resolve=True)))
    return loggers


def check_same_run(cfg: TrainConfig, run_dir: Path) -> dict | None:
    """Refuse to resume or extend a run directory that holds a run with another configuration; return the
    identity to record when the directory holds no run yet."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else asdict(cfg)
    keep = {k: v for k, v in plain.items() if k not in ("trainer", "wandb", "resume")}
    keep["trainer"] = {k: v for k, v in plain["trainer"].items() if k not in ("max_steps", "progress_bar")}
    # videos and the conditioning curve only look at the policy: runs made before they existed stay the same run
    keep["eval"] = {k: v for k, v in plain["eval"].items() if k in ("episodes", "every_steps")}
    path = run_dir / "run_config.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before != keep:
            diff = sorted(k for k in set(before) | set(keep) if before.get(k) != keep.get(k))
            raise ConfigError(f"{run_dir} holds a run with a different {', '.join(diff)} config; pass name=<new "
                              "name> (or hydra.run.dir=...) to keep both runs")
        return
    return keep


def check_shapes(eval_env_id: str, dataset_id: str, obs_dim: int, act_dim: int) -> None:
    """The dataset must fit the evaluation environment, or evaluation would fail after all the training."""
    import gymnasium as gym

    env = gym.make(eval_env_id)
    want_obs, want_act = env.observation_space.shape, env.action_space.shape
    env.close()
    if (obs_dim,) != want_obs or (act_dim,) != want_act:
        raise DataError(f"{dataset_id} has observations of size {obs_dim} and actions of size {act_dim} but "
                        f"{eval_env_id} expects {want_obs[0]} and {want_act[0]}; set env.eval_env_id to the env "
                        "the data came from")


def checkpoint_interval(cfg: TrainConfig) -> int:
    """Steps between checkpoints (``checkpoint_every_steps``; 0 means only the end)."""
    return cfg.trainer.checkpoint_every_steps or cfg.trainer.max_steps


def make_trainer(cfg: TrainConfig, run_dir: Path, device: torch.device, loggers: list,
                 callbacks: list[L.Callback]) -> L.Trainer:
    """The run's Trainer: ``callbacks``, then checkpoints every ``checkpoint_every_steps`` in ``run_dir/checkpoints``
    and the progress bar. ``train`` and the benchmark (experiments/bench.py) both build it here."""
    every = checkpoint_interval(cfg)
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="{step}",
                                                      save_last=True, every_n_train_steps=every, save_top_k=1,
                                                      monitor=None, enable_version_counter=False)
    # One process per run directory (wsrl.runs.run_lock), so an existing last.ckpt is this run's, written by this
    # callback or by a stop signal: replace it rather than write last-v1.ckpt beside it, which a resume never reads.
    # The module steps its optimizer itself (manual optimization); its checkpoints hold the state after the step,
    # as with automatic optimization, which is what resuming expects.
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    return L.Trainer(
        max_steps=cfg.trainer.max_steps, accelerator=device.type, devices=[device.index or 0]
        if device.type == "cuda" else 1, logger=loggers,
        callbacks=[*callbacks, checkpoints] + ([L.pytorch.callbacks.TQDMProgressBar(cfg.trainer.log_every_n_steps)]
                                               if cfg.trainer.progress_bar else []),
        log_every_n_steps=cfg.trainer.log_every_n_steps, enable_progress_bar=cfg.trainer.progress_bar,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, deterministic=False,
        default_root_dir=run_dir, plugins=[AtomicCheckpointIO()])


def train(cfg: TrainConfig, run_dir: Path) -> dict:
    """Train and evaluate one configuration; returns (and writes) the results.

    The run holds ``run_dir`` for its whole life (another process on it is refused) and stops cleanly on
    SIGTERM / SIGINT (``wsrl.runs``)."""
    validate(cfg)
    with run_lock(run_dir), StopSignals() as signals:
        return _train(cfg, run_dir, signals)


def _train(cfg: TrainConfig, run_dir: Path, signals: StopSignals) -> dict:
    env = resolve_env(cfg.env)
    if cfg.eval.video:  # refused before any data or training when this machine cannot render
        try:
            check_video(env.eval_env_id)
        except VideoUnavailable as err:
            raise ConfigError(f"eval.video=true: {err}") from err
    if cfg.generate_if_missing:
        from wsrl.datasets.sources import ensure_dataset

        ensure_dataset(env.dataset_id, cfg.env.source, cfg.env.robot, cfg.env.quality, cfg.env.size,
                       cfg.env.d4rl_file)
    identity = check_same_run(cfg, run_dir)
    results_path = run_dir / "results.json"
    if results_path.exists():
        done = json.loads(results_path.read_text())
        if done["steps"] >= cfg.trainer.max_steps:
            log.info("%s already finished (%s steps): choose another name= to run again", run_dir, done["steps"])
            return done
    start = time.time()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    device = resolve_device(cfg.device)
    data = OfflineDataModule(env.dataset_id, cfg.method, cfg.sampler, cfg.trainer.batch_size, cfg.seed, device)
    data.setup()
    check_shapes(env.eval_env_id, env.dataset_id, data.obs_mean.shape[0], data.action_dim)
    target = data.max_episode_return if cfg.env.target_return is None else cfg.env.target_return
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else asdict(cfg)
    module = WeightedBC(data.input_dim, data.action_dim, plain["policy"], plain["method"], plain["trainer"],
                        target, data.obs_mean, data.obs_std, config=plain,
                        dataset_returns=return_histogram(data.data.episode_returns()))
    evaluator = PeriodicEval(env, cfg.eval.episodes, cfg.eval.every_steps, cfg.seed,
                             cfg.eval if cfg.eval.video_periodic else None, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    stopper = StopAtStep(signals, last)
    # without periodic evaluation the callback would only cost its hook calls on every step
    trainer = make_trainer(cfg, run_dir, device, make_loggers(cfg, run_dir),
                           ([evaluator] if cfg.eval.every_steps else []) + [stopper])
    try:
        if data.weight_stats is not None:  # LDS weights, in the loss or in the sampling: how uneven they are
            for lg in trainer.loggers:
                lg.log_metrics({f"data/weight_{k}": v for k, v in data.weight_stats.items()}, step=0)
        if identity is not None:
            write_json_atomic(run_dir / "run_config.json", identity)
            write_bytes_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(plain)).encode())
        dashboard.log_dataset(trainer.loggers, data.data.trajectory_returns(), data.weights, cfg.sampler, env,
                              run_dir)
        resume = cfg.resume and last.exists()
        if resume:
            log.info("resuming from %s", last)
        trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None)
        if trainer.global_step % checkpoint_interval(cfg):
            # Lightning saves `last` at the end only if it saved nothing before: keep the final step too
            trainer.save_checkpoint(last)
        final = evaluate(module, env, cfg.eval.episodes, eval_seed(cfg.seed, cfg.trainer.max_steps))
        media = dashboard.final_media(trainer.loggers, module, env, cfg.eval,
                                      eval_seed(cfg.seed, cfg.trainer.max_steps), trainer.global_step, run_dir,
                                      f"{cfg.env.name} {cfg.method.name}/{cfg.sampler.name}/{cfg.policy.name} "
                                      f"seed {cfg.seed}, step {trainer.global_step}")
    except RunInterrupted:
        for lg in trainer.loggers:  # already done if the signal came while training; harmless twice
            lg.finalize("failed")
        raise
    results = {
        "env": cfg.env.name, "method": cfg.method.name, "sampler": cfg.sampler.name, "policy": cfg.policy.name,
        "seed": cfg.seed, "steps": trainer.global_step, "dataset_id": env.dataset_id,
        "eval_env_id": env.eval_env_id, "ref_min_score": env.ref_min_score, "ref_max_score": env.ref_max_score,
        "target_return": target, "weights": data.weight_stats, **final,
        "eval_history": evaluator.history + [{"step": trainer.global_step, **final["normalized_score"]}],
        "started_at_steps": stopper.starts, "wall_seconds": time.time() - start, "device": str(device), **media,
        "config": plain,
    }
    write_json_atomic(results_path, results)
    for lg in trainer.loggers:
        lg.log_metrics({"eval/final_normalized_mean": final["normalized_score"]["mean"],
                        "eval/final_normalized_std": final["normalized_score"]["std"]}, step=trainer.global_step)
        lg.finalize("success")
    if cfg.wandb.mode != "disabled":
        import wandb

        wandb.finish()
    score = results["normalized_score"]
    print(f"{cfg.env.name} {cfg.method.name}/{cfg.sampler.name}/{cfg.policy.name} seed {cfg.seed}: normalized "
          f"score {score['mean']:.1f} +- {score['std']:.1f} over {cfg.eval.episodes} episodes "
          f"({trainer.global_step} steps, {results['wall_seconds']:.0f} s) -> {results_path}")
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Run one job. In a sweep, a failing job records ``failed.json`` and the others go on; a job whose directory
    another process holds is refused without writing there. A stop signal ends the job (and a sweep) with a
    line on how to resume, after submitit's requeue where submitit sent it."""
    from hydra.types import RunMode

    from wsrl.datasets.sources import DatasetError
    from wsrl.launch import pin_worker_gpu

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    if sweep:
        pin_worker_gpu()  # a local sweep's worker takes its own GPU; a single run sees them all (device=cuda:N)
        if cfg.wandb.group is None:
            cfg.wandb.group = cfg.name  # one W&B group per sweep
    try:
        return train(cfg, run_dir)["normalized_score"]["mean"]
    except Exception as err:
        if (wandb := sys.modules.get("wandb")) is not None and wandb.run is not None:
            wandb.finish(exit_code=1)  # or the next job in this worker would log into the failed run
        if isinstance(err, RunInterrupted):
            again = "the same sweep" if sweep else "python -m wsrl.train " + " ".join(map(shlex.quote, sys.argv[1:]))
            print(f"{err}; to resume, run {again}", file=sys.stderr, flush=True)
            if err.requeue is not None:
                err.requeue(err.signum, None)  # submitit requeues the job (same command, same directory) and exits
            sys.exit(err.exit_code)
        if isinstance(err, RunLockedError):  # the directory is another process's: write nothing there
            print(f"error: {err}", file=sys.stderr, flush=True)
            if sweep:
                return float("nan")
            sys.exit(1)
        if sweep:
            log.error("job failed: %s: %s", type(err).__name__, err)
            with contextlib.suppress(WriteError):  # a full disk: the error line above is the record
                write_json_atomic(run_dir / "failed.json", {"error": str(err), "type": type(err).__name__,
                                                            "overrides": list(hydra_cfg.overrides.task)})
            return float("nan")
        discard_if_empty(run_dir)
        if isinstance(err, ConfigError | DataError | DatasetError | NonFiniteLossError | WriteError):
            sys.exit(f"error: {err}")
        raise


def discard_if_empty(run_dir: Path) -> None:
    """Remove the directories Hydra made for a run that was refused before writing anything (empty ones only,
    up to the working directory), so a refusal leaves no trace."""
    run_dir, cwd = run_dir.resolve(), Path.cwd().resolve()
    for path in [run_dir, *(parent for parent in run_dir.parents if cwd in parent.parents)]:
        try:
            path.rmdir()
        except OSError:  # not empty: someone else's
            break


def check_command_line(args: list[str]) -> None:
    """Compose the configs of a command line as Hydra will (each value of a sweep once) and refuse a bad
    override in one line, before any output directory exists: Hydra's own messages span several lines and
    suggest `+key=` for a mistyped key, which ``validate`` then refuses. Other Hydra flags than ``-m`` are
    left to Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in args):
        return
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    except OverrideParseException as err:
        sys.exit(f"error: cannot parse the overrides: {str(err).splitlines()[0]}")
    values = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
              else [o.input_line] for o in parsed]
    base = [choices[0] for choices in values]
    runs = [base] + [base[:i] + [v] + base[i + 1:] for i, choices in enumerate(values) for v in choices[1:]]
    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        for overrides in runs:
            try:
                compose("train", overrides=overrides)
            except MissingConfigException as err:  # an unknown group option: name the valid ones
                lines = str(err).splitlines()
                listed = next((i for i, line in enumerate(lines) if line.startswith("Available options")), len(lines))
                options = [line.strip() for line in itertools.takewhile(lambda x: x.startswith("\t"),
                                                                        lines[listed + 1:])]
                what = lines[0].removeprefix("In 'train': ").rstrip(".")
                if not options and "hydra/launcher" in what:  # the SLURM preset needs its Hydra plugin
                    sys.exit(f"error: {what}: install the launcher plugins with `pip install -e '.[cluster]'`")
                sys.exit(f"error: {what}; options: {', '.join(options)}")
            except (HydraException, OmegaConfBaseException) as err:
                cause = str(err.__cause__).splitlines()[0] if err.__cause__ else ""
                what = str(err).splitlines()[0].rstrip(".")
                sys.exit(f"error: {what}{': ' + cause if cause else ''} (see `python -m wsrl.train --cfg job`)")


if __name__ == "__main__":
    check_command_line(sys.argv[1:])
    main()
