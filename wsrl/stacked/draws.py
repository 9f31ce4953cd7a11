"""All of a group's randomness and data: its batches (drawn by index from one flat device store) and dropout masks.

The members' datasets sit once each in a flat store on the device (members with the same dataset and policy input
share rows), padded with zeros to the group's largest input and action sizes, so a step gathers every member's
batch with one index. Two modes:

- ``exact``: member k draws its indices with its single run's sampler and generator (``IndexSampler`` seeded with
  its seed, on the device) and its dropout masks with its single run's global generator state (swapped in around
  ``F.dropout``, so the very kernel of the single run draws them): member k trains as its single run does.
- ``fast``: one generator for the group. Uniform members take integer draws modulo their dataset size (64-bit,
  so the bias is below 1e-12; never ``(rand * n).long()``, which float32 makes uneven); weighted members search
  one concatenated cumulative sum; one Bernoulli draw a hidden layer, made before the forward (``masks``), masks
  its whole stacked activation. A member's numbers then depend on its group, which ``results.json`` records.

CWBC's conservative members (``sampler=cwbc_conservative``) append raised rows to their batches as their single runs
do (``wsrl.core.data.Conservative``, from the generator of their draws); their number varies by member and step, so
every member's batch is then padded to the longest with rows of weight 0, and each member's loss averages over its
own rows (``mean``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wsrl.core.data import Conservative
from wsrl.core.policies import dropout as single_run_dropout
from wsrl.core.weighting import IndexSampler

INT_RANGE = 2**62  # fast mode's integer draws: uniform over [0, 2^62), reduced modulo each dataset size


@dataclass
class MemberData:
    """What the group needs of one member's data module (``OfflineDataModule`` after ``setup``)."""

    source: str  # members with the same source have the same inputs and actions (one copy in the store)
    weights_key: str  # members with the same key have the same weights
    inputs: np.ndarray  # [n, in_dim]
    actions: np.ndarray  # [n, act_dim]
    loss_weights: np.ndarray | None  # sampler weighting=loss
    draw_weights: np.ndarray | None  # sampler weighting=sampling
    seed: int
    conservative: Conservative | None = None  # CWBC's conservative loss (``sampler=cwbc_conservative``)


