"""The dataset suite: generation, atomic writes, D4RL import, sources and inspection, on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
import torch

import wsrl.datasets.generate as gen
import wsrl.datasets.parallel as parallel
from tests.conftest import make_tiny_dataset
from wsrl.datasets.behavior.actors import SquashedGaussianActor, save_snapshot
from wsrl.datasets.importers import import_d4rl_hdf5
from wsrl.datasets.info import info
from wsrl.datasets.sources import ensure_dataset
from wsrl.datasets.store import HASH_KEY, DatasetError, content_hash, exists_locally, read_episodes
from wsrl.datasets.suite import ROBOT
from wsrl.train import train

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
        save_snapshot(SquashedGaussianActor(11, 3, hidden=16).state_dict(), "sac", snaps / f"step_{step:07d}.pt")
        curve.append({"step": step, "snapshot": f"step_{step:07d}.pt", "normalized_mean": float(i)})
    manifest = {"robot": "hopper", "learner": "sac", "algorithm": "test actors", "snapshot_every": 1000,
                "curve": curve, "chosen": {"medium": 2000, "expert": 3000}}
    (root / "hopper" / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_generated_datasets_load_with_scores_metadata_and_train(minari_root, assets, tmp_path):
    gen.generate("hopper", "medium_expert", "small", assets=assets, steps_per_policy=STEPS)
    gen.generate("hopper", "medium_replay", "small", assets=assets, steps_per_policy=50_000, workers=1)
    me = minari.load_dataset("wsrl/hopper/medium-expert-small-v0")
    medium = minari.load_dataset("wsrl/hopper/medium-small-v0")
    expert = minari.load_dataset("wsrl/hopper/expert-small-v0")
    assert me.total_steps == medium.total_steps + expert.total_steps
    assert STEPS <= medium.total_steps < STEPS + 2 * gen.ENVS_PER_SHARD * 1000  # whole episodes: a little more
    assert me.total_episodes == medium.total_episodes + expert.total_episodes
    assert me.storage.metadata["ref_min_score"] == ROBOT["hopper"].ref_min_score
    assert me.storage.metadata["ref_max_score"] == ROBOT["hopper"].ref_max_score
    assert me.spec.env_spec.id == "Hopper-v5"
    for ep in me.iterate_episodes():
        assert len(ep.observations) == len(ep.actions) + 1
        assert ep.terminations[-1] or (ep.truncations[-1] and len(ep.actions) == 1000)  # whole episodes only
        assert not (ep.terminations[:-1] | ep.truncations[:-1]).any()
        assert len(ep.actions) <= 1000
    replay = minari.load_dataset("wsrl/hopper/medium-replay-small-v0")
    # random actions, then the one snapshot before medium: snapshot_every * STEPS / 1M steps each (at least 1)
    assert replay.total_steps >= 2 * (1000 * 50_000 // gen.FULL_STEPS)
    assert replay.storage.metadata["ref_min_score"] == ROBOT["hopper"].ref_min_score
    # and it trains: a few steps of the main job on the generated medium-expert data
    from tests.test_reliability import config

    results = train(config("env.size=small", "trainer.max_steps=5", "eval.episodes=1"), tmp_path / "run")
    assert results.dataset_id == "wsrl/hopper/medium-expert-small-v0" and results.steps == 5
    assert results.dataset_hash == me.storage.metadata[HASH_KEY]  # recorded at generation


def test_an_expert_from_another_run_is_rolled_out_from_its_own_folder(minari_root, assets):
    """A manifest with ``expert_run`` (``choose --expert-run``): expert comes from snapshots/expert, by that run's
    curve, and is named by that run's algorithm; medium stays the manifest's run's."""
    manifest = json.loads((assets / "hopper" / "manifest.json").read_text())
    folder = assets / "hopper" / "snapshots" / "expert"
    folder.mkdir()
    (assets / "hopper" / "snapshots" / "step_0003000.pt").rename(folder / "step_0500000.pt")
    manifest["expert_run"] = {"learner": "tqc1", "algorithm": "the expert's learner", "snapshot_dir": "expert",
                              "curve": [{"step": 500_000, "snapshot": "step_0500000.pt", "normalized_mean": 9.0}]}
    manifest["chosen"]["expert"] = 500_000
    (assets / "hopper" / "manifest.json").write_text(json.dumps(manifest))
    gen.generate("hopper", "medium_expert", "small", assets=assets, steps_per_policy=STEPS)
    expert = minari.load_dataset("wsrl/hopper/expert-small-v0")
    assert "TQC1 snapshot at step 500000" in expert.storage.metadata["description"]
    assert expert.storage.metadata["algorithm_name"] == "the expert's learner"
    assert minari.load_dataset("wsrl/hopper/medium-expert-small-v0").storage.metadata["algorithm_name"] == \
        "test actors / the expert's learner"
    (folder / "step_0500000.pt").unlink()
    with pytest.raises(DatasetError, match="snapshots/expert/step_0500000.pt is missing"):
        gen.generate("hopper", "expert", "small", assets=assets, steps_per_policy=STEPS, overwrite=True)


