"""`SharedQuota`: slots from one schedule in Redis, for every poller and the app backend.

Each `reserve()` runs `gcra.lua` once: it books the next free slot of the account's schedule
(on Redis's clock) and says how long to wait for it. A throttle the caller heard since its last
reservation travels with the next one, so the shared reaction to `RequestLimitExceeded` costs
no round trip of its own: a throttle seen by any caller lowers the pace for all of them, and
the climb back (by time, poller/quota/pace.py, computed in the script) is shared too.

Redis trouble never means a burst: without a reservation nothing is sent. A lost connection
is retried with backoff for `timeout` seconds, then `SharedQuotaLost`; a server unreachable at
the start is `SharedQuotaUnavailable`. Neither message, nor any log line or `repr`, carries the
URL's password.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from poller.api.outcomes import is_throttle_code
from poller.config.credentials import resolve_credentials
from poller.config.redis_address import RedisAddress, parse_address, schedule_key
from poller.config.settings import Settings
from poller.errors import PollerError
from poller.quota.pace import PaceRule, rule_for

log = logging.getLogger("poller")

ACTION = "GetSdkVerificationResult"
# An idle schedule is forgotten this long after its last slot (its slowdown with it). Long, as
# a missing schedule restarts after RESET_GAP (a burst guard that would delay a live call).
SCHEDULE_TTL = 24 * 3600.0
# A lost schedule (Redis restarted without persistence, FLUSHALL, a deleted key) restarts this
# long after now at the full pace, longer at a lowered one: slots booked from the old schedule
# (a few per poller) may still be ahead, and nobody can see them any more.
RESET_GAP = 1.0
# A caller with a stricter spacing (a lower --rate, a larger margin) sets the schedule's
# spacing while it books, and for this long after.
STRICT_HOLD = 10.0
STALE_FLOOR = 0.01
# A wait longer than this is said in a warning: something is wrong with the schedule.
LONG_WAIT = 10.0
# Redis answers that say "not now" (a failover's read-only replica, a busy script, loading a
# dump): waited out like a lost connection, up to the timeout.
PASSING_ERRORS = ("READONLY", "BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
# ... and how a script's write on a replica is refused (no READONLY prefix then).
_READ_ONLY = "write against a read only replica"
# Reconnecting: full-jitter backoff from RETRY_FIRST doubling to RETRY_MAX seconds.
RETRY_FIRST = 0.05
RETRY_MAX = 2.0
# One command's budget: a Redis that answers slower than this is treated as lost.
COMMAND_TIMEOUT = 2.0

_SCRIPT = resources.files("poller.quota").joinpath("gcra.lua").read_text(encoding="utf-8")

Sleep = Callable[[float], Awaitable[None]]


class SharedQuotaUnavailable(PollerError):
    """The shared quota's Redis cannot be used at the start: one sentence, exit 2."""


class SharedQuotaLost(PollerError):
    """Redis stayed unreachable mid-run for longer than the timeout: the run stops (exit 4)."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """A booked slot: send after `wait` seconds. `pace` is the shared fraction of the full rate
    now in force; `lowered` says this reservation's throttle report lowered it."""

    wait: float
    pace: float
    lowered: bool
    redis_time: float  # Redis's clock when the slot was booked (seconds since the epoch)
    # When to send, on this process's monotonic clock: the wait, less the half round trip the
    # answer spent coming back (a distant Redis must not shift this caller's sends late).
    due: float = 0.0
    epoch: str = ""  # the schedule it was booked from (see `SharedQuota.is_current`)


