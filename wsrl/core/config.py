"""Structured configs: the single source of defaults and validation for every run.

Hydra merges the YAML files in ``conf/`` into these dataclasses, so an unknown key, a wrong type or a value
outside a field's choices (the ``Choice`` enums) fails before any work starts. ``wsrl.core.validation`` adds the
range checks that types cannot express. The choices of the dataset fields come from ``wsrl.datasets.suite``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from wsrl.core.methods import METHODS
from wsrl.core.policies import POLICIES
from wsrl.core.weighting import PLACEMENTS, SCHEMES
from wsrl.datasets.suite import QUALITIES, ROBOT, ROBOTS, SIZES, SOURCES, dataset_id, normalize

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # the YAML files that choose among the schema's values

class Choice(str, Enum):
    """A config value from a fixed set. OmegaConf refuses any other value when it composes the config (naming the
    valid ones); the value compares, formats and serializes as its plain string, so code, results and checkpoints
    see strings."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def choice(name: str, values: tuple[str, ...]) -> type[Choice]:
    """A ``Choice`` enum whose members are ``values`` (OmegaConf matches a YAML string by member name)."""
    return Choice(name, [(v, v) for v in values])


RobotName = choice("RobotName", ROBOTS)
Quality = choice("Quality", QUALITIES)
Source = choice("Source", SOURCES)
Size = choice("Size", SIZES)
MethodName = choice("MethodName", tuple(METHODS))
ReturnInput = choice("ReturnInput", ("to_go", "average"))
Weighting = choice("Weighting", tuple(PLACEMENTS))
SchemeName = choice("SchemeName", tuple(SCHEMES))
LdsTarget = choice("LdsTarget", ("trajectory_return", "return_to_go", "action"))
Kernel = choice("Kernel", ("gaussian", "triangular", "laplace"))
Reweight = choice("Reweight", ("sqrt_inv", "inverse"))
PolicyName = choice("PolicyName", tuple(POLICIES))
WandbMode = choice("WandbMode", ("offline", "online", "disabled"))
MatmulPrecision = choice("MatmulPrecision", ("highest", "high"))
Autocast = choice("Autocast", ("none", "bf16"))


class ConfigError(ValueError):
    """A configuration value that is out of range; the message names the key and the fix."""


def check_device(name: str, key: str = "device=") -> None:
    """Refuse a device name other than auto, cpu, cuda or cuda:N; ``key`` is how the user wrote the setting
    (``device=`` in a run's config, ``--device `` on the evaluation CLI)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ConfigError(f"{key}{name} must be auto, cpu, cuda or cuda:N")


def resolve_device(name: str) -> torch.device:
    """``device=auto`` is CUDA where there is one; asking for CUDA without one is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available; use device=cpu or device=auto")
    return device


@dataclass
class EnvConfig:
    """Which dataset to learn from and which environment to evaluate in."""

    name: str = MISSING  # the option's name, e.g. hopper_medium_expert
    robot: RobotName = MISSING  # halfcheetah | hopper | walker2d
    quality: Quality = MISSING  # medium | medium_replay | medium_expert
    source: Source = Source.generated  # generated (wsrl's own suite) | d4rl (a local D4RL HDF5 file) | minari
    size: Size = Size.full  # generated suite only: full (D4RL sizes) | small (a tenth, for quick runs)
    d4rl_file: str | None = None  # source=d4rl: path of the D4RL v2 HDF5 file to convert
    dataset_id: str | None = None  # Minari id; null = derived from robot, quality, source and size
    eval_env_id: str | None = None  # null = the robot's v5 env (v4 for source=d4rl, which keeps D4RL's dynamics)
    ref_min_score: float | None = None  # null = D4RL's REF_MIN_SCORE for the robot
    ref_max_score: float | None = None  # null = D4RL's REF_MAX_SCORE for the robot
    target_return: float | None = None  # RvS-R evaluation target (raw return); null = the dataset's best episode


@dataclass
class MethodConfig:
    """What the policy is conditioned on: the method (``wsrl.core.methods.METHODS``) and its return input."""

    name: MethodName = MethodName.bc  # bc: the state | rvs_r: the state and the return input (the paper's "Own Return")
    return_input: ReturnInput = ReturnInput.to_go  # to_go: remaining return G_t | average: G_t / (horizon - t) (RvS)
    gamma: float = 1.0  # discount of the return-to-go (the paper: 1)
    return_scale: float = 1000.0  # the return input is divided by this before it enters the network
    horizon: int = 1000  # episode length limit, for the average return input


