"""The dataset suite: generation, atomic writes, D4RL import, sources and inspection, on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import minari
import numpy as np
import pytest
import torch

import wsrl.datasets.generate as gen
from wsrl.datasets.behavior import SquashedGaussianActor
from wsrl.datasets.importers import import_d4rl_hdf5
from wsrl.datasets.info import info
from wsrl.datasets.sources import ensure_dataset
from wsrl.datasets.store import DatasetError, exists_locally
from wsrl.datasets.suite import ROBOT

STEPS = 300  # per policy: tiny


@pytest.fixture
def assets(tmp_path):
    """Three random hopper actor snapshots and a manifest choosing step 2000 as medium, 3000 as expert."""
    root = tmp_path / "assets"
    snaps = root / "hopper" / "snapshots"
    snaps.mkdir(parents=True)
    curve = []
    for i, step in enumerate((1000, 2000, 3000)):
        torch.manual_seed(i)
        torch.save(SquashedGaussianActor(11, 3, hidden=16).state_dict(), snaps / f"step_{step:07d}.pt")
        curve.append({"step": step, "snapshot": f"step_{step:07d}.pt", "normalized_mean": float(i)})
    manifest = {"robot": "hopper", "snapshot_every": 1000, "curve": curve, "chosen": {"medium": 2000, "expert": 3000}}
    (root / "hopper" / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_generated_datasets_load_with_scores_and_metadata(minari_root, assets):
    for quality in ("medium_replay", "medium_expert"):
        gen.generate("hopper", quality, "small", assets=assets, steps_per_policy=STEPS)
    me = minari.load_dataset("wsrl/hopper/medium-expert-small-v0")
    medium = minari.load_dataset("wsrl/hopper/medium-small-v0")
    expert = minari.load_dataset("wsrl/hopper/expert-small-v0")
    assert me.total_steps == medium.total_steps + expert.total_steps >= 2 * STEPS
    assert me.storage.metadata["ref_min_score"] == ROBOT["hopper"].ref_min_score
    assert me.storage.metadata["ref_max_score"] == ROBOT["hopper"].ref_max_score
    assert me.spec.env_spec.id == "Hopper-v5"
    for ep in me.iterate_episodes():
        assert len(ep.observations) == len(ep.actions) + 1
        assert ep.terminations[-1] or ep.truncations[-1]
        assert not (ep.terminations[:-1] | ep.truncations[:-1]).any()
        assert len(ep.actions) <= 1000
    replay = minari.load_dataset("wsrl/hopper/medium-replay-small-v0")
    # one chunk of random actions plus the snapshot before medium, snapshot_every * STEPS / 1M steps each
    assert replay.total_steps >= 2 * max(1, 1000 * STEPS // gen.FULL_STEPS)


def test_rollout_episodes_continue_observations(monkeypatch):
    """Within an episode, each stored observation is the next one of the previous step."""
    ep = gen.rollout("Hopper-v5", [None, None], 400, seed=1, n_envs=4)
    assert sum(len(a) for a in ep["actions"]) == 400
    for obs, act in zip(ep["observations"], ep["actions"], strict=True):
        assert len(obs) == len(act) + 1 and np.isfinite(obs).all()


def test_interrupted_generation_leaves_nothing_and_retry_works(minari_root, assets, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(minari, "create_dataset_from_buffers", fail)
    with pytest.raises(KeyboardInterrupt):
        gen.generate("hopper", "medium", "small", assets=assets, steps_per_policy=STEPS)
    assert list(minari_root.rglob("*.hdf5")) == [] and not exists_locally("wsrl/hopper/medium-small-v0")
    assert [p for p in minari_root.iterdir() if p.name.startswith(".wsrl-build")] == []
    monkeypatch.undo()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    gen.generate("hopper", "medium", "small", assets=assets, steps_per_policy=STEPS)
    assert minari.load_dataset("wsrl/hopper/medium-small-v0").total_steps >= STEPS


def test_existing_dataset_is_kept_unless_overwrite(minari_root, assets):
    gen.generate("hopper", "medium", "small", assets=assets, steps_per_policy=STEPS)
    with pytest.raises(DatasetError, match="--overwrite"):
        gen.generate("hopper", "medium", "small", assets=assets, steps_per_policy=STEPS)
    gen.generate("hopper", "medium", "small", assets=assets, steps_per_policy=2 * STEPS, overwrite=True)
    assert minari.load_dataset("wsrl/hopper/medium-small-v0").total_steps >= 2 * STEPS


def test_ensure_dataset_generates_a_missing_generated_dataset(minari_root, assets, monkeypatch, capsys):
    monkeypatch.setattr(gen, "ASSETS", assets)
    monkeypatch.setattr(gen, "FULL_STEPS", 10 * STEPS)
    ensure_dataset("wsrl/hopper/medium-small-v0", "generated", "hopper", "medium", "small", None)
    assert "generating it" in capsys.readouterr().out
    assert exists_locally("wsrl/hopper/medium-small-v0")


def write_d4rl_file(path, n=250, ends=(99, 179)):
    rng = np.random.default_rng(0)
    terminals = np.zeros(n, bool)
    terminals[ends[0]] = True
    timeouts = np.zeros(n, bool)
    timeouts[ends[1]] = True
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, 11)).astype(np.float32)
        f["next_observations"] = rng.normal(size=(n, 11)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        f["rewards"] = rng.normal(size=n).astype(np.float32)
        f["terminals"] = terminals
        f["timeouts"] = timeouts
    return path


def test_d4rl_hdf5_import(minari_root, tmp_path):
    path = write_d4rl_file(tmp_path / "hopper_medium-v2.hdf5")
    import_d4rl_hdf5(path, "d4rl/hopper/medium-v2", "hopper")
    ds = minari.load_dataset("d4rl/hopper/medium-v2")
    eps = list(ds.iterate_episodes())
    assert [len(e.actions) for e in eps] == [100, 80, 70]
    assert eps[0].terminations[-1] and not eps[1].terminations[-1] and eps[1].truncations[-1]
    with h5py.File(path) as f:
        np.testing.assert_allclose(eps[1].observations[:-1], f["observations"][100:180])
        np.testing.assert_allclose(eps[1].observations[-1], f["next_observations"][179])
        np.testing.assert_allclose(eps[2].rewards, f["rewards"][180:], rtol=1e-6)
    assert ds.spec.env_spec.id == "Hopper-v4"
    assert ds.storage.metadata["ref_max_score"] == ROBOT["hopper"].ref_max_score


def test_damaged_hdf5_is_refused(minari_root, tmp_path):
    path = write_d4rl_file(tmp_path / "ok.hdf5")
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DatasetError, match="cannot read"):
        import_d4rl_hdf5(truncated, "d4rl/hopper/medium-v2", "hopper")
    with h5py.File(tmp_path / "partial.hdf5", "w") as f:
        f["observations"] = np.zeros((3, 11))
    with pytest.raises(DatasetError, match="missing actions"):
        import_d4rl_hdf5(tmp_path / "partial.hdf5", "d4rl/hopper/medium-v2", "hopper")
    assert not exists_locally("d4rl/hopper/medium-v2")


def test_info_prints_summary_and_writes_png(tiny_dataset, tmp_path, capsys):
    summary = info(tiny_dataset, tmp_path / "hist.png")
    out = capsys.readouterr().out
    assert "episodes" in out and "normalized_score" in out
    assert summary["episodes"] == 6
    assert (tmp_path / "hist.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_errors_are_one_line(minari_root):
    proc = subprocess.run([sys.executable, "-m", "wsrl.datasets", "info", "wsrl/nope/none-v0"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and proc.stderr.strip().startswith("error:") and len(proc.stderr.splitlines()) == 1
    proc = subprocess.run([sys.executable, "-m", "wsrl.datasets", "download", "hopper", "medium"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "python -m wsrl.datasets generate hopper medium" in proc.stderr
