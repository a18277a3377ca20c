"""`poll(tokens, settings)`: each token's `Result` as it settles, in an async iterator.

The same engine as `poller run`, with the lines handed to the caller instead of a file: no
lock, no resume, nothing written (`run_batch` in poller/job.py is the file's path).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from types import TracebackType
from typing import Final

from poller.api.client import FaceIdClient
from poller.api.session import open_session, require_credentials
from poller.config.settings import Settings, checked
from poller.errors import PollerError
from poller.evidence.destination import open_archive
from poller.input.from_python import as_items
from poller.input.tokens import InputError, InputItem
from poller.output.channel import NullSink, ResultChannel
from poller.output.earlier import load_earlier_results
from poller.output.result import Result
from poller.pipeline.engine import DEADLINE, Engine
from poller.pipeline.stats import RunStats
from poller.quota.shared import open_shared_quota

# Results `poll` keeps for a consumer that has not taken them yet; then the engine waits.
POLL_BUFFER: Final = 64


def poll(
    tokens: Iterable[str | InputItem], settings: Settings, *, buffer: int = POLL_BUFFER
) -> Poll:
    """Query every token and yield each one's `Result` as it settles (in no fixed order).

    ::

        async with poll(tokens, settings) as results:
            async for result in results:
                ...

    Leaving the block early (a `break`, an exception) stops the run as SIGINT stops `poller
    run` (SPEC §3): no new request leaves, requests on the wire get `grace_period` to finish,
    and every task is gone when the block exits. A plain ``async for`` without the block works
    too; after an early `break` the run is stopped once the iterator is garbage-collected.

    At most `buffer` results wait for a slow consumer; then the run waits for it. Nothing is
    written and nothing is resumed (see `run_batch` for that). After the last result, a fatal
    API error that stopped the run early (bad credentials, say) is raised as `FatalRunError`;
    `stats` holds the run's counters."""
    return Poll(tokens, settings, buffer=buffer)


