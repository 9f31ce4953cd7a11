"""The stacked launcher's core: member k of a stacked group trains exactly as its single run (issue 23)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import child_env, make_tiny_dataset
from tests.test_reliability import metrics_rows
from wsrl.core.config import MethodConfig, PolicyConfig, TrainerConfig, register_configs, resolve_env, to_plain
from wsrl.core.module import WeightedBC
from wsrl.core.policies import Dropout
from wsrl.datasets.store import content_hash, read_episodes
from wsrl.datasets.suite import dataset_id
from wsrl.evaluation.scores import eval_seed, evaluate, load_checkpoint
from wsrl.report.collect import collect
from wsrl.running.build import build_run
from wsrl.running.rundir import StopSignals, run_identity
from wsrl.stacked.draws import GroupDraws, MemberData, masked, run_dropout_state
from wsrl.stacked.group import COMPILE_NEEDS_FAST, GroupStopped, build_group
from wsrl.stacked.model import StackedPolicy

CONF = str(Path(__file__).resolve().parents[1] / "conf")
# WSRL_TEST_DEVICE=cuda runs the in-process tests on a GPU (the exact test then measures the GPU's tolerance)
DEVICE = os.environ.get("WSRL_TEST_DEVICE", "cpu")
TINY = ["policy.hidden_dims=[32,32]", "trainer.batch_size=16", "eval.episodes=1", "wandb.mode=disabled",
        "generate_if_missing=false", "trainer.log_every_n_steps=50", "trainer.progress_bar=false",
        "trainer.max_steps=200", "trainer.lr=3e-3", "trainer.checkpoint_every_steps=0", f"device={DEVICE}"]
# two robots (11 and 17 inputs, 3 and 6 actions), bc and rvs_r, the three samplers
MIXED = [["env=hopper_medium_expert", "method=bc", "sampler=uniform", "seed=0"],
         ["env=hopper_medium_expert", "method=rvs_r", "sampler=lds", "seed=1"],
         ["env=halfcheetah_medium", "method=bc", "sampler=lds_sampling", "seed=2"],
         ["env=halfcheetah_medium", "method=rvs_r", "sampler=uniform", "seed=3"]]


def config(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=TINY + list(overrides))


@pytest.fixture
def two_robots(minari_root):
    make_tiny_dataset("wsrl/hopper/medium-expert-v0", "hopper", n_episodes=4, max_steps=50)
    make_tiny_dataset(dataset_id("halfcheetah", "medium"), "halfcheetah", n_episodes=3, max_steps=50, seed=1)


def single_run_parameters(cfg, run_dir: Path) -> list[torch.Tensor]:
    """The policy's parameters after the normal single-run path (build_run + Trainer.fit), on the CPU."""
    with StopSignals() as signals:
        run = build_run(cfg, to_plain(cfg), resolve_env(cfg.env), run_dir, signals)
        run.fit()
    return [p.detach().cpu().clone() for p in run.module.policy.parameters()]


def stacked_parameters(cfgs: list, combine=torch.sum) -> list[list[torch.Tensor]]:
    """Each member's parameters after ``trainer.max_steps`` steps of its group (exact rng), on the CPU."""
    group = build_group(cfgs, [resolve_env(c.env) for c in cfgs], "exact", [str(i) for i in range(len(cfgs))],
                        combine)
    group.fit()
    group.unstack()
    return [[p.detach().cpu().clone() for p in m.module.policy.parameters()] for m in group.members]


