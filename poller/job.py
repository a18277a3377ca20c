"""Assembles one run: the HTTP session, client, engine and sink, plus the signal handling.

The command and Python callers take the same path (STYLE.md: "the library path is the
command's path"):

- `run_batch(tokens, output, settings)` is what `poller run` does around a batch: the output
  lock, `fresh` (empty the old file), reading the file back to resume, opening and closing the
  `JsonlSink`, then `run_job`. cli.py only parses arguments, prints and picks the exit status.
- `run_job` is the asyncio part under it: the HTTP session, the client, the engine, signals,
  progress and metrics. (`poll`, in poller/polling.py, runs the same engine into an async
  iterator instead of a file.)

Every error a caller can get from them is a `PollerError`, one sentence for a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from poller.api.client import FaceIdClient
from poller.api.outcomes import Status
from poller.api.session import open_session, require_credentials
from poller.config.durations import format_duration
from poller.config.settings import Settings, checked
from poller.errors import PollerError
from poller.evidence.destination import check_destination, open_archive
from poller.input.from_python import as_items
from poller.input.plan import Deadlines, Plan, make_plan
from poller.input.reader import run_in_daemon_thread
from poller.input.tokens import InputItem, TokenEntry
from poller.input.triage import Triage, Verdict
from poller.observability.progress import Progress
from poller.output.earlier import EarlierResults, load_earlier_results
from poller.output.lock import OutputLock
from poller.output.resume import ResumeState, load_resume_state
from poller.output.sink import JsonlSink, OutputFileError, Sink
from poller.pipeline.engine import DEADLINE, Engine
from poller.pipeline.pacing import Pacing
from poller.pipeline.stats import RunStats
from poller.quota.neighbours import RunRegistry, competition_warning
from poller.quota.shared import open_shared_quota

if TYPE_CHECKING:
    from poller.observability.metrics import MetricsWriter

log = logging.getLogger("poller")

SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


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
            again = (
                "during the --stop-after stop"
                if self.engine.stats.stopped_by == DEADLINE
                else "again"
            )
            log.warning("%s received %s: stopping now", name, again)
            self.engine.abort()

    def deadline(self, after: float) -> None:
        """`--stop-after` reached: the same stop as a first signal, but exit 1 (SPEC §3)."""
        if self.engine.stats.stopped_by is not None:
            return  # already stopping (a signal came first): its own rules stand
        log.warning(
            "--stop-after %s reached: sending no more requests; those on the wire have %g s to "
            "finish; the next run on the same output resumes the rest",
            format_duration(after),
            self.grace,
        )
        self.engine.stop(DEADLINE)
        self.timer = asyncio.get_running_loop().call_later(self.grace, self.engine.abort)

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


async def _count_ahead(engine: Engine, estimate: Callable[[], Plan | None], order: str) -> None:
    # A second read of the input (a regular file, or a collection), on a thread beside the run
    # like the progress bar's count: the first request does not wait for it. It gives the
    # deadline line, and the tokens the run will ask, which a deadline stop needs to say
    # exactly how many it did not reach without reading on past its deadline.
    plan = await run_in_daemon_thread(estimate)
    if plan is None:
        return
    engine.planned_query = plan.counts[Verdict.QUERY]
    if plan.deadlines is not None and plan.deadlines.dated:
        log.info("deadlines: %s", plan.deadlines.describe(order))


async def run_job(
    settings: Settings,
    items: Iterable[InputItem],
    sink: Sink,
    *,
    already_final: Callable[[str], bool] | None = None,
    expired_before: Callable[[str], bool] | None = None,
    earlier: EarlierResults | None = None,
    handle_signals: bool = False,
    progress: bool = False,
    progress_interval: float = 60.0,
    count_entries: Callable[[], int | None] | None = None,
    metrics_file: str | None = None,
    metrics_interval: float = 15.0,
    stop_after: float | None = None,
    countable: bool | None = None,
    estimate: Callable[[], Plan | None] | None = None,
) -> Engine:
    """Run one batch. Progress and metrics are side tasks that only read the counters.

    With `handle_signals`, SIGINT/SIGTERM stop the run gracefully (a second one at once); a
    run stopped by one leaves both ignored on return, for a caller that is about to exit.

    `stop_after` seconds from now (default: the settings' `stop_after`; 0 none), the run stops
    as on a first signal, and exits 1. `countable` says the input can be read to its end to
    count the tokens a deadline left (see `Engine.run`). `estimate`, run on a thread, gives
    the deadline line logged at the start (see `Deadlines`)."""
    require_credentials(settings)
    async with (
        open_shared_quota(settings) as quota,
        open_session(settings) as session,
        open_archive(settings) as archive,
    ):
        engine = Engine(
            settings,
            FaceIdClient(session, settings),
            sink,
            shared_quota=quota,
            already_final=already_final,
            expired_before=expired_before,
            final_earlier=earlier.is_final if earlier else None,
            expired_earlier=earlier.was_expired_locally if earlier else None,
            archive=archive,
        )
        loop = asyncio.get_running_loop()
        stopper = _Stopper(engine, settings.grace_period)
        if handle_signals:
            for signum, name in SIGNALS.items():
                loop.add_signal_handler(signum, stopper, name)
        after = settings.stop_after if stop_after is None else stop_after
        deadline = (
            loop.call_later(max(after, 0.0), stopper.deadline, settings.stop_after)
            if settings.stop_after
            else None
        )
        side_tasks: list[asyncio.Task[None]] = []
        if estimate is not None:
            side_tasks.append(loop.create_task(_count_ahead(engine, estimate, settings.order)))
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
            await engine.run(items, countable=countable)
        finally:
            if deadline is not None:
                deadline.cancel()
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


# -- a batch into an output file: `poller run` ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What `run_batch` did. `exit_status` is `poller run`'s (SPEC §3): 0 every token final,
    1 some not final, 3 a fatal API error stopped the run, 4 the output or input failed mid-run,
    130/143 a signal (only with `handle_signals`). Every counter is in `stats`."""

    output: str
    stats: RunStats = field(repr=False)
    pacer: Pacing = field(repr=False)  # the pace the run kept (slowdowns, effective rate)
    resumed: ResumeState | None = field(default=None, repr=False)  # None: "-" or not a file
    # The index over settings.skip_final_in (None when it is empty).
    earlier: EarlierResults | None = field(default=None, repr=False)

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
    def final_earlier(self) -> int:
        """Tokens skipped as final in an earlier run's file (settings.skip_final_in)."""
        return self.stats.final_earlier

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
    output: str | os.PathLike[str] | Sink,
    settings: Settings,
    *,
    fresh: bool = False,
    force: bool = False,
    progress: bool = False,
    handle_signals: bool = False,
    count_entries: Callable[[], int | None] | None = None,
    reread: Callable[[], Iterable[InputItem]] | None = None,
) -> BatchSummary:
    """Query every token and append one JSON line per token to `output` ("-": stdout), as
    `poller run` does; blocks until the run is over.

    `output` may also be any `Sink` (your own store, say): the lines go to it, with no lock and
    no resume (the sink is yours to close).

    Resumes as the command does: tokens whose last line in `output` is final are skipped, the
    rest appended; a line torn by a crash is set aside. Tokens final in any file of settings'
    `skip_final_in` (earlier nights' outputs, globs allowed) are skipped with no line. One
    run per output at a time: another one holding it raises `LockedError`. `fresh` empties the
    file first, and refuses a file that holds results unless `force`. `progress` shows the
    command's progress bar on stderr; `handle_signals` makes SIGINT/SIGTERM stop the run
    gracefully (main thread only); `count_entries` gives the bar its total. Settings'
    `metrics_file` is written if set.

    `reread` is a second, independent read of the same input (`poller run` passes one for a
    regular file; a collection of tokens is re-read without it): with it the run logs at its
    start how many tokens would pass their 72 h before their turn, and a `stop_after` deadline
    counts exactly the tokens it left (else "at least"). Settings' `stop_after` is measured
    from this call; the run then stops as on SIGINT, and `exit_status` is 1.

    Raises a `PollerError` (one sentence) for anything the caller can fix: `ConfigError`,
    `InputError`, `ResumeError`/`LockedError`, `OutputFileError`. A failure during the run (a
    fatal API error, the output failing) is in the summary instead: `exit_status` 3 or 4, and
    `stats.fatal`/`stats.local_error`.

    From inside a running event loop (a notebook, an async task) use
    ``await asyncio.to_thread(run_batch, ...)``, or `poll`."""
    entered = time.monotonic()  # --stop-after counts from here: loading a resume file is part
    _refuse_running_loop("run_batch()")
    settings = checked(settings)
    require_credentials(settings)
    if handle_signals and threading.current_thread() is not threading.main_thread():
        raise PollerError("run_batch(handle_signals=True) works only in the main thread.")
    if isinstance(output, str | os.PathLike):
        path: str = os.fspath(output)
        resumable = _is_resumable(path)
    elif all(hasattr(output, name) for name in ("write_lines", "lines_written", "sync")):
        if fresh:
            raise PollerError("fresh=True empties an output file; a Sink is yours to empty.")
        path, resumable = repr(output), False
    else:
        raise OutputFileError(
            f"run_batch() writes to a path or a Sink, not {type(output).__name__}."
        )
    earlier = _load_earlier(settings, path if resumable else None)
    if settings.shared_quota:
        # Before the output is touched (--fresh empties it): a run that cannot start must not
        # have changed anything (exit 2). The run connects again, for good, when it starts.
        asyncio.run(_reach_shared_quota(settings))
    if settings.evidence:
        # The same for the evidence store: a read-only directory or a missing bucket is one
        # sentence (exit 2) before anything is touched or any quota spent.
        asyncio.run(check_destination(settings.evidence))
    with contextlib.ExitStack() as stack:
        state: ResumeState | None = None
        if resumable:
            # One run per output file at a time: a second one would duplicate every line.
            stack.enter_context(OutputLock(path))
            _refuse_a_foreign_file(path)  # before --fresh: a foreign file is never emptied
            if fresh:
                _start_fresh(path, force)
            state = load_resume_state(path)
            if state.lines or state.torn_bytes:
                log.info("resuming %s: %s", path, state.summary())
        _announce(stack, settings, path)
        close_errors: list[str] = []
        if isinstance(output, str | os.PathLike):
            sink: Sink = _open_sink(path)

            def close_sink() -> None:
                # The last flush and close can fail too (EIO on a network disk): one sentence.
                try:
                    sink.close()
                except OSError as exc:
                    close_errors.append(f"cannot finish writing the output: {exc.strerror or exc}")

            stack.callback(close_sink)
        else:
            sink = output
        if reread is None and isinstance(tokens, Collection):
            items_again = tokens

            def reread() -> Iterable[InputItem]:
                return as_items(items_again)

        estimate = None
        if reread is not None and settings.max_token_age > 0:
            estimate = functools.partial(_estimate, reread, settings, state, earlier)
        elif settings.max_token_age > 0 and settings.order == "input":
            log.info(
                "deadlines: the input streams (a pipe), so how many tokens would pass their "
                "%.3g h before their turn cannot be known in advance (--order expiry reads it "
                "whole and says)",
                settings.max_token_age / 3600,
            )
        engine = asyncio.run(
            run_job(
                settings,
                as_items(tokens),
                sink,
                already_final=state.is_final if state else None,
                expired_before=state.was_expired_locally if state else None,
                earlier=earlier,
                handle_signals=handle_signals,
                progress=progress,
                progress_interval=settings.progress_interval,
                count_entries=count_entries,
                metrics_file=settings.metrics_file or None,
                stop_after=settings.stop_after - (time.monotonic() - entered),
                countable=reread is not None,
                estimate=estimate,
            )
        )
    if close_errors and engine.stats.local_error is None:
        engine.stats.local_error = close_errors[0]
    return BatchSummary(path, engine.stats, engine.pacer, state, earlier)


