"""Input items from a blocking iterator to the event loop, on a daemon thread of their own.

Why not `asyncio.to_thread` in batches: a batch waits until it is full, so a slow pipe
(`export | poller run --tokens -`) gets no results until 512 tokens have trickled in; and a
thread of the default executor blocked in `readline` holds up `asyncio.run`'s exit, so a
SIGTERM waits for the far end of the pipe. Here items are handed over as soon as they are
read, the buffer is bounded (memory stays flat), and the thread is a daemon: stopping the run
never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

BUFFER = 1024  # items read ahead of the consumer at most


class ThreadedReader(Generic[T]):
    __slots__ = ("_buffer", "_cond", "_done", "_error", "_items", "_loop", "_ready", "_thread")

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self._buffer: list[T] = []
        self._cond = threading.Condition()
        self._done = False
        self._error: Exception | None = None
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="poller-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._items:
                with self._cond:
                    self._cond.wait_for(lambda: len(self._buffer) < BUFFER)
                    wake = not self._buffer
                    self._buffer.append(item)
                if wake:  # the consumer may be waiting: only then pay for a loop wake-up
                    _call_soon(self._loop, self._ready.set)
        except Exception as exc:  # noqa: BLE001 - re-raised by the consumer, in the loop
            self._error = exc
        with self._cond:
            self._done = True
        _call_soon(self._loop, self._ready.set)

    async def batches(self) -> AsyncIterator[list[T]]:
        """Whatever was read since the last batch, as soon as there is some; then the end
        (or the reader's exception)."""
        while True:
            await self._ready.wait()
            with self._cond:
                batch, self._buffer = self._buffer, []
                done = self._done
                self._ready.clear()
                self._cond.notify()
            if batch:
                yield batch
            if done:
                if self._error is not None:
                    raise self._error
                return


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    # The run may be over (a stop, a fatal error) while this daemon thread still reads.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


async def run_in_daemon_thread(fn: Callable[[], T]) -> T:
    """Like `asyncio.to_thread`, on a daemon thread: a slow `fn` never delays the exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised by the awaiting coroutine
            error = exc
            _call_soon(loop, lambda: deliver(None, error))
        else:
            _call_soon(loop, lambda: deliver(result, None))

    threading.Thread(target=target, name="poller-helper", daemon=True).start()
    return await future