def test_rollout_whole_episodes_past_the_budget():
    """HalfCheetah never terminates: every environment runs its one episode to the 1000-step limit."""
    ep = gen.rollout("HalfCheetah-v5", [None], 1500, seed=0, n_envs=2)
    assert [len(a) for a in ep["actions"]] == [1000] * 4  # 2 shards x 2 envs, each past its share of 375
    assert all(t[-1] and not t[:-1].any() for t in ep["truncations"])


def test_rollout_budget_same_with_workers_and_replays():
    """At least the budget; the same data with worker processes; a stored episode replays step for step."""
    ep = gen.rollout("Hopper-v5", [None, None], 403, seed=1, n_envs=4)
    assert 403 <= sum(len(a) for a in ep["actions"]) < 403 + 8 * 1000  # 2 shards x 4 envs finish their episode
    for obs, act in zip(ep["observations"], ep["actions"], strict=True):
        assert len(obs) == len(act) + 1 and np.isfinite(obs).all()
    with gen.worker_pool(2) as pool:
        again = gen.rollout("Hopper-v5", [None, None], 403, seed=1, n_envs=4, pool=pool)
    for key in gen.KEYS:
        assert all(np.array_equal(x, y) for x, y in zip(ep[key], again[key], strict=True))
    env = gym.make("Hopper-v5")  # the first episode of the first environment of the first shard
    obs, _ = env.reset(seed=gen.derive_seed(1, 0))
    np.testing.assert_array_equal(obs, ep["observations"][0][0])
    for t, action in enumerate(ep["actions"][0]):
        obs, reward, term, _, _ = env.step(action)
        np.testing.assert_array_equal(obs, ep["observations"][0][t + 1])  # the last one is the final observation
        assert reward == ep["rewards"][0][t] and term == ep["terminations"][0][t]


