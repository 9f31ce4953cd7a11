"""The LightningModule: a policy trained with the paper's weighted MLE loss, and its evaluation-time actor.

Loss = -(1/N) sum_i w_i log pi(a_i | s_i). With uniform weights (``w`` is None) it is plain behaviour cloning.
The module also holds what acting needs without the dataset: state normalization statistics, the return
input's settings and the RvS-R target, all saved in its checkpoints.
"""

from __future__ import annotations

import contextlib
import math

import lightning as L
import numpy as np
import torch

from wsrl.core.config import MethodConfig, PolicyConfig, TrainerConfig, read_method
from wsrl.core.data import RunDraws
from wsrl.core.methods import conditions_on_return
from wsrl.core.policies import make_policy


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message gives the step and a hint."""


def forward_precision(autocast: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The training forward's precision (``trainer.autocast``): bf16 autocast, or float32 as it is."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast == "bf16")


def non_finite_loss(value: float, step: int) -> str | None:
    """Why training cannot go on with a loss of ``value`` at ``step``, and what to do; None while it is finite."""
    if math.isfinite(value):
        return None
    return (f"loss became {value} by step {step} (checked every trainer.log_every_n_steps); lower trainer.lr (with a "
            "new name=: this run directory keeps the failed run), check the dataset for extreme values, or set "
            "sampler.clip_max to bound the LDS weights")


def logs_metrics(step: int, every: int) -> bool:
    """Whether training step ``step`` (0-based) logs its metrics: on the steps Lightning writes a row for, labelled
    ``step`` (``every - 1``, ``2 * every - 1``, ...: its ``_LoggerConnector.should_update_logs``), so that each row of
    ``metrics.csv`` holds the metrics of the step it names; a stacked group's members log on the same steps."""
    return (step + 1) % every == 0


def step_metrics(loss: float, mean_log_std: float, lr: float, weights: tuple[float, float] | None) -> dict[str, float]:
    """A training step's logged metrics, a single run's and each stacked member's; ``weights``: the batch's loss
    weights' mean and maximum, where it has any."""
    metrics = {"train/loss": loss, "train/mean_log_std": mean_log_std, "train/lr": lr}
    if weights is not None:
        metrics |= {"train/weight_mean": weights[0], "train/weight_max": weights[1]}
    return metrics


def weighted_nll(log_prob: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """-(1/N) sum_i w_i log pi(a_i | s_i); uniform when ``weights`` is None."""
    return -(log_prob if weights is None else log_prob * weights).mean()


def adam(params: list[torch.nn.Parameter], cfg: TrainerConfig) -> torch.optim.Optimizer:
    """Adam with the fused kernel (one kernel for all parameters) where this torch has it for the device."""
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except RuntimeError:
        return torch.optim.Adam(params, **kwargs)


class WeightedBC(L.LightningModule):
    """Gaussian behaviour cloning with per-sample weights, optionally conditioned on the return-to-go."""

    def __init__(self, input_dim: int, action_dim: int, policy: dict, method: dict, trainer: dict,
                 target_return: float, obs_mean: np.ndarray | None = None, obs_std: np.ndarray | None = None,
                 config: dict | None = None, dataset_returns: dict | None = None) -> None:
        """Configs come as plain dicts (checkpoints then load with ``weights_only=True``), read back into their
        dataclasses here (a method section of an older checkpoint through ``read_method``); ``obs_mean`` and
        ``obs_std`` come from the dataset, or from the checkpoint's buffers when reloading. ``config`` is the run's
        whole resolved config, kept in the checkpoint (``hparams.config``) so that the policy can be evaluated in
        its environment with nothing else (``wsrl.evaluation.scores.load_checkpoint``); ``dataset_returns``, a
        histogram of the dataset's episode returns (``wsrl.evaluation.conditioning.return_histogram``), likewise for
        the conditioning curve's default targets."""
        super().__init__()
        self.save_hyperparameters(ignore=["obs_mean", "obs_std"])
        self.method = MethodConfig(**read_method(method, "the checkpoint", "evaluate it with the wsrl that made it"))
        self.train_cfg = TrainerConfig(**trainer)
        self.policy = make_policy(PolicyConfig(**policy), input_dim, action_dim)
        obs_dim = input_dim - int(conditions_on_return(self.method))
        self.register_buffer("obs_mean", torch.zeros(obs_dim) if obs_mean is None else torch.as_tensor(
            obs_mean, dtype=torch.float32))
        self.register_buffer("obs_std", torch.ones(obs_dim) if obs_std is None else torch.as_tensor(
            obs_std, dtype=torch.float32))
        self.target_return = target_return
        self.draws: RunDraws | None = None  # the batches it trains on: set by wsrl.running.build.build_policy
        # One zero_grad/backward/step per batch, written out in training_step: the same update as Lightning's
        # automatic optimization with fewer framework calls per step (docs/performance.md, "Where the speed comes
        # from").
        self.automatic_optimization = False

    def training_step(self, batch: int, batch_idx: int) -> torch.Tensor:
        """One step on a batch drawn here (``batch`` is a step token: ``wsrl.core.data.step_tokens``)."""
        inputs, actions, weights = self.draws.batch()
        with forward_precision(self.train_cfg.autocast, self.device):
            loss = weighted_nll(self.policy.log_prob(inputs, actions), weights)
        if logs_metrics(self.global_step, self.train_cfg.log_every_n_steps):
            self._log_metrics(loss, weights)
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return loss

    def _log_metrics(self, loss: torch.Tensor, weights: torch.Tensor | None) -> None:
        value = loss.item()  # the one host sync per logging interval
        if (reason := non_finite_loss(value, self.global_step)) is not None:
            raise NonFiniteLossError(reason)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        metrics = step_metrics(value, self.policy.mean_log_std().item(), lr,
                               None if weights is None else (weights.mean().item(), weights.max().item()))
        self.log_dict(metrics, prog_bar=False, on_step=True, on_epoch=False)
        self.log("loss", value, prog_bar=True, logger=False, on_step=True, on_epoch=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the global RNG (dropout masks) so a resumed run continues exactly as an uninterrupted one; refuse
        to checkpoint non-finite weights, which a resumed run could never recover from."""
        if not torch.stack([p.isfinite().all() for p in self.policy.parameters()]).all():
            raise NonFiniteLossError(
                f"the weights became non-finite by step {self.global_step} and were not checkpointed; lower "
                "trainer.lr (with a new name=), or set sampler.clip_max to bound the LDS weights")
        checkpoint["torch_rng"] = torch.get_rng_state()
        if torch.cuda.is_available():
            checkpoint["cuda_rng"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # RNG states are CPU byte tensors, whatever device ``map_location`` moved the checkpoint's tensors to
        torch.set_rng_state(checkpoint["torch_rng"].cpu())
        if "cuda_rng" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([state.cpu() for state in checkpoint["cuda_rng"]])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(list(self.policy.parameters()), self.train_cfg)

    @torch.no_grad()
    def act(self, obs: np.ndarray, returns_so_far: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Mean actions for a batch of raw observations; RvS-R adds the return input for ``target_return``."""
        x = (torch.as_tensor(obs, dtype=torch.float32, device=self.device) - self.obs_mean) / self.obs_std
        if conditions_on_return(self.method):
            remaining = self.target_return if self.method.return_input == "average" else (
                self.target_return - returns_so_far)
            g = torch.as_tensor(np.broadcast_to(remaining, (len(obs),)) / self.method.return_scale,
                                dtype=torch.float32, device=self.device)
            x = torch.cat([x, g[:, None]], dim=1)
        return self.policy.mean_action(x).cpu().numpy()
