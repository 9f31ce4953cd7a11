"""Rollout videos: recorded headless during and after training and from a checkpoint, refused in one line where
this machine cannot render, and no OpenGL traceback at exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import can_render, child_env, make_tiny_dataset
from tests.test_train import config
from wsrl.evaluation.__main__ import main as evaluate_cli
from wsrl.evaluation.video import VideoUnavailable, check_video, render_environ
from wsrl.train import train

ROOT = Path(__file__).resolve().parents[1]
TINY_VIDEO = ["eval.video=true", "eval.video_frames=5", "eval.video_size=[64,48]"]


pytestmark = pytest.mark.video


@pytest.fixture(scope="session")
def renderer() -> None:
    """Skip, with the reason, where this machine cannot render MuJoCo headless (no libosmesa6, no EGL)."""
    if (reason := can_render("Hopper-v5")) is not None:
        pytest.skip(reason)


def read_mp4(path: Path) -> tuple[dict, np.ndarray]:
    """The decoded frames [n, height, width, 3] and ffmpeg's metadata."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return meta, np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader])


@pytest.fixture(scope="module")
def video_run(renderer, tmp_path_factory):
    """An RvS-R run on a tiny dataset with a video at its periodic (step 30) and final (step 60) evaluations."""
    root = tmp_path_factory.mktemp("video")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        make_tiny_dataset("wsrl/hopper/medium-expert-v0")
        run_dir = root / "run"
        results = train(config("method=rvs_r", *TINY_VIDEO, "eval.video_periodic=true", "eval.every_steps=30"),
                        run_dir)
    return results, run_dir


def test_final_and_periodic_videos_show_the_evaluated_episode(video_run):
    results, run_dir = video_run
    assert sorted(p.name for p in (run_dir / "videos").iterdir()) == ["step30.mp4", "step60.mp4"]  # no temp files
    meta, frames = read_mp4(run_dir / "videos" / "step60.mp4")
    assert frames.shape == (5, 48, 64, 3) and meta["fps"] == pytest.approx(125 / 4, rel=0.01)
    assert frames.std() > 5, "blank frames"
    assert np.abs(np.diff(frames.astype(int), axis=0)).mean() > 0.1, "the robot does not move"
    video = results.video
    assert video["path"] == "videos/step60.mp4" and video["frames"] == 5
    # the recorded episode is the final evaluation's first one (the policy acts at batch 1 there, 2 here)
    assert video["episode_return"] == pytest.approx(results.returns[0], rel=1e-4)


def test_missing_library_or_encoder_is_named_with_the_fix(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    with pytest.raises(VideoUnavailable, match=r"libOSMesa is missing; install .*`apt-get install -y libosmesa6`"):
        check_video("Hopper-v5")
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(VideoUnavailable, match=r"needs imageio-ffmpeg .*pip install -e '\.\[video\]'"):
        check_video("Hopper-v5")


def test_checking_video_changes_nothing_in_this_process(monkeypatch):
    """Probing (and refusing) leaves os.environ as it was: the backend goes to the probe's child only, so no later
    child of this process inherits MUJOCO_GL=osmesa (which fails `import mujoco` where libOSMesa is missing)."""
    for key in ("MUJOCO_GL", "PYOPENGL_PLATFORM"):
        monkeypatch.delenv(key, raising=False)
    before = dict(os.environ)
    try:
        check_video("Hopper-v5")
    except VideoUnavailable:
        pass
    assert dict(os.environ) == before
    assert render_environ()["MUJOCO_GL"] in ("egl", "osmesa") and "MUJOCO_GL" not in os.environ
    monkeypatch.setenv("MUJOCO_GL", "glfw")  # the user's choice is kept, and glfw needs no PYOPENGL_PLATFORM
    assert render_environ() == {"MUJOCO_GL": "glfw"}


def test_a_run_without_video_never_needs_opengl(tiny_dataset, minari_root, tmp_path):
    """MUJOCO_GL=osmesa where OpenGL cannot load (a stand-in PyOpenGL that fails as the real one does without
    libOSMesa): a run with eval.video=false trains and evaluates all the same."""
    broken = tmp_path / "broken"
    (broken / "OpenGL").mkdir(parents=True)
    (broken / "OpenGL" / "__init__.py").write_text(
        "raise AttributeError(\"'NoneType' object has no attribute 'glGetError'\")\n")
    env = child_env(MINARI_DATASETS_PATH=str(minari_root), MUJOCO_GL="osmesa", PYOPENGL_PLATFORM="osmesa")
    env["PYTHONPATH"] = os.pathsep.join([str(broken), env["PYTHONPATH"]])
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "wsrl.train", "wandb.mode=disabled", "generate_if_missing=false",
                           "trainer.max_steps=3", "policy.hidden_dims=[16]", "eval.episodes=1",
                           "trainer.progress_bar=false", f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "results.json").exists()


def test_video_is_refused_before_training_where_rendering_fails(tiny_dataset, minari_root, tmp_path):
    """With a backend that cannot work here (GLFW needs a display), the run stops in one line, before any output."""
    pytest.importorskip("imageio_ffmpeg", reason="the MP4 encoder is checked first: install the video extra")
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYOPENGL_PLATFORM")}
    env |= {"MUJOCO_GL": "glfw", "MINARI_DATASETS_PATH": str(minari_root)}
    proc = subprocess.run([sys.executable, "-m", "wsrl.train", "wandb.mode=disabled", "generate_if_missing=false",
                           "trainer.max_steps=5", "policy.hidden_dims=[16]", *TINY_VIDEO, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: eval.video=true: cannot render Hopper-v5 headless with MUJOCO_GL=glfw (")
    assert "apt-get install -y libosmesa6" in lines[0]
    assert not run_dir.exists()


def test_video_from_a_checkpoint_and_a_clean_exit(video_run, tmp_path):
    _, run_dir = video_run
    cmd = [sys.executable, "-m", "wsrl.evaluation", str(run_dir / "checkpoints" / "last.ckpt"), "--episodes", "1"]
    out = tmp_path / "clip" / "out.mp4"
    proc = subprocess.run([*cmd, "--video", str(out), "--frames", "4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert f"video: {out} (4 frames" in proc.stdout
    assert read_mp4(out)[1].shape == (4, 240, 320, 3)  # the default size
    assert sorted(os.listdir(out.parent)) == ["out.mp4"]
    with pytest.raises(SystemExit, match=r"^error: --video .*out\.avi: the file name must end in \.mp4$"):
        evaluate_cli([*cmd[3:], "--video", str(tmp_path / "out.avi")])
