"""Rollout videos: one evaluation episode rendered headless with MuJoCo and written as an MP4.

Without a display MuJoCo renders into an OpenGL context of its own: OSMesa (software, Debian package
``libosmesa6``) on a CPU machine, EGL where a GPU is present; ``MUJOCO_GL`` chooses, and a value the user has set
is kept. The choice is given only to the code that renders: the probe's child process gets it in its environment,
``record_episode`` sets it around the episode and puts the environment back, so checking or refusing a video
changes nothing in the calling process (nor in the processes it starts later), and nothing else depends on
OpenGL (``wsrl.import_mujoco``).

Rendering is the cost, not the physics: Hopper-v5 at 320 x 240 renders about 14 frames/s on one idle CPU core (6
with both cores busy), so a video holds at most ``frames`` frames, taken every few steps so that it plays in real
time. The episode itself runs to its end, so its return is the evaluation's. Frames go to ffmpeg through
``imageio-ffmpeg`` (the ``video`` extra, which bundles the binary).
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from wsrl.common.environ import scoped_environ
from wsrl.common.episodes import ActFn
from wsrl.common.files import atomic_path

INSTALL_HINT = "install MuJoCo's software OpenGL with `apt-get install -y libosmesa6`"


class VideoUnavailable(RuntimeError):
    """This machine cannot render or encode a video; the message says what to install."""


@dataclass(frozen=True)
class Recording:
    """One recorded episode: where the MP4 went and what it cost."""

    path: Path
    episode_return: float
    length: int  # environment steps of the episode
    frames: int  # frames in the MP4
    fps: float  # playback rate (the environment's rate divided by the frame stride)
    render_seconds: float  # wall time of the episode with its rendering, encoding excluded
    seconds: float  # wall time of the whole recording, encoding included


def render_environ() -> dict[str, str]:
    """The variables headless rendering runs with: ``MUJOCO_GL`` (the user's, else EGL with a GPU and OSMesa
    without) and, for EGL and OSMesa, the ``PYOPENGL_PLATFORM`` PyOpenGL needs (again the user's if set). Only
    computed: ``check_video`` passes them to its child, ``record_episode`` sets them while it renders."""
    import torch

    backend = os.environ.get("MUJOCO_GL") or ("egl" if torch.cuda.is_available() else "osmesa")
    values = {"MUJOCO_GL": backend}
    if backend in ("egl", "osmesa"):
        values["PYOPENGL_PLATFORM"] = os.environ.get("PYOPENGL_PLATFORM") or backend
    return values


_PROBE = ("import sys, gymnasium as gym\n"
          "env = gym.make(sys.argv[1], render_mode='rgb_array', width=32, height=32)\n"
          "env.reset(seed=0)\nframe = env.render()\nenv.close()\nsys.exit(0 if frame.any() else 3)\n")


def check_video(env_id: str) -> None:
    """Raise VideoUnavailable, with what to install, unless this machine can render ``env_id`` headless and encode
    an MP4. Rendering is tried in a child process, so a failed OpenGL set-up leaves nothing behind in this one."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        raise VideoUnavailable(f"writing MP4 needs imageio-ffmpeg ({err}): `pip install -e '.[video]'`") from err
    render = render_environ()
    backend = render["MUJOCO_GL"]
    if backend == "osmesa" and ctypes.util.find_library("OSMesa") is None:
        raise VideoUnavailable(f"cannot render {env_id} headless: libOSMesa is missing; {INSTALL_HINT} "
                               "(or render with EGL where a GPU is present: MUJOCO_GL=egl)")
    probe = subprocess.run([sys.executable, "-c", _PROBE, env_id], capture_output=True, text=True, timeout=300,
                           env={**os.environ, **render})
    if probe.returncode:
        errors = [line for line in probe.stderr.splitlines() if line[:1].isalpha() and ("Error" in line or
                                                                                        "error" in line)]
        reason = errors[-1] if errors else f"exit status {probe.returncode}"
        raise VideoUnavailable(f"cannot render {env_id} headless with MUJOCO_GL={backend} ({reason}); "
                               f"{INSTALL_HINT} and use MUJOCO_GL=osmesa (the default without a GPU)")


def record_episode(env_id: str, act: ActFn, seed: int, path: Path, frames: int = 250, fps: int = 30,
                   size: tuple[int, int] = (320, 240)) -> Recording:
    """Run one episode reset with ``seed`` (the first episode of an evaluation with that seed) and write at most
    ``frames`` of it, one every round(env fps / ``fps``) steps, to ``path`` as H.264 MP4 (atomically). The renderer's
    OpenGL context is closed before returning, so none is left for the interpreter's shutdown to trip over. The
    rendering variables (``render_environ``) hold only while the episode runs; MuJoCo's OSMesa and EGL modules,
    which set ``PYOPENGL_PLATFORM`` themselves when first imported, are imported inside that stretch too."""
    start = time.time()
    with scoped_environ(**render_environ()):
        images, total, steps, env_fps, stride = _render_episode(env_id, act, seed, frames, fps, size)
    render_seconds = time.time() - start
    write_mp4(path, images, env_fps / stride)
    return Recording(path, total, steps, len(images), env_fps / stride, render_seconds, time.time() - start)


def _render_episode(env_id: str, act: ActFn, seed: int, frames: int, fps: int,
                    size: tuple[int, int]) -> tuple[list[np.ndarray], float, int, float, int]:
    """The frames, return and length of one rendered episode, with the environment's frame rate and the stride."""
    # the model's camera that follows the robot (all three robots have one; without it, a fixed free camera)
    env = gym.make(env_id, render_mode="rgb_array", width=size[0], height=size[1], camera_name="track")
    try:
        env_fps = env.metadata["render_fps"]
        stride = max(1, round(env_fps / fps))
        obs, _ = env.reset(seed=seed)
        images = [env.render()]
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs[None], np.array([total]), np.array([steps]))[0])
            total += float(reward)
            steps += 1
            done = terminated or truncated
            if len(images) < frames and steps % stride == 0:
                images.append(env.render())
    finally:
        env.close()
    return images, total, steps, env_fps, stride


def write_mp4(path: Path, images: list[np.ndarray], fps: float) -> None:
    """H.264 MP4 of RGB frames, written beside ``path`` and renamed into place: never a half-written file."""
    import imageio_ffmpeg

    height, width = images[0].shape[:2]
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (width, height), fps=fps, codec="libx264",
                                             pix_fmt_out="yuv420p", macro_block_size=1, quality=7)
        writer.send(None)  # start ffmpeg
        for image in images:
            writer.send(np.ascontiguousarray(image))
        writer.close()
