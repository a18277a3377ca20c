"""Lines handed to a consumer in the same event loop (`poller.poll`), instead of to a file.

`ResultChannel` is a `LineOutput` (poller/output/writer.py): the engine writes to it exactly as
it writes to the file's `LineWriter`, and a consumer takes the lines out with `get`. At most
`bound` lines wait for the consumer; past that the engine's workers wait in `write`, so a slow
consumer slows the run down instead of growing memory (the same backpressure a slow pipe
gives `poller run`). When the consumer leaves early (`detach`), writes return at once and the
lines are dropped: nobody waits for room that will never come.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any

from poller.output.sink import Sink

__all__ = ["NullSink", "ResultChannel"]


class ResultChannel:
    """A bounded hand-over of result lines from the engine to one consumer."""

    __slots__ = ("_bound", "_closed", "_detached", "_lines", "_ready", "_room", "queued", "taken")

    def __init__(self, bound: int) -> None:
        if bound < 1:
            raise ValueError(f"the bound must be at least 1, not {bound}")
        self._bound = bound
        self._lines: deque[Mapping[str, Any]] = deque()
        self._ready = asyncio.Event()  # set when a line came in, or the end did
        self._room = asyncio.Event()  # set when the consumer took a line out
        self._closed = False  # the engine is done: no more lines
        self._detached = False  # the consumer is gone: lines are dropped
        self.queued = 0  # lines handed over by the engine in all
        self.taken = 0  # lines the consumer took

    def attach(self, _sink: Sink) -> ResultChannel:
        """The engine's `output` factory: this channel, whatever the (unused) sink."""
        return self

    # -- the engine's side (LineOutput) ------------------------------------------------------

    @property
    def written(self) -> int:
        """Lines that reached the consumer; the engine counts the rest as never written."""
        return self.taken

    async def write(self, record: Mapping[str, Any]) -> None:
        """Queue one line; waits while `bound` lines wait for the consumer."""
        while len(self._lines) >= self._bound and not self._detached:
            self._room.clear()
            await self._room.wait()
        self.write_nowait(record)

    def write_nowait(self, record: Mapping[str, Any]) -> None:
        """Queue one line at once, past the bound: for the few lines of a stop."""
        self.queued += 1
        if not self._detached:
            self._lines.append(record)
            self._ready.set()

    async def close(self, patience: float | None = None) -> None:
        """No more lines; the consumer gets what is queued, then the end."""
        self._closed = True
        self._ready.set()

    # -- the consumer's side -----------------------------------------------------------------

    async def get(self) -> Mapping[str, Any] | None:
        """The next line, waiting for it; None once the engine closed and all were taken."""
        while not self._lines:
            if self._closed or self._detached:
                return None
            self._ready.clear()
            await self._ready.wait()
        record = self._lines.popleft()
        self.taken += 1
        self._room.set()
        return record

    def detach(self) -> None:
        """The consumer leaves: drop what waits, and let every waiting write through."""
        self._detached = True
        self._lines.clear()
        self._room.set()
        self._ready.set()

    @property
    def waiting(self) -> int:
        """Lines queued for the consumer now (never more than the bound, but for a stop's)."""
        return len(self._lines)

    def __repr__(self) -> str:
        return (
            f"<ResultChannel waiting={len(self._lines)}/{self._bound} queued={self.queued} "
            f"taken={self.taken} closed={self._closed} detached={self._detached}>"
        )


class NullSink:
    """A `Sink` that keeps nothing, for an output that never writes to one (`ResultChannel`)."""

    __slots__ = ("lines_written",)

    def __init__(self) -> None:
        self.lines_written = 0

    def write_lines(self, data: bytes, count: int) -> None:
        self.lines_written += count

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass
