"""N members' policies as one module: every parameter stacked on a leading member axis, one batched matmul a layer.

Weights are ``[N, out, in]`` and biases ``[N, out]``; each member's slot is a copy of its own ``nn.Linear`` (built by
the single-run builder with its own seed), so the init is exactly the single run's (an ``[N, in, out]`` layout
would make ``nn.init`` compute the fan-in from ``out``). Members with fewer inputs or actions than the group's
largest are zero-padded: a padded input column sees zero input and gets zero gradient, a padded action
dimension is masked out of the likelihood, so padded entries stay exactly zero (weight decay keeps a zero at
zero) and each member's log-likelihood is its own policy's (the density is ``wsrl.core.policies``' own functions).
That likelihood is all the model computes: a loss term beyond it (CWBC's conservative loss) is not here. Both
policies of ``wsrl.core.policies`` are supported; LayerNorm is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from wsrl.core.module import WeightedBC
from wsrl.core.policies import DiagGaussianActor, gaussian_log_prob, squash_log_std, squashed_gaussian_log_prob

Dropout = Callable[[torch.Tensor], torch.Tensor]  # hidden activations [N, B, H] -> the same with dropout applied


class StackedPolicy(nn.Module):
    """The stacked twin of ``UnconditionalPolicy`` or ``DiagGaussianActor`` (``squashed``) for N members."""

    def __init__(self, members: list[WeightedBC]) -> None:
        super().__init__()
        first = members[0].policy
        if any(isinstance(m, nn.LayerNorm) for m in first.body):
            raise ValueError("the stacked launcher does not support policy.layer_norm=true; use the basic launcher")
        self.squashed = isinstance(first, DiagGaussianActor)
        if self.squashed:
            self.log_std_min, self.log_std_max = first.log_std_min, first.log_std_max
        n = len(members)
        self.in_dims = [m.policy.body[0].in_features for m in members]
        self.act_dims = [m.policy.head.out_features // 2 if self.squashed else m.policy.mean.out_features
                         for m in members]
        self.act_max = max(self.act_dims)
        self.widths = widths = [layer.out_features for layer in first.body if isinstance(layer, nn.Linear)]
        shapes = list(zip(widths, [max(self.in_dims), *widths[:-1]], strict=True))
        self.weights = nn.ParameterList([nn.Parameter(torch.zeros(n, o, i)) for o, i in shapes])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(n, o)) for o, _ in shapes])
        head_out = 2 * self.act_max if self.squashed else self.act_max
        self.head_weight = nn.Parameter(torch.zeros(n, head_out, widths[-1]))
        self.head_bias = nn.Parameter(torch.zeros(n, head_out))
        self.log_std = None if self.squashed else nn.Parameter(torch.zeros(n, self.act_max))
        mask = torch.zeros(n, self.act_max)
        for k, a in enumerate(self.act_dims):
            mask[k, :a] = 1.0
        self.register_buffer("action_mask", mask)
        for k, member in enumerate(members):
            self.load_member(k, member)

    @property
    def size(self) -> int:
        return self.head_bias.shape[0]

    def slots(self, k: int, member: WeightedBC) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(view of member ``k``'s slot in a stacked parameter, the member's own parameter), pair by pair."""
        linears = [layer for layer in member.policy.body if isinstance(layer, nn.Linear)]
        for w, b, layer in zip(self.weights, self.biases, linears, strict=True):
            yield w[k, :, :layer.in_features], layer.weight
            yield b[k], layer.bias
        a, policy = self.act_dims[k], member.policy
        if self.squashed:
            for rows, own in ((slice(0, a), slice(0, a)), (slice(self.act_max, self.act_max + a), slice(a, 2 * a))):
                yield self.head_weight[k, rows], policy.head.weight[own]
                yield self.head_bias[k, rows], policy.head.bias[own]
        else:
            yield self.head_weight[k, :a], policy.mean.weight
            yield self.head_bias[k, :a], policy.mean.bias
            yield self.log_std[k, :a], policy.log_std

    @torch.no_grad()
    def load_member(self, k: int, member: WeightedBC) -> None:
        """Copy ``member``'s parameters into slot ``k`` (its padding stays zero)."""
        for slot, own in self.slots(k, member):
            slot.copy_(own)

    @torch.no_grad()
    def store_member(self, k: int, member: WeightedBC) -> None:
        """Copy slot ``k`` back into ``member``'s own parameters, un-padded."""
        for slot, own in self.slots(k, member):
            own.copy_(slot)

    def body(self, x: torch.Tensor, dropout: Dropout | None) -> torch.Tensor:
        """[N, B, in] -> [N, B, H]: Linear -> ReLU -> Dropout per hidden layer, one batched matmul each."""
        for w, b in zip(self.weights, self.biases, strict=True):
            x = torch.relu(torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)))
            if dropout is not None:
                x = dropout(x)
        return x

    def _mean_log_std(self, x: torch.Tensor, dropout: Dropout | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.baddbmm(self.head_bias.unsqueeze(1), self.body(x, dropout), self.head_weight.transpose(1, 2))
        if not self.squashed:
            return out, self.log_std.unsqueeze(1)
        mean, raw = out.chunk(2, dim=-1)
        return mean, squash_log_std(raw, self.log_std_min, self.log_std_max)

    def log_prob(self, x: torch.Tensor, actions: torch.Tensor, dropout: Dropout | None) -> torch.Tensor:
        """Per-sample log-likelihood [N, B] of padded actions [N, B, A], padded dimensions masked out."""
        density = squashed_gaussian_log_prob if self.squashed else gaussian_log_prob
        return density(actions, *self._mean_log_std(x, dropout), self.action_mask.unsqueeze(1))

    def mean_log_std(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's mean log-std [N] (over a batch ``x`` for the squashed policy), for the training logs."""
        _, log_std = self._mean_log_std(x, None)
        mask = self.action_mask.unsqueeze(1)
        return (log_std * mask).sum(-1).mean(-1) / self.action_mask.sum(-1)

    def mean_action(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation actions [N, B, A] (padded dimensions included: callers cut each member's own)."""
        mean, _ = self._mean_log_std(x, None)
        return torch.tanh(mean) if self.squashed else mean.clamp(-1.0, 1.0)
