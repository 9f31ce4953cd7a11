"""A group of runs trained as one model: built member by member with the single-run builder, then stacked into a
LightningModule that a Lightning Trainer fits, as a single run's ``WeightedBC``.

``build_group`` builds each member exactly as ``wsrl.running.build.build_policy`` builds a single run (its seed, its
dataset, weights and initialisation; on the CPU, where its module stays as the container of its own weights) and
stacks them on the training device. ``StackedGroup`` trains them with one optimizer (manual optimization) on the
SUM over members of each member's weighted mean loss: a mean over members would scale every member's gradient by
1/N, which weight decay and Adam's eps do not undo. Its Trainer is the single run's (``make_trainer``); a group
checkpoint is a Lightning checkpoint (parameters, the optimizer state, the step) plus every generator of the
group's draws, written whole or not at all, and resumed with ``ckpt_path``. A member whose loss turns non-finite
fails alone (its parameters and optimizer state are zeroed and its loss left out from then on). With ``compile``
(``hydra.launcher.compile``, fast mode only) the step's forward and backward run compiled by ``torch.compile``.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from wsrl.core.config import ResolvedEnv, TrainerConfig, resolve_device, to_plain
from wsrl.core.data import OfflineDataModule, step_tokens
from wsrl.core.methods import conditions_on_return
from wsrl.core.module import WeightedBC, adam, forward_precision, logs_metrics, non_finite_loss, step_metrics
from wsrl.core.weighting import PLACEMENTS
from wsrl.running import lightning_fixes
from wsrl.running.build import build_policy, make_trainer
from wsrl.running.rundir import StopAtStep, StopSignals
from wsrl.stacked.draws import GroupDraws, MemberData, masked, own_mean, run_dropout_state
from wsrl.stacked.model import Dropout, StackedPolicy

COMPILE_NEEDS_FAST = ("hydra.launcher.compile=true needs hydra.launcher.rng=fast: exact mode swaps each member's "
                      "generator in around its dropout, which a compiled step cannot do; set rng=fast or compile=false")
Combine = Callable[[torch.Tensor], torch.Tensor]  # members' mean losses [N] -> the loss to minimise
MemberLog = Callable[[int, list[dict]], None]  # (step, each member's training metrics: {} for a failed one)


class GroupStopped(Exception):
    """A stop signal (``signum``) or ``should_stop`` (the deadline) ended training; the group checkpoint holds the
    last step taken."""

    def __init__(self, reason: str, step: int, checkpoint: Path | None, signum: int | None = None) -> None:
        self.reason, self.step, self.checkpoint, self.signum = reason, step, checkpoint, signum
        where = f"saved step {step} to {checkpoint}" if checkpoint is not None else f"at step {step}, not saved"
        super().__init__(f"stopped by {reason}: {where}")


@dataclass
class Member:
    """One run of a group: its config, environment and module (on the CPU: its initial, then trained, weights)."""

    cfg: Any  # TrainConfig or its DictConfig
    env: ResolvedEnv
    module: WeightedBC
    data: OfflineDataModule  # set up on the CPU, shared with the members of the same dataset, method and sampler


def input_key(cfg: Any, dataset_id: str) -> str:
    """Members with the same key have the same policy inputs and actions."""
    m = cfg.method
    return dataset_id + (f"|{m.return_input}|{m.gamma}|{m.return_scale}|{m.horizon}" if conditions_on_return(m) else "")


def data_key(cfg: Any, env: ResolvedEnv) -> str:
    """Members with the same key have the same data module, seeds aside (inputs, actions and weights)."""
    return f"{input_key(cfg, env.dataset_id)}|{json.dumps(to_plain(cfg)['sampler'], sort_keys=True)}"


def member_data(cfg: Any, env: ResolvedEnv, data: OfflineDataModule) -> MemberData:
    """What the group's flat store needs of a member's set-up data module."""
    loss_weights, draw_weights = PLACEMENTS[cfg.sampler.weighting].split(data.weights)
    return MemberData(source=input_key(cfg, env.dataset_id), weights_key=data_key(cfg, env),
                      inputs=data.inputs.numpy(), actions=data.actions.numpy(), loss_weights=loss_weights,
                      draw_weights=draw_weights, seed=int(cfg.seed), conservative=data.conservative)


def build_member(cfg: Any, env: ResolvedEnv, device: torch.device, built: dict[str, OfflineDataModule]
                 ) -> tuple[Member, MemberData, torch.Tensor]:
    """A member as its single run starts (built on the CPU), its data, and the state of the generator its single
    run's dropout would draw from. ``built``: data modules set up so far, shared by members with the same dataset,
    method and sampler (setting one up costs seconds at the paper's size); a new one is added."""
    key, plain = data_key(cfg, env), to_plain(cfg)
    if key not in built:
        same_dataset = next((d.transitions for d in built.values() if d.dataset_id == env.dataset_id), None)
        built[key] = build_policy(cfg, plain, env, same_dataset, torch.device("cpu"))[1]
    _, data, module = build_policy(cfg, plain, env, device=torch.device("cpu"), data=built[key])
    dropout_state = run_dropout_state(device, int(cfg.seed))
    return Member(cfg, env, module, data), member_data(cfg, env, data), dropout_state


def member_losses(model: StackedPolicy, inputs: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor,
                  dropout: Dropout | None, rows: torch.Tensor | None) -> torch.Tensor:
    """Each member's weighted mean negative log-likelihood [N] over its own ``rows`` (``own_mean``)."""
    return -own_mean(model.log_prob(inputs, actions, dropout) * weights, rows)


def masked_losses(model: StackedPolicy, inputs: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor,
                  masks: list[torch.Tensor] | None, rows: torch.Tensor | None) -> torch.Tensor:
    """``member_losses`` with fast mode's drawn dropout masks (``GroupDraws.masks``), hidden layer by hidden layer:
    a function of tensors only, which ``hydra.launcher.compile=true`` compiles whole (forward and backward)."""
    pending = list(masks or ())
    return member_losses(model, inputs, actions, weights, (lambda h: masked(h, pending.pop(0))) if masks else None,
                         rows)


class StopOrSave(StopAtStep):
    """A single run's ``StopAtStep`` for a group: saves the group checkpoint every ``every`` steps and at the last,
    and at the end of a step on a stop signal, or when ``should_stop`` names a reason before the last step, saves
    and raises ``GroupStopped``."""

    def __init__(self, signals: StopSignals, checkpoint: Path | None, every: int,
                 should_stop: Callable[[], str | None]) -> None:
        super().__init__(signals, checkpoint)
        self.every, self.should_stop = every, should_stop

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        step, signum = trainer.global_step, self.signals.signum
        reason = signal.Signals(signum).name if signum is not None else (
            self.should_stop() if step < trainer.max_steps else None)
        if self.last is not None and (reason or step == trainer.max_steps or (self.every and step % self.every == 0)):
            trainer.save_checkpoint(self.last, weights_only=False)  # all of it: the optimizer's state too
        if reason is not None:
            self.signals.deferred = False
            raise GroupStopped(reason, step, self.last, signum)


class StackedGroup(L.LightningModule):
    """N members stacked on the training device, with their randomness and failures; ``training_step`` is one
    step of every member."""

    def __init__(self, members: list[Member], datas: list[MemberData], dropout_states: list[torch.Tensor],
                 rng: str, names: list[str], combine: Combine = torch.sum, compile: bool = False) -> None:
        super().__init__()
        if compile and rng != "fast":
            raise ValueError(COMPILE_NEEDS_FAST)
        first = members[0].cfg
        self.members, self.names, self.rng, self.combine = members, names, rng, combine
        self.trainer_cfg = TrainerConfig(**to_plain(first)["trainer"])
        self.train_device = resolve_device(first.device)  # Lightning moves the module to the CPU after fitting
        self.group_seed = int(first.seed)
        self.model = StackedPolicy([m.module for m in members])
        self.draws = GroupDraws(datas, self.trainer_cfg.batch_size, float(first.policy.dropout), rng,
                                self.train_device, dropout_states, self.group_seed)
        self.register_buffer("alive", torch.ones(len(members), dtype=torch.bool), persistent=False)
        self.failed: dict[int, str] = {}
        self.starts: list[int] = []  # the step each process started training from (results.json)
        self.member_log: MemberLog | None = None
        self.automatic_optimization = False
        # the fast step's forward and backward, compiled by torch.compile on its first step (compile=true)
        self.fast_losses = torch.compile(masked_losses) if compile else masked_losses
        self.to(self.train_device)

    def train_dataloader(self) -> Iterator[int]:
        """Step tokens: the group draws each step's batches itself, as a single run does (fast mode draws batches
        and dropout masks from one generator, which must stand at the step when a checkpoint saves it)."""
        return step_tokens()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(list(self.model.parameters()), self.trainer_cfg)

    def losses(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each member's weighted mean loss [N] on its next batch, and the batch's inputs and loss weights."""
        inputs, actions, weights = self.draws.batch()
        rows = self.draws.row_counts()
        with forward_precision(self.trainer_cfg.autocast, self.train_device):
            if self.rng == "exact":
                losses = member_losses(self.model, inputs, actions, weights, self.draws.dropout, rows)
            else:
                masks = self.draws.masks(inputs.shape[1], self.model.widths)
                losses = self.fast_losses(self.model, inputs, actions, weights, masks, rows)
        return losses, inputs, weights

    def training_step(self, batch: int, batch_idx: int) -> None:
        """One step of every living member; on a single run's logging steps (``logs_metrics``) their metrics, which
        fail a member whose loss is non-finite, labelled with the step as a single run's rows."""
        step = self.global_step
        losses, inputs, weights = self.losses()
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(self.combine(torch.where(self.alive, losses, 0.0)))
        if self.failed:  # a failed member's data may still be non-finite: keep its gradients (and slot) at zero
            dead = torch.tensor(list(self.failed), device=self.device)
            for p in self.model.parameters():
                p.grad[dead] = 0.0
        optimizer.step()
        if logs_metrics(step, self.trainer_cfg.log_every_n_steps):
            rows = self.metrics(step, losses.detach(), inputs, weights)
            if self.member_log is not None:
                self.member_log(step, rows)

    @torch.no_grad()
    def metrics(self, step: int, losses: torch.Tensor, inputs: torch.Tensor, weights: torch.Tensor) -> list[dict]:
        """Each member's training metrics, as a single run logs them (one host sync); fails non-finite members.
        The squashed policy's mean log-std is taken on the step's inputs without dropout."""
        values = losses.float().cpu().tolist()
        log_std = self.model.mean_log_std(inputs).float().cpu().tolist()
        w_mean, w_max = self.draws.mean(weights).cpu().tolist(), weights.max(1).values.cpu().tolist()
        rows = self.draws.rows or [weights.shape[1]] * len(self.members)
        out = []
        for k, member in enumerate(self.members):
            if k not in self.failed and (reason := non_finite_loss(values[k], step)) is not None:
                self.fail(k, reason)
            # as its single run: the weights of the loss, or those CWBC's raised rows bring
            weighted = PLACEMENTS[member.cfg.sampler.weighting].in_loss or rows[k] > self.trainer_cfg.batch_size
            out.append({} if k in self.failed else step_metrics(values[k], log_std[k], self.trainer_cfg.lr,
                                                                 (w_mean[k], w_max[k]) if weighted else None))
        return out

    @torch.no_grad()
    def fail(self, k: int, reason: str) -> None:
        """Member ``k`` fails alone: its parameters and optimizer state are zeroed and its loss left out."""
        self.failed[k] = reason
        self.alive[k] = False
        state = self.trainer.optimizers[0].state
        for p in self.model.parameters():
            p[k].zero_()
            for value in state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value[k].zero_()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Beside Lightning's parameters, optimizer state and step: the members, every generator and the failures."""
        checkpoint["group"] = {"names": self.names, "rng": self.rng, "draws": self.draws.state_dict(),
                               "failed": self.failed}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Continue from a group checkpoint of the same members and random-number mode (a failed member's slot and
        optimizer state were saved zeroed)."""
        group = checkpoint["group"]
        if group["names"] != self.names:
            raise ValueError(f"the group checkpoint holds another group ({len(group['names'])} members); delete it "
                             "to start over")
        self.draws.load_state_dict(group["draws"])
        self.failed = {int(k): reason for k, reason in group["failed"].items()}
        self.alive[list(self.failed)] = False

    def fit(self, checkpoint: Path | None = None, should_stop: Callable[[], str | None] = lambda: None,
            log: MemberLog | None = None, callbacks: Sequence[L.Callback] = ()) -> None:
        """Train to ``trainer.max_steps`` with a Lightning Trainer, resuming from ``checkpoint`` where it exists and
        saving it every ``trainer.checkpoint_every_steps`` and at the end; a stop signal or ``should_stop``
        (checked after each step) saves and raises ``GroupStopped``; ``log(step, metrics)`` gets each member's
        metrics every ``trainer.log_every_n_steps``; ``callbacks``: more for the Trainer (the benchmark's timer)."""
        torch.set_float32_matmul_precision(str(self.trainer_cfg.matmul_precision))
        self.member_log = log
        with StopSignals() as signals:
            stops = StopOrSave(signals, checkpoint, self.trainer_cfg.checkpoint_every_steps, should_stop)
            trainer = make_trainer(self.trainer_cfg, self.train_device, False, [*callbacks, stops])
            resume = checkpoint if checkpoint is not None and checkpoint.exists() else None
            try:
                lightning_fixes.fit(trainer, self, ckpt_path=resume)
            finally:
                self.starts = stops.starts

    def unstack(self) -> None:
        """Copy each member's trained slot back into its own module (un-padded)."""
        for k, member in enumerate(self.members):
            self.model.store_member(k, member.module)


def build_group(cfgs: list[Any], envs: list[ResolvedEnv], rng: str, names: list[str],
                combine: Combine = torch.sum, compile: bool = False) -> StackedGroup:
    """Build every member with the single-run builder, then stack them (``names``: one per member, kept in the
    group checkpoint to refuse another group's; ``compile``: ``hydra.launcher.compile``, fast ``rng`` only)."""
    device = resolve_device(cfgs[0].device)
    data: dict[str, OfflineDataModule] = {}
    built = [build_member(cfg, env, device, data) for cfg, env in zip(cfgs, envs, strict=True)]
    members, datas, states = (list(column) for column in zip(*built, strict=True))
    return StackedGroup(members, datas, states, rng, names, combine, compile)
