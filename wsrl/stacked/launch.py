"""The stacked launcher's work: group a sweep's jobs, train each group as one model, record every member as a run.

Jobs share a group when they can share one model: the same policy (architecture and width), the same trainer
settings (steps, batch size, lr, weight decay, precision, logging and checkpoint cadence), device and number of
evaluation episodes, and, with
``group_by=robot`` or ``dataset``, the same robot or dataset; groups hold at most ``max_group`` members. A finished
member (``results.json`` at its steps) is reported, not trained again; an unfinished group resumes from its group
checkpoint (``<sweep dir>/.stacked/<group>.ckpt``); one that cannot be read ends the launch in one line before
any group starts (a group saves one checkpoint: none to fall back to). A stop signal saves the group and exits
(status 128 + signal); the deadline (``wsrl.stacked.clock``: training, evaluation and writing all end before it)
saves it, or keeps the checkpoint of its last step where its evaluation does not fit, and exits with
``DEADLINE_EXIT``; both print the command that resumes. Each member logs as a single run does: its metrics CSV and,
unless ``wandb.mode=disabled``, its own W&B run in the sweep's group; each group's time is recorded beside its
checkpoint (``clock.record``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsrl.core.config import ConfigError, resolve_env, to_plain
from wsrl.core.validation import validate
from wsrl.evaluation import media
from wsrl.evaluation.scores import eval_seed, evaluate_many
from wsrl.running.build import make_loggers, wandb_mode
from wsrl.running.damaged import DamagedFile, checkpoint_step, resume_checkpoint
from wsrl.running.datasets import ensure_run_dataset
from wsrl.running.refusals import report_failure
from wsrl.running.results import RunResults, finished_results, write_results
from wsrl.running.rundir import StopSignals, check_same_run, record_run, run_lock, write_failed
from wsrl.stacked.clock import KEY, MARGIN_S, Deadline, EvaluationClock, OutOfTime, TrainingClock, record, write_seconds
from wsrl.stacked.group import COMPILE_NEEDS_FAST, GroupStopped, Member, MemberLog, StackedGroup, build_group
from wsrl.stacked.record import close_loggers, log_dataset, write_checkpoint

log = logging.getLogger("wsrl")
DEADLINE_EXIT = 75  # EX_TEMPFAIL: stopped at the deadline, saved; the same command resumes
GROUP_BY = ("all", "robot", "dataset")


@dataclass
class Options:
    """``hydra.launcher.*`` of the stacked launcher."""

    max_group: int = 180  # the most members one model holds
    group_by: str = "all"  # all | robot | dataset: what members of one group must share beyond the model
    rng: str = "fast"  # fast (one generator per group) | exact (each member draws as its single run)
    eval_workers: int = 0  # evaluation worker processes for group evaluation (0: in this process)
    deadline_s: float = 0.0  # seconds the launch has from its start, for training, evaluation and writing (0: none)
    # torch.compile the fast step's forward and backward (rng=fast only; a member's numbers then differ from the
    # uncompiled step's in the last bits; its GPU speed-up is not measured yet)
    compile: bool = False

    def __post_init__(self) -> None:
        if self.group_by not in GROUP_BY:
            raise ConfigError(f"hydra.launcher.group_by={self.group_by} must be one of {', '.join(GROUP_BY)}")
        if self.rng not in ("exact", "fast"):
            raise ConfigError(f"hydra.launcher.rng={self.rng} must be exact or fast")
        if self.max_group < 1 or self.eval_workers < 0 or self.deadline_s < 0:
            raise ConfigError("hydra.launcher.max_group must be >= 1, eval_workers and deadline_s >= 0")
        if self.compile and self.rng != "fast":
            raise ConfigError(COMPILE_NEEDS_FAST)


@dataclass
class Job:
    """One job of the sweep: its composed config (without ``hydra``), run directory and overrides."""

    cfg: Any
    run_dir: Path
    overrides: list[str]


def group_key(job: Job, group_by: str) -> str:
    """Jobs with the same key can be trained as one model."""
    plain = to_plain(job.cfg)
    trainer = {k: v for k, v in plain["trainer"].items() if k != "progress_bar"}
    extra = {"all": None, "robot": plain["env"]["robot"], "dataset": resolve_env(job.cfg.env).dataset_id}[group_by]
    # one episode count per group: the group's evaluation runs all its members' episodes side by side
    return json.dumps([plain["policy"], trainer, plain["device"], plain["eval"]["episodes"], extra], sort_keys=True)


def plan(jobs: list[Job], options: Options) -> list[list[Job]]:
    """The groups, in the order of their first job, each cut into pieces of at most ``max_group``."""
    keyed: dict[str, list[Job]] = {}
    for job in jobs:
        keyed.setdefault(group_key(job, options.group_by), []).append(job)
    return [same[i:i + options.max_group] for same in keyed.values() for i in range(0, len(same), options.max_group)]


def accept(job: Job) -> None:
    """Refuse a job the stacked launcher cannot train (ConfigError, DataError...) and make its dataset if
    missing."""
    if job.cfg.eval.every_steps or job.cfg.eval.video_periodic:
        raise ConfigError("the stacked launcher evaluates at the end only: set eval.every_steps=0 and "
                          "eval.video_periodic=false, or use another launcher for periodic evaluation")
    ensure_run_dataset(job.cfg)


def group_name(jobs: list[Job]) -> str:
    return hashlib.sha1("\n".join(str(j.run_dir) for j in jobs).encode()).hexdigest()[:16]


def group_checkpoint(jobs: list[Job], sweep_dir: Path) -> Path:
    """Where the group of ``jobs`` saves and resumes (its one checkpoint)."""
    return sweep_dir / ".stacked" / f"{group_name(jobs)}.ckpt"


def refuse_damaged(groups: list[list[Job]], sweep_dir: Path) -> None:
    """End the launch in one line, before any group starts, where a group's checkpoint cannot be read: a group
    saves one checkpoint, so there is none to fall back to (``wsrl.running.damaged.resume_checkpoint``)."""
    for jobs in groups:
        checkpoint = group_checkpoint(jobs, sweep_dir)
        try:
            resume_checkpoint(checkpoint, (), f"to start the group over from step 0, move it out of "
                              f"{checkpoint.parent} and run the same command again")
        except DamagedFile as err:
            sys.exit(f"error: {err}")


def evaluate_members(members: list[Member], steps: int, workers: int, check: EvaluationClock) -> list[dict]:
    """Each member's final evaluation with its single run's seeds, on the training device: all members' episodes
    stepped together over ``workers`` processes (``evaluate_many``), each member acting with its own module, so
    that its scores equal ``evaluate``'s (a batched forward would differ in the last bits); ``check``, the
    deadline's, at every step."""
    return evaluate_many([m.module for m in members], [m.env for m in members], members[0].cfg.eval.episodes,
                         [eval_seed(int(m.cfg.seed), steps) for m in members], workers, check)