def _announce(stack: contextlib.ExitStack, settings: Settings, output: str) -> None:
    """Register this run with the others on this machine for its lifetime; without a shared
    quota, say in one line when they compete for the account's quota (never refused)."""
    if settings.credentials is None:
        return
    neighbours = stack.enter_context(
        RunRegistry(settings.credentials.secret_id, output, settings.max_share)
    )
    if settings.shared_quota:
        return  # this run takes its slots from the shared schedule: nothing to add
    warning = competition_warning(neighbours, settings.max_share)
    if warning is not None:
        log.warning("warning: %s", warning)


def _load_earlier(settings: Settings, output: str | None) -> EarlierResults | None:
    """The index over settings.skip_final_in, read before the output is touched: a glob that
    matches nothing or an unreadable file is a `ResumeError` (exit 2) before any request."""
    if not settings.skip_final_in:
        return None
    earlier = load_earlier_results(settings.skip_final_in, output=output)
    log.info("skipping what earlier runs settled: %s", earlier.summary())
    for path in earlier.foreign:
        log.warning(
            "--skip-final-in %s holds no result line: is it an output of this poller?", path
        )
    return earlier


def _open_sink(path: str) -> JsonlSink:
    try:
        return JsonlSink(path)
    except OSError as exc:
        raise OutputFileError(f"cannot open output {path}: {exc.strerror}.") from None