@pytest.mark.parametrize("where", ["rollout", "write"])
def test_interrupted_generation_leaves_nothing_and_retry_works(minari_root, assets, monkeypatch, where):
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    if where == "rollout":
        calls = iter(range(100))

        def act(self, obs, generator=None, deterministic=False):
            if next(calls) == 5:  # halfway through the rollout
                raise KeyboardInterrupt
            return torch.zeros(len(obs), 3)

        monkeypatch.setattr(SquashedGaussianActor, "act", act)
    else:
        write = HDF5Storage.update_episodes

        def half_then_fail(self, episodes):  # some episodes reach the file, then the process is interrupted
            write(self, list(episodes)[:2])
            raise KeyboardInterrupt

        monkeypatch.setattr(HDF5Storage, "update_episodes", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        gen.generate("hopper", "medium", "small", assets=assets, steps_per_policy=STEPS)
    assert list(minari_root.rglob("*.hdf5")) == [] and not exists_locally("wsrl/hopper/medium-small-v0")
    assert [p for p in minari_root.iterdir() if p.name.startswith(".")] == []
    assert minari.list_local_datasets() == {}
    monkeypatch.undo()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    gen.generate("hopper", "medium", "small", assets=assets, steps_per_policy=STEPS)
    assert minari.load_dataset("wsrl/hopper/medium-small-v0").total_steps >= STEPS


def dataset_files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_existing_dataset_is_kept_unless_overwrite(minari_root, assets):
    gen.generate("hopper", "medium", "small", assets=assets, steps_per_policy=STEPS)
    before = dataset_files(minari_root)
    with pytest.raises(DatasetError, match="--overwrite"):
        gen.generate("hopper", "medium", "small", assets=assets, steps_per_policy=2 * STEPS, seed=1)
    assert dataset_files(minari_root) == before
    gen.generate("hopper", "medium", "small", assets=assets, steps_per_policy=2 * STEPS, overwrite=True)
    assert minari.load_dataset("wsrl/hopper/medium-small-v0").total_steps >= 2 * STEPS


def test_jobs_make_the_same_datasets_as_one_process(tmp_path, assets, monkeypatch, capsys):
    """--jobs 4 (two datasets at once, each with its two rollout processes, then medium_expert) writes the same
    files, byte for byte, as --jobs 1; an existing dataset is refused before any work, or kept when asked."""
    wanted = [("hopper", "medium_expert"), ("hopper", "medium_replay")]
    files = {}
    for jobs in (1, 4):
        root = tmp_path / f"jobs{jobs}"
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
        made = parallel.make(wanted, "small", jobs, assets=assets, steps_per_policy=STEPS)
        assert sorted(made) == sorted(f"wsrl/hopper/{q}-small-v0" for q in ("medium", "expert", "medium-replay",
                                                                             "medium-expert"))
        files[jobs] = dataset_files(root)
    assert files[1] == files[4] and sum(name.endswith(".hdf5") for name in files[1]) == 4
    with pytest.raises(DatasetError, match="hopper/medium-small-v0 already exists; pass --overwrite"):
        # refused before any work: halfcheetah, first in line, has no behaviour policies in these assets
        parallel.make([("halfcheetah", "medium"), ("hopper", "medium")], "small", 4, assets=assets)
    assert parallel.make(wanted, "small", 4, keep=True, assets=assets) == []
    assert "wsrl/hopper/medium-expert-small-v0: exists, kept" in capsys.readouterr().out
    assert dataset_files(tmp_path / "jobs4") == files[4]


def test_a_sweeps_datasets_are_listed_and_the_missing_ones_made(minari_root, assets, monkeypatch, capsys):
    """The datasets a sweep reads, expanded as Hydra expands it (the experiment's grid, the command line winning),
    and the missing ones made before it starts; a bad override is refused in one line."""
    from wsrl.running.datasets import main, needed, sweep_envs

    assert len(needed(sweep_envs(["experiment=table2"]))) == 9  # the preset's own grid: the nine
    sweep = ["-m", "experiment=table2", "env=hopper_medium_replay,hopper_medium_expert", "env.size=small",
             "method=bc,rvs_r", "seed=0,1,2", "hydra/launcher=stacked", "hydra.launcher.max_group=4"]
    ids = ["wsrl/hopper/medium-replay-small-v0", "wsrl/hopper/medium-expert-small-v0"]
    assert list(needed(sweep_envs(sweep))) == ids
    monkeypatch.setattr(gen, "ASSETS", assets)
    monkeypatch.setattr(gen, "FULL_STEPS", 10 * STEPS)
    main(["--list", *sweep])
    assert capsys.readouterr().out.split() == ids and not exists_locally(ids[0])
    main(["--jobs", "2", *sweep])
    assert all(exists_locally(i) for i in [*ids, "wsrl/hopper/medium-small-v0", "wsrl/hopper/expert-small-v0"])
    with pytest.raises(SystemExit) as exit_:
        main(["--list", "-m", "env=nowhere"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error:") and "nowhere" in err and len(err.splitlines()) == 1


def test_ensure_dataset_generates_a_missing_generated_dataset(minari_root, assets, monkeypatch, capsys):
    monkeypatch.setattr(gen, "ASSETS", assets)
    monkeypatch.setattr(gen, "FULL_STEPS", 10 * STEPS)
    ensure_dataset("wsrl/hopper/medium-small-v0", "generated", "hopper", "medium", "small", None)
    assert "generating it" in capsys.readouterr().out
    assert exists_locally("wsrl/hopper/medium-small-v0")


def test_parallel_jobs_make_a_missing_dataset_once(minari_root, monkeypatch, capsys):
    """Two jobs of a sweep need the same missing dataset: one makes it, the other waits and uses it."""
    made = []

    def slow_generate(robot, quality, size):
        made.append(quality)
        time.sleep(0.5)  # the second job arrives while the first is still making it
        make_tiny_dataset("wsrl/hopper/medium-small-v0", n_episodes=2, max_steps=10)

    monkeypatch.setattr(gen, "generate", slow_generate)
    errors = []

    def job():
        try:
            ensure_dataset("wsrl/hopper/medium-small-v0", "generated", "hopper", "medium", "small", None)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    jobs = [threading.Thread(target=job) for _ in range(2)]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    assert errors == [] and made == ["medium"]
    assert "waiting for another process" in capsys.readouterr().out
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


def test_ensure_dataset_refusals_name_the_command(minari_root):
    with pytest.raises(DatasetError, match="import-d4rl <file.hdf5> --robot hopper --quality medium"):
        ensure_dataset("d4rl/hopper/medium-v2", "d4rl", "hopper", "medium", "full", None)
    with pytest.raises(DatasetError, match="python -m wsrl.datasets generate hopper medium_replay"):
        ensure_dataset("wsrl-minari/hopper/medium-replay-v0", "minari", "hopper", "medium_replay", "full", None)
    with pytest.raises(DatasetError, match="unknown"):
        ensure_dataset("x/hopper/medium-v0", "ftp", "hopper", "medium", "full", None)


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


def test_d4rl_import_without_next_observations_repeats_the_last(minari_root, tmp_path):
    path = write_d4rl_file(tmp_path / "old.hdf5")
    with h5py.File(path, "a") as f:
        del f["next_observations"]
    import_d4rl_hdf5(path, "d4rl/hopper/medium-v2", "hopper")
    first = next(minari.load_dataset("d4rl/hopper/medium-v2").iterate_episodes())
    np.testing.assert_array_equal(first.observations[-1], first.observations[-2])


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
    (tmp_path / "garbage.hdf5").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(DatasetError, match="cannot read"):
        import_d4rl_hdf5(tmp_path / "garbage.hdf5", "d4rl/hopper/medium-v2", "hopper")
    with pytest.raises(DatasetError, match="wrong --robot"):
        import_d4rl_hdf5(path, "d4rl/walker2d/medium-v2", "walker2d")
    assert not exists_locally("d4rl/hopper/medium-v2") and not exists_locally("d4rl/walker2d/medium-v2")
    assert list(minari_root.iterdir()) == []


def test_info_prints_summary_and_writes_png(tiny_dataset, tmp_path, capsys):
    [summary] = info(tiny_dataset, tmp_path / "hist.png")
    out = capsys.readouterr().out
    assert "episodes" in out and "normalized_score" in out
    assert summary["episodes"] == 6
    ds = minari.load_dataset(tiny_dataset)
    returns = np.array([ep.rewards.sum() for ep in ds.iterate_episodes()])
    assert summary["normalized_score"]["mean"] == pytest.approx(ROBOT["hopper"].normalize(returns).mean(), abs=0.05)
    assert summary["return_quantiles"]["max"] == pytest.approx(returns.max(), abs=0.05)
    # the hash a run records, recomputed from the arrays as read: the one to compare across machines
    assert summary["content_hash"] == content_hash(read_episodes(tiny_dataset)) and summary["content_hash"] in out
    assert (tmp_path / "hist.png").read_bytes()[:4] == b"\x89PNG"


def test_info_draws_several_datasets_side_by_side_or_nothing(tiny_dataset, tmp_path, capsys):
    other = make_tiny_dataset("wsrl/walker2d/medium-expert-v0", robot="walker2d")
    summaries = info([tiny_dataset, other], tmp_path / "both.png")
    assert [s["dataset_id"] for s in summaries] == [tiny_dataset, other]
    assert capsys.readouterr().out.count("normalized_score") == 2
    assert (tmp_path / "both.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(DatasetError, match="wsrl/nope/none-v0"):  # checked before anything is drawn
        info([tiny_dataset, "wsrl/nope/none-v0"], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists() and not list(tmp_path.glob("*.tmp.png"))


@pytest.mark.parametrize("argv,token", [
    (["info", "wsrl/nope/none-v0"], "wsrl/nope/none-v0"),
    (["generate", "cheetah", "medium"], "'cheetah'"),
    (["generate", "hopper", "medium", "--size", "huge"], "'huge'"),
    (["generate", "hopper", "medium", "--jobs", "0"], "--jobs 0"),
    (["import-d4rl", "missing.hdf5", "--robot", "hopper", "--quality", "medium"], "missing.hdf5"),
    ([], "command"),
])
def test_cli_errors_are_one_line_exit_2(minari_root, capsys, argv, token):
    from wsrl.datasets.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error:") and len(err.splitlines()) == 1
    assert token in err, err  # the line names what is wrong


def test_cli_download_fails_fast_offline(minari_root):
    proc = subprocess.run([sys.executable, "-m", "wsrl.datasets", "download", "hopper", "medium"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "python -m wsrl.datasets generate hopper medium" in proc.stderr
    assert list(minari_root.iterdir()) == []


def test_failed_dataset_write_keeps_the_existing_dataset_and_leaves_nothing(minari_root, monkeypatch):
    """Disk full halfway through the write, then a read-only root: one error naming the dataset, the path and the
    reason; the dataset there before is byte for byte the same, and no scratch copy is left."""
    import errno

    from minari.dataset._storages.hdf5_storage import HDF5Storage

    from tests.conftest import random_episodes
    from wsrl.datasets.store import write_dataset

    make_tiny_dataset("wsrl/hopper/medium-v0", n_episodes=2, max_steps=10)
    before = dataset_files(minari_root)
    write = HDF5Storage.update_episodes

    def half_then_full(self, episodes):
        write(self, list(episodes)[:1])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(HDF5Storage, "update_episodes", half_then_full)
    episodes = random_episodes("Hopper-v5", 3, 10, seed=1)
    with pytest.raises(DatasetError, match="cannot write wsrl/hopper/medium-v0 .*: No space left on device; nothing"):
        write_dataset("wsrl/hopper/medium-v0", episodes, overwrite=True, env="Hopper-v5", algorithm_name="x")
    assert dataset_files(minari_root) == before
    assert [p.name for p in minari_root.iterdir()] == ["wsrl"]
    monkeypatch.undo()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    from tests.test_runs import make_read_only

    undo = make_read_only(minari_root)
    try:
        with pytest.raises(DatasetError, match=f"cannot write wsrl/hopper/expert-v0 \\({minari_root}.*\\): "):
            write_dataset("wsrl/hopper/expert-v0", episodes, env="Hopper-v5", algorithm_name="x")
    finally:
        undo()
    assert dataset_files(minari_root) == before


def package_urls(monkeypatch, urls: list[str] | None) -> None:
    """Make wsrl's package metadata name ``urls`` in [project.urls] (None: no such entry)."""
    from importlib import metadata

    real = metadata.metadata

    class Named:
        def get_all(self, key):
            return urls if key == "Project-URL" else None

    monkeypatch.setattr(metadata, "metadata", lambda name: Named() if name == "wsrl" else real(name))


def test_written_datasets_carry_their_content_hash_and_the_project_s_real_url(minari_root, monkeypatch):
    """The hash stored at writing is the one the arrays as read give, on data written by Minari alone too; one
    reward changed in its last digits changes it. code_permalink is [project.urls]' repository, or absent."""
    from tests.conftest import random_episodes
    from wsrl.core.data import load_transitions
    from wsrl.datasets.store import HASH_KEY, content_hash, dataset_hash, read_episodes, read_metadata, write_dataset

    package_urls(monkeypatch, ["Documentation, https://docs.example.org", "Repository, https://example.org/wsrl.git"])
    write_dataset("wsrl/hopper/a-v0", random_episodes("Hopper-v5", 3, 20, seed=4), env="Hopper-v5", algorithm_name="x")
    stored = read_metadata("wsrl/hopper/a-v0")
    assert stored["code_permalink"] == "https://example.org/wsrl.git"
    assert stored[HASH_KEY] == content_hash(read_episodes("wsrl/hopper/a-v0")) == load_transitions(
        "wsrl/hopper/a-v0").content_hash
    make_tiny_dataset("wsrl/hopper/b-v0", n_episodes=3, max_steps=20, seed=4)  # the same episodes, by Minari alone
    assert HASH_KEY not in read_metadata("wsrl/hopper/b-v0")
    episodes = read_episodes("wsrl/hopper/b-v0")
    assert dataset_hash("wsrl/hopper/b-v0", episodes) == stored[HASH_KEY]
    episodes["rewards"][1] = episodes["rewards"][1] + np.eye(len(episodes["rewards"][1]))[5] * 1e-12
    assert content_hash(episodes) != stored[HASH_KEY]
    package_urls(monkeypatch, None)  # pyproject.toml names no repository: none is invented
    write_dataset("wsrl/hopper/c-v0", random_episodes("Hopper-v5", 1, 5, seed=0), env="Hopper-v5", algorithm_name="x")
    assert "code_permalink" not in read_metadata("wsrl/hopper/c-v0")
