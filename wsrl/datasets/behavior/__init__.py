"""Behaviour policies: train an online RL agent per robot, keep actor snapshots, pick medium and expert.

Three commands (``python -m wsrl.datasets.behavior <command> --help``):

- ``train <robot>`` trains a stable-baselines3 learner on the robot's v5 environment (``LEARNERS``; the default per
  robot, ``DEFAULT_LEARNER``, was chosen by pilot runs, see the README). Every ``snapshot_every`` transitions it
  saves the actor (float16, 150-260 kB) and scores it on ``eval_episodes`` episodes with the actions drawn as the
  data will be collected. A run's record, snapshots and agent (networks and optimizers, ``model.zip``) live in
  ``experiments/behavior/<robot>-<learner>-seed<seed>/`` (the shipped datasets' runs are in the repository's
  history, tag ``behavior-history``, not in its working tree); its replay buffer and RNG states of the same step
  live in a cache outside the repository. Every few minutes both are saved; the same command resumes
  exactly, or, with the cache gone (a new machine), warm from the committed agent with an empty replay buffer,
  and the record says so. It stops at ``--steps`` or once the mean of the last three evaluations reaches
  ``--stop-at``.
- ``choose <robot> <run>`` re-scores candidate snapshots on ``--episodes`` (50) episodes: expert is the best of the
  top five, medium the earlier snapshot whose score is nearest ``MEDIUM_RATIO`` of the expert's. It writes the
  package's manifest (every run tried, the figures with their spread and episode count) and ships the snapshots
  the datasets need: all up to medium (medium-replay replays them) and the expert.
- ``plot`` draws the training curves with the chosen snapshots marked.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wsrl.common.episodes import run_episodes
from wsrl.common.figures import pyplot
from wsrl.common.files import write_json_atomic
from wsrl.datasets.suite import ROBOT, ROBOTS, Robot

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "behavior"  # wsrl/assets/behavior: the shipped snapshots
RUNS = Path(__file__).resolve().parents[3] / "experiments" / "behavior"  # committed: records, snapshots, agents
CACHE = Path(os.environ.get("WSRL_CACHE", Path.home() / ".cache" / "wsrl")) / "behavior"  # replay buffers
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # stable-baselines3's clamp
MEDIUM_RATIO = 0.45  # D4RL's medium datasets score 0.41-0.58 of its experts
MEDIUM_RANGE = (0.3, 0.6)  # a medium snapshot outside this fraction of the expert's score is not accepted
WARM_FILL = 10_000  # transitions collected into a new replay buffer before a warm restart updates again
CANDIDATES = 5  # snapshots re-scored on many episodes for each of expert and medium, ranked by training-time score


@dataclass(frozen=True)
class Learner:
    """An online RL algorithm of stable-baselines3 with the settings a behaviour run uses."""

    algorithm: str  # "SAC", "TD3" (stable-baselines3) or "TQC" (sb3-contrib)
    n_envs: int  # environments stepped side by side; one gradient update per vector step
    kwargs: dict = field(default_factory=dict)  # constructor arguments beyond SB3's defaults
    noise: float = 0.0  # TD3: std of the Gaussian action noise it explores with (and the data is collected with)
    description: str = ""


LEARNERS = {
    "sac1": Learner("SAC", 1, {}, 0.0, "stable-baselines3 SAC, default hyperparameters, one update per transition"),
    "sac": Learner("SAC", 4, {}, 0.0, "stable-baselines3 SAC, default hyperparameters, 4 environments side by side "
                   "(one update per 4 transitions, as Minari's own mujoco datasets); actions sampled from the policy"),
    "td3": Learner("TD3", 1, {"learning_rate": 1e-3, "batch_size": 256, "learning_starts": 10_000,
                              "policy_kwargs": {"net_arch": [400, 300]}}, 0.1,
                   "stable-baselines3 TD3 with RL Zoo's MuJoCo settings (net [400, 300], lr 1e-3, batch 256, "
                   "Gaussian action noise 0.1, 10k random steps first); data collected with that same noise"),
    "tqc": Learner("TQC", 4, {}, 0.0, "sb3-contrib TQC, default hyperparameters, 4 environments side by side "
                   "(as Minari's halfcheetah); actions sampled from the policy"),
}
DEFAULT_LEARNER = {"halfcheetah": "td3", "hopper": "sac", "walker2d": "sac"}  # chosen by pilot runs (README)


class SquashedGaussianActor(nn.Module):
    """stable-baselines3's SAC actor (tanh-squashed Gaussian) for batched inference without SB3."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.latent_pi = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, act_dim)
        self.log_std = nn.Linear(hidden, act_dim)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None, deterministic: bool = False):
        latent = self.latent_pi(obs)
        mean = self.mu(latent)
        if deterministic:
            return torch.tanh(mean)
        std = self.log_std(latent).clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return torch.tanh(mean + std * noise)


