"""Build a run from its config: the data module, the LightningModule and the Trainer, with its loggers and callbacks.

``build_run`` is the one place that does it: ``wsrl.train.train`` fits what it returns, and the benchmark
(``experiments/bench.py``) times exactly the same objects.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from wsrl.core.config import EnvConfig, EvalConfig, ResolvedEnv, TrainConfig, TrainerConfig, resolve_device
from wsrl.core.data import DataError, OfflineDataModule, Transitions
from wsrl.core.methods import conditions_on_return
from wsrl.core.module import WeightedBC
from wsrl.evaluation import media
from wsrl.evaluation.conditioning import return_histogram
from wsrl.evaluation.scores import eval_seed, evaluate
from wsrl.running import lightning_fixes
from wsrl.running.damaged import checkpoint_step, resume_checkpoint
from wsrl.running.rundir import AtomicCheckpointIO, StopAtStep, StopSignals

log = logging.getLogger("wsrl")


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


def known_dataset_shapes(env_cfg: EnvConfig, dataset_id: str) -> tuple[int, int] | None:
    """The observation and action sizes of ``dataset_id`` where they are known without making or loading it: a
    local dataset's Minari metadata, or, for a generated dataset not made yet, the robot's environment it will be
    generated in. None where only the data would tell (a download, a D4RL file not converted yet, odd metadata)."""
    import gymnasium as gym

    from wsrl.datasets.store import exists_locally, read_metadata
    from wsrl.datasets.suite import ROBOT, generated_id

    if exists_locally(dataset_id):
        try:
            meta = read_metadata(dataset_id)
            obs, act = (json.loads(meta[key]) for key in ("observation_space", "action_space"))
            if obs["type"] == act["type"] == "Box" and len(obs["shape"]) == len(act["shape"]) == 1:
                return int(obs["shape"][0]), int(act["shape"][0])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None
    if env_cfg.source == "generated" and dataset_id == generated_id(env_cfg.robot, env_cfg.quality, env_cfg.size):
        env = gym.make(ROBOT[env_cfg.robot].env_id)
        shapes = env.observation_space.shape[0], env.action_space.shape[0]
        env.close()
        return shapes
    return None


def check_shapes_early(env_cfg: EnvConfig, env: ResolvedEnv) -> None:
    """``check_shapes`` before any data is made or loaded, where the dataset's sizes are known without it
    (``known_dataset_shapes``); ``build_run`` checks again on the loaded data."""
    if (shapes := known_dataset_shapes(env_cfg, env.dataset_id)) is not None:
        check_shapes(env.eval_env_id, env.dataset_id, *shapes)


class PeriodicEval(L.Callback):
    """Evaluates the policy after every ``every_steps`` steps, before the next step (so that the process which
    takes step s, a resumed one too, evaluates at s), and logs the scores labelled s, as the final evaluation's;
    with ``video`` (the eval config, when eval.video_periodic) it also records the first episode into
    ``run_dir/videos``. The history is saved in checkpoints."""

    def __init__(self, env: ResolvedEnv, episodes: int, every_steps: int, seed: int, video: EvalConfig | None = None,
                 run_dir: Path | None = None) -> None:
        self.env, self.episodes, self.every_steps, self.seed = env, episodes, every_steps, seed
        self.video, self.run_dir = video, run_dir
        self.history: list[dict] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        step = trainer.global_step
        if not (self.every_steps and step and step % self.every_steps == 0):
            return
        # a checkpoint saved after this step's evaluation (a stop at its start, or an earlier wsrl that evaluated
        # after the step) holds it already: not evaluated twice, but its row logged again, since a resumed run's
        # metrics.csv keeps only the rows before its step (lightning_fixes.keep_metrics)
        if self.history and self.history[-1]["step"] == step:
            score = self.history[-1]
        else:
            score = {"step": step, **evaluate(module, self.env, self.episodes,
                                              eval_seed(self.seed, step))["normalized_score"]}
            self.history.append(score)
            if self.video is not None:
                media.record_and_log(trainer.loggers, module, self.env, self.video, eval_seed(self.seed, step),
                                     step, self.run_dir)
        for lg in trainer.loggers:  # its own row, at its step (Lightning would write it at its next logging step)
            lg.log_metrics({"eval/normalized_mean": score["mean"], "eval/normalized_std": score["std"]}, step=step)

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


def wandb_mode(requested: str, sync: str) -> str:
    """The W&B mode to log in: ``requested`` (``wandb.mode``), offline in place of online when the W&B server does not
    answer (``sync``: the folder to name in the hint to sync later)."""
    if requested == "online" and not wandb_reachable():
        log.warning("W&B is not reachable: logging offline instead (sync later with `wandb sync %s`)", sync)
        return "offline"
    return requested


def make_loggers(cfg: TrainConfig, plain: dict, run_dir: Path, mode: str | None = None,
                 concurrent: bool = False, resume: int | None = None, again: tuple[str, ...] = ()) -> list:
    """A CSV logger in ``run_dir/csv`` and, unless ``wandb.mode=disabled``, W&B (offline when it is unreachable),
    which records ``plain``, the config as plain data. ``mode``: the W&B mode where the caller has chosen it
    (``wandb_mode``, once for many runs); ``concurrent``: one of several W&B runs open at once in this process (the
    stacked launcher's members), each its own run rather than the process's one ``wandb.run``. ``resume``: the step
    the run resumes from, whose earlier rows the CSV keeps but those with a key starting with one of ``again``, which
    this start logs again (``lightning_fixes.keep_metrics``)."""
    loggers: list = [L.pytorch.loggers.CSVLogger(run_dir, name="csv", version="")]
    if resume is not None:
        lightning_fixes.keep_metrics(loggers[0], resume, again)
    mode = wandb_mode(str(cfg.wandb.mode), f"{run_dir}/wandb") if mode is None else mode
    if mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        group = cfg.wandb.group or f"{cfg.env.name}/{cfg.method.name}/{cfg.sampler.name}/{cfg.policy.name}"
        loggers.append(WandbLogger(project=cfg.wandb.project, entity=cfg.wandb.entity, group=group,
                                   name=f"{group}/seed{cfg.seed}", save_dir=str(run_dir), mode=mode,
                                   config=plain, **({"reinit": "create_new"} if concurrent else {})))
    return loggers


def checkpoint_interval(cfg: TrainConfig) -> int:
    """Steps between checkpoints (``checkpoint_every_steps``; 0 means only the end)."""
    return cfg.trainer.checkpoint_every_steps or cfg.trainer.max_steps


def run_checkpoints(cfg: TrainConfig, run_dir: Path) -> L.pytorch.callbacks.ModelCheckpoint:
    """Checkpoints every ``checkpoint_every_steps`` in ``run_dir/checkpoints``, the latest as ``last.ckpt``."""
    # One process per run directory (wsrl.running.rundir.run_lock), so an existing last.ckpt is this run's, written by
    # this callback or by a stop signal: replace it rather than write last-v1.ckpt beside it, which a resume never
    # reads.
    lightning_fixes.manual_optimization_checkpoints()
    return L.pytorch.callbacks.ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="{step}", save_last=True,
                                               every_n_train_steps=checkpoint_interval(cfg), save_top_k=1,
                                               monitor=None, enable_version_counter=False)


def resume_point(cfg: TrainConfig, run_dir: Path) -> Path | None:
    """The checkpoint a run resumes from (None: step 0, with ``resume=false`` or no checkpoint yet): its
    ``last.ckpt``, or where that cannot be read the newest readable periodic ``step=N.ckpt`` of
    ``run_checkpoints``; none readable: refused in one line (``wsrl.running.damaged.resume_checkpoint``)."""
    if not cfg.resume:
        return None
    directory = run_dir / "checkpoints"
    periodic = {int(m[1]): p for p in directory.glob("step=*.ckpt") if (m := re.fullmatch(r"step=(\d+)\.ckpt", p.name))}
    return resume_checkpoint(directory / "last.ckpt", [periodic[step] for step in sorted(periodic, reverse=True)],
                             f"to start over from step 0, move them out of {directory} and run the same command again")


def make_trainer(trainer: TrainerConfig, device: torch.device, loggers: list | bool, callbacks: list[L.Callback],
                 checkpoints: L.pytorch.callbacks.ModelCheckpoint | None = None, root_dir: Path | None = None
                 ) -> L.Trainer:
    """A Trainer for ``trainer.max_steps`` steps on ``device``: ``callbacks``, then ``checkpoints`` (None: the
    callbacks save what is to be saved) and the progress bar; every checkpoint written whole (``AtomicCheckpointIO``);
    no validation. A single run's (``build_run``) and a stacked group's (``wsrl.stacked.group``)."""
    bar = [L.pytorch.callbacks.TQDMProgressBar(trainer.log_every_n_steps)] if trainer.progress_bar else []
    return L.Trainer(
        max_steps=trainer.max_steps, accelerator=device.type, devices=[device.index or 0]
        if device.type == "cuda" else 1, logger=loggers,
        callbacks=[*callbacks, *([checkpoints] if checkpoints is not None else []), *bar],
        enable_checkpointing=checkpoints is not None, log_every_n_steps=trainer.log_every_n_steps,
        enable_progress_bar=trainer.progress_bar, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, deterministic=False, default_root_dir=root_dir, plugins=[AtomicCheckpointIO()])


@dataclass
class Run:
    """Everything ``train`` fits, evaluates and records."""

    env: ResolvedEnv
    device: torch.device
    data: OfflineDataModule  # set up: the dataset on the device, its weights and the run's draws
    module: WeightedBC
    trainer: L.Trainer
    evaluator: PeriodicEval  # the periodic evaluations' history (a Trainer callback when eval.every_steps > 0)
    stopper: StopAtStep  # saves the step on a stop signal; records the step each process started from
    last: Path  # checkpoints/last.ckpt: what a resumed run starts from
    target_return: float | None  # RvS-R's evaluation target (raw return); None for BC, which takes none

    def fit(self, ckpt_path: str | None = None) -> None:
        """``trainer.fit`` of the module on the data."""
        lightning_fixes.fit(self.trainer, self.module, self.data, ckpt_path)


def build_policy(cfg: TrainConfig, plain: dict, env: ResolvedEnv, transitions: Transitions | None = None,
                 device: torch.device | None = None, data: OfflineDataModule | None = None
                 ) -> tuple[torch.device, OfflineDataModule, WeightedBC]:
    """Seed everything, load the dataset onto the device (``device``: another than the config's, as the stacked
    launcher builds its members on the CPU), check that it fits the evaluation env and build the module: a run's
    initial state, shared by ``build_run`` and the stacked launcher's members (``wsrl.stacked``). ``plain``: ``cfg``
    as plain data (``to_plain``), what the module keeps in its checkpoints. ``data``: a
    data module already set up for the same dataset, method and sampler (the stacked launcher's members with those
    in common share one; its generator is not theirs)."""
    lightning_fixes.seed_everything(cfg.seed)
    torch.set_float32_matmul_precision(str(cfg.trainer.matmul_precision))
    device = resolve_device(cfg.device) if device is None else device
    if data is None:
        data = OfflineDataModule(env.dataset_id, cfg.method, cfg.sampler, cfg.trainer.batch_size, cfg.seed, device,
                                 transitions)
        data.setup()
    check_shapes(env.eval_env_id, env.dataset_id, data.obs_mean.shape[0], data.action_dim)
    target = None if not conditions_on_return(cfg.method) else (
        data.max_episode_return if cfg.env.target_return is None else cfg.env.target_return)
    module = WeightedBC(data.input_dim, data.action_dim, plain["policy"], plain["method"], plain["trainer"],
                        target, data.obs_mean, data.obs_std, config=plain,
                        dataset_returns=return_histogram(data.transitions.episode_returns()))
    module.draws = data.draws
    return device, data, module


def build_run(cfg: TrainConfig, plain: dict, env: ResolvedEnv, run_dir: Path, signals: StopSignals,
              transitions: Transitions | None = None, resume: Path | None = None) -> Run:
    """``build_policy`` (``transitions``: the dataset already loaded, as the benchmark reuses them), then the
    Trainer with its loggers and callbacks; ``resume``: the checkpoint the run will resume from (``resume_point``),
    whose earlier metrics rows the CSV keeps (each start logs the dataset's ``data/`` rows afresh)."""
    device, data, module = build_policy(cfg, plain, env, transitions)
    evaluator = PeriodicEval(env, cfg.eval.episodes, cfg.eval.every_steps, cfg.seed,
                             cfg.eval if cfg.eval.video_periodic else None, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    stopper = StopAtStep(signals, last)
    # without periodic evaluation the callback would only cost its hook calls on every step
    step = None if resume is None else checkpoint_step(resume)
    trainer = make_trainer(cfg.trainer, device, make_loggers(cfg, plain, run_dir, resume=step, again=("data/",)),
                           ([evaluator] if cfg.eval.every_steps else []) + [stopper], run_checkpoints(cfg, run_dir),
                           run_dir)
    return Run(env, device, data, module, trainer, evaluator, stopper, last, module.target_return)
