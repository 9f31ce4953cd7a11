"""Configuration: every option composes and validates; bad values fail early with a message naming the key."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from tests.conftest import ROOT, child_env
from wsrl.core.config import ConfigError, TrainConfig, register_configs, resolve_env, to_plain
from wsrl.core.methods import conditions_on_return
from wsrl.core.validation import validate
from wsrl.core.weighting import sampler_name
from wsrl.datasets.suite import ROBOT
from wsrl.running.rundir import IDENTITY, check_same_run, run_identity

CONF = ROOT / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def hydra_conf():
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def config(*overrides: str):
    return compose("train", overrides=list(overrides))


def test_every_combination_composes_and_validates(hydra_conf):
    envs, methods, samplers, policies = (options(g) for g in ("env", "method", "sampler", "policy"))
    assert len(envs) == 9 and set(methods) == {"bc", "rvs_r"}
    assert set(samplers) == {"uniform", "lds", "lds_sampling", "cwbc_conservative", *(f"{scheme}{place}" for scheme in (
        "topk", "rw", "aw", "cwbc", "lds_rw") for place in ("", "_loss"))}
    assert set(policies) == {"unconditional", "diag_gaussian"}
    # every env, method and policy; every sampler on one env (all 468 combinations would take 100 s)
    combinations = [*itertools.product(envs, methods, ["uniform"], policies),
                    *itertools.product(envs[:1], methods, samplers, policies)]
    for env, method, sampler, policy in combinations:
        cfg = config(f"env={env}", f"method={method}", f"sampler={sampler}", f"policy={policy}")
        if sampler == "cwbc_conservative" and method == "bc":  # the conservative loss raises the return input
            with pytest.raises(ConfigError, match="needs method=rvs_r"):
                validate(cfg)
            continue
        validate(cfg)
        assert (cfg.env.name, cfg.method.name, cfg.sampler.name, cfg.policy.name) == (env, method, sampler, policy)
        assert conditions_on_return(cfg.method) == (method == "rvs_r")
        assert cfg.sampler.weighting == {"uniform": "none", "lds": "loss", "lds_sampling": "sampling"}.get(
            sampler, "loss" if sampler.endswith("_loss") else "sampling")
        assert sampler_name(cfg.sampler.scheme, cfg.sampler.weighting) == sampler.removesuffix("_conservative")
        resolved = resolve_env(cfg.env)
        robot = ROBOT[cfg.env.robot]
        assert resolved.eval_env_id == robot.env_id
        assert (resolved.ref_min_score, resolved.ref_max_score) == (robot.ref_min_score, robot.ref_max_score)
        changed = cfg.env.robot == "halfcheetah" or (cfg.env.robot == "walker2d" and cfg.env.quality != "expert")
        # issue 30's new data: every halfcheetah set, and walker2d's but its expert
        assert resolved.dataset_id == f"wsrl/{cfg.env.robot}/{cfg.env.quality.replace('_', '-')}-v{int(changed)}"
        assert isinstance(OmegaConf.to_object(cfg), TrainConfig)


def test_defaults_are_the_papers(hydra_conf):
    cfg = config()
    assert list(cfg.policy.hidden_dims) == [1024, 1024] and cfg.policy.dropout == 0.1
    assert (cfg.trainer.batch_size, cfg.trainer.lr, cfg.trainer.weight_decay) == (512, 5e-4, 1e-4)
    assert (cfg.method.gamma, cfg.sampler.kernel, cfg.sampler.ks, cfg.sampler.sigma) == (1.0, "gaussian", 5, 2.0)
    assert config("policy=diag_gaussian").policy.dropout == 0.0
    quick = config("experiment=quick")
    assert quick.name == "quick" and quick.env.size == "small" and quick.trainer.max_steps == 10000
    assert resolve_env(quick.env).dataset_id == "wsrl/hopper/medium-expert-small-v0"


@pytest.mark.parametrize("preset", options("experiment"))
def test_every_experiment_preset_composes_with_each_value_of_its_sweep(hydra_conf, preset):
    """Each preset, and each job its sweep would launch, composes and validates; the CPU profiles keep the grid
    of the preset they shrink (with at least 5 seeds), on the full-size suite with 10 evaluation episodes, and
    Table 1's and Table 4's are Table 2's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert set(options("experiment")) == {"quick", "table1", "table1_cpu", "table2", "table2_cpu", "table4",
                                          "table4_cpu", "table5", "table5_cpu"}
    cfg = compose("train", overrides=[f"experiment={preset}"], return_hydra_config=True)
    assert cfg.name == preset
    params = dict(cfg.hydra.sweeper.params or {})
    assert bool(params) == preset.startswith("table")
    for sweep in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()]):
        key = sweep.get_key_element()
        for value in sweep.sweep_string_iterator() if sweep.is_sweep_override() else [sweep.value()]:
            job = compose("train", overrides=[f"experiment={preset}", f"{key}={value}"])
            validate(job)
            assert str(OmegaConf.select(job, key if key == "seed" or "." in key else f"{key}.name")) == value
    if preset.endswith("_cpu"):
        full = compose("train", overrides=[f"experiment={preset.removesuffix('_cpu')}"], return_hydra_config=True)
        assert {k: v for k, v in full.hydra.sweeper.params.items() if k != "seed"} == \
            {k: v for k, v in params.items() if k != "seed"}
        assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.env.size == "full"
        assert cfg.eval.episodes == 10 and len(params["seed"].split(",")) >= 5
    if preset.startswith(("table4", "table5")) or preset == "table1_cpu":  # Table 2's profile on another grid
        profile = compose("train", overrides=[f"experiment=table2{preset.removeprefix(preset[:6])}"])
        assert (cfg.trainer, cfg.policy, cfg.eval) == (profile.trainer, profile.policy, profile.eval)
    if preset.startswith(("table4", "table5")):
        dirs = {(job.hydra.sweep.subdir, job.hydra.run.dir) for job in (compose(
            "train", overrides=[f"experiment={preset}", f"sampler.target={t}"], return_hydra_config=True)
            for t in ("trajectory_return", "return_to_go", "action"))}
        assert len({sweep for sweep, _ in dirs}) == len({run for _, run in dirs}) == 3  # one directory per label
    validate(compose("train", overrides=[f"experiment={preset}"]))