class NoisyDeterministicActor(nn.Module):
    """stable-baselines3's TD3 actor (tanh MLP) with the Gaussian noise it explored with, clipped to [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (400, 300), noise: float = 0.1) -> None:
        super().__init__()
        sizes, layers = (obs_dim, *hidden), []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.mu = nn.Sequential(*layers, nn.Linear(sizes[-1], act_dim), nn.Tanh())
        self.noise = noise

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None, deterministic: bool = False):
        action = self.mu(obs)
        if deterministic:
            return action
        noise = torch.randn(action.shape, generator=generator, dtype=action.dtype, device=action.device)
        return (action + self.noise * noise).clamp(-1.0, 1.0)


Actor = SquashedGaussianActor | NoisyDeterministicActor


def save_snapshot(actor_state: dict[str, torch.Tensor], learner: str, path: Path) -> None:
    """An actor's weights in float16 (half the size; the policy is the rounded one, evaluated as stored)."""
    tmp = path.with_suffix(".tmp")
    torch.save({"learner": learner, "noise": LEARNERS[learner].noise,
                "state": {k: v.detach().to(torch.float16).clone() for k, v in actor_state.items()}}, tmp)
    os.replace(tmp, path)


def load_actor(path: Path) -> Actor:
    """The data-collection policy stored in a snapshot (``act`` samples actions as the datasets are made)."""
    snap = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v.float() for k, v in snap["state"].items()}
    if LEARNERS[snap["learner"]].algorithm in ("SAC", "TQC"):  # the same squashed Gaussian actor
        hidden, obs_dim = state["latent_pi.0.weight"].shape
        actor: Actor = SquashedGaussianActor(obs_dim, state["mu.weight"].shape[0], hidden)
    else:
        weights = [state[k] for k in sorted(state) if k.endswith("weight")]
        actor = NoisyDeterministicActor(weights[0].shape[1], weights[-1].shape[0],
                                        tuple(w.shape[0] for w in weights[:-1]), snap["noise"])
    actor.load_state_dict(state)
    return actor.eval()


def evaluate_snapshot(path: Path, robot: Robot, n_episodes: int, seed: int) -> np.ndarray:
    """Returns of ``n_episodes`` episodes with actions drawn from the snapshot as the datasets are made."""
    actor = load_actor(path)
    gen = torch.Generator().manual_seed(seed)

    def act(obs, _returns, _steps):
        return actor.act(torch.as_tensor(obs, dtype=torch.float32), gen).numpy()

    returns, _ = run_episodes(robot.env_id, act, n_episodes, seed)
    return returns


def algorithm_class(learner: Learner):
    """The stable-baselines3 (or sb3-contrib) class of a learner."""
    if learner.algorithm == "TQC":
        try:
            import sb3_contrib
        except ImportError:
            sys.exit("error: the TQC learner needs sb3-contrib: pip install sb3-contrib")
        return sb3_contrib.TQC
    import stable_baselines3

    return getattr(stable_baselines3, learner.algorithm)


