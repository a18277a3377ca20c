"""Seeded choice of transport faults and latency, so a failing benchmark can be replayed.

Latency follows SPEC §5: a *bounded* network leg before the quota window counts the request (an
unbounded one bunches arrivals and no evenly paced client could stay under a strict quota), and a
heavy-tailed (lognormal) remainder after the count, where it only slows the answer down.
"""

from __future__ import annotations

import math
import random

from .config import SimulatorConfig

# Lognormal spread of the post-count leg: median x e^(2 sigma) is roughly the p98 tail.
_TAIL_SIGMA = 0.6


class FaultPlan:
    """Draws, per request, the delays and whether (and how) to fail it."""

    __slots__ = ("_kinds", "_pre_ms", "_pre_spread_ms", "_rate", "_rng", "_tail_ms")

    def __init__(self, config: SimulatorConfig, rng: random.Random) -> None:
        self._rng = rng
        self._rate = config.fault_rate
        self._kinds = config.faults
        # Half of the median latency is the network leg before the count, half comes after.
        self._pre_ms = config.latency_ms / 2.0
        self._tail_ms = config.latency_ms - self._pre_ms
        self._pre_spread_ms = (
            0.25 * self._pre_ms if config.pre_jitter_ms is None else config.pre_jitter_ms
        )

    def pre_count_delay(self) -> float:
        """Seconds before the request reaches the quota window: uniform, bounded."""
        if self._pre_ms == 0 and self._pre_spread_ms == 0:
            return 0.0
        low = max(0.0, self._pre_ms - self._pre_spread_ms)
        return self._rng.uniform(low, self._pre_ms + self._pre_spread_ms) / 1000.0

    def post_count_delay(self) -> float:
        """Seconds after the count: lognormal with the configured median, so a long tail."""
        if self._tail_ms == 0:
            return 0.0
        return self._rng.lognormvariate(math.log(self._tail_ms), _TAIL_SIGMA) / 1000.0

    def pick(self) -> str | None:
        """The fault kind for this request, or None to answer normally."""
        if self._rate == 0 or self._rng.random() >= self._rate:
            return None
        return self._rng.choice(self._kinds)

    def __repr__(self) -> str:
        return (
            f"<FaultPlan rate={self._rate} kinds={','.join(self._kinds)} "
            f"pre={self._pre_ms}+-{self._pre_spread_ms}ms tail={self._tail_ms}ms>"
        )