def max_gap(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("policy", ["unconditional", "diag_gaussian"])
def test_exact_members_equal_their_single_runs(two_robots, tmp_path, one_thread, policy):
    members = MIXED if policy == "unconditional" else MIXED[1:3]
    cfgs = [config(*m, f"policy={policy}") for m in members]
    singles = [single_run_parameters(c, tmp_path / f"single{i}") for i, c in enumerate(cfgs)]
    moved = [max_gap(s, [p0.detach() for p0 in build_group([c], [resolve_env(c.env)], "exact", ["0"])
                         .members[0].module.policy.parameters()]) for s, c in zip(singles, cfgs, strict=True)]
    assert min(moved) > 1e-2, moved  # the runs trained: equality below is not that of two untrained nets

    stacked = stacked_parameters(cfgs)
    gaps = [max_gap(s, k) for s, k in zip(singles, stacked, strict=True)]
    print(f"{policy} on {DEVICE}: member k - single run k after 200 steps, at most {max(gaps):.1e} ({gaps})")
    assert max(gaps) < 1e-6, gaps

    # the control: a mean over members instead of the sum is another optimisation, and the test sees it
    averaged = stacked_parameters(cfgs, torch.mean)
    assert min(max_gap(s, k) for s, k in zip(singles, averaged, strict=True)) > 1e-4


# CWBC's conservative loss (a varying number of raised rows: loss or uniform draws) beside a member without it; two
# robots, both return inputs
CONSERVATIVE = [["env=hopper_medium_expert", "method=rvs_r", "sampler=cwbc_conservative", "seed=0"],
                ["env=hopper_medium_expert", "method=rvs_r", "sampler=cwbc_conservative", "sampler.weighting=loss",
                 "sampler.name=cwbc_loss_conservative", "seed=1"],
                ["env=halfcheetah_medium", "method=rvs_r", "sampler.conservative_percentile=0.5",
                 "sampler.conservative_weight=2.0", "sampler.name=uniform_conservative", "method.return_input=average",
                 "seed=2"],
                ["env=hopper_medium_expert", "method=rvs_r", "sampler=lds", "seed=3"]]


@pytest.mark.parametrize("policy", ["unconditional", "diag_gaussian"])
def test_exact_conservative_members_equal_their_single_runs(two_robots, tmp_path, one_thread, policy):
    """Each member's raised rows come from its own generator and its padded rows weigh nothing, so a member with the
    conservative loss (and one beside it without) trains as its single run; without the loss it ends elsewhere."""
    cfgs = [config(*m, f"policy={policy}", "trainer.max_steps=100") for m in CONSERVATIVE]
    singles = [single_run_parameters(c, tmp_path / f"single{i}") for i, c in enumerate(cfgs)]
    gaps = [max_gap(s, k) for s, k in zip(singles, stacked_parameters(cfgs), strict=True)]
    print(f"{policy} on {DEVICE}: member k - single run k after 100 steps, at most {max(gaps):.1e} ({gaps})")
    assert max(gaps) < 1e-6, gaps
    # the control: the same members without the conservative loss are other runs, and the test sees it
    dropped = stacked_parameters([config(*m, f"policy={policy}", "trainer.max_steps=100",
                                         "sampler.conservative_percentile=null") for m in CONSERVATIVE[:3]])
    assert min(max_gap(s, k) for s, k in zip(singles[:3], dropped, strict=True)) > 1e-3


def sweep(launcher: str, sweep_dir: Path, minari_root: Path, *extra: str) -> subprocess.CompletedProcess:
    """A 2 x 2 sweep (bc / rvs_r x two seeds) on the tiny hopper set through ``hydra/launcher=<launcher>``."""
    cmd = [sys.executable, "-m", "wsrl.train", "-m", f"hydra/launcher={launcher}", "method=bc,rvs_r", "seed=0,1",
           "generate_if_missing=false", "trainer.max_steps=12", "policy.hidden_dims=[16]", "trainer.batch_size=16",
           "eval.episodes=1", "wandb.mode=disabled", "trainer.progress_bar=false", "trainer.log_every_n_steps=4",
           "device=cpu", f"hydra.sweep.dir={sweep_dir}", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=sweep_dir.parent, timeout=600,
                          env=child_env(MINARI_DATASETS_PATH=str(minari_root), OMP_NUM_THREADS="1"))


def run_files(sweep_dir: Path) -> dict[str, set[str]]:
    """Each run directory (relative) -> the files a run must leave there that it holds."""
    wanted = {"results.json", "config.yaml", "run_config.json", "checkpoints/last.ckpt", "csv/metrics.csv",
              "returns.png"}
    return {str(p.parent.relative_to(sweep_dir)): {w for w in wanted if (p.parent / w).exists()}
            for p in sweep_dir.rglob("results.json")}


def test_stacked_sweep_writes_what_the_basic_launcher_writes(tiny_dataset, minari_root, tmp_path):
    basic, stacked = tmp_path / "basic", tmp_path / "stacked"
    for launcher, where in (("basic", basic), ("stacked", stacked)):
        proc = sweep(launcher, where, minari_root)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert run_files(stacked) == run_files(basic) and len(run_files(basic)) == 4
    assert all(len(files) == 6 for files in run_files(stacked).values()), run_files(stacked)
    for path in basic.rglob("results.json"):
        single = json.loads(path.read_text())
        member = json.loads((stacked / path.relative_to(basic)).read_text())
        assert set(member) - set(single) == {"stacked"} and set(single) <= set(member)
        assert member["stacked"]["size"] == 4 and member["stacked"]["rng"] == "fast"
        assert member["config"] == single["config"]
        assert member["dataset_hash"] == single["dataset_hash"] == content_hash(read_episodes(tiny_dataset))
        assert (stacked / path.relative_to(basic)).with_name("run_config.json").read_text() == \
            path.with_name("run_config.json").read_text()
        # its metrics.csv rows on its single run's steps (training every 4 steps: 3, 7, 11), with the same keys
        rows = [[(r["step"], sorted(set(r) - {"epoch"})) for r in metrics_rows(d)]
                for d in (path.parent, (stacked / path.relative_to(basic)).parent)]
        assert rows[1] == rows[0] and [s for s, keys in rows[0] if "train/loss" in keys] == ["3", "7", "11"], rows
        # its checkpoint alone reproduces its score (the member's own, un-padded weights)
        module, env = load_checkpoint(stacked / path.relative_to(basic).parent / "checkpoints" / "last.ckpt", "cpu")
        again = evaluate(module, env, 1, eval_seed(member["seed"], member["steps"]))
        assert again["returns"] == member["returns"]
    runs, failed = collect(stacked)
    assert len(runs) == 4 and not failed
    # the same command again reports the finished members and trains nothing
    before = {p: p.stat().st_mtime_ns for p in stacked.rglob("results.json")}
    proc = sweep("stacked", stacked, minari_root)
    assert proc.returncode == 0 and proc.stdout.count("already finished") == 4, proc.stdout[-3000:]
    assert {p: p.stat().st_mtime_ns for p in stacked.rglob("results.json")} == before


def trained(group, checkpoint: Path | None = None) -> list[torch.Tensor]:
    group.fit(checkpoint)
    return [p.detach().clone() for p in group.model.parameters()]


@pytest.mark.parametrize("rng", ["exact", "fast"])
def test_stop_and_resume_equals_uninterrupted(two_robots, tmp_path, one_thread, rng):
    cfgs = [config(*m, "trainer.max_steps=40") for m in [*MIXED, CONSERVATIVE[2]]]  # CWBC's varying rows too
    envs, names = [resolve_env(c.env) for c in cfgs], [str(i) for i in range(len(cfgs))]
    whole = trained(build_group(cfgs, envs, rng, names))
    checkpoint = tmp_path / "group.ckpt"
    first = build_group(cfgs, envs, rng, names)
    with pytest.raises(GroupStopped, match="stopped by test: saved step 20"):
        first.fit(checkpoint, lambda: "test" if first.global_step == 20 else None)
    saved = torch.load(checkpoint, weights_only=True)  # parameters, optimizer state, every generator, the step
    assert saved["global_step"] == 20 and saved["state_dict"] and saved["optimizer_states"]
    assert saved["group"]["draws"]["mode"] == rng
    resumed = build_group(cfgs, envs, rng, names)
    assert all(torch.equal(a, b) for a, b in zip(whole, trained(resumed, checkpoint), strict=True))
    assert resumed.starts == [0, 20]
    with pytest.raises(ValueError, match="another group"):
        build_group(cfgs[:2], envs[:2], rng, names[:2]).fit(checkpoint)


@pytest.mark.slow  # compiling takes 20-25 s on two busy cores with an empty inductor cache (4 s with it)
def test_compiled_fast_step_trains_as_the_uncompiled_step(two_robots, one_thread):
    """``hydra.launcher.compile=true``: the fast step compiled (forward and backward) draws the same batches and
    masks and ends within float32 rounding of the uncompiled step's parameters (measured on the CPU: 4.5e-8 apart
    after 40 steps, a conservative member's varying rows included); the loss falls."""
    cfgs = [config(*m, "trainer.max_steps=40", "trainer.log_every_n_steps=1") for m in (MIXED[1], CONSERVATIVE[2])]
    envs, names = [resolve_env(c.env) for c in cfgs], ["0", "1"]
    torch._dynamo.reset()
    parameters, losses = [], []
    for compile in (False, True):
        group, logged = build_group(cfgs, envs, "fast", names, compile=compile), []
        group.fit(log=lambda step, rows, logged=logged: logged.append([r["train/loss"] for r in rows]))
        parameters.append([p.detach().clone() for p in group.model.parameters()])
        losses.append(np.array(logged))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # compiled, not run as it was
    torch._dynamo.reset()
    print(f"compiled vs uncompiled: parameters {max_gap(*parameters):.1e} apart")
    assert max_gap(*parameters) < 1e-5
    assert (losses[1][-5:].mean(0) < losses[1][:5].mean(0) - 0.1).all()
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4, atol=1e-4)