def make_agent(robot: Robot, learner: Learner, seed: int, buffer_size: int):
    """A new agent for ``learner`` on ``robot``'s environment (``n_envs`` side by side)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise

    env = make_vec_env(robot.env_id, n_envs=learner.n_envs, seed=seed)
    act_dim = env.action_space.shape[0]
    noise = NormalActionNoise(np.zeros(act_dim), learner.noise * np.ones(act_dim)) if learner.noise else None
    return algorithm_class(learner)("MlpPolicy", env, seed=seed, device="cpu", verbose=0, action_noise=noise,
                                    buffer_size=buffer_size, **learner.kwargs)


def pilot(robot_name: str, learners: list[str], transitions: int) -> dict[str, float]:
    """CPU seconds per 1000 transitions of each learner, in this process (one thread), after ``transitions // 10``
    of warm-up with updates on from the start. Process time, so that other jobs on the machine do not count."""
    torch.set_num_threads(1)
    costs = {}
    for name in learners:
        agent = make_agent(ROBOT[robot_name], LEARNERS[name], 0, 100_000)
        agent.learning_starts = 0
        agent.learn(transitions // 10)
        start = time.process_time()
        agent.learn(transitions, reset_num_timesteps=False)
        costs[name] = 1000 * (time.process_time() - start) / transitions
        print(f"{robot_name} {name}: {costs[name]:.2f} CPU s per 1000 transitions", flush=True)
    return costs


def run_dir(robot: str, learner: str, seed: int, runs: Path = RUNS) -> Path:
    return runs / f"{robot}-{learner}-seed{seed}"


def _score(path: Path, robot: Robot, episodes: int, seed: int) -> dict:
    norm = robot.normalize(evaluate_snapshot(path, robot, episodes, seed))
    return {"normalized_mean": float(norm.mean()), "normalized_std": float(norm.std()), "episodes": episodes}


def train_behavior(robot_name: str, learner_name: str, steps: int, seed: int, stop_at: float | None,
                   snapshot_every: int = 10_000, eval_episodes: int = 10, checkpoint_minutes: float = 3.0,
                   runs: Path = RUNS, cache: Path = CACHE) -> dict:
    """Train (or resume) one behaviour run; returns its record (``run.json`` in the run directory).

    The run directory (in ``runs``, committed) holds the record, the snapshots and the agent without its replay
    buffer (``model.zip``: networks and optimizers); the cache holds the replay buffer and RNG states of the same
    step. Both present: an exact resume. Only the committed part: a warm restart with an empty replay buffer.
    """
    import gymnasium as gym
    import stable_baselines3
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)  # one process per core
    robot, learner = ROBOT[robot_name], LEARNERS[learner_name]
    algo = algorithm_class(learner)
    out = run_dir(robot_name, learner_name, seed, runs)
    scratch = cache / out.name
    snaps = out / "snapshots"
    snaps.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    record_path, ckpt, buffer, rng = out / "run.json", out / "model.zip", scratch / "replay.pkl", scratch / "rng.pkl"
    record = json.loads(record_path.read_text()) if record_path.exists() else {
        "robot": robot_name, "env_id": robot.env_id, "learner": learner_name, "algorithm": learner.description,
        "seed": seed, "snapshot_every": snapshot_every, "eval_episodes": eval_episodes,
        "eval_protocol": "actions drawn as in the data, episodes seeded 10_000 + step",
        "versions": {"stable_baselines3": stable_baselines3.__version__, "gymnasium": gym.__version__,
                     "torch": torch.__version__, "python": platform.python_version()},
        "curve": [], "wall_seconds": 0.0, "restarts": [],
    }
    record.update(budget_steps=steps, stop_at=stop_at)
    model = make_agent(robot, learner, seed, min(steps, 1_000_000))  # the checkpoint, if any, replaces its state
    if ckpt.exists():
        model = algo.load(ckpt, env=model.env, device="cpu", action_noise=model.action_noise)
        states = pickle.loads(rng.read_bytes()) if rng.exists() else {}
        if buffer.exists() and states.get("step") == model.num_timesteps:
            model.load_replay_buffer(buffer)
            random.setstate(states["python"])
            np.random.set_state(states["numpy"])
            torch.set_rng_state(states["torch"])
            print(f"[{robot_name}] resuming at step {model.num_timesteps} from {out}", flush=True)
        else:
            record["restarts"].append({"step": model.num_timesteps, "reason": f"no replay buffer of this step in "
                                       f"{scratch}: warm restart from model.zip (networks and optimizers), new buffer "
                                       f"filled for {WARM_FILL} steps before updates resume"})
            model.learning_starts = model.num_timesteps + WARM_FILL
            print(f"[{robot_name}] warm restart at step {model.num_timesteps}: the replay buffer starts empty",
                  flush=True)
        record["curve"] = [e for e in record["curve"] if e["step"] <= model.num_timesteps]  # redo what was lost
    elif record["curve"]:
        sys.exit(f"error: {out} records a run but holds no model.zip to continue it: delete {out} to start over")
    start, wall0, last_save = time.time(), record["wall_seconds"], time.time()

    def save_checkpoint() -> None:
        model.save(out / "model.tmp.zip")
        model.save_replay_buffer(scratch / "replay.tmp.pkl")
        (scratch / "rng.tmp").write_bytes(pickle.dumps({
            "step": model.num_timesteps, "python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}))
        os.replace(scratch / "replay.tmp.pkl", buffer)
        os.replace(scratch / "rng.tmp", rng)
        os.replace(out / "model.tmp.zip", ckpt)
        record["checkpoint_step"] = model.num_timesteps
        record["wall_seconds"] = wall0 + time.time() - start
        write_json_atomic(record_path, record)

    class Snapshots(BaseCallback):
        def _on_step(self) -> bool:
            nonlocal last_save
            step = self.num_timesteps
            if step % snapshot_every < learner.n_envs:  # crossed a multiple of snapshot_every this vector step
                step -= step % snapshot_every
                path = snaps / f"step_{step:07d}.pt"
                save_snapshot(model.actor.state_dict(), learner_name, path)
                entry = {"step": step, "snapshot": path.name, **_score(path, robot, eval_episodes, 10_000 + step)}
                record["curve"].append(entry)
                record["wall_seconds"] = wall0 + time.time() - start
                record["steps_done"] = step
                write_json_atomic(record_path, record)
                print(f"[{robot_name} {learner_name}] step {step}: normalized {entry['normalized_mean']:.1f} +- "
                      f"{entry['normalized_std']:.1f} ({record['wall_seconds'] / 60:.0f} min)", flush=True)
                recent = [e["normalized_mean"] for e in record["curve"][-3:]]
                if stop_at is not None and len(recent) == 3 and np.mean(recent) >= stop_at:
                    record["stopped"] = f"mean of the last 3 evaluations {np.mean(recent):.1f} >= {stop_at}"
                    return False
            if time.time() - last_save > 60 * checkpoint_minutes:
                save_checkpoint()
                last_save = time.time()
            return True

    if model.num_timesteps < steps and "stopped" not in record:
        model.learn(total_timesteps=steps - model.num_timesteps, callback=Snapshots(), reset_num_timesteps=False)
        save_checkpoint()
    return record


def _tried_runs(manifest: dict) -> list[dict]:
    """The runs a shipped manifest lists; one from before run records (the first suite) is itself one run."""
    if not manifest or "runs" in manifest:
        return manifest.get("runs", [])
    return [{"run": f"first suite: {manifest['robot']}-{manifest.get('learner', 'sac')}-seed{manifest['seed']}",
             "learner": manifest.get("learner", "sac"), "seed": manifest["seed"],
             "steps_done": manifest.get("steps_done"), "wall_seconds": manifest.get("wall_seconds"),
             "best_normalized": max(e["normalized_mean"] for e in manifest["curve"]),
             "note": "replaced: " + manifest.get("note", manifest.get("algorithm", ""))}]


def choose(robot_name: str, run: Path, episodes: int = 50, note: str = "", assets: Path = ASSETS) -> dict:
    """Score candidate snapshots of ``run`` on ``episodes`` episodes, pick medium and expert, ship them."""
    robot = ROBOT[robot_name]
    record = json.loads((run / "run.json").read_text())
    curve = record["curve"]
    scored: dict[int, dict] = {}

    def score(entry: dict) -> float:
        if entry["step"] not in scored:
            scored[entry["step"]] = _score(run / "snapshots" / entry["snapshot"], robot, episodes,
                                           20_000 + entry["step"])
            print(f"[{robot_name}] step {entry['step']}: {scored[entry['step']]['normalized_mean']:.1f} "
                  f"over {episodes} episodes", flush=True)
        return scored[entry["step"]]["normalized_mean"]

    top = sorted(curve, key=lambda e: e["normalized_mean"], reverse=True)[:CANDIDATES]
    expert = max(top, key=score)
    goal = MEDIUM_RATIO * score(expert)
    before = [e for e in curve if e["step"] < expert["step"]]
    near = sorted(before, key=lambda e: abs(e["normalized_mean"] - goal))[:CANDIDATES]
    medium = min(near, key=lambda e: abs(score(e) - goal))
    ratio = score(medium) / score(expert)
    if not MEDIUM_RANGE[0] <= ratio <= MEDIUM_RANGE[1]:
        print(f"warning: medium scores {ratio:.2f} of expert, outside {MEDIUM_RANGE}", file=sys.stderr)
    path = assets / robot_name / "manifest.json"
    runs = [r for r in _tried_runs(json.loads(path.read_text()) if path.exists() else {}) if r["run"] != run.name]
    runs.append({"run": run.name, "learner": record["learner"], "seed": record["seed"],
                 "steps_done": record.get("steps_done"), "wall_seconds": record["wall_seconds"],
                 "best_normalized": max(e["normalized_mean"] for e in curve), "kept": True, "note": note})
    for r in runs:
        r["kept"] = r["run"] == run.name
    manifest = {**{k: v for k, v in record.items() if k not in ("curve",)}, "curve": curve,
                "chosen": {"medium": medium["step"], "expert": expert["step"]},
                "chosen_scores": {"medium": scored[medium["step"]], "expert": scored[expert["step"]],
                                  "medium_to_expert": ratio, "candidates": {str(k): v for k, v in scored.items()}},
                "runs": runs}
    snap_out = assets / robot_name / "snapshots"
    tmp = snap_out.with_name("snapshots.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for e in curve:
        if e["step"] <= medium["step"] or e["step"] == expert["step"]:
            shutil.copy2(run / "snapshots" / e["snapshot"], tmp / e["snapshot"])
    shutil.rmtree(snap_out, ignore_errors=True)
    os.replace(tmp, snap_out)
    write_json_atomic(path, manifest)
    print(f"[{robot_name}] medium: step {medium['step']} ({score(medium):.1f}), expert: step {expert['step']} "
          f"({score(expert):.1f}), ratio {ratio:.2f}; {path}", flush=True)
    return manifest


def plot_curves(png: Path, assets: Path = ASSETS, runs: Path | None = None) -> None:
    """One panel per robot: the normalized score of each snapshot of the shipped run, with the chosen medium and
    expert marked; with ``runs``, every run recorded there instead (runs in progress included)."""
    plt = pyplot()

    paths = sorted(runs.glob("*/run.json")) if runs else [assets / r / "manifest.json" for r in ROBOTS]
    records = [json.loads(path.read_text()) for path in paths if path.exists()]
    fig, axes = plt.subplots(1, len(ROBOTS), figsize=(4 * len(ROBOTS), 3.2), sharey=True)
    for ax, robot in zip(axes, ROBOTS, strict=True):
        for m in (m for m in records if m["robot"] == robot):
            steps = np.array([e["step"] for e in m["curve"]]) / 1000
            mean = np.array([e["normalized_mean"] for e in m["curve"]])
            std = np.array([e["normalized_std"] for e in m["curve"]])
            line, = ax.plot(steps, mean, label=f"{m['learner'].upper()} seed {m['seed']} ({m['eval_episodes']} ep.)")
            ax.fill_between(steps, mean - std, mean + std, alpha=0.25, color=line.get_color())
            for name, color in (("medium", "tab:orange"), ("expert", "tab:green")) if "chosen" in m else ():
                step = m["chosen"][name]
                s = m.get("chosen_scores", {}).get(name) or {**next(e for e in m["curve"] if e["step"] == step),
                                                              "episodes": m["eval_episodes"]}  # chosen before 50
                ax.errorbar(step / 1000, s["normalized_mean"], s["normalized_std"], fmt="o", color=color,
                            label=f"{name} ({s['episodes']} episodes)")
        ax.set(title=f"{robot} ({ROBOT[robot].env_id})", xlabel="transitions (k)")
        if ax.lines:
            ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("D4RL normalized score")
    fig.tight_layout()
    tmp = png.with_name(png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, png)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m wsrl.datasets.behavior", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or resume) a behaviour run")
    t.add_argument("robot", choices=ROBOTS)
    t.add_argument("--learner", choices=LEARNERS, help="default: the robot's in DEFAULT_LEARNER")
    t.add_argument("--steps", type=int, default=2_000_000, help="environment transitions at most")
    t.add_argument("--stop-at", type=float, help="stop once the last 3 evaluations average this normalized score")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--snapshot-every", type=int, default=10_000, help="transitions between actor snapshots")
    t.add_argument("--eval-episodes", type=int, default=10, help="episodes per snapshot evaluation")
    t.add_argument("--checkpoint-minutes", type=float, default=3.0, help="minutes between resumable checkpoints")
    t.add_argument("--runs", type=Path, default=RUNS, help="run records, snapshots and agents (committed)")
    t.add_argument("--cache", type=Path, default=CACHE, help="replay buffers and RNG states (not committed)")
    c = sub.add_parser("choose", help="pick medium and expert from a run and ship them")
    c.add_argument("robot", choices=ROBOTS)
    c.add_argument("run", type=Path, help="the run's directory (in --runs of train)")
    c.add_argument("--episodes", type=int, default=50, help="episodes per candidate")
    c.add_argument("--note", default="", help="why this run is kept, for the manifest")
    c.add_argument("--out", type=Path, default=ASSETS, help="the shipped snapshots and manifests")
    q = sub.add_parser("pilot", help="CPU cost per 1000 transitions of candidate learners, to choose one")
    q.add_argument("robot", choices=ROBOTS)
    q.add_argument("--learners", default="sac,tqc,td3,sac1", help="comma-separated names from LEARNERS")
    q.add_argument("--transitions", type=int, default=2000, help="timed transitions per learner")
    g = sub.add_parser("plot", help="draw the behaviour curves")
    g.add_argument("--png", type=Path, default=Path("behavior_curves.png"))
    g.add_argument("--out", type=Path, default=ASSETS, help="the shipped manifests to draw")
    g.add_argument("--runs", type=Path, help="draw every run recorded here instead, e.g. experiments/behavior")
    a = p.parse_args(argv)
    if a.command == "pilot":
        pilot(a.robot, a.learners.split(","), a.transitions)
    elif a.command == "plot":
        plot_curves(a.png, a.out, a.runs)
    elif a.command == "choose":
        if not (a.run / "run.json").is_file():
            sys.exit(f"error: {a.run} holds no run.json: pass a directory made by `train`")
        choose(a.robot, a.run, a.episodes, a.note, a.out)
    else:
        train_behavior(a.robot, a.learner or DEFAULT_LEARNER[a.robot], a.steps, a.seed, a.stop_at,
                       a.snapshot_every, a.eval_episodes, a.checkpoint_minutes, a.runs, a.cache)


if __name__ == "__main__":
    main()
