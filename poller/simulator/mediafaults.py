"""Seeded choice of media download faults, apart from the API's: turning them on changes no
answer, no API fault and no latency, and the same config faults the same downloads again."""

from __future__ import annotations

import random
from collections import Counter

from .config import SimulatorConfig


class MediaFaultPlan:
    """Per download: a fault kind or None. The first `media_fail_first` downloads of each file
    fault for certain (kinds in turn), so a test can say "every first download is altered";
    after that `media_fault_rate` of them fault, kinds drawn."""

    __slots__ = ("_first", "_kinds", "_rate", "_rng", "_seen")

    def __init__(self, config: SimulatorConfig) -> None:
        self._kinds = config.media_faults
        self._rate = config.media_fault_rate
        self._first = config.media_fail_first
        self._rng = random.Random(f"media-faults:{config.seed}")
        self._seen: Counter[str] = Counter()  # downloads so far per file (media_fail_first only)

    def pick(self, path: str) -> str | None:
        if self._first:
            n = self._seen[path]
            self._seen[path] = n + 1
            if n < self._first:
                return self._kinds[n % len(self._kinds)]
        if self._rate == 0 or self._rng.random() >= self._rate:
            return None
        return self._rng.choice(self._kinds)

    def __repr__(self) -> str:
        return (
            f"<MediaFaultPlan rate={self._rate} first={self._first} kinds={','.join(self._kinds)}>"
        )