def _refuse_a_foreign_file(path: str) -> None:
    """Appending result lines to a file that holds none (an export given as --output by
    mistake, a system file) would damage it and spread personal data: refuse it.

    Only a file whose first line is not a result line is read through for the check, so an
    ordinary output costs one short read; a real output whose first line was torn by a crash
    still has its later lines and passes."""
    try:
        with open(path, "rb") as fh:
            head = fh.readline(1 << 20)
    except OSError:
        return  # missing (a new output) or unreadable: load_resume_state says which
    if not head:
        return
    if not head.endswith(b"\n"):
        # The whole file is one unfinished line: a crash in the very first write (our lines
        # start `{"token":`), or a foreign one-line file that resume would set aside and empty.
        if head.removeprefix(b"\xef\xbb\xbf").startswith(b'{"token":'):
            return
        raise OutputFileError(
            f"{path} holds one unfinished line that is not a result line: it is not an output "
            "of this poller (were --tokens and --output swapped?), so nothing is written to it."
        )
    if _is_result_line(head):
        return
    probe = load_resume_state(path, set_aside=False)
    if probe.lines and probe.unreadable == probe.lines:
        raise OutputFileError(
            f"{path} holds {probe.lines} line{'s' if probe.lines != 1 else ''} and none is a "
            "result line: it is not an output of this poller (were --tokens and --output "
            "swapped?), so nothing is appended to it."
        )