def masked(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fast mode's dropout of ``h`` with a mask of ``GroupDraws.masks``: kept values are h / (1 - p) computed in
    float32 and rounded once to ``h``'s precision, as in a single run (``wsrl.core.policies.dropout``)."""
    return (h * mask).to(h.dtype)


def own_mean(values: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """Each member's mean [N] of per-row ``values`` [N, R] over its own ``rows`` [N] (None: all R), padding aside."""
    return values.mean(1) if rows is None else values.sum(1) / rows.to(values.dtype)


def _dropout_state(device: torch.device) -> torch.Tensor:
    return torch.get_rng_state() if device.type == "cpu" else torch.cuda.get_rng_state(device)


def _set_dropout_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cpu":
        torch.set_rng_state(state)
    else:
        torch.cuda.set_rng_state(state, device)


def run_dropout_state(device: torch.device, seed: int) -> torch.Tensor:
    """The state of the generator a single run's dropout draws from when training starts, read right after its
    module was built: the global CPU generator there, or on a GPU the device's generator as seeded (the module is
    built on the CPU and leaves it untouched)."""
    if device.type == "cpu":
        return torch.get_rng_state()
    return torch.Generator(device=device).manual_seed(seed).get_state()


class GroupDraws:
    """Serves the group's batches ([N, B, in], [N, B, A], loss weights [N, B]) and its dropout masks."""

    def __init__(self, members: list[MemberData], batch_size: int, dropout: float, mode: str,
                 device: torch.device, dropout_states: list[torch.Tensor], group_seed: int) -> None:
        if mode not in ("exact", "fast"):
            raise ValueError(f"hydra.launcher.rng={mode} must be exact or fast")
        self.mode, self.batch_size, self.p, self.device = mode, batch_size, dropout, device
        self._store(members)
        moved: dict[str, Conservative] = {}  # one copy on the device per weights key
        self.conservative = [None if m.conservative is None else moved.setdefault(
            m.weights_key, m.conservative.to(device)) for m in members]
        self.return_column = [m.inputs.shape[1] - 1 for m in members]
        self.rows: list[int] | None = None  # each member's rows in the last batch, where CWBC's made them differ
        if mode == "exact":
            self.samplers = [IndexSampler(len(m.actions), batch_size, None if m.draw_weights is None else
                                          torch.as_tensor(m.draw_weights, dtype=torch.float32, device=device),
                                          torch.Generator(device=device).manual_seed(m.seed)) for m in members]
            self.dropout_states = [s.clone() for s in dropout_states]
        else:
            self.generator = torch.Generator(device=device).manual_seed(group_seed)
            self._fast_tables(members)

    def _store(self, members: list[MemberData]) -> None:
        """One padded copy of each source; ones first in the loss-weight store for the unweighted members."""
        in_max, act_max = max(m.inputs.shape[1] for m in members), max(m.actions.shape[1] for m in members)
        starts: dict[str, int] = {}
        inputs, actions, rows = [], [], 0
        for m in members:
            if m.source not in starts:
                starts[m.source], rows = rows, rows + len(m.actions)
                inputs.append(np.pad(m.inputs, ((0, 0), (0, in_max - m.inputs.shape[1]))))
                actions.append(np.pad(m.actions, ((0, 0), (0, act_max - m.actions.shape[1]))))
        dev = self.device
        self.inputs = torch.as_tensor(np.concatenate(inputs), dtype=torch.float32, device=dev)
        self.actions = torch.as_tensor(np.concatenate(actions), dtype=torch.float32, device=dev)
        self.sizes = torch.tensor([len(m.actions) for m in members], device=dev)
        self.row_start = torch.tensor([starts[m.source] for m in members], device=dev)
        weights, weight_start, seen = [np.ones(max(len(m.actions) for m in members))], [], {}
        for m in members:
            if m.loss_weights is not None and m.weights_key not in seen:
                seen[m.weights_key] = sum(map(len, weights))
                weights.append(m.loss_weights)
            weight_start.append(seen.get(m.weights_key, 0) if m.loss_weights is not None else 0)
        self.loss_weights = torch.as_tensor(np.concatenate(weights), dtype=torch.float32, device=dev)
        self.weight_start = torch.tensor(weight_start, device=dev)

    def _fast_tables(self, members: list[MemberData]) -> None:
        """The weighted members' cumulative sums, each normalized to (0, 1] and shifted by its segment number, in
        one sorted array: a draw j + u (u uniform in [0, 1)) lands in segment j."""
        cdfs, starts, segment, seen, at = [], [], [], {}, 0
        for m in members:
            if m.draw_weights is not None and m.weights_key not in seen:
                seen[m.weights_key] = (len(cdfs), at)
                cdf = np.cumsum(m.draw_weights, dtype=np.float64)
                cdfs.append(len(cdfs) + cdf / cdf[-1])
                at += len(cdf)
            number, start = seen.get(m.weights_key, (0, 0)) if m.draw_weights is not None else (0, 0)
            segment.append(number)
            starts.append(start)
        dev = self.device
        self.weighted = torch.tensor([m.draw_weights is not None for m in members], device=dev)
        self.cdf = torch.as_tensor(np.concatenate(cdfs), device=dev) if cdfs else None
        self.cdf_segment = torch.tensor(segment, dtype=torch.float64, device=dev)
        self.cdf_start = torch.tensor(starts, device=dev)

    def indices(self) -> torch.Tensor:
        """Each member's batch of row numbers in its own dataset, [N, B]."""
        if self.mode == "exact":
            return torch.stack([sampler() for sampler in self.samplers])
        shape, g = (len(self.sizes), self.batch_size), self.generator
        local = torch.randint(INT_RANGE, shape, generator=g, device=self.device) % self.sizes.unsqueeze(1)
        if self.cdf is None:
            return local
        u = torch.rand(shape, generator=g, dtype=torch.float64, device=self.device)
        drawn = torch.searchsorted(self.cdf, u + self.cdf_segment.unsqueeze(1), right=True)
        drawn = torch.minimum(drawn - self.cdf_start.unsqueeze(1), self.sizes.unsqueeze(1) - 1)
        return torch.where(self.weighted.unsqueeze(1), drawn, local)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next step's padded inputs, actions and loss weights (1 for unweighted members); with CWBC's
        conservative members, every member's rows padded to the longest batch (``raise_rows``)."""
        local = self.indices()
        weights = self.loss_weights[local + self.weight_start.unsqueeze(1)]
        lift = None
        if any(c is not None for c in self.conservative):
            local, weights, lift = self.raise_rows(local, weights)
        rows = local + self.row_start.unsqueeze(1)
        inputs = self.inputs[rows]
        for k, c in enumerate(self.conservative):
            if c is not None:
                inputs[k, self.batch_size:self.rows[k], self.return_column[k]] += lift[k]
        return inputs, self.actions[rows], weights

    def raise_rows(self, local: torch.Tensor, weights: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """CWBC's raised rows appended to each conservative member's batch with their weights, drawn as its single
        run draws them (``wsrl.core.data.Conservative``; exact mode: from the member's own generator); every
        member's rows padded to the longest batch with weight 0, their number in ``self.rows``. Returns the padded
        indices and weights, and each member's raises."""
        b, n = self.batch_size, len(local)
        generators = [s.generator for s in self.samplers] if self.mode == "exact" else [self.generator] * n
        drawn = [(local[k, :0], local.new_zeros(0, dtype=torch.float32)) if c is None else
                 c.raised(local[k], generators[k]) for k, c in enumerate(self.conservative)]
        self.rows = [b + len(r) for r, _ in drawn]
        padded = torch.zeros(n, max(self.rows), dtype=local.dtype, device=local.device)
        padded[:, :b] = local
        scaled = torch.zeros(n, max(self.rows), dtype=weights.dtype, device=weights.device)
        for k, (c, (raised, _)) in enumerate(zip(self.conservative, drawn, strict=True)):
            padded[k, b:self.rows[k]] = raised
            scaled[k, :self.rows[k]] = weights[k] if c is None or len(raised) == 0 else c.weights(weights[k],
                                                                                                    len(raised))
        return padded, scaled, [lift for _, lift in drawn]

    def row_counts(self) -> torch.Tensor | None:
        """Each member's rows [N] in the last batch, where CWBC's conservative members made them differ (else None)."""
        return None if self.rows is None else torch.tensor(self.rows, device=self.device)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Each member's mean [N] of per-row ``values`` [N, rows] over its own rows, padding aside."""
        return own_mean(values, self.row_counts())

    def masks(self, rows: int, widths: list[int]) -> list[torch.Tensor] | None:
        """Fast mode's dropout masks for the next forward, one [N, rows, width] per hidden layer in order, drawn
        before the forward (so that a compiled forward takes them as inputs): 0 or 1 / (1 - p), float32 (for
        ``masked``); None without dropout."""
        if self.p == 0:
            return None
        n, keep, g = len(self.sizes), 1 - self.p, self.generator
        return [torch.empty(n, rows, w, dtype=torch.float32, device=self.device).bernoulli_(keep, generator=g)
                .div_(keep) for w in widths]

    def dropout(self, h: torch.Tensor) -> torch.Tensor:
        """Exact mode's dropout: ``h`` [N, B, H] with each member's single-run dropout applied, its mask drawn by
        the single run's kernel from the member's own generator state (swapped in around it)."""
        if self.p == 0:
            return h
        saved, dropped = _dropout_state(self.device), []
        for k in range(h.shape[0]):
            _set_dropout_state(self.device, self.dropout_states[k])
            own = h[k] if self.rows is None else h[k, :self.rows[k]]  # a member's own rows: its single run's draws
            kept = single_run_dropout(own, self.p)
            dropped.append(kept if len(kept) == h.shape[1] else F.pad(kept, (0, 0, 0, h.shape[1] - len(kept))))
            self.dropout_states[k] = _dropout_state(self.device)
        _set_dropout_state(self.device, saved)
        return torch.stack(dropped)

    def state_dict(self) -> dict:
        if self.mode == "fast":
            return {"mode": "fast", "generator": self.generator.get_state()}
        return {"mode": "exact", "samplers": [s.generator.get_state() for s in self.samplers],
                "dropout": list(self.dropout_states)}

    def load_state_dict(self, state: dict) -> None:
        if state["mode"] != self.mode:
            raise ValueError(f"the group checkpoint was made with rng={state['mode']}, not {self.mode}")
        if self.mode == "fast":
            self.generator.set_state(state["generator"].cpu())
            return
        for sampler, s in zip(self.samplers, state["samplers"], strict=True):
            sampler.generator.set_state(s.cpu())
        self.dropout_states = [s.cpu() for s in state["dropout"]]