def record_members(group: StackedGroup, jobs: list[Job], loggers: list[list], name: str, options: Options,
                   started: float, check: EvaluationClock) -> list[float]:
    """Evaluate, checkpoint and record each member once the group has trained; returns the scores (NaN: failed)."""
    group.unstack()
    step, device = group.global_step, group.train_device
    alive = [k for k in range(len(jobs)) if k not in group.failed]
    for k, reason in group.failed.items():
        write_failed(jobs[k].run_dir, reason, "NonFiniteLossError", jobs[k].overrides)
        close_loggers(loggers[k], "failed")
    for k in alive:
        group.members[k].module.to(device)
    check.enough()  # before the evaluation workers start
    finals = evaluate_members([group.members[k] for k in alive], step, options.eval_workers, check)
    scores = [float("nan")] * len(jobs)
    for k, final in zip(alive, finals, strict=True):
        m, run_dir = group.members[k], jobs[k].run_dir
        write_checkpoint(m, step, run_dir / "checkpoints" / "last.ckpt")
        seed = eval_seed(int(m.cfg.seed), step)
        extras = media.final_media(loggers[k], m.module, m.env, m.cfg.eval, seed, step, run_dir,
                                   f"{m.cfg.env.name} {m.cfg.method.name}/{m.cfg.sampler.name}/"
                                   f"{m.cfg.policy.name} seed {m.cfg.seed}, step {step} (stacked)")
        results = RunResults.of_run(m.module.hparams.config, m.env, m.data.transitions.content_hash, step,
                                    m.module.target_return, m.data.weight_stats, final, [], group.starts,
                                    time.time() - started, device, extras)
        results.stacked = {"group": name, "size": len(jobs), "slot": k, "rng": options.rng,
                           "compile": options.compile, "group_seed": group.group_seed, "precision": results.precision}
        write_results(run_dir, results)
        for logger in loggers[k]:
            logger.log_metrics({"eval/final_normalized_mean": final["normalized_score"]["mean"],
                                "eval/final_normalized_std": final["normalized_score"]["std"]}, step=step)
        close_loggers(loggers[k], "success")
        scores[k] = final["normalized_score"]["mean"]
    return scores