class SharedQuota:
    """Slots for one account's API quota, shared through Redis by every process that asks.

    `rate` is the account's quota in requests/s; slots are spaced `1 / (rate * (1 - margin))`
    apart, as `poller run` paces. The key is a hash of the SecretId (`secret_id`, or the one
    `poller run` would use: TENCENTCLOUD_SECRET_ID, else ~/.tencentcloud/credentials) and the
    action, so every user of one account shares one schedule and nobody else's.

        async with SharedQuota("redis://quota-redis:6379/0") as quota:
            await quota.acquire()  # before every call to GetSdkVerificationResult
    """

    def __init__(
        self,
        url: str,
        rate: float = 20.0,
        *,
        margin: float = 0.05,
        secret_id: str | None = None,
        action: str = ACTION,
        timeout: float = 60.0,
        rule: PaceRule | None = None,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0) or not 0 <= margin < 1:
            raise PollerError("SharedQuota needs a finite rate above 0 and a margin in [0, 1).")
        if not (math.isfinite(timeout) and timeout > 0):
            raise PollerError("SharedQuota needs a timeout above 0 seconds.")
        self.address: RedisAddress = parse_address(url, setting="the shared quota URL")
        self.rate = rate * (1.0 - margin)  # the full shared pace, requests/s
        self.timeout = timeout
        self.rule = rule or PaceRule()  # how the shared pace falls and climbs back
        self.key = schedule_key(secret_id if secret_id is not None else _own_secret_id(), action)
        self.pace = 1.0  # the shared fraction of `rate` in force, as of the last reservation
        self.slowdowns = 0  # lowerings this caller's throttle reports caused
        self.reservations = 0
        self.interval = 1.0 / self.rate  # the spacing the schedule uses (the strictest caller's)
        self.round_trip = 0.0  # a booking's round trip to Redis, smoothed (seconds)
        self._throttled = False
        self._known_tat = 0  # the schedule's end as of this caller's last booking (µs)
        self.epoch = ""  # the newest schedule this caller has booked from
        self.strict_hold = STRICT_HOLD
        self._redis: Any = None
        self._script: Any = None
        self._lost_since: float | None = None

    # -- connection ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and check the server answers; `SharedQuotaUnavailable` if it does not."""
        import redis.asyncio as aioredis  # loaded only when a shared quota is asked for
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        if self._redis is not None:
            raise PollerError("this SharedQuota is open already.")
        try:
            self._redis = aioredis.Redis.from_url(
                self.address.url,
                socket_timeout=COMMAND_TIMEOUT,
                socket_connect_timeout=COMMAND_TIMEOUT,
                # Our own loop retries with backoff and a deadline; the client's would hide it.
                retry=Retry(NoBackoff(), 0),
                client_name="faceid-poller",
            )
        except (ValueError, TypeError) as exc:
            raise SharedQuotaUnavailable(
                f"the shared quota URL {self.address.shown} cannot be used: {self._explain(exc)}."
            ) from None
        self._script = self._redis.register_script(_SCRIPT)
        try:
            await self._redis.ping()
        except Exception as exc:  # noqa: BLE001 - every way a connection fails, said once
            await self.close()
            raise SharedQuotaUnavailable(
                f"the shared quota's Redis at {self.address.shown} cannot be reached: "
                f"{self._explain(exc)}."
            ) from None
        try:
            # A server that answers PING may still refuse the schedule: a read-only replica, a
            # user without EVALSHA. Ask it to run the script (booking nothing) now, not mid-run.
            await self._run_script(mode="probe")
        except Exception as exc:  # noqa: BLE001 - the same: one sentence, exit 2
            await self.close()
            raise SharedQuotaUnavailable(
                f"the shared quota's Redis at {self.address.shown} answers but cannot keep the "
                f"schedule: {self._explain(exc)}."
            ) from None

    async def close(self) -> None:
        if self._redis is not None:
            redis, self._redis = self._redis, None
            try:
                await redis.aclose()
            except Exception as exc:  # noqa: BLE001 - closing a dead connection is no error
                log.debug("closing the shared quota's Redis connection: %s", self._scrub(exc))

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- slots -----------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait for this caller's next slot; send the request right after."""
        while True:
            reservation = await self.reserve()
            await asyncio.sleep(max(reservation.due - time.monotonic(), 0.0))
            if self.still_good(reservation):
                return

    def is_current(self, reservation: Reservation) -> bool:
        """False once the schedule it came from is known lost (Redis restarted empty, the key
        deleted): the new schedule may hand its moment to someone else."""
        return reservation.epoch == self.epoch or not self.epoch

    def still_good(self, reservation: Reservation) -> bool:
        """Whether to send on this slot now: from the current schedule, and not missed by more
        than half an interval (a paused process must not send its stale slots in a bunch)."""
        late = time.monotonic() - reservation.due
        # (At least 10 ms: at a high pace half an interval is less than the loop's own jitter.)
        return self.is_current(reservation) and late <= max(
            0.5 * self.interval / self.pace, STALE_FLOOR
        )

    def throttled(self) -> None:
        """Tencent said RequestLimitExceeded: the shared pace is lowered for every caller (on
        this caller's next reservation, at most once a second whoever reports it)."""
        self._throttled = True

    def report(self, error_code: str | None) -> None:
        """How a call went, in one line: the `Error.Code` of Tencent's answer, or None (or "")
        for an answer without an error. A throttle (`RequestLimitExceeded` and kin, SPEC §2)
        slows every caller on the account; anything else changes nothing (the pace climbs
        back by time, poller/quota/pace.py)."""
        if error_code and is_throttle_code(error_code):
            self.throttled()

    async def reserve(self, sleep: Sleep = asyncio.sleep) -> Reservation:
        """Book the next slot. Redis lost: retry with backoff (through `sleep`, so a stop can
        end the wait) for `timeout` seconds, then `SharedQuotaLost`."""
        if self._redis is None:
            raise PollerError("SharedQuota is not open: use `async with SharedQuota(...)`.")
        attempt = 0
        while True:
            # Taken now, before the await: callers booking at the same time must not report
            # the same answers twice (or clear a throttle that none of them reported).
            throttled, self._throttled = self._throttled, False
            started = time.monotonic()
            try:
                reply = await self._run_script(throttled=throttled)
            except Exception as exc:  # noqa: BLE001 - any failure of Redis: no slot, no send
                self._throttled = self._throttled or throttled
                attempt += 1
                await self._wait_for_redis(exc, attempt, started, sleep)
                continue
            break
        took = time.monotonic() - started
        self.round_trip = took if not self.reservations else 0.8 * self.round_trip + 0.2 * took
        if self._lost_since is not None:
            log.warning(
                "the shared quota's Redis at %s is back after %.1f s",
                self.address.shown,
                time.monotonic() - self._lost_since,
            )
            self._lost_since = None
        wait_us, pace, lowered, now_us, tat_us, interval_us, epoch = reply
        epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        if int(epoch) > int(self.epoch or 0):
            self.epoch = epoch
        wait = max(int(wait_us), 0) / 1e6
        reservation = Reservation(
            wait=wait,
            pace=float(pace),
            lowered=bool(int(lowered)),
            redis_time=int(now_us) / 1e6,
            due=started + took + max(wait - self.round_trip / 2, 0.0),
            epoch=epoch,
        )
        if wait > LONG_WAIT:
            log.warning(
                "the shared schedule's next slot is %.0f s away (a stuck schedule, or a Redis "
                "clock that stepped back?): this run waits for it",
                wait,
            )
        self._known_tat = max(self._known_tat, int(tat_us))
        self.reservations += 1
        self.pace = reservation.pace
        interval = int(interval_us) / 1e6
        if interval > self.interval * 1.001 and self.interval == 1.0 / self.rate:
            log.warning(
                "another poller on this account paces at %.2f req/s, slower than this one's "
                "%.2f: the shared schedule keeps the slower pace (check their --rate and "
                "--rate-margin)",
                1 / interval,
                self.rate,
            )
        self.interval = max(interval, 1.0 / self.rate)
        if reservation.lowered:
            self.slowdowns += 1
            log.info(
                "throttled by the server: the shared pace lowered to %.2f req/s for every "
                "poller on this account",
                self.rate * self.pace,
            )
        return reservation

    async def _run_script(self, *, throttled: bool = False, mode: str = "book") -> Any:
        rule = self.rule
        call = self._script(
            keys=[self.key],
            args=[
                f"{1e6 / self.rate:.3f}",
                int(throttled),
                rule.factor,
                rule.floor,
                int(rule.cooldown * 1e6),
                int(rule.hold * 1e6),
                int(rule.hold_max * 1e6),
                int(rule.ramp * 1e6),
                int(SCHEDULE_TTL * 1000),
                self._known_tat,
                f"{self.pace:.17g}",
                int(RESET_GAP * 1e6),
                mode,
                int(self.strict_hold * 1e6),
            ],
        )
        # No single call may outlast what is left of the timeout (all of it, before a loss; a
        # whole one again once it has passed: a caller that goes on is given a fair try).
        lost_for = 0.0 if self._lost_since is None else time.monotonic() - self._lost_since
        left = self.timeout - lost_for
        async with asyncio.timeout(min(COMMAND_TIMEOUT, left if left > 0 else self.timeout)):
            return await call

    async def _wait_for_redis(
        self, exc: BaseException, attempt: int, started: float, sleep: Sleep
    ) -> None:
        from redis.exceptions import (
            BusyLoadingError,
            ConnectionError,
            ReadOnlyError,
            ResponseError,
            TimeoutError,
        )

        passing = isinstance(exc, ReadOnlyError | BusyLoadingError) or (
            isinstance(exc, ResponseError)
            and (str(exc).startswith(PASSING_ERRORS) or _READ_ONLY in str(exc))
        )
        lost = isinstance(exc, ConnectionError | TimeoutError | OSError | asyncio.TimeoutError)
        if not (lost or passing):
            # Not a lost connection (a wrong password after a restart, a key of another type):
            # waiting will not mend it.
            raise SharedQuotaLost(
                f"the shared quota's Redis at {self.address.shown} failed: {self._explain(exc)}"
            ) from None
        if self._lost_since is None:
            self._lost_since = started  # lost since the call that failed began, not ended
            log.warning(
                "the shared quota's Redis at %s cannot book slots (%s): no request is sent "
                "until it is back; the run stops if it is not back within %g s",
                self.address.shown,
                self._explain(exc),
                self.timeout,
            )
        elapsed = time.monotonic() - self._lost_since
        if elapsed >= self.timeout:
            # The outage goes on counting from its start for every caller (concurrent callers
            # of the Python API each fail within the timeout, not one timeout after another);
            # the next booking that succeeds ends it.
            raise SharedQuotaLost(
                f"the shared quota's Redis at {self.address.shown} was unreachable for "
                f"{elapsed:.1f} s ({self._explain(exc)}), so no request could get a slot"
            ) from None
        backoff = random.uniform(0, min(RETRY_MAX, RETRY_FIRST * 2 ** min(attempt, 16)))
        await sleep(min(backoff, self.timeout - elapsed))

    def _explain(self, exc: BaseException) -> str:
        """One clause for a person: what Redis said, with a hint where its words are cryptic."""
        text = self._scrub(exc)
        if "NOAUTH" in text or "HELLO must be called" in text or "Authentication required" in text:
            return "it asks for a password (put it in the URL: redis://:PASSWORD@HOST:6379/0)"
        if "WRONGPASS" in text or "invalid username-password" in text:
            return "it refused the user name or password"
        if "NOPERM" in text:
            return f"this user may not run the schedule's script ({text})"
        if text.startswith("READONLY") or _READ_ONLY in text:
            return "it is a read-only replica (name the primary)"
        if self.address.url.startswith("rediss://") and "imeout" in text:
            return f"{text} (rediss:// speaks TLS: is this port a TLS port?)"
        if isinstance(exc, asyncio.TimeoutError) and not str(exc):
            return "no answer in time"
        return text

    def _scrub(self, exc: BaseException) -> str:
        """An error's text, without the password should a library ever quote the URL."""
        text = str(exc).strip().rstrip(".") or type(exc).__name__
        text = text.replace(self.address.url, self.address.shown)
        for secret in self.address.secrets:
            # Short ones are left alone (as by the log filter): our messages never quote them,
            # and starring "1" in "127.0.0.1" would give a short password away.
            if len(secret) >= 8:
                text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return (
            f"<SharedQuota {self.address.shown} rate={self.rate:.2f}/s pace={self.pace:.3f} "
            f"reservations={self.reservations}>"
        )