@dataclass
class SamplerConfig:
    """Which weights (``scheme``) act where (``weighting``: in the loss, in the draw, or nowhere). The schemes
    (``wsrl.core.weighting.SCHEMES``): LDS (Yang et al. 2021; ``lds``: the paper's IR, in the loss; ``lds_sampling``: in
    the draw), top-x % filtering, return- and advantage-weighted sampling (Hong et al. 2023), CWBC's return-bin
    weights (Nguyen et al. 2022) and LDS times the return tilt; each config file in ``conf/sampler/`` picks one
    scheme and placement, and its ``name`` (run directories, report columns) is ``wsrl.core.weighting.sampler_name``'s:
    the new schemes are ``<scheme>`` in the draw and ``<scheme>_loss`` in the loss."""

    name: str = "uniform"  # uniform | lds | lds_sampling | <scheme> (in the draw) | <scheme>_loss, as sampler_name
    weighting: Weighting = Weighting.none  # none (no weights) | loss (they multiply the log-likelihood) | sampling
    scheme: SchemeName = SchemeName.lds  # the weights (if weighted): lds | uniform | topk | rw | aw | cwbc | lds_rw
    target: LdsTarget = LdsTarget.trajectory_return  # LDS's label: trajectory_return | return_to_go | action
    bins: int = 100  # LDS: equal-width bins over the label's range
    kernel: Kernel = Kernel.gaussian  # LDS kernel: gaussian | triangular | laplace
    ks: int = 5  # LDS kernel size (odd)
    sigma: float = 2.0  # LDS kernel width, in bins
    reweight: Reweight = Reweight.sqrt_inv  # LDS: sqrt_inv (root of counts) | inverse (counts clipped to [5, 1000])
    clip_max: float | None = None  # optional upper clip of the mean-1 weights (then renormalized), any scheme
    top_fraction: float = 0.1  # topk: the share of trajectories kept, ranked by undiscounted return (CORL, Hong et al.)
    alpha: float = 0.1  # rw, aw, lds_rw: temperature of exp(G^ / alpha), G^ min-max over trajectories (Hong et al.)
    aw_ridge: float = 0.0  # aw: ridge penalty of the fit of G on the standardised s0 (0: least squares, as published)
    cwbc_bins: int = 20  # cwbc: equal-width bins over the trajectory returns (Nguyen et al.)
    cwbc_lambda: float = 0.01  # cwbc: lambda of 1 / (f_b + lambda), f_b the share of trajectories in bin b
    cwbc_percentile: float = 0.9  # cwbc: kappa = G* - the return at this quantile of the trajectories (0.9: the 90th)
    conservative_percentile: float | None = None  # RvS-R, CWBC's conservative loss on the trajectories whose return
    # is >= this quantile (the paper: 0.95), their return input raised past the best; null: off (any scheme)
    conservative_std: float = 1000.0  # its raise: G* - G_i + |N(0, std)| in return units (the reference's truncnorm)
    conservative_weight: float = 1.0  # loss = NLL of the batch + this x NLL of its raised rows (the reference's w)


@dataclass
class PolicyConfig:
    """The network that maps (normalized state [, return input]) to a Gaussian over actions."""

    name: PolicyName = PolicyName.unconditional  # unconditional (2 x 1024, dropout) | diag_gaussian (the old actor)
    hidden_dims: list[int] = field(default_factory=lambda: [1024, 1024])  # width of each hidden layer
    dropout: float = 0.1  # dropout after each hidden ReLU (both policies share the MLP; policy=diag_gaussian sets 0)
    layer_norm: bool = False  # LayerNorm before each ReLU (both policies)
    log_std_init: float = 0.0  # initial state-independent log-std (unconditional only)
    log_std_bounds: list[float] = field(default_factory=lambda: [-5.0, 2.0])  # diag_gaussian's log-std range