@pytest.mark.parametrize("override,message", [
    ("trainer.batch_size=-1", "trainer.batch_size=-1 must be > 0"),
    ("trainer.batch_size=0", "trainer.batch_size=0 must be > 0"),
    ("sampler.bins=0", "sampler.bins=0 must be > 0"),
    ("sampler.ks=4", "sampler.ks=4 must be an odd integer"),
    ("sampler.ks=0", "sampler.ks=0 must be an odd integer"),
    ("policy.dropout=1.0", r"policy.dropout=1.0 must be in \[0, 1\)"),
    ("policy.dropout=-0.1", r"policy.dropout=-0.1 must be in \[0, 1\)"),
    ("method.gamma=0", r"method.gamma=0.0 must be in \(0, 1\]"),
    ("policy.hidden_dims=[]", "policy.hidden_dims"),
    ("policy.log_std_bounds=[2,-5]", "must be increasing"),
    ("sampler.clip_max=0.5", "sampler.clip_max=0.5 must be > 1"),
    ("device=gpu", "device=gpu must be auto, cpu, cuda or cuda:N"),
    ("sampler.top_fraction=0", r"sampler.top_fraction=0.0 must be in \(0, 1\]"),
    ("sampler.alpha=0", "sampler.alpha=0.0 must be > 0"),
    ("sampler.cwbc_lambda=-1", "sampler.cwbc_lambda=-1.0 must be >= 0"),
    ("sampler.cwbc_percentile=90", r"sampler.cwbc_percentile=90.0 must be in \[0, 1\]"),
    ("sampler.aw_ridge=-0.5", "sampler.aw_ridge=-0.5 must be >= 0"),
    ("eval.video_frames=0", "eval.video_frames=0 must be > 0"),
    ("eval.video_fps=-5", "eval.video_fps=-5 must be > 0"),
    ("eval.video_size=[321,240]", r"eval.video_size=\[321, 240\] must be \[width, height\], both even"),
    ("eval.video_size=[320]", r"eval.video_size=\[320\] must be \[width, height\]"),
    ("eval.video_periodic=true", "eval.video_periodic=true needs eval.video=true"),
    ("eval.conditioning_points=1", "eval.conditioning_points=1 must be 0 \\(off\\) or >= 2"),
])
def test_out_of_range_values_fail_validation(hydra_conf, override, message):
    cfg = config(override)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


@pytest.mark.parametrize("overrides,fix", [(["sampler=rw", "sampler.weighting=loss"], "use sampler=rw_loss"),
                                           (["sampler=lds", "sampler.weighting=sampling"], "use sampler=lds_sampling"),
                                           (["sampler=topk_loss", "sampler.scheme=cwbc"], "use sampler=cwbc_loss"),
                                           (["sampler=cwbc", "method=rvs_r", "sampler.conservative_percentile=0.9"],
                                            "use sampler=cwbc_conservative")])
def test_a_sampler_name_of_another_scheme_or_placement_is_refused(hydra_conf, overrides, fix):
    """The run directory and the report's column come from sampler.name: it must not name another sampler."""
    with pytest.raises(ConfigError, match=f"names a.*{fix}"):
        validate(config(*overrides))
    validate(config(*overrides, "sampler.name=my_own"))  # a name of one's own is the user's to choose


