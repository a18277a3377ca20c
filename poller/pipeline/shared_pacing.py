"""The pace when several pollers share one account's quota: slots from Redis (SPEC §7).

Each attempt first takes a slot from this run's own `Pacer`, at `max_share` of the paced rate:
it caps this run's part of the quota. Then it books its slot in the shared schedule and sleeps
until it. One booking at a time per process (a lock over book-and-sleep): the schedule holds at
most one slot ahead per poller, so a lowered pace or a stop takes effect at once, and slots go
out in booking order. Last, a guard (aiolimiter, as under the local pacer) holds two sends of
this process at least 3/4 of the full pace's interval apart: the schedule never hands one
process slots that close, so the guard costs nothing, but should the schedule go wrong (its
key deleted, another tool writing to it) this process still never sends in a burst.

A throttle or an answer heard here travels with the next booking (`SharedQuota`): every poller
on the key slows down together and recovers together. If Redis stays lost past its timeout,
the run stops as a local failure: `on_lost` records why and stops it, and the attempt that
could not get a slot ends like one cut off by a stop (`Stopped`): nothing is sent without one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from poller.pipeline.pacing import GUARD_FRACTION, Pacer
from poller.pipeline.stopping import StopLatch, Stopped
from poller.quota.shared import SharedQuota, SharedQuotaLost


class SharedPacer:
    """`Pacing` from one schedule in Redis, with this run's own `Pacer` underneath."""

    __slots__ = ("_booking", "_guard", "_local", "_on_lost", "_quota", "_stop")

    def __init__(
        self,
        quota: SharedQuota,
        local: Pacer,
        *,
        stop: StopLatch,
        on_lost: Callable[[SharedQuotaLost], None],
    ) -> None:
        self._quota = quota
        self._local = local
        self._stop = stop
        self._on_lost = on_lost
        self._booking = asyncio.Lock()
        self._guard = AsyncLimiter(1, GUARD_FRACTION / quota.rate)

    @property
    def rate(self) -> float:
        """The slower of this run's cap and the shared pace now in force."""
        return min(self._local.rate, self._quota.rate * self._quota.pace)

    @property
    def target_rate(self) -> float:
        return self._local.target_rate

    @property
    def slowdowns(self) -> int:
        return self._quota.slowdowns

    async def acquire(self) -> None:
        """Wait for this run's own slot, then for a slot of the shared schedule.

        Raises `Stopped` on a stop, and when Redis stayed lost past the timeout (after
        `on_lost` has recorded it and stopped the run)."""
        await self._local.acquire()
        async with self._booking:
            self._stop.check()
            try:
                reservation = await self._quota.reserve(sleep=self._stop.sleep)
            except SharedQuotaLost as lost:
                self._on_lost(lost)
                raise Stopped from None
            # A stop while sleeping gives the slot up: the schedule has one unused slot, never
            # an extra request.
            await self._stop.sleep(reservation.wait)
            await self._guard.acquire()
            self._stop.check()  # the guard's wait (if any) may have spanned a stop

    def on_throttle(self) -> bool:
        # Reported with the next booking; the shared quota logs the lowering when it happens.
        self._quota.throttled()
        return False

    def on_success(self) -> None:
        self._quota.answered()

    def __repr__(self) -> str:
        return f"<SharedPacer {self._quota!r} local={self._local!r}>"
