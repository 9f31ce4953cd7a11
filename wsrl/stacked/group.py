"""A group of runs trained as one model: built member by member with the single-run builder, then stacked.

``build_group`` builds each member exactly as ``wsrl.running.build.build_policy`` builds a single run (its seed, its
dataset, weights and initialisation; on the CPU, where its module stays as the container of its own weights) and
stacks them on the training device. ``StackedGroup.fit`` trains them with one optimizer on the SUM over members
of each member's weighted mean loss: a mean over members would scale every member's gradient by 1/N, which
weight decay and Adam's eps do not undo. A group checkpoint holds the parameters, the optimizer state, every
generator and the step, written whole or not at all; a member whose loss turns non-finite fails alone (its
parameters and optimizer state are zeroed and its loss left out from then on).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wsrl.common.files import write_bytes_atomic
from wsrl.core.config import ResolvedEnv, TrainerConfig, resolve_device, to_plain
from wsrl.core.data import OfflineDataModule
from wsrl.core.methods import conditions_on_return
from wsrl.core.module import WeightedBC, adam
from wsrl.core.weighting import PLACEMENTS
from wsrl.running.build import build_policy
from wsrl.stacked.draws import GroupDraws, MemberData, run_dropout_state
from wsrl.stacked.model import StackedPolicy

Combine = Callable[[torch.Tensor], torch.Tensor]  # members' mean losses [N] -> the loss to minimise


class GroupStopped(Exception):
    """A stop signal or the deadline ended training; the group checkpoint holds the last step taken."""

    def __init__(self, reason: str, step: int, checkpoint: Path | None) -> None:
        self.reason, self.step, self.checkpoint = reason, step, checkpoint
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
                      draw_weights=draw_weights, seed=int(cfg.seed))


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


class StackedGroup:
    """N members stacked on the training device, with their optimizer, randomness, step and failures."""

    def __init__(self, members: list[Member], datas: list[MemberData], dropout_states: list[torch.Tensor],
                 rng: str, names: list[str], combine: Combine = torch.sum) -> None:
        first = members[0].cfg
        self.members, self.names, self.rng, self.combine = members, names, rng, combine
        self.trainer_cfg = TrainerConfig(**to_plain(first)["trainer"])
        self.device = resolve_device(first.device)
        self.group_seed = int(first.seed)
        self.model = StackedPolicy([m.module for m in members]).to(self.device)
        self.draws = GroupDraws(datas, self.trainer_cfg.batch_size, float(first.policy.dropout), rng, self.device,
                                dropout_states, self.group_seed)
        self.optimizer = adam(list(self.model.parameters()), self.trainer_cfg)
        self.step = 0
        self.alive = torch.ones(len(members), dtype=torch.bool, device=self.device)
        self.failed: dict[int, str] = {}
        self.starts: list[int] = []  # the step each process started training from (results.json)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward's precision (``trainer.autocast``)."""
        enabled = self.trainer_cfg.autocast == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step for every member; returns each member's loss [N] and the batch's inputs and loss weights."""
        inputs, actions, weights = self.draws.batch()
        with self.autocast():
            log_prob = self.model.log_prob(inputs, actions, self.draws.dropout)
        losses = -(log_prob * weights).mean(1)
        self.optimizer.zero_grad()
        self.combine(torch.where(self.alive, losses, 0.0)).backward()
        if self.failed:  # a failed member's data may still be non-finite: keep its gradients (and slot) at zero
            dead = torch.tensor(list(self.failed), device=self.device)
            for p in self.model.parameters():
                p.grad[dead] = 0.0
        self.optimizer.step()
        return losses.detach(), inputs, weights

    @torch.no_grad()
    def metrics(self, losses: torch.Tensor, inputs: torch.Tensor, weights: torch.Tensor) -> list[dict]:
        """Each member's training metrics, as a single run logs them (one host sync); fails non-finite members.
        The squashed policy's mean log-std is taken on the step's inputs without dropout."""
        values = losses.float().cpu().tolist()
        log_std = self.model.mean_log_std(inputs).float().cpu()
        w_mean, w_max = weights.mean(1).cpu().tolist(), weights.max(1).values.cpu().tolist()
        out = []
        for k, member in enumerate(self.members):
            if k in self.failed:
                out.append({})
                continue
            if not math.isfinite(values[k]):
                self.fail(k, f"loss became {values[k]} by step {self.step} (checked every trainer.log_every_n_steps);"
                             " lower trainer.lr (with a new name=), or set sampler.clip_max to bound the LDS weights")
                out.append({})
                continue
            row = {"train/loss": values[k], "train/mean_log_std": float(log_std[k]), "train/lr": self.trainer_cfg.lr}
            if PLACEMENTS[member.cfg.sampler.weighting].in_loss:
                row |= {"train/weight_mean": w_mean[k], "train/weight_max": w_max[k]}
            out.append(row)
        return out

    @torch.no_grad()
    def fail(self, k: int, reason: str) -> None:
        """Member ``k`` fails alone: its parameters and optimizer state are zeroed and its loss left out."""
        self.failed[k] = reason
        self.alive[k] = False
        for p in self.model.parameters():
            p[k].zero_()
            for value in self.optimizer.state.get(p, {}).values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value[k].zero_()

    def fit(self, max_steps: int, checkpoint: Path | None = None, every: int = 0,
            should_stop: Callable[[], str | None] = lambda: None,
            log: Callable[[int, list[dict]], None] | None = None) -> None:
        """Train to ``max_steps``, saving to ``checkpoint`` every ``every`` steps and at the end; ``should_stop``
        (checked after each step) names a reason to save and raise ``GroupStopped``; ``log(step, metrics)`` gets
        each member's metrics every ``trainer.log_every_n_steps``."""
        torch.set_float32_matmul_precision(str(self.trainer_cfg.matmul_precision))
        self.model.train()
        self.starts.append(self.step)
        while self.step < max_steps:
            losses, inputs, weights = self.train_step()
            if log is not None and self.step % self.trainer_cfg.log_every_n_steps == 0:
                log(self.step, self.metrics(losses, inputs, weights))
            self.step += 1
            if checkpoint is not None and (self.step == max_steps or (every and self.step % every == 0)):
                self.save(checkpoint)
            if self.step < max_steps and (reason := should_stop()) is not None:
                if checkpoint is not None:
                    self.save(checkpoint)
                raise GroupStopped(reason, self.step, checkpoint)

    def unstack(self) -> None:
        """Copy each member's trained slot back into its own module (un-padded)."""
        for k, member in enumerate(self.members):
            self.model.store_member(k, member.module)

    def state_dict(self) -> dict:
        return {"names": self.names, "rng": self.rng, "step": self.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "draws": self.draws.state_dict(),
                "failed": self.failed, "starts": self.starts}

    def save(self, path: Path) -> None:
        """The group checkpoint, whole or not at all."""
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        write_bytes_atomic(path, buffer.getvalue())

    def load(self, path: Path) -> None:
        """Continue from a group checkpoint of the same members and random-number mode."""
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["names"] != self.names:
            raise ValueError(f"{path} holds another group ({len(state['names'])} members); delete it to start over")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.draws.load_state_dict(state["draws"])
        self.step, self.starts = state["step"], list(state["starts"])
        for k, reason in state["failed"].items():
            self.fail(int(k), reason)


def build_group(cfgs: list[Any], envs: list[ResolvedEnv], rng: str, names: list[str],
                combine: Combine = torch.sum) -> StackedGroup:
    """Build every member with the single-run builder, then stack them (``names``: one per member, kept in the
    group checkpoint to refuse another group's)."""
    device = resolve_device(cfgs[0].device)
    data: dict[str, OfflineDataModule] = {}
    built = [build_member(cfg, env, device, data) for cfg, env in zip(cfgs, envs, strict=True)]
    members, datas, states = (list(column) for column in zip(*built, strict=True))
    return StackedGroup(members, datas, states, rng, names, combine)
