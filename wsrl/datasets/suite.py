"""The nine datasets: robots, qualities, ids and D4RL reference scores."""

from __future__ import annotations

from dataclasses import dataclass

ROBOTS = ("halfcheetah", "hopper", "walker2d")
QUALITIES = ("medium", "medium_replay", "medium_expert")


@dataclass(frozen=True)
class Robot:
    """One MuJoCo robot and the D4RL figures that go with it."""

    name: str
    env_id: str  # Gymnasium v5 environment the suite is generated and evaluated on
    d4rl_env_id: str  # v4 environment that keeps D4RL's dynamics (for imported D4RL files)
    ref_min_score: float  # D4RL REF_MIN_SCORE (random policy return)
    ref_max_score: float  # D4RL REF_MAX_SCORE (expert return)
    medium_target: float  # normalized score D4RL's medium dataset averages, roughly

    def normalize(self, returns):
        """D4RL normalized score: 100 * (R - min) / (max - min)."""
        return 100.0 * (returns - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


ROBOT = {
    "halfcheetah": Robot("halfcheetah", "HalfCheetah-v5", "HalfCheetah-v4", -280.178953, 12135.0, 40.0),
    "hopper": Robot("hopper", "Hopper-v5", "Hopper-v4", -20.272305, 3234.3, 50.0),
    "walker2d": Robot("walker2d", "Walker2d-v5", "Walker2d-v4", 1.629008, 4592.3, 70.0),
}
