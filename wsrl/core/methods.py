"""The methods, by name: what each one's policy is conditioned on. ``method.name`` chooses one, and nothing else
says what it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Method:
    """One method: the policy's input."""

    conditioned: bool  # the state and the return input (MethodConfig's return_input, gamma, scale), or the state


METHODS: dict[str, Method] = {
    "bc": Method(conditioned=False),  # Gaussian behaviour cloning on the normalized state
    "rvs_r": Method(conditioned=True),  # RvS-R, the paper's "Own Return": the state and the return-to-go
}


class Named(Protocol):
    name: str


def conditions_on_return(method: Named) -> bool:
    """Whether the policy of ``method`` (a method config) takes the return input besides the state."""
    return METHODS[method.name].conditioned
