"""The pace when several pollers share one account's quota: slots from Redis (SPEC §7).

Each attempt books its slot in the shared schedule and sleeps until it. Bookings are made one
at a time, in order, and each first takes a slot of this run's own `Pacer` (at `max_share` of
the paced rate), inside the same turn: this run's slots cannot pile up while the schedule is
busy, so the share is a cap over short spans too, not only on average. A process keeps few
bookings ahead of now: one when Redis is near (the schedule then holds one slot ahead per
poller, so a lowered pace or a stop takes effect at once), more when each round trip to Redis
costs a good part of an interval, so a distant Redis does not cut the pace. Last, a guard
(aiolimiter, as under the local pacer) holds two sends of this process at least 3/4 of the
full pace's interval apart: the schedule never hands one process slots that close, so the
guard costs nothing, but should the schedule go wrong, this process still never bursts.

A throttle or an answer heard here travels with the next booking (`SharedQuota`): every poller
on the key slows down together and recovers together. If Redis stays lost past its timeout,
the run stops as a local failure: `on_lost` records why and stops it, and the attempt that
could not get a slot ends like one cut off by a stop (`Stopped`): nothing is sent without one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from poller.pipeline.pacing import GUARD_FRACTION, Pacer
from poller.pipeline.stopping import StopLatch, Stopped
from poller.quota.shared import Reservation, SharedQuota, SharedQuotaLost

log = logging.getLogger("poller")

# At most this many bookings ahead per process, however far Redis is.
MAX_AHEAD = 8


class SharedPacer:
    """`Pacing` from one schedule in Redis, with this run's own `Pacer` underneath."""

    __slots__ = (
        "_ahead",
        "_below",
        "_booking",
        "_guard",
        "_last_seen",
        "_local",
        "_on_lost",
        "_quota",
        "_room",
        "_stop",
        "rebooked",
    )

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
        self._ahead = 0  # bookings made whose slot has not come yet
        self.rebooked = 0  # slots given up as stale (a pause) or lost (a new schedule)
        self._room = asyncio.Event()  # set when a booked slot comes (room for another)
        self._guard = AsyncLimiter(1, GUARD_FRACTION / quota.rate)
        # Time below the target, summed between bookings on Redis's clock (the shared pace is
        # known at each booking; between two, it is taken as it was at the first).
        self._below = 0.0
        self._last_seen: tuple[float, bool] | None = None

    @property
    def rate(self) -> float:
        """The slower of this run's cap and the shared pace now in force (at the schedule's
        spacing, which a stricter poller on the key may have set)."""
        return min(self._local.rate, self._quota.pace / self._quota.interval)

    @property
    def target_rate(self) -> float:
        return self._local.target_rate

    @property
    def slowdowns(self) -> int:
        return self._quota.slowdowns

    @property
    def seconds_below_target(self) -> float:
        return self._below

    def _seen(self, at: float) -> None:
        if self._last_seen is not None:
            since, below = self._last_seen
            if below and at > since:
                self._below += at - since
        self._last_seen = (at, self.rate < self.target_rate * (1 - 1e-9))

    def _depth(self) -> int:
        """Bookings to keep ahead: one, plus as many intervals as a round trip to Redis takes."""
        interval = self._quota.interval / max(self._quota.pace, 1e-9)
        return max(1, min(MAX_AHEAD, 1 + round(self._quota.round_trip / interval)))

    async def acquire(self) -> None:
        """Wait for this run's own slot and a slot of the shared schedule.

        Raises `Stopped` on a stop, and when Redis stayed lost past the timeout (after
        `on_lost` has recorded it and stopped the run)."""
        first = True
        while True:
            reservation = await self._book(own_slot=first)
            first = False
            if self._quota.still_good(reservation):
                break
            # Missed by more than half an interval (this process was paused), or booked from
            # a schedule since lost: sending now could bunch with slots handed to others.
            self.rebooked += 1
            log.debug("a shared slot came too late or from a lost schedule: booking again")
        await self._guard.acquire()
        self._stop.check()  # the guard's wait (if any) may have spanned a stop

    async def _book(self, *, own_slot: bool) -> Reservation:
        """One booking, slept until its slot; at most `_depth()` on their way at once. The
        first booking of an attempt takes this run's own slot in the same turn (a booking made
        again for the same attempt does not: it replaces one that was never sent)."""
        async with self._booking:
            while self._ahead >= self._depth():
                self._room.clear()
                await self._room.wait()
            if own_slot:
                await self._local.acquire()
            self._stop.check()
            self._ahead += 1
        # The round trip itself is outside the turn: with a distant Redis several bookings are
        # on their way at once (up to the depth), each then sleeping until its own slot.
        try:
            try:
                reservation = await self._quota.reserve(sleep=self._stop.sleep)
            except SharedQuotaLost as lost:
                self._on_lost(lost)
                raise Stopped from None
            self._seen(reservation.redis_time)
            # A stop while sleeping gives the slot up: the schedule has one unused slot, never
            # an extra request.
            await self._stop.sleep(reservation.due - time.monotonic())
        finally:
            self._ahead -= 1
            self._room.set()
        return reservation

    def on_throttle(self) -> bool:
        # Reported with the next booking; the shared quota logs the lowering when it happens.
        self._quota.throttled()
        return False

    def on_success(self) -> None:
        """Nothing to do: the shared pace climbs back by time (poller/quota/pace.py)."""

    def __repr__(self) -> str:
        return f"<SharedPacer {self._quota!r} local={self._local!r} ahead={self._ahead}>"