def member_loggers(jobs: list[Job], sweep_dir: Path, resume: int | None = None) -> list[list]:
    """Each member's loggers, as a single run's (``make_loggers``), each W&B run open beside the others; W&B's
    reachability is checked once. ``resume``: the group checkpoint's step, whose earlier rows each member's CSV
    keeps (a resumed member logs no dataset rows again: ``open_group``)."""
    modes = {mode: wandb_mode(mode, f"{sweep_dir}/<run>/wandb") for mode in {str(j.cfg.wandb.mode) for j in jobs}}
    return [make_loggers(j.cfg, to_plain(j.cfg), j.run_dir, modes[str(j.cfg.wandb.mode)], concurrent=True,
                         resume=resume) for j in jobs]


def open_group(jobs: list[Job], identities: list[dict | None], sweep_dir: Path, checkpoint: Path, options: Options
               ) -> tuple[StackedGroup, list[list]]:
    """Build the group of accepted jobs (``identities``: from ``accept``) and open each member's loggers and run
    directory, as a single run starts."""
    group = build_group([j.cfg for j in jobs], [resolve_env(j.cfg.env) for j in jobs], options.rng,
                        [str(j.run_dir) for j in jobs], compile=options.compile)
    resume = checkpoint_step(checkpoint) if checkpoint.exists() else None
    if resume is not None:
        log.info("resuming group %s (%d members) from %s", checkpoint.stem, len(jobs), checkpoint)
    loggers, plotted = member_loggers(jobs, sweep_dir, resume), {}
    for job, identity, member, logs in zip(jobs, identities, group.members, loggers, strict=True):
        record_run(job.run_dir, identity, member.module.hparams.config)
        if identity is not None:
            log_dataset(member, job.run_dir, logs, plotted)
    return group, loggers


def metrics_writer(loggers: list[list]) -> MemberLog:
    """Each member's training metrics to its own loggers."""
    def write(step: int, rows: list[dict]) -> None:
        for logs, row in zip(loggers, rows, strict=True):
            if row:  # {}: a failed member
                for logger in logs:
                    logger.log_metrics(row, step=step)
    return write


