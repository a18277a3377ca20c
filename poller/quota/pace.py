"""How the pace falls on a throttle and climbs back: one rule, for one poller and for many.

`RequestLimitExceeded` means someone else is spending the account's quota (another job, the
live backend). The pace is multiplied down at once (x0.7, at most once a second: the throttles
of requests already in flight say the same thing again), never below a floor. It climbs back
by *time*, not by a count of successes, which was slowest exactly when the pace was lowest: after
a quiet spell with no throttle (`hold`) it ramps linearly back to the full pace within `ramp`
seconds. A throttle that comes before the pace is whole again (the other client is still
there) backs off again and doubles the hold, up to `hold_max`, so a client that stays is
probed gently instead of hammered; one that comes after a full recovery starts afresh.

Worst case, the pace is back at 90% within hold_max + 0.9 x ramp of the last throttle (3.35 s
with the defaults; the last throttle can come up to a second after the other client stopped,
while its requests still fill the server's window: 4.35 s, under the 5 s the benchmark asks).
The rule is pure: `PaceState` is this process's pace (the local pacer), and
poller/quota/gcra.lua computes the very same thing in Redis for pollers that share a schedule
(tests/quota/test_gcra_script.py runs both on the same events and compares).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from poller.config.settings import Settings


@dataclass(frozen=True, slots=True)
class PaceRule:
    factor: float = 0.7  # the pace is multiplied by this on a throttle
    floor: float = 0.05  # ... but never falls below this fraction of the full pace
    cooldown: float = 1.0  # at most one lowering per this many seconds
    hold: float = 1.0  # the quiet spell before the climb (the first time)
    ramp: float = 1.5  # seconds from the lowered pace back to the full one

    @property
    def hold_max(self) -> float:
        """The longest hold, after throttles that kept coming during the climbs."""
        return 2.0 * self.hold


def rule_for(settings: Settings) -> PaceRule:
    return PaceRule(hold=settings.recovery_hold, ramp=settings.recovery_ramp)


class PaceState:
    """The pace of one process, as a fraction of its full pace, on a clock it is given."""

    __slots__ = ("_below_done", "_below_since", "base", "hold", "rule", "slowed")

    def __init__(self, rule: PaceRule) -> None:
        self.rule = rule
        self.base = 1.0  # the pace right after the last lowering
        self.slowed = -math.inf  # when it was lowered last
        self.hold = rule.hold  # the hold in force since then
        self._below_since: float | None = None  # when the current spell below full began
        self._below_done = 0.0  # seconds below full in the spells that have ended

    @property
    def recovered_at(self) -> float:
        """When the pace is whole again (if nothing else throttles)."""
        return self.slowed + self.hold + self.rule.ramp

    def pace_at(self, now: float) -> float:
        return pace_at(self.base, self.slowed, self.hold, self.rule.ramp, now)

    def on_throttle(self, now: float) -> bool:
        """A `RequestLimitExceeded`: lower the pace; False within the cooldown (no change)."""
        if now - self.slowed < self.rule.cooldown:
            return False
        current = self.pace_at(now)
        climbing = now < self.recovered_at
        if not climbing:  # a new spell below full begins
            if self._below_since is not None:
                self._below_done += self.recovered_at - self._below_since
            self._below_since = now
        self.hold = min(self.hold * 2, self.rule.hold_max) if climbing else self.rule.hold
        self.base = max(current * self.rule.factor, self.rule.floor)
        self.slowed = now
        return True

    def seconds_below(self, now: float) -> float:
        """How long the pace has been below full, up to `now`."""
        if self._below_since is None:
            return self._below_done
        return self._below_done + max(min(now, self.recovered_at) - self._below_since, 0.0)


def pace_at(base: float, slowed: float, hold: float, ramp: float, now: float) -> float:
    """The pace at `now`: `base` through the hold, then a straight climb to 1 over `ramp`."""
    climb = now - slowed - hold
    if climb <= 0:
        return base
    if ramp <= 0:
        return 1.0
    return min(1.0, base + (1.0 - base) * climb / ramp)
