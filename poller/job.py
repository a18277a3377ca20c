"""Assembles one run: the HTTP session, client, engine and sink, plus the signal handling.

The command and Python callers take the same path (STYLE.md: "the library path is the
command's path"):

- `run_batch(tokens, output, settings)` is what `poller run` does around a batch: the output
  lock, `fresh` (empty the old file), reading the file back to resume, opening and closing the
  `JsonlSink`, then `run_job`. cli.py only parses arguments, prints and picks the exit status.
- `poll(tokens, settings)` runs the same engine with the lines handed to an async iterator
  (`Result` objects) instead of a file: no lock, no resume, nothing written.
- `run_job` is the asyncio part both stand on: the HTTP session, the client, the engine,
  signals, progress and metrics.

Every error a caller can get from them is a `PollerError`, one sentence for a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import stat
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from poller.api.client import FaceIdClient
from poller.config.errors import ConfigError
from poller.config.settings import Settings
from poller.errors import PollerError
from poller.input.plan import Plan, make_plan
from poller.input.reader import run_in_daemon_thread
from poller.input.tokens import (
    BAD_TOKEN_CHARS,
    BadEntry,
    InputError,
    InputItem,
    TokenEntry,
    check_token,
)
from poller.input.triage import Triage
from poller.observability.progress import Progress
from poller.output.channel import NullSink, ResultChannel
from poller.output.lock import OutputLock
from poller.output.result import Result
from poller.output.resume import ResumeState, load_resume_state
from poller.output.sink import JsonlSink, OutputFileError, Sink
from poller.pipeline.engine import Engine
from poller.pipeline.pacing import Pacer
from poller.pipeline.stats import RunStats

if TYPE_CHECKING:
    from poller.observability.metrics import MetricsWriter

log = logging.getLogger("poller")

SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}

# Results `poll` keeps for a consumer that has not taken them yet; then the engine waits.
POLL_BUFFER: Final = 64


def ssl_context(settings: Settings) -> ssl.SSLContext:
    # TLS verification is always on; a corporate CA bundle is added, never a bypass.
    context = ssl.create_default_context()
    if settings.ca_bundle:
        try:
            context.load_verify_locations(cafile=settings.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the CA bundle {settings.ca_bundle}: {exc.strerror or exc}."
            ) from None
    return context


def open_session(settings: Settings) -> aiohttp.ClientSession:
    """The run's HTTP session: one connection per request in flight, TLS always verified."""
    connector = aiohttp.TCPConnector(limit=settings.concurrency, ssl=ssl_context(settings))
    proxy, proxy_auth = proxy_for(settings.endpoint)
    return aiohttp.ClientSession(connector=connector, proxy=proxy, proxy_auth=proxy_auth)


def require_credentials(settings: Settings) -> None:
    """`build_settings` refuses to go on without credentials; a hand-made `Settings` may lack
    them, and the client would fail on the first request with no sentence for the user."""
    if settings.credentials is None:
        raise ConfigError(
            "the settings carry no credentials: pass Settings(credentials=Credentials("
            "secret_id, secret_key)), or build them with build_settings(), which reads "
            "TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY."
        )