@dataclass
class TrainerConfig:
    """Optimisation budget and logging cadence."""

    max_steps: int = 100_000  # gradient steps
    batch_size: int = 512  # transitions per step (the paper: 512)
    lr: float = 5e-4  # Adam learning rate (the paper: 5e-4)
    weight_decay: float = 1e-4  # Adam L2 weight decay (the paper: 1e-4)
    log_every_n_steps: int = 100  # metrics (and the one host sync they need) every N steps
    checkpoint_every_steps: int = 10_000  # resumable checkpoint interval (0: only at the end)
    progress_bar: bool = True  # tqdm bar while training (refreshed every log_every_n_steps)
    # float32 matmuls (torch.set_float32_matmul_precision): highest = full FP32 | high = TF32 on a GPU that has it
    # (faster on Ampere and later GPUs; it changes results, so it is part of the run's identity)
    matmul_precision: MatmulPrecision = MatmulPrecision.highest
    # the training forward under torch.autocast: none (float32) | bf16 (bfloat16 matmuls; the weights, the
    # optimizer and the loss's sums stay float32). Part of the run's identity
    autocast: Autocast = Autocast.none


@dataclass
class EvalConfig:
    """Online evaluation in the Gymnasium environment."""

    episodes: int = 10  # episodes per evaluation, run side by side in a vector env
    every_steps: int = 0  # periodic evaluation interval (0: only the final one)
    video: bool = False  # record the final policy's first evaluation episode as an MP4 (run dir, W&B); needs libosmesa6
    video_periodic: bool = False  # also record one at each periodic evaluation (needs video=true)
    video_frames: int = 250  # frames per video at most (~18 s of rendering at 14 frames/s; the episode runs on)
    video_fps: int = 30  # a frame every round(env fps / video_fps) steps, so the MP4 plays in real time
    video_size: list[int] = field(default_factory=lambda: [320, 240])  # width, height in pixels (even, for H.264)
    conditioning_points: int = 0  # RvS-R: after training, score this many target returns (0: off; BC ignores it)


@dataclass
class WandbConfig:
    """Weights & Biases logging through Lightning's WandbLogger."""

    mode: WandbMode = WandbMode.offline  # offline (sync later with `wandb sync`) | online | disabled
    project: str = "wsrl"  # W&B project the runs go to
    entity: str | None = None  # W&B team or user; null = your default entity
    group: str | None = None  # null = <env>/<method>/<sampler>/<policy>; sweeps set one per sweep


@dataclass
class TrainConfig:
    """One run: train on ``env`` with ``method``, ``sampler`` and ``policy``, then evaluate."""

    env: EnvConfig = field(default_factory=EnvConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    seed: int = 0
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    generate_if_missing: bool = True  # make a missing generated dataset before training
    resume: bool = True  # continue from this run directory's last checkpoint if there is one
    name: str = "default"  # run name: the first level of the output directory (experiment presets set it)


@dataclass(frozen=True)
class ResolvedEnv:
    """The env config with every derived value filled in."""

    dataset_id: str
    eval_env_id: str
    ref_min_score: float
    ref_max_score: float

    def normalize(self, returns):
        """D4RL normalized score with this run's reference scores."""
        return normalize(returns, self.ref_min_score, self.ref_max_score)


def resolve_env(env: EnvConfig) -> ResolvedEnv:
    """Fill in the dataset id, evaluation env and reference scores that the env config leaves null (the suite's)."""
    robot = ROBOT[env.robot]
    return ResolvedEnv(
        dataset_id=env.dataset_id or dataset_id(env.robot, env.quality, env.source, env.size),
        eval_env_id=env.eval_env_id or robot.eval_env_id(env.source),
        ref_min_score=robot.ref_min_score if env.ref_min_score is None else env.ref_min_score,
        ref_max_score=robot.ref_max_score if env.ref_max_score is None else env.ref_max_score,
    )


def to_plain(cfg: TrainConfig | DictConfig) -> dict:
    """The config as plain Python (resolved, choices as strings): what results, checkpoints and W&B record."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return OmegaConf.to_container(OmegaConf.structured(asdict(cfg)), enum_to_str=True)


def read_method(section: dict, where: str, fix: str) -> dict:
    """A plain method section (``where``: the file it comes from) as this version writes it. Files made while the
    return input was a switch of its own also hold ``condition_on_return``: dropped where it says what the method
    says, refused (naming ``fix``) where it contradicts it."""
    section = dict(section)
    if (flag := section.pop("condition_on_return", None)) is not None and flag != METHODS[section["name"]].conditioned:
        raise ConfigError(f"{where} holds method.name={section['name']} with method.condition_on_return={flag}, which "
                          f"this version cannot make: the method alone says whether the policy takes the return "
                          f"input (rvs_r does, bc does not); {fix}")
    return section


def register_configs() -> None:
    """Register the schema so ``conf/train.yaml`` is validated against it."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