def test_compile_is_refused_with_exact_rng_before_training(tiny_dataset, minari_root, tmp_path):
    proc = sweep("stacked", tmp_path / "sweep", minari_root, "hydra.launcher.rng=exact", "hydra.launcher.compile=true")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == f"error: {COMPILE_NEEDS_FAST}"
    assert not list((tmp_path / "sweep").rglob("*.json"))  # nothing trained or recorded
    with pytest.raises(ValueError, match="needs hydra.launcher.rng=fast"):
        build_group([config(*MIXED[0])], [resolve_env(config(*MIXED[0]).env)], "exact", ["0"], compile=True)


def test_a_non_finite_member_fails_alone(two_robots, one_thread):
    cfgs = [config(*m, "trainer.max_steps=40", "trainer.log_every_n_steps=10") for m in (MIXED[0], MIXED[2])]
    envs = [resolve_env(c.env) for c in cfgs]
    alone = build_group(cfgs[:1], envs[:1], "exact", ["0"])
    alone.fit()
    alone.unstack()
    group = build_group(cfgs, envs, "exact", ["0", "1"])
    hopper_rows = len(group.draws.inputs) - int(group.draws.sizes[1])
    group.draws.inputs[hopper_rows:] = float("nan")  # the halfcheetah member's data turns non-finite
    logged: list[list[dict]] = []
    group.fit(log=lambda step, rows: logged.append(rows))
    assert list(group.failed) == [1] and "loss became nan by step 9" in group.failed[1]  # its first logging step
    assert all(rows[1] == {} for rows in logged) and all(rows[0]["train/loss"] > 0 for rows in logged)
    assert all(torch.isfinite(p).all() for p in group.model.parameters())
    group.unstack()
    policy = [[p.detach() for p in g.members[0].module.policy.parameters()] for g in (group, alone)]
    assert max_gap(*policy) < 1e-6  # the other member trained as it would have without the failed one


