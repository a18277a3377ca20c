"""The queue between the input and the workers: fresh tokens, and pending tokens due a re-check.

Fresh tokens wait in a bounded FIFO (the input is streamed, so memory stays flat however long
the file); pending tokens wait in a heap ordered by when they are due again. Workers take from
both fairly: a due re-check goes out at most every other time while fresh tokens are waiting,
so re-polls never starve fresh tokens, and fresh tokens never starve re-polls.

The queue also knows when the run is over: input closed, nothing queued, nothing waiting for
a re-check and no token in a worker's hands (a token in flight may still come back pending).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Job:
    """One token's progress through this run (attempts add up across re-checks)."""

    token: str
    line: int = 0
    attempts: int = 0
    first_pending_at: float | None = None  # loop time of the first pending answer
    last_response: dict[str, Any] | None = field(default=None, repr=False)
    line_handed: bool = False  # its line for this run is on its way to the output


class WorkQueue:
    __slots__ = (
        "_cond",
        "_fresh",
        "_in_flight",
        "_input_closed",
        "_maxsize",
        "_prefer_recheck",
        "_rechecks",
        "_seq",
        "_stopped",
        "_time",
        "dropped",
    )

    def __init__(self, maxsize: int, *, time_fn: Callable[[], float] | None = None) -> None:
        self._maxsize = maxsize
        self._fresh: deque[Job] = deque()
        self._rechecks: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._cond = asyncio.Condition()
        self._in_flight = 0
        self._input_closed = False
        self._stopped = False
        self._prefer_recheck = False
        self._time = time_fn or (lambda: asyncio.get_running_loop().time())
        # Fresh tokens `stop()` threw away: never handed to a worker, so never asked (the
        # engine counts them among the tokens a stop did not reach).
        self.dropped = 0

    async def put(self, job: Job) -> bool:
        """Queue a fresh token, waiting for room; False if the queue was stopped meanwhile."""
        async with self._cond:
            await self._cond.wait_for(lambda: len(self._fresh) < self._maxsize or self._stopped)
            if self._stopped:
                return False
            self._fresh.append(job)
            self._cond.notify_all()
            return True

    async def schedule_recheck(self, job: Job, delay: float) -> bool:
        """Hold a pending token for another look in `delay` seconds; False once stopped.

        Checked under the lock: a job pushed after `stop()` emptied the heap would be lost
        (no line, not counted), so a stopped queue refuses it and the caller writes it."""
        async with self._cond:
            if self._stopped:
                return False
            heapq.heappush(self._rechecks, (self._time() + delay, next(self._seq), job))
            self._cond.notify_all()
            return True

    async def close_input(self) -> None:
        async with self._cond:
            self._input_closed = True
            self._cond.notify_all()

    async def get(self) -> Job | None:
        """The next job, or None once the run is over (or stopped). Pair with `task_done`."""
        async with self._cond:
            while not self._stopped:
                now = self._time()
                due = bool(self._rechecks) and self._rechecks[0][0] <= now
                if due and (self._prefer_recheck or not self._fresh):
                    self._prefer_recheck = False
                    return self._hand_out(heapq.heappop(self._rechecks)[2])
                if self._fresh:
                    self._prefer_recheck = True
                    return self._hand_out(self._fresh.popleft())
                if self._input_closed and not self._rechecks and self._in_flight == 0:
                    self._cond.notify_all()  # wake the other idle workers: they are done too
                    return None
                timeout = self._rechecks[0][0] - now if self._rechecks else None
                with contextlib.suppress(TimeoutError):  # a re-check fell due
                    await asyncio.wait_for(self._cond.wait(), timeout)
            return None

    def _hand_out(self, job: Job) -> Job:
        self._in_flight += 1
        self._cond.notify_all()  # room for the producer
        return job

    async def task_done(self) -> None:
        async with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    async def stop(self) -> list[Job]:
        """Hand out nothing more; returns the jobs that were waiting for a re-check."""
        async with self._cond:
            self._stopped = True
            waiting = [job for _, _, job in sorted(self._rechecks)]
            self._rechecks.clear()
            self.dropped += len(self._fresh)
            self._fresh.clear()
            self._cond.notify_all()
            return waiting

    @property
    def stopped(self) -> bool:
        return self._stopped

    def __repr__(self) -> str:
        return (
            f"<WorkQueue fresh={len(self._fresh)}/{self._maxsize} rechecks={len(self._rechecks)} "
            f"in_flight={self._in_flight} input_closed={self._input_closed} "
            f"stopped={self._stopped}>"
        )
