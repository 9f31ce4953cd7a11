"""wsrl's one reliance on Lightning's internals (``wsrl.core.data.BatchStream``): the training loop draws one batch
ahead.

If a Lightning upgrade fetches further ahead (or not at all), a checkpoint would store the sampler state of the
wrong batch and a resumed run would draw other batches than an uninterrupted one; this test fails first.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra import compose, initialize_config_dir

from wsrl.core.config import register_configs, resolve_env, to_plain
from wsrl.running.build import build_run
from wsrl.running.rundir import StopSignals

CONF = str(Path(__file__).resolve().parents[1] / "conf")


class Lookahead(L.Callback):
    """At the end of each step: how many batches the stream has drawn beyond the steps taken, and whether it still
    knows the sampler state before the first batch not yet trained on (what a checkpoint stores)."""

    def __init__(self) -> None:
        self.ahead: list[int] = []
        self.known: list[bool] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        stream = trainer.datamodule.stream
        self.ahead.append(stream.draws - trainer.global_step)
        self.known.append(any(draw == trainer.global_step for draw, _ in stream.recent_states))


def test_lightning_draws_exactly_one_batch_ahead(tiny_dataset, tmp_path):
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=["policy.hidden_dims=[16]", "trainer.batch_size=8", "trainer.max_steps=6",
                                          "wandb.mode=disabled", "generate_if_missing=false",
                                          "trainer.progress_bar=false"])
    probe = Lookahead()
    with StopSignals() as signals:
        run = build_run(cfg, to_plain(cfg), resolve_env(cfg.env), tmp_path, signals)
        run.trainer.callbacks.append(probe)
        run.fit()
    assert probe.ahead[:-1] == [1] * 5, probe.ahead  # the last step may or may not fetch a batch it never uses
    assert probe.ahead[-1] in (0, 1) and all(probe.known), probe.known
    assert run.data.stream.recent_states.maxlen > max(probe.ahead)
