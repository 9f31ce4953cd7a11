"""The suite's facts, in one place: robots, qualities, sources, dataset ids and D4RL's reference scores.

Everything that names a dataset or normalizes a return asks this module (the configs, generation, the importers,
the command lines, evaluation), so the formulas cannot drift apart. It imports nothing from wsrl.
"""

from __future__ import annotations

from dataclasses import dataclass

ROBOTS = ("halfcheetah", "hopper", "walker2d")
QUALITIES = ("medium", "medium_replay", "medium_expert")  # the paper's nine datasets: ROBOTS x QUALITIES
# what generation makes: the nine's qualities plus expert (medium_expert's second half). The order is part of the
# data: each quality's random seed is derived from its index here, so do not reorder.
GENERATED_QUALITIES = ("medium", "expert", "medium_replay", "medium_expert")
D4RL_QUALITIES = ("random", "medium", "expert", "medium_replay", "medium_expert", "full_replay")  # D4RL's v2 files
MINARI_QUALITIES = ("medium", "expert", "medium_expert")  # what Minari's mujoco datasets can give (medium_expert: both)
SOURCES = ("generated", "d4rl", "minari")  # wsrl's own suite | a converted D4RL file | Minari's download
SIZES = ("full", "small")  # generated suite: D4RL's sizes | a tenth of them


def normalize(returns, ref_min_score: float, ref_max_score: float):
    """D4RL normalized score: 100 * (R - min) / (max - min), for a number or an array of returns."""
    return 100.0 * (returns - ref_min_score) / (ref_max_score - ref_min_score)


@dataclass(frozen=True)
class Robot:
    """One MuJoCo robot and the D4RL figures that go with it."""

    name: str
    env_id: str  # Gymnasium v5 environment the suite is generated and evaluated on
    d4rl_env_id: str  # v4 environment that keeps D4RL's dynamics (for imported D4RL files)
    ref_min_score: float  # D4RL REF_MIN_SCORE (random policy return)
    ref_max_score: float  # D4RL REF_MAX_SCORE (expert return)
    d4rl_medium: float  # the normalized score of D4RL's v2 medium dataset, the level ``choose`` picks medium at

    def normalize(self, returns):
        """D4RL normalized score with this robot's reference scores."""
        return normalize(returns, self.ref_min_score, self.ref_max_score)

    def eval_env_id(self, source: str) -> str:
        """Where a policy trained on data of ``source`` is evaluated: v4 for D4RL's files (its dynamics), else v5."""
        return self.d4rl_env_id if source == "d4rl" else self.env_id


ROBOT = {
    "halfcheetah": Robot("halfcheetah", "HalfCheetah-v5", "HalfCheetah-v4", -280.178953, 12135.0, 41.0),
    "hopper": Robot("hopper", "Hopper-v5", "Hopper-v4", -20.272305, 3234.3, 44.0),
    "walker2d": Robot("walker2d", "Walker2d-v5", "Walker2d-v4", 1.629008, 4592.3, 62.0),
}

# The version of each generated dataset whose data changed since its first (``-v0``); absent: 0. Bump one when its
# episodes change, so that runs on the old data and on the new carry different ids and are never pooled.
VERSIONS = {
    # v1: medium at D4RL's level (62, the 50-episode score nearest it) instead of 0.45 of the expert (37), so its
    # medium-replay runs to the new medium and its medium-expert holds the new medium (issue 30)
    ("walker2d", "medium"): 1,
    ("walker2d", "medium_replay"): 1,
    ("walker2d", "medium_expert"): 1,
    # v1: medium and medium-replay from a SAC run (medium the snapshot nearest D4RL's 41, its buffer up to it) and
    # the expert from a TQC run (93 against TD3's 73), as D4RL trained its experts apart (issue 30)
    ("halfcheetah", "medium"): 1,
    ("halfcheetah", "medium_replay"): 1,
    ("halfcheetah", "medium_expert"): 1,
    ("halfcheetah", "expert"): 1,
}


def version(robot: str, quality: str) -> int:
    """The version of the generated dataset ``robot`` ``quality`` (``VERSIONS``; 0 where it never changed)."""
    return VERSIONS.get((robot, quality), 0)


def dataset_id(robot: str, quality: str, source: str = "generated", size: str = "full") -> str:
    """The Minari id of a dataset: ``wsrl/hopper/medium-expert[-small]-v<version>`` (generated, ``version``),
    ``d4rl/hopper/medium-expert-v2`` (a converted D4RL file) or ``wsrl-minari/hopper/medium-expert-v0`` (Minari's
    download with reference scores)."""
    name = quality.replace("_", "-")
    if source == "generated":
        return f"wsrl/{robot}/{name}{'-small' if size == 'small' else ''}-v{version(robot, quality)}"
    if source == "d4rl":
        return f"d4rl/{robot}/{name}-v2"
    if source == "minari":
        return f"wsrl-minari/{robot}/{name}-v0"
    raise ValueError(f"unknown dataset source {source!r}: use one of {', '.join(SOURCES)}")


def generated_id(robot: str, quality: str, size: str = "full") -> str:
    """The id of a dataset of wsrl's generated suite (``dataset_id`` with ``source='generated'``)."""
    return dataset_id(robot, quality, "generated", size)
