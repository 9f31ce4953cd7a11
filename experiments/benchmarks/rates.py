"""Steps/s of one training configuration three ways (sections 1, 2, 6, 7 and 9): the real ``wsrl.train`` path, a
bare PyTorch loop and the usual Lightning way, with the timers that measure them without hooks of their own."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch

from benchmarks.common import Bench, build, quiet
from wsrl.core.data import step_tokens


class TimedTokens:
    """The run's step tokens (``wsrl.core.data.step_tokens``), noting the clock when the tokens numbered in ``marks``
    are fetched: times the training loop without adding a hook to it. Lightning fetches one token ahead, so the time
    between two fetches ``a < b`` is ``b - a`` whole steps."""

    def __init__(self, marks: list[int], now, cuda: bool) -> None:
        self.marks, self.now, self.cuda = set(marks), now, cuda
        self.times: dict[int, float] = {}

    def __iter__(self):
        for i, token in enumerate(step_tokens()):
            if i in self.marks:
                if self.cuda:
                    torch.cuda.synchronize()
                self.times[i] = self.now()
            yield token

    def rate(self, start: int, stop: int) -> float:
        return (stop - start) / (self.times[stop] - self.times[start])


class StepTimer(L.Callback):
    """Notes the clock after batch ``start`` and after batch ``stop`` (synchronizing CUDA there)."""

    def __init__(self, start: int, stop: int, now, cuda: bool) -> None:
        self.start, self.stop, self.now, self.cuda = start, stop, now, cuda
        self.t0 = self.t1 = None

    def on_train_batch_end(self, trainer, *_) -> None:
        step = trainer.global_step
        if step in (self.start, self.stop):
            if self.cuda:
                torch.cuda.synchronize()
            if step == self.start:
                self.t0 = self.now()
            else:
                self.t1 = self.now()

    def rate(self) -> float:
        return (self.stop - self.start) / (self.t1 - self.t0)


def trained_state(module, optimizer) -> dict:
    """A copy of a run's weights and optimizer moments, to start later runs from (section 7)."""
    return {"module": {k: v.clone() for k, v in module.state_dict().items()},
            "optimizer": optimizer.state_dict()}


class LoadOptimizerState(L.Callback):
    """Gives the optimizer Lightning builds a trained run's moments (Adam's state holds subnormals too)."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def on_train_start(self, trainer, pl_module) -> None:
        trainer.optimizers[0].load_state_dict(self.state["optimizer"])


def wsrl_rate(b: Bench, cfg, transitions, warmup: int, steps: int, state: dict | None = None) -> float:
    """Steps/s of the real training path (``build``), timed between two draws after ``warmup`` (see TimedTokens);
    ``state``: start from a trained run's weights and optimizer moments."""
    return wsrl_run(b, cfg, transitions, [warmup + 1, warmup + steps + 1], warmup + steps + 2, state)[0][0]


def wsrl_run(b: Bench, cfg, transitions, marks: list[int], max_steps: int, state: dict | None = None):
    """Fit the real training path for ``max_steps``; returns (rates between consecutive marks, trained state)."""
    from wsrl.running.rundir import StopSignals

    cfg.trainer.max_steps = max_steps
    with StopSignals() as signals:
        run = build(b, cfg, transitions, signals)
        if state is not None:
            run.module.load_state_dict(state["module"])
            run.trainer.callbacks.append(LoadOptimizerState(state))
        timer = TimedTokens(marks, b.now, run.device.type == "cuda")
        run.data.train_dataloader = lambda: timer
        with quiet():
            run.fit()
    rates = [timer.rate(x, y) for x, y in zip(marks[:-1], marks[1:], strict=True)]
    return rates, trained_state(run.module, run.trainer.optimizers[0])


