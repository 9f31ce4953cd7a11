"""Policy evaluation: a trained policy's D4RL normalized scores over seeded episodes (run by ``wsrl.episodes``).

``python -m wsrl.evaluation <checkpoint> [--episodes N] [--seed S]`` scores a trained policy from its checkpoint
alone (no dataset, no results file); ``--video out.mp4`` also records its first episode, and ``--targets`` scores an
RvS-R policy at a range of target returns and plots its conditioning curve (``wsrl.conditioning``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wsrl.episodes import ActManyFn, EpisodeWorkers, run_episodes, run_episodes_many  # also public names here

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wsrl.config import ResolvedEnv
    from wsrl.module import WeightedBC


def eval_seed(run_seed: int, step: int) -> int:
    """Evaluation episodes get seeds derived from the run seed and the step, distinct from training's."""
    return 1_000_003 * (run_seed + 1) + step


def evaluate(module: WeightedBC, env: ResolvedEnv, episodes: int, seed: int) -> dict:
    """Run ``episodes`` episodes with the mean action and return raw and normalized scores."""
    was_training = module.training
    module.eval()
    returns, lengths = run_episodes(env.eval_env_id, module.act, episodes, seed)
    module.train(was_training)
    return scores(env, returns, lengths)


def scores(env: ResolvedEnv, returns: np.ndarray, lengths: np.ndarray) -> dict:
    """What ``evaluate`` reports for these episodes."""
    norm = env.normalize(returns)
    return {"normalized_score": {"mean": float(norm.mean()), "std": float(norm.std())},
            "returns": returns.tolist(), "lengths": lengths.tolist()}


def evaluate_many(policies: Sequence[WeightedBC] | ActManyFn, envs: Sequence[ResolvedEnv], episodes: int,
                  seeds: Sequence[int], workers: int | EpisodeWorkers = 0, **kwargs) -> list[dict]:
    """``evaluate`` for a group: member k's ``episodes`` episodes in ``envs[k]`` with seeds ``seeds[k] + i``, all
    members stepped together (``wsrl.episodes.run_episodes_many``, environments over ``workers`` processes, or over
    an ``EpisodeWorkers`` pool kept across evaluations).

    ``policies``: the members' modules (each acts on its own slice, in eval mode, as ``evaluate`` runs it), or one
    ``act_many`` function that acts for all members at once (a stacked model's batched forward). Member k's dict
    equals ``evaluate(module_k, envs[k], episodes, seeds[k])``. ``kwargs`` go to ``run_episodes_many``.
    """
    env_ids = [env.eval_env_id for env in envs]
    if callable(policies):
        results = run_episodes_many(env_ids, policies, episodes, list(seeds), workers, **kwargs)
    else:
        modules = list(policies)
        if len(modules) != len(envs):
            raise ValueError(f"{len(modules)} policies for {len(envs)} environments")
        was_training = [m.training for m in modules]
        for m in modules:
            m.eval()

        def act_many(obs, returns, steps):
            return [m.act(o, r, s) for m, o, r, s in zip(modules, obs, returns, steps, strict=True)]

        try:
            results = run_episodes_many(env_ids, act_many, episodes, list(seeds), workers, **kwargs)
        finally:
            for m, training in zip(modules, was_training, strict=True):
                m.train(training)
    return [scores(env, returns, lengths) for env, (returns, lengths) in zip(envs, results, strict=True)]


def load_checkpoint(path: str | Path, device: str = "auto") -> tuple[WeightedBC, ResolvedEnv]:
    """A trained policy (in eval mode, on ``device``) and the environment it is scored in, from its checkpoint alone:
    ``evaluate(*load_checkpoint(path), episodes, seed)`` needs no dataset and no results file. ``auto`` is CUDA where
    there is one, as in training, so that the machine that trained a run reproduces its scores to the last bit (a
    CPU's float sums differ from a GPU's in the last bits, and the physics carries the difference on)."""
    from wsrl.config import EnvConfig, resolve_device, resolve_env
    from wsrl.module import WeightedBC

    module = WeightedBC.load_from_checkpoint(path, map_location=resolve_device(device)).eval()
    if module.hparams.get("config") is None:
        raise ValueError(f"{path} holds no run config (made by an older wsrl): evaluate it with run_episodes")
    return module, resolve_env(EnvConfig(**module.hparams.config["env"]))


def main(argv: list[str] | None = None) -> dict:
    from wsrl.config import ConfigError, EvalConfig, check_device

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
    try:
        module, env = load_checkpoint(a.checkpoint, a.device)
    except (ValueError, RuntimeError, KeyError) as err:
        sys.exit(f"error: cannot load {a.checkpoint}: {err}")
    if a.video is not None:
        from wsrl.video import VideoUnavailable, check_video

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
        from wsrl.video import record_episode

        size = tuple(defaults.video_size)
        rec = record_episode(env.eval_env_id, module.act, a.seed, a.video, a.frames, defaults.video_fps, size)
        result["video"] = {"path": str(rec.path), "frames": rec.frames, "seconds": rec.seconds}
        print(f"video: {rec.path} ({rec.frames} frames at {rec.fps:.1f} fps of a {rec.length}-step episode, "
              f"normalized return {env.normalize(rec.episode_return):.1f}; {rec.seconds:.1f} s)")
    return result


def conditioning(module: WeightedBC, env: ResolvedEnv, a: argparse.Namespace) -> dict:
    """The CLI's ``--targets``: score the targets, write the PNG and its numbers, print the table."""
    from wsrl import conditioning as c

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
    tmp = numbers.with_name(f".{numbers.name}.tmp")
    tmp.write_text(json.dumps({**curve, "dataset_returns": histogram}, indent=1))
    os.replace(tmp, numbers)
    for target, req, mean, std in zip(curve["targets"], curve["requested"], curve["achieved_mean"],
                                      curve["achieved_std"], strict=True):
        print(f"target {target:8.1f} (normalized {req:6.1f}): achieved {mean:6.1f} +- {std:.1f}")
    print(f"conditioning curve over {a.episodes} episodes per target -> {png}, {numbers}")
    return curve

if __name__ == "__main__":
    main()