def _is_result_line(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    # As the resume reader tells a result line: a string token, a bool `final`, a known status.
    return (
        isinstance(record, dict)
        and isinstance(record.get("token"), str)
        and isinstance(record.get("final"), bool)
        and record.get("status") in _STATUSES
    )


_STATUSES = frozenset(status.value for status in Status)


def _estimate(
    reread: Callable[[], Iterable[InputItem]],
    settings: Settings,
    state: ResumeState | None,
    earlier: EarlierResults | None,
) -> Plan | None:
    """The input read once more and triaged as the run does: the deadline line, and the
    tokens the run will ask (for an exact "not reached" after `--stop-after`).

    Only worth a second read when there is a deadline to speak of: with no `stop_after`, an
    input whose first entries carry no `issued_at` (a plain list of tokens) is left alone."""
    try:
        items = iter(reread())
        if not settings.stop_after:
            head = list(itertools.islice(items, UNDATED_PROBE))
            if not any(isinstance(item, TokenEntry) and item.issued_at for item in head):
                return None
            items = itertools.chain(head, items)
        return _plan(items, settings, state, earlier)
    except PollerError as exc:  # the run's own reader reports a broken input: only note it
        log.debug("no deadline estimate: %s", exc)
        return None


# Entries looked at before the count ahead gives up on an input without `issued_at`.
UNDATED_PROBE = 1000


def _plan(
    tokens: Iterable[str | InputItem],
    settings: Settings,
    state: ResumeState | None,
    earlier: EarlierResults | None,
) -> Plan:
    """The input triaged as the run triages it: resume state and earlier runs included."""
    triage = Triage(
        max_token_age=settings.max_token_age,
        clock=time.time,
        already_final=state.is_final if state else None,
        expired_before=state.was_expired_locally if state else None,
        final_earlier=earlier.is_final if earlier else None,
        expired_earlier=earlier.was_expired_locally if earlier else None,
    )
    deadlines = None
    if settings.max_token_age > 0:
        deadlines = Deadlines(time.time(), settings.run_rate, settings.max_token_age)
    return make_plan(iter(as_items(tokens)), triage, deadlines=deadlines)


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
    earlier = _load_earlier(settings, path if _is_resumable(path) else None)
    state = None
    if _is_resumable(path):
        _refuse_a_foreign_file(path)  # as the run would: the plan must not promise a run
    if _is_resumable(path) and not fresh:
        state = load_resume_state(path, set_aside=False)
    if settings.shared_quota:
        # The run would refuse to start without its Redis: so does the plan (exit 2).
        _refuse_running_loop("plan_batch()")
        asyncio.run(_reach_shared_quota(settings))
    if settings.evidence:
        _refuse_running_loop("plan_batch()")
        asyncio.run(check_destination(settings.evidence))
    return _plan(tokens, settings, state, earlier)


async def _reach_shared_quota(settings: Settings) -> None:
    async with open_shared_quota(settings, announce=False):
        pass


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
