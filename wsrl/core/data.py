"""Offline data: Minari episodes flattened into transition tensors, returns-to-go, weights and batches.

``load_transitions`` reads a Minari dataset into flat arrays (one row per action; each episode's final
observation is dropped). ``OfflineDataModule`` normalizes states, builds the policy input (state, plus the
return input for RvS-R), computes the sample weights of the sampler config and puts everything on the training device
once; ``RunDraws`` draws each step's batch by index there, inside the training step (the loop iterates
``step_tokens``): no per-sample collation, no host-device copies per step.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from scipy.signal import lfilter

from wsrl.core.config import MethodConfig, SamplerConfig
from wsrl.core.diagnostics import weight_diagnostics
from wsrl.core.methods import conditions_on_return
from wsrl.core.weighting import PLACEMENTS, Episodes, IndexSampler, percentile_element, scheme_weights


class DataError(ValueError):
    """A dataset that cannot be trained on; the message says what is wrong."""


@dataclass
class Transitions:
    """A dataset as flat per-transition arrays (N rows) plus episode boundaries."""

    observations: np.ndarray  # [N, obs_dim] state before the action
    actions: np.ndarray  # [N, act_dim]
    rewards: np.ndarray  # [N]
    terminations: np.ndarray  # [N] bool: the episode ended in a terminal state (no bootstrap)
    truncations: np.ndarray  # [N] bool: the episode was cut (time limit or end of data)
    episode_starts: np.ndarray  # [E] index of each episode's first transition; episodes are contiguous
    content_hash: str | None = None  # the dataset's (wsrl.datasets.store.dataset_hash); None: made in memory

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(np.append(self.episode_starts, len(self.rewards)))

    @property
    def episode_ids(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.episode_starts)), self.episode_lengths)

    @property
    def timesteps(self) -> np.ndarray:
        """Step index of each transition within its episode."""
        return np.arange(len(self.rewards)) - np.repeat(self.episode_starts, self.episode_lengths)

    def episode_returns(self) -> np.ndarray:
        return np.add.reduceat(self.rewards, self.episode_starts) if len(self.rewards) else np.zeros(0)

    def trajectory_returns(self) -> np.ndarray:
        """Each transition labelled with the undiscounted return of its whole episode."""
        return np.repeat(self.episode_returns(), self.episode_lengths)

    def returns_to_go(self, gamma: float) -> np.ndarray:
        """G_t = sum_k gamma^k r_{t+k} to the end of the episode: one linear filter per episode."""
        out = np.empty_like(self.rewards, dtype=np.float64)
        for start, length in zip(self.episode_starts, self.episode_lengths, strict=True):
            rev = self.rewards[start:start + length][::-1].astype(np.float64)
            out[start:start + length] = lfilter([1.0], [1.0, -gamma], rev)[::-1]
        return out


def load_transitions(dataset_id: str) -> Transitions:
    """A local Minari dataset (``wsrl.datasets.store.read_episodes``, no download) as flat arrays, checked finite
    and well formed."""
    from wsrl.datasets.store import dataset_hash, datasets_root, exists_locally, read_episodes

    if not exists_locally(dataset_id):
        raise DataError(f"{dataset_id} is not in {datasets_root()}: make it with `python -m wsrl.datasets "
                        "generate ...` (or run with generate_if_missing=true), or set MINARI_DATASETS_PATH")
    try:
        episodes = read_episodes(dataset_id)
    except (OSError, KeyError, ValueError) as err:  # h5py's damaged or truncated file, missing fields
        raise DataError(f"{dataset_id} in {datasets_root()} cannot be read ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else 'damaged'}); delete it and make it again "
                        "(generated ones: `python -m wsrl.datasets generate <robot> <quality> --overwrite`)") from err
    act = episodes["actions"]
    for i, (o, a) in enumerate(zip(episodes["observations"], act, strict=True)):
        if o.ndim != 2 or len(o) != len(a) + 1:
            raise DataError(f"{dataset_id}: episode {i} must have one more observation than actions "
                            "(flat Box observations are required)")
    if not act:
        raise DataError(f"{dataset_id} has no episodes")
    lengths = np.array([len(a) for a in act])
    data = Transitions(
        observations=np.concatenate([o[:-1] for o in episodes["observations"]]).astype(np.float32),
        actions=np.concatenate(act).astype(np.float32),
        rewards=np.concatenate(episodes["rewards"]).astype(np.float64),
        terminations=np.concatenate(episodes["terminations"]).astype(bool),
        truncations=np.concatenate(episodes["truncations"]).astype(bool),
        episode_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        content_hash=dataset_hash(dataset_id, episodes),
    )
    for name in ("observations", "actions", "rewards"):
        bad = ~np.isfinite(getattr(data, name))
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DataError(f"{dataset_id}: {int(bad.sum())} non-finite values in {name} (first at transition "
                            f"{row}); clean or regenerate the dataset")
    return data


def scale_returns(returns: np.ndarray, data: Transitions, method: MethodConfig) -> np.ndarray:
    """Returns in return units, per transition, as the RvS-R policy takes them (MethodConfig.return_input): spread
    over the steps left for ``average``, divided by ``return_scale``."""
    if method.return_input == "average":
        returns = returns * method.horizon / np.maximum(method.horizon - data.timesteps, 1)
    return returns / method.return_scale


def return_input(data: Transitions, method: MethodConfig) -> np.ndarray:
    """The scalar the RvS-R policy is conditioned on, per transition: the return-to-go, scaled."""
    return scale_returns(data.returns_to_go(method.gamma), data, method)


class Conservative:
    """CWBC's conservative loss for RvS-R (Nguyen et al. 2022, tung-nd/cwbc ``RVSTrainer.train_step_percentile``):
    the drawn transitions of the trajectories whose return is at least the sorted returns' element at index
    int(percentile * E) are repeated with their return input raised by G* - G_i + |N(0, std)| (return units; the
    reference's truncated normal), so conditioning past the dataset's best return asks for the best trajectories'
    actions. The loss is the batch's NLL plus ``weight`` times the mean NLL of the raised rows: the raised rows are
    appended to the batch with weights that make the batch mean exactly that. A single run (``RunDraws``) and a
    stacked group (``wsrl.stacked.draws``) raise rows with the same two calls."""

    def __init__(self, data: Transitions, method: MethodConfig, sampler: SamplerConfig, device: torch.device) -> None:
        ranked = np.sort(data.episode_returns())
        threshold = percentile_element(ranked, sampler.conservative_percentile)
        per_transition = data.trajectory_returns()
        self.rows = torch.as_tensor(per_transition >= threshold, device=device)
        self.gap = torch.as_tensor(ranked[-1] - per_transition, dtype=torch.float64, device=device)
        # what one unit of return adds to a transition's return input
        self.factor = torch.as_tensor(scale_returns(np.ones(len(per_transition)), data, method), device=device)
        self.std, self.weight = sampler.conservative_std, sampler.conservative_weight

    def to(self, device: torch.device) -> Conservative:
        """A copy with its tables on ``device``."""
        moved = copy.copy(self)
        moved.rows, moved.gap, moved.factor = (t.to(device) for t in (self.rows, self.gap, self.factor))
        return moved

    def raised(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of the draw ``idx`` to repeat raised, and the raise of each one's return input (float32); the
        noise comes from ``generator``, after the draw (nothing is drawn when no row is raised)."""
        rows = idx[self.rows[idx]]
        if len(rows) == 0:
            return rows, torch.zeros(0, device=idx.device)
        noise = torch.randn(len(rows), generator=generator, device=generator.device, dtype=torch.float64).abs_()
        return rows, ((self.gap[rows] + noise * self.std) * self.factor[rows]).float()

    def weights(self, main: torch.Tensor, raised: int) -> torch.Tensor:
        """The loss weights of the batch's rows (``main``: their own), then of its ``raised`` raised rows, for a loss
        that averages over both."""
        b = len(main)
        return torch.cat([main * ((raised + b) / b),
                          torch.full((raised,), self.weight * (raised + b) / raised, device=main.device)])


def sample_labels(data: Transitions, sampler: SamplerConfig, gamma: float) -> np.ndarray:
    """The label LDS balances: trajectory return, return-to-go, or the action (per dimension)."""
    if sampler.target == "trajectory_return":
        return data.trajectory_returns()
    if sampler.target == "return_to_go":
        return data.returns_to_go(gamma)
    return data.actions


def trajectories(data: Transitions, sampler: SamplerConfig, gamma: float) -> Episodes:
    """The dataset's trajectories (its episodes) as the weighting schemes see them."""
    return Episodes(returns=data.episode_returns(), lengths=data.episode_lengths,
                    initial_states=data.observations[data.episode_starts],
                    lds_labels=lambda: sample_labels(data, sampler, gamma))


def sample_weights(data: Transitions, sampler: SamplerConfig, gamma: float) -> np.ndarray | None:
    """The sampler's weights per transition (its ``scheme``, mean 1), or None where nothing is weighted."""
    if not PLACEMENTS[sampler.weighting].weighted:
        return None
    return scheme_weights(sampler.scheme, trajectories(data, sampler, gamma), sampler, sampler.clip_max)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # inputs, actions, loss weights (None: unweighted)


def step_tokens() -> Iterator[int]:
    """What a training loop iterates: one token a step. A single run and a stacked group both draw each step's batch
    inside ``training_step``, so their generators stand exactly at the step when a checkpoint saves them, whatever
    Lightning's loop fetches ahead."""
    return itertools.repeat(0)


class RunDraws:
    """A single run's batches: indices from its sampler, gathered from the device tensors, CWBC's raised rows
    appended. The sampler's generator is the run's one source of batches, saved in its checkpoints."""

    def __init__(self, inputs: torch.Tensor, actions: torch.Tensor, loss_weights: torch.Tensor | None,
                 sampler: IndexSampler, conservative: Conservative | None = None) -> None:
        self.inputs, self.actions, self.loss_weights, self.sampler = inputs, actions, loss_weights, sampler
        self.conservative = conservative

    def batch(self) -> Batch:
        """The next step's batch."""
        idx = self.sampler()
        inputs, actions = self.inputs[idx], self.actions[idx]
        weights = None if self.loss_weights is None else self.loss_weights[idx]
        if self.conservative is None:
            return inputs, actions, weights
        rows, lift = self.conservative.raised(idx, self.sampler.generator)
        if len(rows) == 0:
            return inputs, actions, weights
        raised = self.inputs[rows].clone()
        raised[:, -1] += lift
        main = torch.ones(len(idx), device=inputs.device) if weights is None else weights
        return (torch.cat([inputs, raised]), torch.cat([actions, self.actions[rows]]),
                self.conservative.weights(main, len(rows)))


class OfflineDataModule(L.LightningDataModule):
    """Loads one dataset, builds the policy inputs and weights, and serves batches from device tensors."""

    def __init__(self, dataset_id: str, method: MethodConfig, sampler: SamplerConfig, batch_size: int, seed: int,
                 device: torch.device, transitions: Transitions | None = None) -> None:
        """``transitions``: ``dataset_id`` already loaded (``load_transitions``), so several runs share one load."""
        super().__init__()
        self.dataset_id, self.method, self.sampler_cfg = dataset_id, method, sampler
        self.batch_size, self.device = batch_size, torch.device(device)
        self.transitions = transitions  # the dataset's transitions: given, or loaded by ``setup``
        self.draws: RunDraws | None = None  # set by ``setup``
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def setup(self, stage: str | None = None) -> None:
        if self.draws is not None:
            return
        if self.transitions is None:
            self.transitions = load_transitions(self.dataset_id)
        data = self.transitions
        self.obs_mean = data.observations.mean(0)
        self.obs_std = data.observations.std(0) + 1e-3
        inputs = (data.observations - self.obs_mean) / self.obs_std
        if conditions_on_return(self.method):
            inputs = np.concatenate([inputs, return_input(data, self.method)[:, None]], axis=1)
        weights = sample_weights(data, self.sampler_cfg, self.method.gamma)
        self.weights = weights
        # how uneven the weights are and where they put the mass (wsrl.core.diagnostics.weight_diagnostics)
        self.weight_stats = None if weights is None else weight_diagnostics(weights, data.episode_returns(),
                                                                            data.episode_lengths)
        self.max_episode_return = float(data.episode_returns().max())
        dev = self.device
        self.inputs = torch.as_tensor(inputs, dtype=torch.float32, device=dev)
        self.actions = torch.as_tensor(data.actions, dtype=torch.float32, device=dev)
        w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32, device=dev)
        loss_weights, draw_weights = PLACEMENTS[self.sampler_cfg.weighting].split(w)
        self.conservative = None if self.sampler_cfg.conservative_percentile is None else Conservative(
            data, self.method, self.sampler_cfg, dev)
        self.draws = RunDraws(self.inputs, self.actions, loss_weights,
                              IndexSampler(len(data.actions), self.batch_size, draw_weights, self.generator),
                              self.conservative)

    @property
    def input_dim(self) -> int:
        return self.inputs.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    def train_dataloader(self) -> Iterator[int]:
        """Step tokens: the module draws each step's batch itself (``self.draws``)."""
        return step_tokens()

    def state_dict(self) -> dict:
        """The sampler's random state: a checkpoint is saved between steps, so this is the state before the next
        step's batch, and a resumed run draws the batches of an uninterrupted one."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Also reads the checkpoints written while batches were drawn ahead of the step, whose state was the same
        (their ``draws`` count is not needed)."""
        self.setup()
        self.generator.set_state(state["generator"])