def test_d4rl_source_with_a_file_validates(hydra_conf, tmp_path):
    cfg = config("env.source=d4rl", f"env.d4rl_file={tmp_path / 'hopper_medium_expert-v2.hdf5'}")
    validate(cfg)
    resolved = resolve_env(cfg.env)
    assert resolved.dataset_id == "d4rl/hopper/medium-expert-v2"
    assert resolved.eval_env_id == ROBOT["hopper"].d4rl_env_id


def test_unknown_option_key_or_type_fails_at_composition(hydra_conf):
    with pytest.raises(MissingConfigException, match="hopper_random"):
        config("env=hopper_random")
    with pytest.raises(ConfigCompositionException) as err:
        config("trainer.max_stepz=1")
    assert "Key 'max_stepz' not in 'TrainerConfig'" in str(err.value.__cause__)
    with pytest.raises(ConfigCompositionException) as err:
        config("trainer.batch_size=abc")
    assert isinstance(err.value.__cause__, ValidationError)
    assert "batch_size" in str(err.value.__cause__)


def test_the_method_alone_says_whether_the_policy_takes_the_return_input(hydra_conf):
    """``method=bc method.condition_on_return=true`` said one thing twice, and differently: it cannot be asked."""
    with pytest.raises(ConfigCompositionException) as err:
        config("method=bc", "method.condition_on_return=true")
    assert "Key 'condition_on_return' not in 'MethodConfig'" in str(err.value.__cause__)


@pytest.mark.parametrize("method,flag,same", [("rvs_r", True, True), ("bc", False, True), ("bc", True, False)])
def test_a_run_directory_holding_condition_on_return_resumes_where_it_agrees(hydra_conf, tmp_path, method, flag,
                                                                              same):
    """A run directory recorded while the return input was a switch of its own: the same run where the switch said
    what the method says, refused in one line naming the file and the fix where it did not."""
    plain = to_plain(config(f"method={method}"))
    old = run_identity(plain)
    old["method"] = {**old["method"], "condition_on_return": flag}
    (tmp_path / IDENTITY).write_text(json.dumps(old))
    if same:
        assert check_same_run(plain, tmp_path, "wsrl/hopper/medium-expert-v0") is None
        return
    with pytest.raises(ConfigError, match=f"{tmp_path / IDENTITY} holds method.name=bc with method.condition_on_return"
                                          "=True, which this version cannot make.*pass name=<new name>"):
        check_same_run(plain, tmp_path, "wsrl/hopper/medium-expert-v0")


@pytest.mark.parametrize("override,message", [
    ("sampler.kernel=box", "Invalid value 'box', expected one of [gaussian, triangular, laplace]"),
    ("sampler.reweight=log", "Invalid value 'log', expected one of [sqrt_inv, inverse]"),
    ("env.robot=ant", "Invalid value 'ant', expected one of [halfcheetah, hopper, walker2d]"),
    ("env.source=ftp", "expected one of [generated, d4rl, minari]"),
    ("wandb.mode=live", "expected one of [offline, online, disabled]"),
])
def test_a_value_outside_a_fields_choices_fails_at_composition(hydra_conf, override, message):
    """Choice fields are enums of the schema: OmegaConf refuses another value and names the valid ones."""
    with pytest.raises(ConfigCompositionException) as err:
        config(override)
    assert message in str(err.value.__cause__)


def test_cli_refuses_a_bad_value_with_one_error_line(tmp_path, minari_root):
    env = child_env(MINARI_DATASETS_PATH=str(minari_root))
    proc = subprocess.run([sys.executable, "-m", "wsrl.train", "trainer.batch_size=-1", "wandb.mode=disabled"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [lines[-1]] == ["error: trainer.batch_size=-1 must be > 0"], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists()  # not even an empty run directory


@pytest.mark.parametrize("args,message", [
    (["trainer.max_stepz=1"], "error: Could not override 'trainer.max_stepz': Key 'max_stepz' not in 'TrainerConfig'"),
    (["trainer.batch_size=abc"], "error: Error merging override trainer.batch_size=abc: Value 'abc' of type 'str'"),
    (["env=hopper_mediun"], "error: Could not find 'env/hopper_mediun'; options: halfcheetah_medium, "),
    (["sampler.kernel=box"], "error: Error merging override sampler.kernel=box: Invalid value 'box', expected one of"),
    (["-m", "env=hopper_medium,nope", "seed=0,1"], "error: Could not find 'env/nope'; options: "),
])
def test_cli_refuses_bad_overrides_in_one_line_before_any_output(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "wsrl.train", *args], cwd=tmp_path, capture_output=True, text=True,
                          env=child_env(), timeout=120)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(message) and [line for line in lines if "error" in line.lower()] == [lines[-1]], lines
    assert not list(tmp_path.iterdir())  # no outputs/ or multirun/