def proxy_for(endpoint: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy HTTPS_PROXY/HTTP_PROXY/NO_PROXY (and ~/.netrc) name for the endpoint.

    Looked up once per run rather than with `trust_env=True`, which makes aiohttp re-read the
    environment and ~/.netrc on every request: that cost more CPU than signing (benchmarks)."""
    try:
        return get_env_proxy_for_url(URL(endpoint))
    except LookupError:
        return None, None


class _Stopper:
    """First signal: send nothing more, give requests on the wire `grace_period`. Second: now."""

    def __init__(self, engine: Engine, grace: float) -> None:
        self.engine = engine
        self.grace = grace
        self.timer: asyncio.TimerHandle | None = None

    def __call__(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        if self.engine.stats.stopped_by is None:
            log.warning(
                "%s received: sending no more requests; those on the wire have %g s to finish "
                "(send it again to stop at once)",
                name,
                self.grace,
            )
            self.engine.stop(name)
            self.timer = loop.call_later(self.grace, self.engine.abort)
        else:
            log.warning("%s received again: stopping now", name)
            self.engine.abort()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


async def _show_progress(
    engine: Engine,
    out: list[Progress],
    interval: float,
    count_entries: Callable[[], int | None] | None,
) -> None:
    # Counting the input's entries (for the bar's total and ETA) runs in a thread while the
    # run starts: the first request does not wait for a scan of a million-line file. It reads
    # the input a second time, so the caller passes it only for a regular file: on a pipe it
    # would steal tokens from the run (issue 9).
    total = await run_in_daemon_thread(count_entries) if count_entries else None
    progress = Progress(engine.stats, engine.pacer, total=total, interval=interval)
    out.append(progress)
    await progress.run_periodically(0.5)


async def run_job(
    settings: Settings,
    items: Iterable[InputItem],
    sink: Sink,
    *,
    already_final: Callable[[str], bool] | None = None,
    expired_before: Callable[[str], bool] | None = None,
    handle_signals: bool = False,
    progress: bool = False,
    progress_interval: float = 60.0,
    count_entries: Callable[[], int | None] | None = None,
    metrics_file: str | None = None,
    metrics_interval: float = 15.0,
) -> Engine:
    """Run one batch. Progress and metrics are side tasks that only read the counters.

    With `handle_signals`, SIGINT/SIGTERM stop the run gracefully (a second one at once); a
    run stopped by one leaves both ignored on return, for a caller that is about to exit."""
    require_credentials(settings)
    async with open_session(settings) as session:
        engine = Engine(
            settings,
            FaceIdClient(session, settings),
            sink,
            already_final=already_final,
            expired_before=expired_before,
        )
        loop = asyncio.get_running_loop()
        stopper = _Stopper(engine, settings.grace_period)
        if handle_signals:
            for signum, name in SIGNALS.items():
                loop.add_signal_handler(signum, stopper, name)
        side_tasks: list[asyncio.Task[None]] = []
        metrics: MetricsWriter | None = None
        if metrics_file:
            from poller.observability.metrics import (
                MetricsWriter,
            )  # prometheus_client: only when asked for

            metrics = MetricsWriter(
                metrics_file,
                engine.stats,
                engine.pacer,
                metrics_interval,
                pending_codes=settings.pending_codes,
            )
            side_tasks.append(loop.create_task(metrics.run()))
        bar: list[Progress] = []
        if progress:
            side_tasks.append(
                loop.create_task(_show_progress(engine, bar, progress_interval, count_entries))
            )
        try:
            await engine.run(items)
        finally:
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            for shown in bar:
                shown.close()
            if metrics is not None:
                metrics.final()
            stopper.close()
            if handle_signals:
                for signum in SIGNALS:
                    loop.remove_signal_handler(signum)
                    if engine.stats.stopped_by is not None:
                        # Already stopping on a signal: a repeat while the process exits
                        # changes nothing, and must not kill it mid-exit (Python resets
                        # SIGINT to the default action during finalisation), so the exit
                        # status stays 130/143.
                        signal.signal(signum, signal.SIG_IGN)
    return engine


# -- the input, from Python --------------------------------------------------------------------


def as_items(tokens: Iterable[str | InputItem]) -> Iterable[InputItem]:
    """Token strings (or the input stage's entries, passed through) as entries.

    A string is trimmed and checked as a file's token is (SPEC §1: empty, over 256 characters or
    holding control characters is refused locally: an `invalid_token` line, not final); its
    "line" is its position, from 1. A collection stays a list, which the engine reads without a
    thread; any other iterable is read lazily, on the engine's reader thread."""
    if isinstance(tokens, str | bytes):
        raise InputError("tokens should be an iterable of token strings, not one string.")
    if isinstance(tokens, Collection):
        return [_as_item(token, n) for n, token in enumerate(tokens, 1)]
    return (_as_item(token, n) for n, token in enumerate(tokens, 1))


def _as_item(token: object, n: int) -> InputItem:
    if isinstance(token, TokenEntry | BadEntry):
        return token
    if not isinstance(token, str):
        raise InputError(f"token {n} is a {type(token).__name__}, not a string.")
    text = _trim(token)
    reason = check_token(text)
    if reason is None:
        return TokenEntry(text, n)
    if len(text) > BAD_TOKEN_CHARS:
        text = text[:BAD_TOKEN_CHARS] + "…"
    # Lone surrogates would make the line's UTF-8 encoding fail: replace them.
    text = text.encode("utf-8", "replace").decode("utf-8")
    return BadEntry(text, n, f"token {n}: {reason}")


def _trim(text: str) -> str:
    # As the file readers do: whitespace, and byte-order marks.
    trimmed = text.strip().strip("\ufeff")
    return trimmed if trimmed == text else _trim(trimmed)


# -- a batch into an output file: `poller run` ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What `run_batch` did. `exit_status` is `poller run`'s (SPEC §3): 0 every token final,
    1 some not final, 3 a fatal API error stopped the run, 4 the output or input failed mid-run,
    130/143 a signal (only with `handle_signals`). Every counter is in `stats`."""

    output: str
    stats: RunStats = field(repr=False)
    pacer: Pacer = field(repr=False)  # the pace the run kept (slowdowns, effective rate)
    resumed: ResumeState | None = field(default=None, repr=False)  # None: "-" or not a file

    @property
    def exit_status(self) -> int:
        return self.stats.exit_status()

    @property
    def resumable(self) -> bool:
        """The output is a file that the next run resumes from (not "-" or /dev/null)."""
        return self.resumed is not None

    @property
    def tokens(self) -> int:
        """Lines written by this run (tokens skipped as already final are not among them)."""
        return self.stats.tokens

    @property
    def not_final(self) -> int:
        return self.stats.not_final

    @property
    def skipped_final(self) -> int:
        return self.stats.skipped_final

    @property
    def requests(self) -> int:
        return self.stats.requests

    @property
    def by_status(self) -> dict[str, int]:
        return dict(self.stats.by_status)

    def __repr__(self) -> str:
        return (
            f"BatchSummary(output={self.output!r}, exit_status={self.exit_status}, "
            f"tokens={self.tokens}, not_final={self.not_final}, "
            f"skipped_final={self.skipped_final}, requests={self.requests})"
        )


def run_batch(
    tokens: Iterable[str | InputItem],
    output: str | os.PathLike[str],
    settings: Settings,
    *,
    fresh: bool = False,
    force: bool = False,
    progress: bool = False,
    handle_signals: bool = False,
    count_entries: Callable[[], int | None] | None = None,
) -> BatchSummary:
    """Query every token and append one JSON line per token to `output` ("-": stdout), as
    `poller run` does; blocks until the run is over.

    Resumes as the command does: tokens whose last line in `output` is final are skipped, the
    rest appended; a line torn by a crash is set aside. One run per output at a time: another
    one holding it raises `LockedError`. `fresh` empties the file first, and refuses a file that
    holds results unless `force`. `progress` shows the command's progress bar on stderr;
    `handle_signals` makes SIGINT/SIGTERM stop the run gracefully (main thread only);
    `count_entries` gives the bar its total. Settings' `metrics_file` is written if set.

    Raises a `PollerError` (one sentence) for anything the caller can fix: `ConfigError`,
    `InputError`, `ResumeError`/`LockedError`, `OutputFileError`. A failure during the run (a
    fatal API error, the output failing) is in the summary instead: `exit_status` 3 or 4, and
    `stats.fatal`/`stats.local_error`.

    From inside a running event loop (a notebook, an async task) use
    ``await asyncio.to_thread(run_batch, ...)``, or `poll`."""
    _refuse_running_loop("run_batch()")
    require_credentials(settings)
    path = os.fspath(output)
    resumable = _is_resumable(path)
    with contextlib.ExitStack() as stack:
        state: ResumeState | None = None
        if resumable:
            # One run per output file at a time: a second one would duplicate every line.
            stack.enter_context(OutputLock(path))
            if fresh:
                _start_fresh(path, force)
            state = load_resume_state(path)
            if state.lines or state.torn_bytes:
                log.info("resuming %s: %s", path, state.summary())
        try:
            sink = JsonlSink(path)
        except OSError as exc:
            raise OutputFileError(f"cannot open output {path}: {exc.strerror}.") from None
        close_errors: list[str] = []

        def close_sink() -> None:
            # The last flush and close can fail too (EIO on a network disk): one sentence.
            try:
                sink.close()
            except OSError as exc:
                close_errors.append(f"cannot finish writing the output: {exc.strerror or exc}")

        stack.callback(close_sink)
        engine = asyncio.run(
            run_job(
                settings,
                as_items(tokens),
                sink,
                already_final=state.is_final if state else None,
                expired_before=state.was_expired_locally if state else None,
                handle_signals=handle_signals,
                progress=progress,
                progress_interval=settings.progress_interval,
                count_entries=count_entries,
                metrics_file=settings.metrics_file or None,
            )
        )
    if close_errors and engine.stats.local_error is None:
        engine.stats.local_error = close_errors[0]
    return BatchSummary(path, engine.stats, engine.pacer, state)


def plan_batch(
    tokens: Iterable[str | InputItem],
    output: str | os.PathLike[str],
    settings: Settings,
    *,
    fresh: bool = False,
) -> Plan:
    """What `run_batch` would do (`poller run --dry-run`): the input read, checked and
    de-duplicated against what `output` already holds; no request, nothing written."""
    path = os.fspath(output)
    state = None
    if _is_resumable(path) and not fresh:
        state = load_resume_state(path, set_aside=False)
    triage = Triage(
        max_token_age=settings.max_token_age,
        clock=time.time,
        already_final=state.is_final if state else None,
        expired_before=state.was_expired_locally if state else None,
    )
    return make_plan(iter(as_items(tokens)), triage)


def _refuse_running_loop(what: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise PollerError(
        f"{what} cannot run inside a running event loop (a notebook, an async task): call it "
        "with `await asyncio.to_thread(...)`, or use `async for result in poll(...)`."
    )


def _is_resumable(output: str) -> bool:
    """Only a regular file (or one yet to be created) is resumed and locked; not - or /dev/null."""
    if output == "-":
        return False
    try:
        return stat.S_ISREG(os.stat(output).st_mode)
    except FileNotFoundError:
        return True
    except OSError as exc:
        raise OutputFileError(f"cannot use output {output}: {exc.strerror}.") from None


def _start_fresh(output: str, force: bool) -> None:
    """Empty the output for --fresh. Runs before any request, so a failure is the user's to
    fix (a read-only file system, a file busy or locked elsewhere): one sentence, exit 2."""
    try:
        size = os.path.getsize(output)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputFileError(f"cannot use output {output}: {exc.strerror or exc}.") from None
    if size and not force:
        raise OutputFileError(
            f"{output} already holds results and --fresh would throw them away; add --force "
            "to start over, or leave out --fresh to resume."
        )
    try:
        os.truncate(output, 0)
    except OSError as exc:
        raise OutputFileError(
            f"--fresh cannot empty {output}: {exc.strerror or exc}; nothing was queried."
        ) from None


# -- results as they settle, in Python -----------------------------------------------------------


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
        if client is None:
            require_credentials(settings)
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
        async with contextlib.AsyncExitStack() as stack:
            client = self._client
            if client is None:
                session = await stack.enter_async_context(open_session(self._settings))
                client = FaceIdClient(session, self._settings)
            # From here to the engine's first wait nothing yields: a stop (`_stop`) always
            # finds the engine running, never about to start.
            self._engine = Engine(self._settings, client, NullSink(), output=self._channel.attach)
            try:
                await self._engine.run(as_items(self._tokens))
            finally:
                # Also after a crash: the consumer must not wait for lines that never come.
                await self._channel.close()
                if self._timer is not None:
                    self._timer.cancel()

    async def _finish(self) -> None:
        """The run ended by itself: surface what stopped it early, if anything did."""
        assert self._task is not None
        assert self._engine is not None
        await self._task
        stats = self._engine.stats
        if stats.fatal is not None:
            raise stats.fatal
        if stats.local_error is not None:
            raise PollerError(f"the run stopped: {stats.local_error}.")

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