def bare_rate(b: Bench, cfg, transitions, warmup: int, steps: int, optimizer: str = "module", compiled: str = "",
              state: dict | None = None) -> float:
    """Steps/s of a plain loop: draw indices, gather, weighted NLL, zero_grad, backward, optimizer step.

    ``optimizer='module'`` builds the optimizer exactly as WeightedBC.configure_optimizers does (the fair
    comparison); 'default' uses torch.optim.Adam's defaults. ``compiled``: '' | 'compile' (torch.compile of the
    loss) | 'graph' (CUDA graph of the whole step). ``state``: a trained run's weights and optimizer moments.
    """
    from wsrl.core.module import weighted_nll

    run = build(b, cfg, transitions)  # the same model, inputs and weights as the real path; only the loop differs
    module, data = run.module.to(run.device), run.data
    if state is not None:
        module.load_state_dict(state["module"])
    policy = module.policy
    tc = cfg.trainer
    if optimizer == "module":
        opt = module.configure_optimizers()
    else:
        opt = torch.optim.Adam(policy.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                               **({"capturable": True} if compiled == "graph" else {}))
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    x_all, a_all, w_all = data.inputs, data.actions, data.draws.loss_weights
    n, batch, device = len(a_all), tc.batch_size, data.device
    gen = torch.Generator(device=device).manual_seed(cfg.seed)

    def loss_of(idx):
        return weighted_nll(policy.log_prob(x_all[idx], a_all[idx]), None if w_all is None else w_all[idx])

    def draw():
        return torch.randint(n, (batch,), generator=gen, device=device)

    if compiled == "compile":
        loss_of = torch.compile(loss_of)
    step = graph_step(loss_of, opt, draw) if compiled == "graph" else eager_step(loss_of, opt, draw)
    return timed_steps(b, step, warmup, steps, device.type == "cuda")


def eager_step(loss_of: Callable, opt, draw: Callable) -> Callable[[], None]:
    """One step of the bare loop as plain PyTorch calls."""
    def step() -> None:
        loss = loss_of(draw())
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def graph_step(loss_of: Callable, opt, draw: Callable) -> Callable[[], None]:
    """One step of the bare loop as a replay of a CUDA graph of the whole step (the device-bound ceiling): the
    graph is captured once, after warming up on a side stream, and each step only copies in new indices."""
    idx = draw()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            loss_of(idx).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        loss_of(idx).backward()
        opt.step()

    def step() -> None:
        idx.copy_(draw())
        graph.replay()

    return step


def timed_steps(b: Bench, step: Callable[[], None], warmup: int, steps: int, cuda: bool) -> float:
    """Calls/s of ``step``: ``warmup`` calls untimed, then ``steps`` timed (CUDA synchronized at both ends)."""
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = b.now()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return steps / (b.now() - t0)


def usual_rate(b: Bench, cfg, transitions, warmup: int, steps: int, state: dict | None = None) -> float:
    """Steps/s of the usual way: automatic optimization, loss logged every step, default Adam, fed by
    DataLoader(TensorDataset, shuffle=True); the same Trainer (``build``), model, batch size and weighted loss.
    Timed by a callback (its few microseconds per step are well under 1% of this path's step). ``state``: a
    trained run's policy weights and optimizer moments."""
    from torch.utils.data import DataLoader, TensorDataset

    from wsrl.core.module import weighted_nll
    from wsrl.running.rundir import StopSignals

    tc = cfg.trainer
    tc.max_steps = warmup + steps + 1
    with StopSignals() as signals:
        run = build(b, cfg, transitions, signals)
        data = run.data

        class UsualBC(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.policy = run.module.policy
                if state is not None:
                    self.policy.load_state_dict({k.removeprefix("policy."): v for k, v in state["module"].items()
                                                 if k.startswith("policy.")})

            def training_step(self, batch, batch_idx):
                inputs, actions, weights = batch
                loss = weighted_nll(self.policy.log_prob(inputs, actions), weights)
                self.log("train_loss", loss, prog_bar=True)
                return loss

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)

        weights = data.draws.loss_weights
        weights = torch.ones(len(data.actions)) if weights is None else weights
        loader = DataLoader(TensorDataset(data.inputs.cpu(), data.actions.cpu(), weights.cpu()),
                            batch_size=tc.batch_size, shuffle=True, drop_last=True)
        timer = StepTimer(warmup, warmup + steps, b.now, run.device.type == "cuda")
        run.trainer.callbacks.append(timer)
        if state:
            run.trainer.callbacks.append(LoadOptimizerState(state))
        with quiet():
            run.trainer.fit(UsualBC(), train_dataloaders=loader)
    return timer.rate()


def steps_for(b: Bench, width: int, batch: int) -> tuple[int, int]:
    """(warmup, timed steps) so that each measurement takes roughly the same time as at 2 x 256, batch 256."""
    cost = max(1.0, (width / 256) ** 2 * (batch / 256) / 7)  # the paper's size is ~9x slower than the small
    return b.warmup, max(3 if b.quick else 8, int(b.steps / cost))
