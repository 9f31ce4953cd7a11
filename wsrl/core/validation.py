"""``validate``: the range checks of a run's config that its types cannot express, each refusal one line naming the
key and the fix (the schema itself, with its defaults and choices, is ``wsrl.core.config``)."""

from __future__ import annotations

import typing
from dataclasses import fields, is_dataclass
from typing import Any

from omegaconf import DictConfig

from wsrl.core.config import ConfigError, EvalConfig, SamplerConfig, TrainConfig, check_device
from wsrl.core.methods import conditions_on_return
from wsrl.core.weighting import SAMPLER_NAMES, sampler_name


def fields_of(schema: type) -> dict[str, Any]:
    """Field name -> type of a config dataclass (types resolved, for nested schemas)."""
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in fields(schema)}


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Range checks the types cannot express; raise ConfigError naming the key and the fix."""
    if isinstance(cfg, DictConfig):
        _validate_keys(cfg)
    _validate_ranges(cfg)
    _validate_sampler(cfg.sampler)
    if cfg.sampler.conservative_percentile is not None and not conditions_on_return(cfg.method):
        raise ConfigError("sampler.conservative_percentile (CWBC's conservative loss) raises the return input: it "
                          "needs method=rvs_r")
    _validate_eval(cfg.eval)
    check_device(cfg.device)


def _validate_keys(cfg: DictConfig) -> None:
    """Keys added with Hydra's ``+key=value`` bypass the schema: refuse them here."""
    for section, schema in fields_of(TrainConfig).items():
        known = set(fields_of(schema)) if is_dataclass(schema) else None
        if known is not None and (extra := set(cfg[section]) - known):
            raise ConfigError(f"unknown key {section}.{sorted(extra)[0]}: see `python -m wsrl.train --cfg job`")
    if extra := set(cfg) - set(fields_of(TrainConfig)):
        raise ConfigError(f"unknown key {sorted(extra)[0]}: see `python -m wsrl.train --cfg job`")


def _validate_ranges(cfg: TrainConfig) -> None:
    """Numbers of the budget, the method and the policy in range."""
    positive = ["trainer.max_steps", "trainer.batch_size", "trainer.lr", "trainer.log_every_n_steps",
                "eval.episodes", "sampler.bins", "sampler.sigma", "method.return_scale", "method.horizon",
                "eval.video_frames", "eval.video_fps"]
    for key in positive:
        if not _get(cfg, key) > 0:
            raise ConfigError(f"{key}={_get(cfg, key)} must be > 0")
    for key in ["trainer.weight_decay", "trainer.checkpoint_every_steps", "eval.every_steps"]:
        if _get(cfg, key) < 0:
            raise ConfigError(f"{key}={_get(cfg, key)} must be >= 0")
    if cfg.sampler.ks < 1 or cfg.sampler.ks % 2 == 0:
        raise ConfigError(f"sampler.ks={cfg.sampler.ks} must be an odd integer >= 1 (e.g. 5)")
    if not 0.0 <= cfg.policy.dropout < 1.0:
        raise ConfigError(f"policy.dropout={cfg.policy.dropout} must be in [0, 1)")
    if not 0.0 < cfg.method.gamma <= 1.0:
        raise ConfigError(f"method.gamma={cfg.method.gamma} must be in (0, 1]")
    if not cfg.policy.hidden_dims or min(cfg.policy.hidden_dims) < 1:
        raise ConfigError(f"policy.hidden_dims={list(cfg.policy.hidden_dims)} needs at least one width >= 1")
    lo, hi = cfg.policy.log_std_bounds
    if not lo < hi:
        raise ConfigError(f"policy.log_std_bounds={[lo, hi]} must be increasing")
    if cfg.sampler.clip_max is not None and cfg.sampler.clip_max <= 1.0:
        raise ConfigError(f"sampler.clip_max={cfg.sampler.clip_max} must be > 1 (weights have mean 1) or null")


def _validate_eval(ev: EvalConfig) -> None:
    """The evaluation's looks: video size, periodic video, conditioning points."""
    size = list(ev.video_size)
    if len(size) != 2 or min(size) < 2 or any(n % 2 for n in size):
        raise ConfigError(f"eval.video_size={size} must be [width, height], both even and >= 2 (e.g. [320, 240])")
    if ev.video_periodic and not ev.video:
        raise ConfigError("eval.video_periodic=true needs eval.video=true")
    if ev.conditioning_points < 0 or ev.conditioning_points == 1:
        raise ConfigError(f"eval.conditioning_points={ev.conditioning_points} must be 0 (off) or >= 2")


def _validate_sampler(sampler: SamplerConfig) -> None:
    """The schemes' knobs in range, and a sampler name that says which scheme and placement the run has."""
    if not 0.0 < sampler.top_fraction <= 1.0:
        raise ConfigError(f"sampler.top_fraction={sampler.top_fraction} must be in (0, 1]")
    for key in ("alpha", "cwbc_bins"):
        if not getattr(sampler, key) > 0:
            raise ConfigError(f"sampler.{key}={getattr(sampler, key)} must be > 0")
    for key in ("aw_ridge", "cwbc_lambda"):
        if getattr(sampler, key) < 0:
            raise ConfigError(f"sampler.{key}={getattr(sampler, key)} must be >= 0")
    if not 0.0 <= sampler.cwbc_percentile <= 1.0:
        raise ConfigError(f"sampler.cwbc_percentile={sampler.cwbc_percentile} must be in [0, 1]")
    if sampler.conservative_percentile is not None:
        if not 0.0 <= sampler.conservative_percentile <= 1.0:
            raise ConfigError(f"sampler.conservative_percentile={sampler.conservative_percentile} must be in [0, 1] "
                              "or null")
        if sampler.conservative_std < 0 or sampler.conservative_weight < 0:
            raise ConfigError("sampler.conservative_std and sampler.conservative_weight must be >= 0")
        if sampler.name in SAMPLER_NAMES:
            raise ConfigError(f"sampler.conservative_percentile is set but sampler.name={sampler.name} names a sampler "
                              "without the conservative loss: use sampler=cwbc_conservative or a sampler.name of "
                              "your own")
    expected = sampler_name(sampler.scheme, sampler.weighting)
    if sampler.name in SAMPLER_NAMES and sampler.name != expected:  # its run directory and report column would lie
        raise ConfigError(f"sampler.name={sampler.name} names another scheme or placement than sampler.scheme="
                          f"{sampler.scheme} with sampler.weighting={sampler.weighting}: use sampler={expected} "
                          f"(or a sampler.name of your own)")
