"""What ``wsrl.running.lightning_fixes`` fixes, where no other test sees it broken."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.loggers import CSVLogger

from wsrl.core.config import register_configs, resolve_env, to_plain
from wsrl.running.build import build_run
from wsrl.running.lightning_fixes import keep_metrics
from wsrl.running.rundir import RunInterrupted, StopSignals

CONF = str(Path(__file__).resolve().parents[1] / "conf")


class SignalAfterTheStopper(L.Callback):
    """Sends SIGTERM at the end of step ``at``, after the stop callback's turn (as one arriving while a checkpoint
    or the logs are written would)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_after_the_stoppers_turn_saves_the_next_step(tiny_dataset, tmp_path, one_thread):
    """Lightning's own SIGTERM handler would end the run at once (its SIGTERMException, no checkpoint, no resume
    hint); with wsrl's handler back over it the next step ends, is saved, and the run stops as for any signal."""
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=["policy.hidden_dims=[16]", "trainer.batch_size=8", "trainer.max_steps=20",
                                          "wandb.mode=disabled", "generate_if_missing=false",
                                          "trainer.progress_bar=false"])
    with StopSignals() as signals:
        run = build_run(cfg, to_plain(cfg), resolve_env(cfg.env), tmp_path, signals)
        run.trainer.callbacks.append(SignalAfterTheStopper(3))
        with pytest.raises(RunInterrupted, match="stopped by SIGTERM: saved step 4"):
            run.fit()
    assert torch.load(run.last, weights_only=True)["global_step"] == 4


def test_resumed_metrics_keep_whole_rows_from_the_file_a_killed_process_left(tmp_path):
    """A row cut short by a killed process is left out; a ``metrics.csv.before-resume`` left by a process killed
    while keeping is the file read (the ``metrics.csv`` beside it is its copy cut short)."""
    folder, header = tmp_path / "csv", "epoch,step,train/loss\r\n"
    rows = [f"0,{step},{step / 7}\r\n" for step in (9, 19)]
    folder.mkdir()
    (folder / "metrics.csv").write_bytes((header + "".join(rows) + "0,29,4.1").encode())  # step 29's row cut
    keep_metrics(CSVLogger(tmp_path, name="csv", version=""), 30)
    assert (folder / "metrics.csv").read_bytes().decode() == header + "".join(rows)
    (folder / "metrics.csv").rename(folder / "metrics.csv.before-resume")
    (folder / "metrics.csv").write_bytes((header + rows[0][:5]).encode())
    keep_metrics(CSVLogger(tmp_path, name="csv", version=""), 20)
    assert (folder / "metrics.csv").read_bytes().decode() == header + "".join(rows)
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.csv"]