@asynccontextmanager
async def open_shared_quota(
    settings: Settings, *, announce: bool = True
) -> AsyncIterator[SharedQuota | None]:
    """The run's shared quota, open (its Redis answered), or None when the settings name none.

    Unreachable: `SharedQuotaUnavailable` before anything is sent (exit 2). `announce` logs
    the schedule in use (not for a check made before the run)."""
    if not settings.shared_quota:
        yield None
        return
    if settings.credentials is None:
        raise PollerError("a shared quota needs the account's credentials to find its schedule.")
    quota = SharedQuota(
        settings.shared_quota,
        settings.rate,
        margin=settings.rate_margin,
        secret_id=settings.credentials.secret_id,
        timeout=settings.shared_quota_timeout,
        rule=rule_for(settings),
    )
    async with quota:
        if not announce:
            yield quota
            return
        log.info(
            "pacing: one schedule shared through %s (key %s): %.2f req/s for every poller on "
            "this account%s",
            quota.address.shown,
            quota.key,
            quota.rate,
            f", this run at most {settings.max_share:g} of it" if settings.max_share < 1 else "",
        )
        yield quota


def _own_secret_id() -> str:
    """The SecretId `poller run` would use without a config file: the environment, else the
    SDK profile. `SharedQuota` keys the schedule by it, so the backend and the poller agree."""
    warnings: list[str] = []
    credentials = resolve_credentials(os.environ, {}, None, Path.home(), warnings)
    if credentials is None:
        raise PollerError(
            "SharedQuota needs the account's SecretId to find its schedule: pass secret_id=, "
            "or set TENCENTCLOUD_SECRET_ID."
        )
    return credentials.secret_id
