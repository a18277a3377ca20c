"""Lines out without blocking the event loop: the sink's writes run on a thread of their own.

Why: a write (and an fsync) on the loop stalls everything else on it — the pacer's schedule,
request timeouts, the signal handlers. With `--output -` into a slow or stalled reader, one
blocking write froze the whole run, Ctrl-C included. Here the loop only encodes a line and
appends it to a bounded buffer; the thread writes whatever has piled up in one go. When the
buffer is full the workers wait (`await write`): a slow reader slows the run down
(backpressure) and memory stays bounded, while the loop stays free for signals and timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from poller.errors import PollerError
from poller.input.reader import run_in_daemon_thread
from poller.output.records import encode_record
from poller.output.sink import Sink

# Lines waiting for the thread at most; a full answer is ~2 KB, so this is ~0.5 MB.
BUFFER_LINES = 256


class OutputError(PollerError):
    """Writing the output failed (disk full, a closed pipe, an fsync error, or anything else
    the writer thread met): exit 4."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause

    @property
    def pipe_closed(self) -> bool:
        """The reader closed the pipe (`| head`, or a consumer killed by the same Ctrl-C)."""
        cause = self.cause
        return isinstance(cause, OSError) and cause.errno == errno.EPIPE

    def describe(self) -> str:
        """One true sentence (without the final stop) for the user."""
        cause = self.cause
        if not isinstance(cause, OSError):
            return f"cannot write the output: {type(cause).__name__}: {cause}"
        if self.pipe_closed:
            return "the output pipe was closed by the reader"
        return f"cannot write the output: {cause.strerror or cause}"


class LineOutput(Protocol):
    """Where the engine hands its lines: `LineWriter` in a run; an inline one in tests on
    virtual time, where a thread's real-time progress and the loop's clock cannot be mixed."""

    queued: int

    @property
    def written(self) -> int: ...

    async def write(self, record: Mapping[str, Any]) -> None: ...

    def write_nowait(self, record: Mapping[str, Any]) -> None: ...

    async def close(self, patience: float | None = None) -> None: ...


class LineWriter:
    """Hands encoded lines to a daemon thread that writes them to a `Sink`."""

    __slots__ = (
        "_base",
        "_buffer",
        "_closing",
        "_cond",
        "_done",
        "_error",
        "_loop",
        "_room",
        "_sink",
        "_thread",
        "queued",
    )

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._buffer: list[bytes] = []
        self._cond = threading.Condition()
        self._closing = False
        self._error: OutputError | None = None
        self._loop = asyncio.get_running_loop()
        # Set by the thread (through the loop) whenever it takes lines out of the buffer.
        self._room = asyncio.Event()
        self._done = asyncio.Event()
        self._base = sink.lines_written  # the sink counts the lines it gets out, piece by piece
        self.queued = 0  # lines handed over in all (written or not)
        self._thread = threading.Thread(target=self._run, name="poller-writer", daemon=True)
        self._thread.start()

    async def write(self, record: Mapping[str, Any]) -> None:
        """Queue one line; waits while the buffer is full. Raises the thread's write error."""
        data = encode_record(record)
        while True:
            self._raise_if_failed()
            with self._cond:
                if len(self._buffer) < BUFFER_LINES:
                    self._append(data)
                    return
                self._room.clear()
            await self._room.wait()

    def write_nowait(self, record: Mapping[str, Any]) -> None:
        """Queue one line at once, past the bound: for the few lines of a hard stop."""
        data = encode_record(record)
        with self._cond:
            self._append(data)

    def _append(self, data: bytes) -> None:
        # Called with the lock held.
        if not self._buffer:
            self._cond.notify()
        self._buffer.append(data)
        self.queued += 1

    async def close(self, patience: float | None = None) -> None:
        """Wait until every queued line is written (and synced), then stop the thread.

        With `patience`, wait at most that many seconds of real time (a hard stop must not wait
        for a stalled reader; the daemon thread is then left behind). Raises the write error
        that stopped the thread, if any."""
        self.close_nowait()
        if patience is None:
            await self._done.wait()
        else:
            # Joined on a helper thread, not with a loop timer: the wait is for the writer
            # thread's real progress, whatever clock the loop keeps.
            await run_in_daemon_thread(lambda: self._thread.join(patience))
        self._raise_if_failed()

    @property
    def written(self) -> int:
        """Lines the output has taken so far (read live, even while a write is blocked)."""
        return self._sink.lines_written - self._base

    def close_nowait(self) -> None:
        """The hard stop: ask the thread to end after what it holds, without waiting for it."""
        with self._cond:
            self._closing = True
            self._cond.notify()

    @property
    def pending(self) -> int:
        """Lines queued but not yet written."""
        with self._cond:
            return len(self._buffer)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._buffer) or self._closing)
                batch, self._buffer = self._buffer, []
                last = self._closing and not batch
            if len(batch) >= BUFFER_LINES:
                # Only a full buffer can have a worker waiting for room (`write` clears the
                # event under the lock while it is full); otherwise spare the loop a wake-up.
                self._notify(self._room.set)
            if batch:
                try:
                    self._sink.write_lines(b"".join(batch), len(batch))
                except Exception as exc:  # noqa: BLE001 - any failure must reach the loop
                    self._fail(exc)
                    return
            if last:
                try:
                    self._sink.sync()
                except Exception as exc:  # noqa: BLE001 - any failure must reach the loop
                    self._fail(exc)
                    return
                self._notify(self._done.set)
                return

    def _fail(self, exc: Exception) -> None:
        # Whatever stopped the thread, the loop must hear of it: a thread that died silently
        # would leave the workers waiting for room and the run waiting for `close` forever.
        self._error = OutputError(exc)
        self._notify(self._room.set)
        self._notify(self._done.set)

    def _notify(self, callback: Any) -> None:
        # The loop may be gone (a hard stop) while this daemon thread still writes.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback)

    def __repr__(self) -> str:
        return (
            f"<LineWriter queued={len(self._buffer)}/{BUFFER_LINES} written={self.written} "
            f"closing={self._closing} failed={self._error is not None}>"
        )