class Poll:
    """One run whose results are iterated in the same event loop; made by `poll`."""

    __slots__ = (
        "_channel",
        "_client",
        "_closed",
        "_engine",
        "_iterated",
        "_settings",
        "_task",
        "_timer",
        "_tokens",
    )

    def __init__(
        self,
        tokens: Iterable[str | InputItem],
        settings: Settings,
        *,
        buffer: int = POLL_BUFFER,
        client: FaceIdClient | None = None,
    ) -> None:
        """`client` replaces the HTTP client (tests); the settings then need no credentials."""
        if buffer < 1:
            raise PollerError(f"poll() needs a buffer of at least 1 result, not {buffer}.")
        settings = checked(settings)
        if client is None:
            require_credentials(settings)
        if isinstance(tokens, str | bytes):
            raise InputError("poll() takes an iterable of token strings, not one string.")
        if not isinstance(tokens, Iterable):
            raise InputError(
                f"poll() takes an iterable of token strings, not {type(tokens).__name__}."
            )
        self._tokens = tokens
        self._settings = settings
        self._client = client
        self._channel = ResultChannel(buffer)
        self._engine: Engine | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None  # the grace period of a stop
        self._iterated = False
        self._closed = False  # stopped, or ended and reported: no more results

    @property
    def stats(self) -> RunStats | None:
        """The run's counters (live while it runs); None before it started."""
        return None if self._engine is None else self._engine.stats

    async def __aenter__(self) -> Poll:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> _Results:
        if self._iterated:
            raise PollerError("a poll() gives its results once: call poll() again to rerun.")
        self._iterated = True
        return _Results(self)

    async def _next(self) -> Result:
        self._start()
        record = await self._channel.get()
        if record is not None:
            return Result.from_line(record)
        if not self._closed:
            self._closed = True
            await self._finish()
        raise StopAsyncIteration

    def _start(self) -> None:
        if self._task is not None:
            return
        if self._closed:
            raise PollerError("this poll() was closed before it started.")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="poller-poll")

    async def _run(self) -> None:
        settings = self._settings
        deadline: asyncio.TimerHandle | None = None
        try:
            earlier = None
            if settings.skip_final_in:  # as `poller run` does: read on a thread, then skip
                earlier = await asyncio.to_thread(load_earlier_results, settings.skip_final_in)
            async with contextlib.AsyncExitStack() as stack:
                quota = await stack.enter_async_context(open_shared_quota(settings))
                client = self._client
                if client is None:
                    session = await stack.enter_async_context(open_session(settings))
                    client = FaceIdClient(session, settings)
                archive = await stack.enter_async_context(open_archive(settings))
                # From here to the engine's first wait nothing yields: a stop (`_stop`) always
                # finds the engine running, never about to start.
                self._engine = Engine(
                    settings,
                    client,
                    NullSink(),
                    shared_quota=quota,
                    output=self._channel.attach,
                    final_earlier=earlier.is_final if earlier else None,
                    expired_earlier=earlier.was_expired_locally if earlier else None,
                    archive=archive,
                )
                if settings.stop_after:
                    loop = asyncio.get_running_loop()
                    deadline = loop.call_later(settings.stop_after, self._deadline)
                await self._engine.run(as_items(self._tokens))
        finally:
            if deadline is not None:
                deadline.cancel()
            # Also after a crash, or when the session or engine could not even be built: the
            # consumer must not wait for lines that never come (`_finish` raises the error).
            await self._channel.close()
            if self._timer is not None:
                self._timer.cancel()

    async def _finish(self) -> None:
        """The run ended by itself: surface what stopped it early, if anything did."""
        assert self._task is not None
        await self._task  # raises what kept the run from starting (bad settings, say)
        assert self._engine is not None
        stats = self._engine.stats
        if stats.fatal is not None:
            raise stats.fatal
        if stats.local_error is not None:
            raise PollerError(f"the run stopped: {stats.local_error}.")

    def _deadline(self) -> None:
        """`stop_after` reached: the stop of `poller run --stop-after` (SPEC §3); the results
        still settling arrive, then the iteration ends; `stats.not_reached` counts the rest."""
        engine = self._engine
        if engine is None or engine.stats.stopped_by is not None:
            return
        engine.stop(DEADLINE)
        task = self._task
        if task is not None and self._timer is None:
            self._timer = task.get_loop().call_later(self._settings.grace_period, engine.abort)

    def _stop(self) -> None:
        """Stop as SIGINT stops `poller run`: nothing new is sent, requests on the wire get the
        grace period (then `abort`); the results still coming are dropped, never waited for."""
        self._closed = True
        task = self._task
        if task is None or task.done():
            return
        self._channel.detach()
        engine = self._engine
        if engine is None:  # not started yet: nothing was sent
            task.cancel()
        elif self._timer is None:
            engine.stop("closed")
            self._timer = task.get_loop().call_later(self._settings.grace_period, engine.abort)

    async def aclose(self) -> None:
        """Stop the run (if it still runs) and wait until every request and task is done."""
        self._stop()
        task = self._task
        if task is None:
            return
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved (and raised) by `_finish` when it matters
            return
        try:
            await asyncio.wait([task])  # never raises the run's outcome, nor cancels it
        except asyncio.CancelledError:
            # This wait was cancelled: stop at once, and still let the run account for all.
            if self._engine is not None:
                self._engine.abort()
            await asyncio.wait([task])
            raise
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._task else "not started"
        return f"<Poll {state} {self._channel!r}>"


class _Results:
    """`async for result in poll(...)`: the results of one `Poll`, once.

    Dropped before the end (a `break` without the `async with` block), it stops the run: the
    loop cannot await anything from here, but a stop needs no waiting (SPEC §3)."""

    __slots__ = ("_poll",)

    def __init__(self, run: Poll) -> None:
        self._poll = run

    def __aiter__(self) -> _Results:
        return self

    async def __anext__(self) -> Result:
        return await self._poll._next()

    def __del__(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over anyway
            self._poll._stop()