def test_precision_is_configuration_identity_and_honoured_by_single_runs(two_robots, tmp_path, one_thread):
    short = [*MIXED[0], "trainer.max_steps=20"]
    default, fast = config(*short), config(*short, "trainer.autocast=bf16", "trainer.matmul_precision=high")
    assert "autocast" not in run_identity(to_plain(default))["trainer"]  # runs made before the setting: unchanged
    assert run_identity(to_plain(fast))["trainer"].items() >= {"autocast": "bf16", "matmul_precision": "high"}.items()
    fp32, bf16 = (single_run_parameters(c, tmp_path / str(i)) for i, c in enumerate((default, fast)))
    assert torch.get_float32_matmul_precision() == "high"
    torch.set_float32_matmul_precision("highest")
    assert 1e-5 < max_gap(fp32, bf16) < 0.05  # bfloat16 matmuls: another run, not a broken one


def test_fast_draws_follow_each_members_distribution():
    """Fast mode's one generator serves every member its own law: uniform over its own dataset, or in proportion to
    its own weights (two weighted members of different sizes share one concatenated search)."""
    rng = np.random.default_rng(0)
    sizes, w_a, w_b = (7, 5, 3), rng.uniform(0.1, 3, 5), np.array([1.0, 0.0, 3.0])
    members = [MemberData(f"s{i}", f"w{i}", np.full((n, 2 + i), float(i)), np.zeros((n, 1 + i)), None, w, seed=i)
               for i, (n, w) in enumerate(zip(sizes, (None, w_a, w_b), strict=True))]
    members[1].loss_weights = w_a  # loss weights gather from their own segment
    draws = GroupDraws(members, 4000, 0.0, "fast", torch.device("cpu"), [], 0)
    idx = draws.indices()
    for k, (n, w) in enumerate(zip(sizes, (np.ones(7), w_a, w_b), strict=True)):
        counts = np.bincount(idx[k].numpy(), minlength=n)
        assert len(counts) == n and counts.sum() == 4000
        np.testing.assert_allclose(counts / 4000, w / w.sum(), atol=0.03)
    inputs, actions, weights = draws.batch()
    assert inputs.shape == (3, 4000, 4) and actions.shape == (3, 4000, 3)
    assert all((inputs[k, :, :2 + k] == k).all() and (inputs[k, :, 2 + k:] == 0).all() for k in range(3))
    assert (weights[0] == 1).all() and (weights[2] == 1).all()
    assert set(np.round(weights[1].numpy(), 5)) <= set(np.round(w_a.astype(np.float32), 5))


