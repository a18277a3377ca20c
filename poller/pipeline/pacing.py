"""Staying under the quota (SPEC §5): even spacing, slowdown on throttling, a retry budget.

Why not a plain `AsyncLimiter(20, 1)`: it is a bucket of capacity 20, so after any idle second it
lets 20 through at once and ~19 more in the same second (39 in one window, measured). Why not
`AsyncLimiter(1, 1/r)` alone: it spaces evenly but every slot loses the scheduling delay of its
wake-up, so asking for 38/s gave ~36.5/s. The pacer therefore keeps a drift-free schedule (slot
k is due at t0 + k/r) and uses aiolimiter underneath as a hard floor on the gap between two
requests, so that whatever the schedule says (after a stall, around a rate change) nothing
ever leaves in a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from aiolimiter import AsyncLimiter

from poller.pipeline.stopping import StopLatch
from poller.quota.pace import PaceRule, PaceState

# The aiolimiter floor is this fraction of a slot at the full pace: strict enough that no two
# requests ever leave closer than 3/4 of a slot, loose enough to absorb ~1 ms wake-up delays
# without drift. It stays at the full pace's slot while the pace is lowered or climbing back:
# the schedule spaces those; the guard is there for what the schedule cannot promise.
GUARD_FRACTION = 0.75


class Pacing(Protocol):
    """What the engine, the progress line, the metrics and the summary need of a pace: this
    process's own `Pacer`, or `SharedPacer` (one schedule in Redis for many processes)."""

    @property
    def rate(self) -> float:
        """The pace in force now, requests/s."""
        ...

    @property
    def target_rate(self) -> float:
        """The pace when nothing throttles, requests/s."""
        ...

    @property
    def slowdowns(self) -> int:
        """Times this run's throttles lowered the pace."""
        ...

    @property
    def seconds_below_target(self) -> float:
        """How long the pace has been below its target so far in this run."""
        ...

    async def acquire(self) -> None: ...

    def on_throttle(self) -> bool: ...

    def on_success(self) -> None: ...


class Pacer:
    """Hands out request slots evenly spaced at the current rate, in arrival order.

    The current rate is the target times the pace of `PaceState` (poller/quota/pace.py): lowered
    at once on a throttle, climbing back by time."""

    __slots__ = (
        "_anchor",
        "_anchor_rate",
        "_guard",
        "_last_now",
        "_lock",
        "_slot",
        "_stop",
        "_time",
        "pace",
        "slowdowns",
        "target_rate",
    )

    def __init__(
        self,
        rate: float,
        *,
        time_fn: Callable[[], float] | None = None,
        stop: StopLatch | None = None,
        rule: PaceRule | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be above 0")
        self.target_rate = rate
        self.pace = PaceState(rule or PaceRule())
        self.slowdowns = 0
        # The loop clock by default: the same clock aiolimiter and asyncio.sleep run on.
        self._time = time_fn or (lambda: asyncio.get_running_loop().time())
        self._last_now = 0.0  # the clock's last reading: the rate after the loop ends
        # Slot k is due at anchor + k / rate, computed by division rather than by adding
        # intervals: no float creep, so 20 slots never squeeze into one second.
        self._anchor: float | None = None
        self._anchor_rate = rate
        self._slot = 0
        self._lock = asyncio.Lock()
        # A stop ends every wait for a slot at once (`Stopped`): no request leaves after it.
        self._stop = stop or StopLatch()
        self._guard = AsyncLimiter(1, GUARD_FRACTION / rate)

    def _now(self) -> float:
        # No running loop (the summary, after the run): the last reading stands.
        with contextlib.suppress(RuntimeError):
            self._last_now = self._time()
        return self._last_now

    @property
    def rate(self) -> float:
        return self.target_rate * self.pace.pace_at(self._now())

    @property
    def seconds_below_target(self) -> float:
        return self.pace.seconds_below(self._now())

    async def acquire(self) -> None:
        """Wait for the next slot. Every attempt, retries included, calls this once.

        Raises `Stopped` if the run is stopped before the slot comes (or already was)."""
        # One waiter at a time computes and sleeps for its slot: FIFO, and a waiter that is
        # cancelled while sleeping gives its slot back instead of leaving a hole.
        self._stop.check()
        async with self._lock:
            self._stop.check()  # stopped while waiting for the lock
            now = self._now()
            rate = self.target_rate * self.pace.pace_at(now)
            if self._anchor is None:
                self._reanchor(now, rate)
            elif self._anchor_rate != rate:
                # Lowered, or climbing back: keep the slot already promised, new spacing on.
                self._reanchor(self._due(), rate)
            due = self._due()
            if due < now:
                self._reanchor(now, rate)
                due = now
            if due > now:
                await self._stop.sleep(due - now)
            await self._guard.acquire()
            self._stop.check()  # the guard's short wait may have spanned the stop
            # Drift-free: the next slot follows this one's *due* time, not its actual start,
            # unless we woke more than a slot late (a stall): then start afresh from now
            # rather than catching up with a burst.
            woke = self._now()
            if woke - due > 1.0 / rate:
                self._reanchor(woke, rate)
            self._slot += 1

    def _due(self) -> float:
        assert self._anchor is not None
        return self._anchor + self._slot / self._anchor_rate

    def _reanchor(self, at: float, rate: float) -> None:
        self._anchor = at
        self._anchor_rate = rate
        self._slot = 0

    def on_throttle(self) -> bool:
        """The server said RequestLimitExceeded: lower the pace (see `PaceState`).

        Returns True when the rate was actually lowered (False within the cooldown)."""
        lowered = self.pace.on_throttle(self._now())
        if lowered:
            self.slowdowns += 1
        return lowered

    def on_success(self) -> None:
        """An answer came back: nothing to do for the pace, which recovers by time."""

    def __repr__(self) -> str:
        return (
            f"<Pacer rate={self.rate:.2f}/s target={self.target_rate:.2f}/s "
            f"slowdowns={self.slowdowns}>"
        )


class RetryBudget:
    """A run-wide token bucket that retries draw from and successes refill.

    Bounded attempts per token alone still let an outage multiply traffic by max_attempts;
    the budget caps the whole run's extra traffic (the AWS SDKs' "retry quota" design).
    """

    __slots__ = ("capacity", "denied", "level", "refill")

    def __init__(self, capacity: float, refill: float) -> None:
        self.capacity = capacity
        self.level = capacity
        self.refill = refill
        self.denied = 0

    def try_spend(self, cost: float = 1.0) -> bool:
        if self.level >= cost:
            self.level -= cost
            return True
        self.denied += 1
        return False

    def on_success(self) -> None:
        self.level = min(self.capacity, self.level + self.refill)

    def __repr__(self) -> str:
        return f"<RetryBudget level={self.level:.1f}/{self.capacity:g} denied={self.denied}>"
