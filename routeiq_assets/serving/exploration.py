"""Exploration for a serving router: which candidate to log-and-serve, and with what probability.

The router's decision (``argmax quality - lambda * cost``) is the greedy choice. With
``exploration`` rate ``e`` a policy serves a *non-greedy* candidate with probability ``e`` and
the greedy one with ``1 - e``:

* ``epsilon_greedy``: the non-greedy candidate is uniform, so each has ``e / (k - 1)``;
* ``softmax``: the non-greedy candidate is drawn with probability proportional to
  ``exp(utility / temperature)`` among the non-greedy candidates, so a near-miss is explored
  more often than a clearly worse model.

With one candidate (or ``e = 0``) the greedy choice is served with propensity 1. Every choice
comes back with its propensity, the probability this policy gave the served candidate, which
the gateway logs so that off-policy evaluation can reweight the logged outcomes.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass

POLICIES = ("epsilon_greedy", "softmax")


@dataclass(frozen=True)
class Choice:
    index: int  # into the candidates
    propensity: float  # the probability the policy gave this candidate, in (0, 1]
    explored: bool  # True when a non-greedy candidate was served


class ExplorationPolicy:
    """A seedable, thread-safe exploring policy over a greedy choice."""

    def __init__(
        self,
        name: str = "epsilon_greedy",
        exploration: float = 0.0,
        temperature: float = 0.05,
        seed: int | None = None,
    ) -> None:
        if name not in POLICIES:
            raise ValueError(f"exploration policy must be one of {POLICIES}, got {name!r}")
        if not (math.isfinite(exploration) and 0.0 <= exploration <= 1.0):
            raise ValueError(f"exploration must be in [0, 1], got {exploration!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.name, self.exploration, self.temperature = name, exploration, temperature
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        """What the decision telemetry logs as ``logging_policy``."""
        return "greedy" if self.exploration == 0.0 else self.name

    def probabilities(self, utilities: Sequence[float], greedy: int) -> list[float]:
        """The policy's probability of each candidate, given their utilities and the greedy one."""
        k = len(utilities)
        if k == 1 or self.exploration == 0.0:
            return [1.0 if i == greedy else 0.0 for i in range(k)]
        others = [i for i in range(k) if i != greedy]
        if self.name == "epsilon_greedy":
            weights = dict.fromkeys(others, 1.0)
        else:
            top = max(utilities[i] for i in others)
            weights = {i: math.exp((utilities[i] - top) / self.temperature) for i in others}
        total = sum(weights.values())
        probs = [self.exploration * weights.get(i, 0.0) / total for i in range(k)]
        probs[greedy] = 1.0 - self.exploration
        return probs

    def choose(self, utilities: Sequence[float], greedy: int) -> Choice:
        probs = self.probabilities(utilities, greedy)
        if probs[greedy] == 1.0:
            return Choice(greedy, 1.0, False)
        with self._lock:
            explore = self._rng.random() < self.exploration
            draw = self._rng.random() if explore else 0.0
        if not explore:
            return Choice(greedy, probs[greedy], False)
        # inverse CDF over the non-greedy candidates' share of the exploration mass
        target, acc, idx = draw * self.exploration, 0.0, greedy
        for i, p in enumerate(probs):
            if i == greedy or p <= 0.0:
                continue
            acc, idx = acc + p, i
            if target < acc:
                break
        return Choice(idx, probs[idx], True)