@pytest.mark.parametrize("policy", ["unconditional", "diag_gaussian"])
def test_each_members_stacked_log_prob_is_its_own_policys(policy):
    """The stacked model's likelihood of member k is member k's own policy's, for members with fewer inputs and
    actions than the group's largest too (their padded columns and action dimensions hold numbers, masked out)."""
    dims, batch = [(17, 6), (11, 3), (5, 1)], 32
    members = []
    for k, (in_dim, act_dim) in enumerate(dims):
        torch.manual_seed(k)
        cfg = PolicyConfig(name=policy, hidden_dims=[16, 16], log_std_bounds=[-3.0, 1.0])
        member = WeightedBC(in_dim, act_dim, vars(cfg), vars(MethodConfig()), vars(TrainerConfig()), 0.0)
        if policy == "unconditional":
            with torch.no_grad():
                member.policy.log_std.uniform_(-1.5, 0.5)  # a log-std of its own per dimension
        members.append(member)
    model = StackedPolicy(members)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(len(dims), batch, 17, generator=g)
    a = torch.rand(len(dims), batch, 6, generator=g) * 1.9 - 0.95
    with torch.no_grad():
        stacked = model.log_prob(x, a, None)
        for k, (in_dim, act_dim) in enumerate(dims):
            own = members[k].policy.eval().log_prob(x[k, :, :in_dim], a[k, :, :act_dim])
            torch.testing.assert_close(stacked[k], own, rtol=1e-6, atol=1e-6)  # float32 rounding apart


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_bf16_dropout_keeps_h_over_one_minus_p_computed_in_float32(mode):
    """In bfloat16 the kept values are h / (1 - p) computed in float32, then rounded once (as a single run's on a
    GPU), not h times 1 / (1 - p) rounded to bfloat16 (1.109375 for p = 0.1); exact mode's are the single run's."""
    p, dev = 0.1, torch.device(DEVICE)
    data = MemberData("s", "w", np.zeros((8, 2)), np.zeros((8, 1)), None, None, seed=0)
    h = (torch.rand(2, 64, 128, generator=torch.Generator().manual_seed(0)) + 0.1).to(dev, torch.bfloat16)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        states = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            states.append(run_dropout_state(dev, seed))
        draws = GroupDraws([data, data], 8, p, mode, dev, states, 0)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            out = draws.dropout(h) if mode == "exact" else masked(h, draws.masks(64, [128])[0])
        kept = out != 0
        assert out.dtype == torch.bfloat16 and 0.85 < kept.float().mean() < 0.95
        assert torch.equal(out[kept], (h.float() / (1 - p)).to(torch.bfloat16)[kept])
        for k in range(2 if mode == "exact" else 0):  # the very draws and values of member k's single run
            if dev.type == "cpu":
                torch.set_rng_state(states[k])
            else:
                torch.cuda.set_rng_state(states[k], dev)
            assert torch.equal(out[k], Dropout(p).train()(h[k]))


def test_each_member_logs_to_its_own_wandb_run_in_the_sweeps_group(tiny_dataset, minari_root, tmp_path, monkeypatch):
    """As each run of a sweep through the basic launcher: an offline W&B run in the member's run directory, named in
    the sweep's group (its name, ``default``), with the training curves, the dataset's plot and the final score."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    where = tmp_path / "sweep"
    proc = sweep("stacked", where, minari_root, "wandb.mode=offline")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list(where.rglob("results.json"))
    assert len(runs) == 4
    for path in runs:
        (records,) = path.parent.glob("wandb/offline-run-*/run-*.wandb")
        logged = records.read_bytes()
        name = f"default/seed{json.loads(path.read_text())['seed']}"
        keys = [name, "train/loss", "data/returns", "eval/final_normalized_mean"]
        assert [k for k in keys if k.encode() not in logged] == [], path


def test_a_refused_job_fails_alone(tiny_dataset, minari_root, tmp_path):
    where = tmp_path / "sweep"
    proc = sweep("stacked", where, minari_root, "seed=0", "eval.every_steps=0,5", "hydra.sweep.subdir="
                 "${method.name}-every${eval.every_steps}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs, failed = collect(where)
    assert sorted(r.results.method for r in runs) == ["bc", "rvs_r"] and len(failed) == 2
    assert all("evaluates at the end only" in f["error"] and f["dir"].endswith("every5") for f in failed)
