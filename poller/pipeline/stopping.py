"""The run's stop latch: once a stop is called, nothing more waits its turn to be sent.

SPEC §3 ("Stopping"): from the stop on, no new request leaves — no fresh token, no retry, no
re-check. Requests already on the wire finish; everything that is only *waiting* (for a pacer
slot, or in a retry's backoff) must give up at once, or a Ctrl-C would still send a queue's
worth of requests, one pacer slot at a time. Every such wait goes through `StopLatch.sleep`,
which `set()` ends at once with `Stopped`.
"""

from __future__ import annotations

import asyncio


class Stopped(Exception):
    """Raised where a request would have waited for its turn after the run was stopped."""


class StopLatch:
    """Set once; every sleep through it (now or later) then ends with `Stopped`."""

    __slots__ = ("_set", "_sleepers")

    def __init__(self) -> None:
        self._set = False
        self._sleepers: set[asyncio.Future[None]] = set()

    @property
    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Stop: synchronous, so a signal handler stops the very next request, not a later one."""
        self._set = True
        for waiter in self._sleepers:
            if not waiter.done():
                waiter.set_exception(Stopped())
        self._sleepers.clear()

    def check(self) -> None:
        if self._set:
            raise Stopped

    async def sleep(self, delay: float) -> None:
        """`asyncio.sleep(delay)`, ended early by `set()` with `Stopped`."""
        self.check()
        if delay <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(delay, _wake, waiter)
        self._sleepers.add(waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._sleepers.discard(waiter)

    def __repr__(self) -> str:
        return f"<StopLatch set={self._set} sleepers={len(self._sleepers)}>"


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
