"""``python -m wsrl.evaluation <checkpoint>``: score a trained policy from its checkpoint alone (no dataset, no results
file); ``--video out.mp4`` also records its first episode, and ``--targets`` scores an RvS-R policy at a range of
target returns and plots its conditioning curve."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from wsrl.common.files import write_json_atomic
from wsrl.core.config import ConfigError, EvalConfig, ResolvedEnv, check_device
from wsrl.core.module import WeightedBC
from wsrl.evaluation import conditioning as c
from wsrl.evaluation.scores import evaluate, load_checkpoint
from wsrl.evaluation.video import VideoUnavailable, check_video, record_episode


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked: every refusal is one line before anything is loaded."""
    defaults = EvalConfig()
    p = argparse.ArgumentParser(prog="python -m wsrl.evaluation", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a run's checkpoints/last.ckpt (or any of its checkpoints)")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes, side by side (per target)")
    p.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    p.add_argument("--device", default="auto", help="where the policy runs: auto (CUDA if there is one), cpu, "
                   "cuda or cuda:N")
    p.add_argument("--video", type=Path, metavar="OUT.mp4", help="record the first episode as an MP4 (needs "
                   "libosmesa6, or EGL with a GPU)")
    p.add_argument("--frames", type=int, default=defaults.video_frames, help="frames in the video at most")
    p.add_argument("--targets", type=float, nargs="*", metavar="RETURN", help="RvS-R: score these raw target "
                   "returns and plot achieved against requested; with no values, --points targets from the dataset's "
                   "lowest episode return to 1.2x its highest")
    p.add_argument("--points", type=int, default=8, help="how many default targets")
    p.add_argument("--plot", type=Path, help="the curve's PNG (default: conditioning.png in the run directory); "
                   "its numbers go beside it as .json")
    a = p.parse_args(argv)
    if not a.checkpoint.is_file():
        sys.exit(f"error: {a.checkpoint} is not a file: pass a run's checkpoints/last.ckpt")
    for flag, value, least in (("--episodes", a.episodes, 1), ("--frames", a.frames, 1), ("--points", a.points, 2)):
        if value < least:
            sys.exit(f"error: {flag} {value} must be at least {least}")
    if a.video is not None and a.video.suffix != ".mp4":
        sys.exit(f"error: --video {a.video}: the file name must end in .mp4")
    try:
        check_device(a.device, "--device ")
    except ConfigError as err:
        sys.exit(f"error: {err}")
    return a


def main(argv: list[str] | None = None) -> dict:
    a = parse(argv)
    try:
        module, env = load_checkpoint(a.checkpoint, a.device)
    except (ValueError, RuntimeError, KeyError) as err:
        sys.exit(f"error: cannot load {a.checkpoint}: {err}")
    if a.video is not None:
        try:
            check_video(env.eval_env_id)
        except VideoUnavailable as err:
            sys.exit(f"error: --video: {err}")
    if a.targets is None:
        result = evaluate(module, env, a.episodes, a.seed)
        score = result["normalized_score"]
        print(f"{env.eval_env_id}: normalized score {score['mean']:.1f} +- {score['std']:.1f} over {a.episodes} "
              f"episodes (returns {np.round(result['returns'], 1).tolist()})")
    else:
        result = conditioning(module, env, a)
    if a.video is not None:
        defaults = EvalConfig()
        rec = record_episode(env.eval_env_id, module.act, a.seed, a.video, a.frames, defaults.video_fps,
                             tuple(defaults.video_size))
        result["video"] = {"path": str(rec.path), "frames": rec.frames, "seconds": rec.seconds}
        print(f"video: {rec.path} ({rec.frames} frames at {rec.fps:.1f} fps of a {rec.length}-step episode, "
              f"normalized return {env.normalize(rec.episode_return):.1f}; {rec.seconds:.1f} s)")
    return result


def conditioning(module: WeightedBC, env: ResolvedEnv, a: argparse.Namespace) -> dict:
    """``--targets``: score the targets, write the PNG and its numbers, print the table."""
    try:
        c.require_conditioned(module)
    except c.ConditioningError as err:
        sys.exit(f"error: {a.checkpoint}: {err}")
    histogram = c.dataset_histogram(module, env)
    if not a.targets and histogram is None:
        sys.exit(f"error: {a.checkpoint} stores no dataset returns (an older checkpoint) and {env.dataset_id} is "
                 "not on this machine, so there are no default targets: pass --targets R1 R2 ... (raw returns)")
    targets = np.array(a.targets) if a.targets else c.default_targets(histogram, a.points)
    curve = c.conditioning_curve(module, env, targets, a.episodes, a.seed)
    run_dir = a.checkpoint.parent.parent if a.checkpoint.parent.name == "checkpoints" else a.checkpoint.parent
    png = a.plot or run_dir / "conditioning.png"
    config = module.hparams.config
    title = (f"{config['env']['name']} {config['method']['name']}/{config['sampler']['name']}/"
             f"{config['policy']['name']} seed {config['seed']}, {a.checkpoint.name}")
    c.plot_conditioning(curve, histogram, env, title, png)
    numbers = png.with_suffix(".json")
    write_json_atomic(numbers, {**curve, "dataset_returns": histogram})
    for target, req, mean, std in zip(curve["targets"], curve["requested"], curve["achieved_mean"],
                                      curve["achieved_std"], strict=True):
        print(f"target {target:8.1f} (normalized {req:6.1f}): achieved {mean:6.1f} +- {std:.1f}")
    print(f"conditioning curve over {a.episodes} episodes per target -> {png}, {numbers}")
    return curve


if __name__ == "__main__":
    main()