def run_group(jobs: list[Job], identities: list[dict | None], options: Options, sweep_dir: Path,
              deadline: Deadline) -> list[float]:
    """Train one group of accepted jobs (``identities``: from ``accept``), resuming its group checkpoint, then
    evaluate and record its members, all before ``deadline``; returns their scores. Its time is recorded however it
    ends (``clock.record``)."""
    name, checkpoint = group_name(jobs), group_checkpoint(jobs, sweep_dir)
    with contextlib.ExitStack() as held:
        for job in jobs:
            held.enter_context(run_lock(job.run_dir))
        started = time.time()
        group, loggers = open_group(jobs, identities, sweep_dir, checkpoint, options)
        parameters = list(group.model.parameters())
        clock = TrainingClock(deadline, write_seconds(parameters, copies=3), name)
        seconds, status = {"build": time.time() - started}, "finished"
        try:
            if deadline.left() < clock.save_s + 2 * MARGIN_S:
                raise OutOfTime(f"group {name} ({len(jobs)} members) not started: {deadline.left():.0f} s before "
                                f"the deadline ({KEY}), too few to train and save it")
            mark = time.time()
            group.fit(checkpoint, clock.reason, metrics_writer(loggers), [clock])
            seconds["train"], mark = time.time() - mark, time.time()
            check = EvaluationClock(deadline, write_seconds(parameters) + 0.05 * len(jobs))
            try:
                scores = record_members(group, jobs, loggers, name, options, started, check)
            except OutOfTime as err:  # the checkpoint of the last step stays: the next call only evaluates
                raise GroupStopped(str(err), group.global_step, checkpoint) from None
            seconds["evaluate and record"] = time.time() - mark
            return scores
        except BaseException as err:
            status = str(err) if isinstance(err, (GroupStopped, OutOfTime)) else f"failed: {err!r}"
            for logs in loggers:
                close_loggers(logs, "failed")
            raise
        finally:
            record(checkpoint.with_suffix(".json"), name, len(jobs), to_plain(jobs[0].cfg)["trainer"],
                   group.train_device, clock, group.global_step, seconds, status)


def launch(jobs: list[Job], options: Options, sweep_dir: Path, started: float | None = None) -> list[float]:
    """Every job's score (NaN: failed), in the jobs' order; finished jobs are reported, not trained again. The
    deadline counts from ``started`` (a ``time.time()``; default: now)."""
    deadline = Deadline.after(options.deadline_s, time.time() if started is None else started)
    scores: dict[int, float] = {}
    todo, identity = [], {}
    with StopSignals():  # a stop signal outside training stops at once (RunInterrupted)
        for i, job in enumerate(jobs):
            try:  # the same order as a single run's (wsrl.train): valid, identity and data, finished, the rest
                validate(job.cfg)
                identity[i] = check_same_run(to_plain(job.cfg), job.run_dir, resolve_env(job.cfg.env).dataset_id)
                if (done := finished_results(job.run_dir, job.cfg.trainer.max_steps)) is not None:
                    log.info("%s already finished (%s steps)", job.run_dir, done.steps)
                    scores[i] = done.normalized_score["mean"]
                    continue
                accept(job)
                todo.append(job)
            except Exception as err:  # refused alone, as a job of a sweep
                scores[i] = report_failure(err, job.run_dir, True, job.overrides)
        index, groups = {id(job): i for i, job in enumerate(jobs)}, plan(todo, options)
        refuse_damaged(groups, sweep_dir)
        for number, group in enumerate(groups):
            log.info("group %d: %d members", number, len(group))
            try:
                results = run_group(group, [identity[index[id(j)]] for j in group], options, sweep_dir,
                                    deadline)
            except (GroupStopped, OutOfTime) as err:
                again = "python -m wsrl.train " + " ".join(map(shlex.quote, sys.argv[1:]))
                print(f"{err}; to resume, run the same command: {again}", file=sys.stderr, flush=True)
                sys.exit(128 + err.signum if getattr(err, "signum", None) is not None else DEADLINE_EXIT)
            except Exception as err:  # the group's jobs fail as one job of a sweep does; the other groups go on
                results = [report_failure(err, j.run_dir, True, j.overrides) for j in group]
            scores |= {index[id(job)]: score for job, score in zip(group, results, strict=True)}
    return [scores[i] for i in range(len(jobs))]
