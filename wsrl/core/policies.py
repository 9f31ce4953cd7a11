"""Gaussian policies over actions in [-1, 1]: the paper's new 2 x 1024 dropout MLP and its old DiagGaussianActor.

Both expose ``log_prob(x, a)`` (per-sample log-likelihood, the term the weighted MLE loss sums) and
``mean_action(x)`` (what evaluation executes). The log-densities are written out rather than built through
``torch.distributions`` so a training step launches a handful of kernels and validates nothing; they are plain
functions (``squash_log_std``, ``gaussian_log_prob``, ``squashed_gaussian_log_prob``, ``dropout``) that the stacked
model (``wsrl.stacked.model``) calls too, with a mask over its padded action dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class PolicyParams(Protocol):
    """The knobs the policies read (``PolicyConfig`` has them; see its comments for their meaning and defaults)."""

    name: str
    hidden_dims: Sequence[int]
    dropout: float
    layer_norm: bool
    log_std_init: float
    log_std_bounds: Sequence[float]


def dropout(h: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout that keeps h / (1 - p) computed in float32, rounded once to ``h``'s precision. PyTorch's
    CUDA kernel does so itself; its CPU kernel scales a bfloat16 (or float16) ``h`` by 1 / (1 - p) rounded to that
    precision (1.109375 for p = 0.1), so there the mask is drawn in float32 (the same draws) and applied after."""
    if h.device.type != "cpu" or h.dtype not in (torch.bfloat16, torch.float16):
        return F.dropout(h, p, training=True)
    return (h * F.dropout(torch.ones_like(h, dtype=torch.float32), p, training=True)).to(h.dtype)


class Dropout(nn.Dropout):
    """``nn.Dropout`` through ``dropout``: the same draws, the kept values scaled in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p) if self.training else x


def mlp(in_dim: int, hidden_dims: list[int], p: float = 0.0, layer_norm: bool = False) -> nn.Sequential:
    """Linear -> [LayerNorm] -> ReLU -> [Dropout(p)] for each hidden width."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers.append(nn.Linear(in_dim, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(nn.ReLU())
        if p > 0:
            layers.append(Dropout(p))
        in_dim = width
    return nn.Sequential(*layers)


def squash_log_std(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """A raw head output mapped smoothly into [low, high] (pytorch_sac's tanh squash of the log-std)."""
    return low + 0.5 * (high - low) * (torch.tanh(raw) + 1)


def _masked_sum(terms: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return (terms if mask is None else terms * mask).sum(-1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over action dimensions of the diagonal Gaussian log-density (``mask``: 1 for the dimensions summed)."""
    z = (x - mean) * torch.exp(-log_std)
    return _masked_sum(-0.5 * z.square() - log_std - HALF_LOG_2PI, mask)


def squashed_gaussian_log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor,
                               mask: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Log-density of tanh(u), u ~ N(mean, exp(log_std)), at ``actions`` (clamped ``eps`` inside (-1, 1)): the
    Gaussian's at atanh(actions) minus the log-determinant of tanh's Jacobian, log(1 - a^2 + eps)."""
    a = actions.clamp(-1 + eps, 1 - eps)
    return gaussian_log_prob(torch.atanh(a), mean, log_std, mask) - _masked_sum(torch.log1p(-a.square() + eps), mask)


class UnconditionalPolicy(nn.Module):
    """The paper's policy (from SB3's actor-critic MLP, value head dropped, as RvS does): an MLP with ReLU and
    dropout, a linear mean head and a state-independent log-std; evaluation takes the mean, clipped to [-1, 1]."""

    def __init__(self, in_dim: int, act_dim: int, cfg: PolicyParams) -> None:
        super().__init__()
        self.body = mlp(in_dim, list(cfg.hidden_dims), cfg.dropout, cfg.layer_norm)
        self.mean = nn.Linear(cfg.hidden_dims[-1], act_dim)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(cfg.log_std_init)))

    def log_prob(self, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(actions, self.mean(self.body(x)), self.log_std)

    def mean_action(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean(self.body(x)).clamp(-1.0, 1.0)

    def mean_log_std(self) -> torch.Tensor:
        return self.log_std.mean()


class DiagGaussianActor(nn.Module):
    """The paper's initial actor (pytorch_sac's DiagGaussianActor): one MLP head gives mean and a state-dependent
    log-std squashed into ``log_std_bounds``; actions are tanh of the Gaussian sample (change of variables in
    ``log_prob``); evaluation takes tanh of the mean."""

    def __init__(self, in_dim: int, act_dim: int, cfg: PolicyParams) -> None:
        super().__init__()
        self.body = mlp(in_dim, list(cfg.hidden_dims), cfg.dropout, cfg.layer_norm)
        self.head = nn.Linear(cfg.hidden_dims[-1], 2 * act_dim)
        self.log_std_min, self.log_std_max = cfg.log_std_bounds
        self._last_log_std = torch.zeros(())

    def _mean_log_std(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.head(self.body(x)).chunk(2, dim=-1)
        return mean, squash_log_std(raw, self.log_std_min, self.log_std_max)

    def log_prob(self, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._mean_log_std(x)
        self._last_log_std = log_std.detach().mean()
        return squashed_gaussian_log_prob(actions, mean, log_std)

    def mean_action(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self._mean_log_std(x)[0])

    def mean_log_std(self) -> torch.Tensor:
        return self._last_log_std


POLICIES: dict[str, type[nn.Module]] = {"unconditional": UnconditionalPolicy, "diag_gaussian": DiagGaussianActor}


def make_policy(cfg: PolicyParams, in_dim: int, act_dim: int) -> nn.Module:
    """Build the policy named by ``cfg.name`` (``POLICIES``)."""
    return POLICIES[cfg.name](in_dim, act_dim, cfg)
