"""Shared fixtures: tiny Minari datasets built with Minari's own API, in a temporary MINARI_DATASETS_PATH; and
``environment_unchanged``, which fails any test that leaves ``os.environ`` other than it found it."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from wsrl.datasets.suite import ROBOT

ROOT = Path(__file__).resolve().parents[1]
# Variables that a library sets in the test process unavoidably and that no later test or child process depends
# on, each with the reason. PYTEST_CURRENT_TEST: pytest's own (the test being run, set and cleared around each phase).
# TORCHINDUCTOR_CACHE_DIR: torch's inductor sets its default cache folder when first imported, which the first
# optimizer built can do (a stable-baselines3 agent's; Lightning does it at import, before the baseline).
# PYTORCH_NVML_BASED_CUDA_CHECK: lightning.fabric sets it to 1 when first imported, which a test may be the first to do
# when it runs alone (the variable only chooses how torch counts GPUs). _TORCHINDUCTOR_PYOBJECT_TENSOR_DATA_PTR:
# torch.compile's inductor sets it before it loads each compiled kernel, which reads it (hydra.launcher.compile's test).
ENVIRON_ALLOWED = frozenset({"PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR", "PYTORCH_NVML_BASED_CUDA_CHECK",
                             "_TORCHINDUCTOR_PYOBJECT_TENSOR_DATA_PTR"})
_BASELINE: dict[str, str] = {}  # os.environ once the tests are collected (imports done): what every test starts from


def pytest_collection_finish(session) -> None:
    _BASELINE.clear()
    _BASELINE.update(os.environ)


def environ_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What differs between two snapshots of os.environ, one entry a key (``ENVIRON_ALLOWED`` left out)."""
    def show(value: str | None) -> str:
        return "unset" if value is None else repr(value if len(value) <= 60 else value[:57] + "...")

    keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and k not in ENVIRON_ALLOWED)
    return [f"{k}: {show(before.get(k))} -> {show(after.get(k))}" for k in keys]


def _restore(environ: dict[str, str]) -> None:
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    os.environ.update(environ)


@pytest.fixture(autouse=True)
def environment_unchanged(request):
    """Fail a test that leaves ``os.environ`` changed, naming the keys, and put it back so that no later test (nor
    its child processes) inherits the change: a test that passes alone but fails after another is a bug. Changes
    made by a session- or module-scoped fixture (set up before this one) are reported at the first test that sees
    them. Use ``monkeypatch.setenv`` (or ``pytest.MonkeyPatch.context()`` in a wider-scoped fixture), or pass
    ``env=`` to a child process, instead of writing ``os.environ``."""
    before = dict(os.environ)
    if _BASELINE and (changed := environ_changes(_BASELINE, before)):
        _restore(_BASELINE)
        pytest.fail(f"os.environ was changed before this test ran, by a fixture of wider scope or at its teardown "
                    f"(fixtures here: {', '.join(request.fixturenames)}): {'; '.join(changed)}", pytrace=False)
    yield
    if changed := environ_changes(before, dict(os.environ)):
        _restore(before)
        pytest.fail(f"the test left os.environ changed: {'; '.join(changed)}", pytrace=False)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a test's child process: this checkout first on PYTHONPATH, then any path already there
    (a machine whose packages come from PYTHONPATH keeps them), plus ``extra``."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def can_render(env_id: str = "Hopper-v5") -> str | None:
    """None where this machine renders ``env_id`` headless and writes MP4, else why not. With WSRL_REQUIRE_VIDEO=1
    (CI, once libosmesa6 is installed) "cannot" fails the test instead: the video tests must run there."""
    from wsrl.evaluation.video import VideoUnavailable, check_video

    try:
        check_video(env_id)
        return None
    except VideoUnavailable as err:
        if os.environ.get("WSRL_REQUIRE_VIDEO") == "1":
            pytest.fail(f"WSRL_REQUIRE_VIDEO=1 but {err}", pytrace=False)
        return str(err)


def random_episodes(env_id: str, n_episodes: int, max_steps: int, seed: int) -> list:
    """Episodes of uniform random actions in the real environment, cut at ``max_steps``."""
    from minari.data_collector import EpisodeBuffer

    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(n_episodes):
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        for t in range(max_steps):
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            obs, reward, term, trunc, _ = env.step(action)
            trunc = trunc or t == max_steps - 1
            observations.append(obs)
            actions.append(action)
            rewards.append(float(reward))
            terms.append(bool(term))
            truncs.append(bool(trunc and not term))
            if term or trunc:
                break
        episodes.append(EpisodeBuffer(id=i, observations=np.array(observations), actions=np.array(actions),
                                      rewards=rewards, terminations=terms, truncations=truncs))
    env.close()
    return episodes


def make_tiny_dataset(dataset_id: str, robot: str = "hopper", n_episodes: int = 6, max_steps: int = 60,
                      seed: int = 0, episodes: list | None = None) -> str:
    """Write a small Minari dataset of random-action episodes (or the given ``episodes``) with the robot's D4RL
    reference scores."""
    import minari

    r = ROBOT[robot]
    minari.create_dataset_from_buffers(
        dataset_id, buffer=episodes or random_episodes(r.env_id, n_episodes, max_steps, seed), env=r.env_id,
        algorithm_name="random", ref_min_score=r.ref_min_score, ref_max_score=r.ref_max_score,
        description="tiny test dataset")
    return dataset_id


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    """A private MINARI_DATASETS_PATH so tests never touch ~/.minari."""
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture
def tiny_dataset(minari_root) -> str:
    return make_tiny_dataset("wsrl/hopper/medium-expert-v0")


@pytest.fixture
def one_thread():
    """Tiny networks on busy cores: extra intra-op threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
