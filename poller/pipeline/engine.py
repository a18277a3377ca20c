"""The batch job: tokens in → bounded queue → workers → one line per token out.

Read top to bottom: `run` starts the producer (input → triage → queue) and the workers; a worker
takes a token and `process`es it: for each attempt it takes a pacer slot (a retry spends quota
too), sends one freshly signed request, and gets back one outcome (`outcome_of`, the only place
that decides what an answer means). It acts on that outcome: writes the line, retries after a
backoff (`RetryPolicy`), schedules a pending token's re-check, or stops the run.

A stop (a signal, a fatal API error, the circuit breaker, a local failure) sets one latch: no
request leaves after it, requests on the wire finish and are written, and a token that never
reached the server gets no line (SPEC §3). So the requests the server saw always equal the sum
of the lines' `attempts`, unless a hard stop (`abort`) cut requests off.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, assert_never

from poller.api.client import FaceIdClient
from poller.api.outcomes import (
    ClockSkew,
    Fatal,
    Fault,
    Outcome,
    Retry,
    Settled,
    Status,
    Throttled,
    Transient,
    UnknownCode,
)
from poller.config.settings import Settings
from poller.errors import PollerError
from poller.evidence.archive import Archive, Report
from poller.input.order import ExpiryOrder, late_count
from poller.input.reader import ThreadedReader
from poller.input.tokens import BadEntry, InputError, InputItem, TokenEntry
from poller.input.triage import Triage, Verdict
from poller.output.records import LOCAL_EXPIRY_CODE, ErrorInfo, build_record
from poller.output.sink import Sink
from poller.output.writer import LineOutput, LineWriter, OutputError
from poller.pipeline.archiving import ArchiveStage
from poller.pipeline.breaker import Breaker
from poller.pipeline.pacing import Pacer, Pacing, RetryBudget
from poller.pipeline.retries import RetryPolicy
from poller.pipeline.shared_pacing import SharedPacer
from poller.pipeline.stats import FatalRunError, RunStats
from poller.pipeline.stopping import StopLatch, Stopped
from poller.pipeline.workqueue import Job, WorkQueue
from poller.quota.pace import rule_for
from poller.quota.shared import SharedQuota, SharedQuotaLost

log = logging.getLogger("poller")

# After a hard stop, seconds the writer thread gets to write the lines it holds: enough for a
# working disk or pipe, short enough that a stalled reader does not hold the exit up.
ABORT_DRAIN = 1.0

# Items taken at once from a collection already in memory (see `_batches`).
MEMORY_BATCH = 1024

# Expiry order sorts more tokens than this on a thread (a second or more for millions), so
# the loop keeps serving signals and timers meanwhile; fewer are sorted in place (a test on
# virtual time must not wait for a thread).
SORT_IN_THREAD = 100_000

# The stop reason of `--stop-after` (`Engine.stop("deadline")`): exit 1, not 130/143.
DEADLINE = "deadline"

# What one attempt ends in: a clock skew never leaves it (re-sent at once, or fatal).
Attempted = Settled | Throttled | Transient | Fatal | UnknownCode


@dataclass(slots=True)
class _TokenState:
    """One token's attempts within one `process` call (a re-check starts a new one)."""

    tries: int = 0  # attempts made (a SignatureExpire re-send is part of its attempt)
    on_wire: bool = False  # a request of this token is out, not answered yet
    throttled: int = 0  # of them, answered RequestLimitExceeded
    budget_denied: bool = False
    last_fault: Throttled | Transient | ClockSkew | None = None  # why the latest attempt failed
    # What the next request that really leaves counts as (counted when sent, not planned).
    is_recheck: bool = False
    is_retry: bool = False


class Engine:
    """Runs one batch; holds the shared pacer, retry policy, client and sink."""

    def __init__(
        self,
        settings: Settings,
        client: FaceIdClient,
        sink: Sink,
        *,
        pacer: Pacing | None = None,
        shared_quota: SharedQuota | None = None,
        budget: RetryBudget | None = None,
        clock: Callable[[], float] = time.time,
        already_final: Callable[[str], bool] | None = None,
        expired_before: Callable[[str], bool] | None = None,
        final_earlier: Callable[[str], bool] | None = None,
        expired_earlier: Callable[[str], bool] | None = None,
        output: Callable[[Sink], LineOutput] = LineWriter,
        archive: Archive | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.sink = sink
        # The stop latch ends every wait for a slot or a backoff at once (SPEC §3 "Stopping").
        self._stop = StopLatch()
        # This run's own pace, at its share of the quota; with a shared quota it stays
        # underneath the shared schedule as a guard against bursts.
        own = Pacer(settings.run_rate, stop=self._stop, rule=rule_for(settings))
        if pacer is None and shared_quota is not None:
            pacer = SharedPacer(shared_quota, own, stop=self._stop, on_lost=self._lose_quota)
        self.pacer: Pacing = pacer or own
        self.budget = budget or RetryBudget(settings.retry_budget, settings.retry_refill)
        self.retries = RetryPolicy(settings, self.budget)
        self.clock = clock
        self.stats = RunStats()
        self.breaker = Breaker(settings.breaker_threshold)
        # Tokens that already have a final line in the output (resume) are skipped.
        self._triage = Triage(
            max_token_age=settings.max_token_age,
            clock=clock,
            already_final=already_final,
            expired_before=expired_before,
            final_earlier=final_earlier,
            expired_earlier=expired_earlier,
        )
        self._queue = WorkQueue(settings.concurrency * 4)
        self._workers: list[asyncio.Task[None]] = []
        self._producer: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._output = output
        self._writer: LineOutput | None = None
        self._closing: asyncio.Task[None] | None = None
        self._hard_stop = False
        self._on_wire = 0  # requests sent and not yet answered
        # The input can be read to its end after a deadline stop, to count the tokens the run
        # did not reach (a collection, or a regular file: never a pipe, which may never end).
        self._countable = False
        self._input_read = False  # every input item was read (so `not_reached` is exact)
        self._expiry: ExpiryOrder | None = None
        self._expiry_left = 0  # of the expiry order, tokens not yet handed to the queue
        # Tokens the run would ask, counted ahead on a copy of the input (job.py, beside the
        # run): after a deadline, not reached = planned - asked, with no need to read on.
        self.planned_query: int | None = None
        self._working = 0  # workers still taking jobs: after a stop, the read-on ends at 0
        # Answers whose media are being kept (--evidence) before their lines are written.
        self._archiving: ArchiveStage | None = None
        self._archivers: list[asyncio.Task[None]] = []
        if archive is not None:
            self.stats.evidence_on = True
            self._archiving = ArchiveStage(
                archive,
                backlog=settings.evidence_backlog,
                requeries=settings.evidence_requeries,
                requery=self._requery,
                write=self._write_archived,
                write_now=self._write_archived_now,
                # A stop lets the downloads in hand finish (no quota spent); a hard stop not.
                stopping=lambda: self._hard_stop,
                stopped=lambda: self._stop.is_set,
                threshold=settings.breaker_threshold,
                on_broken=self._archive_broken,
            )

    # -- the pipeline ------------------------------------------------------------------------

    async def run(self, items: Iterable[InputItem], *, countable: bool | None = None) -> RunStats:
        """Drain `items` through the workers; returns the counters (fatal recorded in them).

        `countable`: the input can be read to its end after a deadline stop, to count exactly
        the tokens not reached (default: only a collection; pass True for a regular file)."""
        self.stats.started = self.clock()
        self._countable = isinstance(items, Collection) if countable is None else countable
        self._writer = self._output(self.sink)
        try:
            async with asyncio.TaskGroup() as tg:
                self._group = tg
                self._producer = tg.create_task(self._produce(items), name="producer")
                self._workers = [
                    tg.create_task(self._work(), name=f"worker-{n}")
                    for n in range(self.settings.concurrency)
                ]
                if self._archiving is not None:
                    self._archivers = [
                        tg.create_task(self._archiving.work(), name=f"archiver-{n}")
                        for n in range(self.settings.evidence_concurrency)
                    ]
        except* (OutputError, OSError) as group:
            # The output cannot be written (disk full, a closed pipe), or the system failed
            # under us: every task is cancelled; keep what was written, say so in one sentence.
            self._record_local_error(group.exceptions[0])
            self._stop.set()
        finally:
            self._group = None
            # Tokens still waiting for a re-check when the run ended early (an output failure
            # cancels everything, with no stop to write them) reached the server: they get
            # their `pending` line, or are counted among the lines that never reached it.
            for job in await self._queue.stop():
                self._write_now(self._pending_line(job), job)
            if self._archiving is not None:
                self._archiving.abandon()  # answers still waiting for their media: lines now
            await self._close_output()
            self.stats.not_reached += self._queue.dropped + self._expiry_left
            self.stats.not_reached_exact = self._input_read
            if self.stats.stopped_by == DEADLINE and self.planned_query is not None:
                # Exact without reading on: what the run would have asked, less what it did.
                self.stats.not_reached = max(self.planned_query - self.stats.asked, 0)
                self.stats.not_reached_exact = True
            self.stats.finished = self.clock()
            self.stats.budget_denied = self.budget.denied
        return self.stats

    async def _produce(self, items: Iterable[InputItem]) -> None:
        try:
            await self._feed(items)
        except InputError as exc:
            # The input broke off mid-file: stop like a signal does (requests on the wire
            # finish and are written), then exit 4 with one sentence.
            self._record_local_error(exc)
            self._halt()
        except OutputError:
            raise  # a line could not be written: the run's own handler stops everything
        except Exception as exc:  # noqa: BLE001 - any failure of the caller's token source
            # A Python caller's tokens (a generator over a database cursor, say) failed: the
            # same stop as a broken file, so the tokens already sent keep their lines.
            self._record_local_error(
                InputError(f"the tokens could not be read: {type(exc).__name__}: {exc}")
            )
            self._halt()

    async def _feed(self, items: Iterable[InputItem]) -> None:
        if self.settings.order == "expiry":
            self._expiry = ExpiryOrder()
        batches = _batches(items)
        batch: list[InputItem] = []
        n = 0
        try:
            async for batch in batches:
                for n, item in enumerate(batch):
                    if self._stop.is_set or not await self._take(item):
                        await self._count_not_reached(batch[n:], batches)
                        return
                batch = []
            self._input_read = True
            if self._expiry is not None:
                await self._feed_in_expiry_order(self._expiry)
        except asyncio.CancelledError:
            # A hard stop (or a stop that does not read on): what was in hand is counted, the
            # rest of the input is unknown ("at least" in the summary).
            self._count_query(batch[n:])
            raise
        await self._queue.close_input()

    async def _take(self, item: InputItem) -> bool:
        """Triage one item: queue it (or keep it for expiry order), or settle it locally.
        False when the queue refused it: the run is stopping (it is counted as not reached)."""
        verdict = self._triage(item)
        if verdict is not Verdict.QUERY:
            await self._settle_locally(item, verdict)
            return True
        if self._expiry is not None and isinstance(item, TokenEntry):
            self._expiry.add(item)
            self._expiry_left += 1
            return True
        try:
            queued = await self._queue.put(Job(item.token, item.line))
        except asyncio.CancelledError:
            self.stats.not_reached += 1
            raise
        if not queued:
            self.stats.not_reached += 1
        return queued

    async def _feed_in_expiry_order(self, expiry: ExpiryOrder) -> None:
        """Queue the collected tokens oldest issued_at first (SPEC §9), after the whole input
        was read and triaged (duplicates and local lines were settled in input order)."""
        start, rate, max_age = self.clock(), self.pacer.rate, self.settings.max_token_age

        def prepare() -> int:
            expiry.sort()
            return late_count(expiry.issued_in_order(), start, rate, max_age)

        if len(expiry) > SORT_IN_THREAD:
            late = await asyncio.to_thread(prepare)
        else:
            late = prepare()
        log.info(
            "expiry order: %d tokens to query, oldest issued_at first (%.1f MB held); %d would "
            "pass their %.3g h window before their turn at %.2f req/s",
            len(expiry),
            expiry.nbytes() / 1e6,
            late,
            max_age / 3600,
            rate,
        )
        for entry in expiry:
            if self._stop.is_set or not await self._queue.put(Job(entry.token, entry.line)):
                return  # the tokens left are counted as not reached when the run ends
            self._expiry_left -= 1

    def _count_query(self, items: Iterable[InputItem]) -> None:
        """Count as not reached the items a stop left unread that the run would have asked."""
        for item in items:
            if self._triage(item) is Verdict.QUERY:
                self.stats.not_reached += 1

    async def _count_not_reached(
        self, rest: list[InputItem], batches: AsyncIterator[list[InputItem]]
    ) -> None:
        """After a stop: count the tokens in hand that were never asked and, after a deadline
        on an input that ends (a file, a collection), the rest of the input too. Nothing more
        is sent or written; the triage only tells which would have been asked."""
        self._count_query(rest)
        if self.stats.stopped_by != DEADLINE or not self._countable:
            return
        async for batch in batches:
            if self.planned_query is not None or not self._working:
                # Counted ahead, or nothing left on the wire: the run ends now rather than
                # overrun its deadline reading millions of lines (then "at least", unless
                # the count ahead knows).
                return
            self._count_query(batch)
            await asyncio.sleep(0)  # a collection is read without a thread: let the loop in
        self._input_read = True

    async def _settle_locally(self, item: InputItem, verdict: Verdict) -> None:
        """Tokens decided without a request: duplicates, resumed, invalid, too old."""
        if verdict is Verdict.DUPLICATE:
            self.stats.duplicates += 1
        elif verdict is Verdict.ALREADY_FINAL:
            self.stats.skipped_final += 1
        elif verdict is Verdict.FINAL_EARLIER:
            self.stats.final_earlier += 1
        elif isinstance(item, BadEntry):
            # Decided by the *input*, so not final (SPEC §2): the next run reads the fixed
            # export and decides afresh instead of skipping the token as settled.
            error = ErrorInfo("InvalidInput", item.reason)
            await self._write(
                self._line(
                    token=item.token,
                    status=Status.INVALID_TOKEN,
                    final=False,
                    attempts=0,
                    error=error,
                )
            )
        else:
            age = self._triage.age(item.issued_at) or 0.0
            self.stats.expired_local += 1
            error = ErrorInfo(
                LOCAL_EXPIRY_CODE,
                f"issued {age / 3600:.1f} h ago, past the "
                f"{self.settings.max_token_age / 3600:.3g} h query window; not sent",
            )
            await self._write(
                self._line(
                    token=item.token, status=Status.EXPIRED, final=True, attempts=0, error=error
                )
            )

    async def _work(self) -> None:
        self._working += 1
        try:
            await self._work_on()
        finally:
            self._working -= 1
            if not self._working and self._archiving is not None:
                # No worker hands over another answer: the archivers end once theirs are kept.
                self._archiving.close(len(self._archivers))

    async def _work_on(self) -> None:
        while (job := await self._queue.get()) is not None:
            try:
                await self.process(job)
            except FatalRunError as fatal:
                self._halt(fatal=fatal)
            except Exception:
                # The output failed (or worse): the task group cancels every other worker
                # now, as a hard stop does; they still account for the tokens they hold.
                self._hard_stop = True
                raise
            finally:
                await self._queue.task_done()

    # -- one token: a slot, a request, its outcome, then act on it ----------------------------

    async def process(self, job: Job) -> dict[str, Any] | None:
        """Query one token until it settles for this run; write and return its line.

        Returns None when the token is pending and was scheduled for a re-check instead, or
        when a stop came before its first request left."""
        state = _TokenState(is_recheck=job.last_response is not None)
        try:
            return await self._process(job, state)
        except asyncio.CancelledError:
            if self._hard_stop:
                # Cut off wherever it was (on the wire, waiting for a slot or a backoff whose
                # end the stop had already set): a token that reached the server keeps a line.
                self._settle_hard_stopped(job, state)
            raise

    async def _process(self, job: Job, state: _TokenState) -> dict[str, Any] | None:
        try:
            outcome = await self._query(job, state)
        except Stopped:
            return await self._settle_stopped(job, state)
        match outcome:
            case Settled():
                return await self._settle(job, outcome)
            case Throttled() | Transient():
                return await self._give_up(job, state, outcome)
            case UnknownCode():
                # SPEC §2: not final (not retried within the run; the next run asks again), so
                # a new code never marks a whole night settled. The breaker counts it.
                record = await self._write(self._error_line(job, outcome), job)
                self._feed_breaker(outcome.code, outcome.code)
                return record
            case Fatal():
                # The token did reach the server: its line says why the run stopped (not final).
                await self._write(self._error_line(job, outcome), job)
                raise FatalRunError(outcome.code, outcome.message, request_id=outcome.request_id)
            case _:
                assert_never(outcome)

    async def _query(self, job: Job, state: _TokenState) -> Attempted:
        """The first attempt bare, as most tokens settle on it; a failed one is retried by
        tenacity, which takes it as its attempt 1 (`RetryPolicy.retrying` says why). The
        backoff sleeps through the stop latch: a stop ends it at once (`Stopped`), no retry
        sent."""
        outcome = await self._attempt(job, state)
        if not isinstance(outcome, Retry):
            return outcome
        async for attempt in self.retries.retrying(state, self._stop.sleep):
            if attempt.retry_state.attempt_number > 1:
                outcome = await self._attempt(job, state)
            attempt.retry_state.set_result(outcome)
        return outcome

    async def _attempt(self, job: Job, state: _TokenState) -> Attempted:
        """One attempt: a paced, freshly signed request. A clock skew is re-signed and sent
        once more at once, inside the attempt: only a rejection of that immediate, freshly
        signed request proves the clock wrong (two answers minutes apart do not)."""
        state.tries += 1
        # A retry after a failure; a throttled attempt's successor is counted apart (throttles).
        state.is_retry = state.last_fault is not None and not isinstance(
            state.last_fault, Throttled
        )
        outcome = await self._send(job, state)
        if isinstance(outcome, ClockSkew):
            outcome = await self._send(job, state)
            if isinstance(outcome, ClockSkew):
                return Fatal(
                    outcome.code,
                    "the server rejected a freshly re-signed request as expired right after "
                    "the first: this machine's clock is more than 5 minutes off; fix it "
                    "(e.g. enable NTP)",
                    outcome.request_id,
                )
        return outcome

    async def _send(self, job: Job, state: _TokenState) -> Outcome:
        """One request: a pacer slot (`Stopped` once the run is stopping), counted as it
        leaves; its outcome (decided once, in poller/api) heard by the pacer and budget."""
        await self.pacer.acquire()
        if job.attempts == 0:
            self.stats.asked += 1  # a token reached (its first request this run)
        job.attempts += 1
        self.stats.requests += 1
        if state.is_recheck:
            self.stats.rechecks += 1
            state.is_recheck = False
        if state.is_retry:
            self.stats.retries += 1
            state.is_retry = False
        self._on_wire += 1
        state.on_wire = True  # stays True if this is cancelled: the hard stop's accounting
        try:
            outcome = await self.client.query(job.token)
        finally:
            self._on_wire -= 1
        state.on_wire = False
        match outcome:
            case Settled(answered=True):
                self.pacer.on_success()
                self.budget.on_success()
            case Throttled():
                self.stats.throttles += 1
                state.throttled += 1
                state.last_fault = outcome
                if self.pacer.on_throttle():
                    log.info(
                        "throttled by the server: pacing lowered to %.2f req/s", self.pacer.rate
                    )
            case Transient() | ClockSkew():
                state.last_fault = outcome
        if isinstance(outcome, Fault):
            log.debug("token %s attempt %d: %r", job.token, job.attempts, outcome)
        return outcome

    async def _settle(self, job: Job, settled: Settled) -> dict[str, Any] | None:
        """The token has its answer for this run: write it, or re-check a pending one later."""
        if settled.answered:
            # A verification result is what "healthy" means for the metrics' staleness alert.
            self.stats.last_success = self.clock()
        self._feed_breaker(None)  # any settled token ends a breaker streak
        if settled.status is Status.PENDING and await self._recheck_later(job, settled):
            return None
        if (
            self._archiving is not None
            and settled.status in (Status.PASSED, Status.FAILED)
            and self._archiving.offers(settled)
        ):
            self.stats.evidence_waiting += 1
            try:
                await self._archiving.put(job, settled)  # its line is written once kept
            except BaseException:
                if not job.line_handed:
                    self.stats.evidence_waiting -= 1
                raise
            return None
        error = settled.error
        return await self._write(
            self._line(
                token=job.token,
                status=settled.status,
                final=settled.final,
                attempts=job.attempts,
                response=settled.response,
                error=None if error is None else ErrorInfo(error.code, error.message),
                request_id=settled.request_id,
            ),
            job,
        )

    async def _recheck_later(self, job: Job, pending: Settled) -> bool:
        """Schedule a pending token for another look, if its wait allows; False if not."""
        now = asyncio.get_running_loop().time()
        if job.first_pending_at is None:
            job.first_pending_at = now
        wait = self.settings.recheck_after
        if now + wait - job.first_pending_at > self.settings.max_pending_wait:
            return False
        job.last_response = pending.response
        # Refused once the run is stopping (the queue checks under its lock): then the token
        # is written `pending` by the caller instead of vanishing with the emptied heap.
        return await self._queue.schedule_recheck(job, wait)

    async def _give_up(
        self, job: Job, state: _TokenState, fault: Throttled | Transient
    ) -> dict[str, Any]:
        """Retries are over for this token: an `error` line, not final; the breaker hears it."""
        message = fault.message
        if isinstance(fault, Throttled):
            message += f" (throttled {state.throttled} times in a row; the account's quota is busy)"
        elif state.budget_denied:
            message += " (the run's retry budget is spent: too many failures at once)"
        record = await self._write(self._error_line(job, fault, message), job)
        # Timeouts, resets and 5xx mix in one outage: one breaker outcome whatever the code. A
        # token that only ever met throttles is its own: the quota is taken, not the service down.
        self._feed_breaker(
            "throttled" if isinstance(fault, Throttled) else "retries exhausted", fault.code
        )
        return record

    def _feed_breaker(self, outcome: str | None, code: str = "") -> None:
        """Feed the breaker one settled token: `outcome` None is a success (resets it), else
        the non-success it names; raises `FatalRunError` when the breaker trips (SPEC §2)."""
        if not self.breaker.record(outcome):
            return
        n = self.breaker.streak
        tokens = f"{n} token{'s' if n != 1 else ''} in a row"
        were = "were" if n != 1 else "was"
        if outcome == "throttled":
            message = (
                f"{tokens} {were} throttled ({code}) "
                f"{self.settings.max_throttled_attempts} times each: another client is "
                "spending this account's quota; the run stops instead of competing with it "
                "for the rest"
            )
        elif outcome == "retries exhausted":
            message = (
                f"{tokens} ended in faults that outlasted their retries (the last: {code}); "
                "the service looks unavailable, so the run stops instead of spending the "
                "quota on the rest"
            )
        else:
            message = (
                f"{tokens} {were} answered with {code}, a code this poller does not know; the "
                "run stops instead of spending the quota on the rest"
            )
        raise FatalRunError(code, message, breaker=True)

    # -- keeping the evidence (--evidence) -----------------------------------------------------

    async def _requery(self, job: Job) -> Settled | str:
        """Ask again for a token whose links expired: a paced request like any other (its
        attempt counts in the line's `attempts`). The fresh answer, or why there is none."""
        state = _TokenState()
        try:
            outcome = await self._query(job, state)
        except Stopped:
            return "the run stopped before asking again"
        except asyncio.CancelledError:
            if state.on_wire:
                self.stats.cut_off += 1
            raise
        self.stats.evidence_requeries += 1
        match outcome:
            case Settled(status=Status.PASSED | Status.FAILED, response=dict()):
                return outcome
            case Settled():
                return f"asking again answered {outcome.status.value}"
            case Fatal():
                self._halt(
                    fatal=FatalRunError(
                        outcome.code, outcome.message, request_id=outcome.request_id
                    )
                )
                return f"asking again failed with {outcome.code}"
            case _:
                return f"asking again failed with {outcome.code}"

    def _archive_broken(self, message: str) -> None:
        """The archive keeps nothing any more: stop as a local failure (exit 4). Requests on
        the wire finish; the downloads are given up at once (waiting on a host that keeps
        nothing would only delay the exit), each of their tokens written not final."""
        self._record_local_error(PollerError(message))
        self._halt()
        for task in self._archivers:
            task.cancel()

    def _archived_line(self, job: Job, settled: Settled, report: Report) -> dict[str, Any]:
        """The token's line: the answer whose files were kept, final only when all were."""
        return self._line(
            token=job.token,
            status=settled.status,
            final=settled.final and report.complete,
            attempts=job.attempts,
            response=settled.response,
            request_id=settled.request_id,
            evidence=report.to_line(),
        )

    async def _write_archived(self, job: Job, settled: Settled, report: Report) -> None:
        self.stats.evidence_waiting -= 1
        await self._write(self._archived_line(job, settled, report), job)

    def _write_archived_now(self, job: Job, settled: Settled, report: Report) -> None:
        self.stats.evidence_waiting -= 1
        self._write_now(self._archived_line(job, settled, report), job)

    # -- stopping early ----------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Send nothing more (SPEC §3): no fresh token, no retry, no re-check.

        Requests on the wire finish and are written; tokens waiting for a pending re-check
        are written now as `pending` (not final). See `abort` for the hard stop."""
        if self.stats.stopped_by is None:
            self.stats.stopped_by = reason
        self._halt()

    def _halt(self, fatal: FatalRunError | None = None) -> None:
        if fatal is not None and self.stats.fatal is None:
            self.stats.fatal = fatal
        if self._stop.is_set:
            return
        self._stop.set()  # synchronous: the very next wait for a slot ends at once
        # After a deadline the producer reads a file to its end, to count what was not reached
        # (it sends and writes nothing more); any other stop ends it now.
        reads_on = self.stats.stopped_by == DEADLINE and self._countable
        producer = self._producer
        if producer is not None and producer is not asyncio.current_task() and not reads_on:
            producer.cancel()
        if self._group is not None:
            # A stop in the instant the group finishes finds it closed: nothing waits then.
            with contextlib.suppress(RuntimeError):
                self._group.create_task(self._write_waiting_rechecks(), name="stop")

    async def _write_waiting_rechecks(self) -> None:
        # Past the buffer's bound, at once: a stalled reader must not keep the stop waiting
        # (one line per token that was waiting, once).
        for job in await self._queue.stop():
            self._write_now(self._pending_line(job), job)

    def abort(self) -> None:
        """Stop at once: requests on the wire are cut off (their tokens get lines that are not
        final, and the next run asks them again); the output gets a short last chance."""
        if self._on_wire:
            log.warning(
                "stopping now: %d request(s) on the wire cut off; their tokens are written "
                "as not final and asked again by the next run",
                self._on_wire,
            )
        if self.stats.evidence_waiting:
            log.warning(
                "stopping now: %d answer(s) still waiting for their media downloads; their "
                "tokens are written as not final and asked again by the next run",
                self.stats.evidence_waiting,
            )
        self._hard_stop = True
        self._stop.set()
        for task in [*self._workers, *self._archivers]:
            task.cancel()
        if self._producer is not None:
            self._producer.cancel()
        if self._closing is not None and not self._closing.done():
            # Already waiting for a stalled reader: give up on it now.
            self._closing.cancel()

    async def _close_output(self) -> None:
        """Wait for the writer thread to write out every line; a hard stop does not wait."""
        if self._writer is None:
            return
        # After a hard stop a stalled reader must not hold the exit up: the lines get a short
        # last chance, and the next run re-asks whatever never made it to the file.
        self._closing = asyncio.ensure_future(
            self._writer.close(ABORT_DRAIN if self._hard_stop else None)
        )
        await asyncio.wait([self._closing])
        done = self._closing.done() and not self._closing.cancelled()
        if done and (error := self._closing.exception()) is not None:
            self._record_local_error(error)
        self.stats.unwritten = self._writer.queued - self._writer.written

    def _lose_quota(self, lost: SharedQuotaLost) -> None:
        """Redis stayed lost past its timeout: stop as a local failure (exit 4). Requests on
        the wire finish and are written; the rerun resumes the rest."""
        self._record_local_error(lost)
        self._halt()

    def _record_local_error(self, exc: BaseException) -> None:
        if self.stats.local_error is None:
            self.stats.local_error = _describe_local(exc)
            self.stats.output_closed = isinstance(exc, OutputError) and exc.pipe_closed

    def _pending_line(self, job: Job) -> dict[str, Any]:
        return self._line(
            token=job.token,
            status=Status.PENDING,
            final=False,
            attempts=job.attempts,
            response=job.last_response,
        )

    def _stopped_line(
        self, job: Job, state: _TokenState, *, cut_off: bool
    ) -> dict[str, Any] | None:
        """The line of a token the run stopped before it settled (SPEC §3): none if it never
        reached the server; else not final — `pending` with its last answer if a re-check was
        what it waited for (or had on the wire), `error` with the failure if a retry was."""
        if job.attempts == 0:
            return None  # never reached the server: no line, the next run asks it
        fault = state.last_fault
        if fault is None and job.last_response is not None:
            return self._pending_line(job)
        if fault is not None and not cut_off:
            return self._error_line(job, fault, f"{fault.message} (the run stopped before a retry)")
        return self._line(
            token=job.token,
            status=Status.ERROR,
            final=False,
            attempts=job.attempts,
            error=ErrorInfo(
                "RunStopped",
                "the run was stopped at once (a second signal, the grace period ran out, or "
                "the output failed) before the answer came; the next run asks again",
            ),
        )

    async def _settle_stopped(self, job: Job, state: _TokenState) -> dict[str, Any] | None:
        """The run stopped while this token waited for a slot or a backoff."""
        record = self._stopped_line(job, state, cut_off=False)
        if record is None:
            self.stats.not_reached += 1
        else:
            await self._write(record, job)
        return record

    def _settle_hard_stopped(self, job: Job, state: _TokenState) -> None:
        """A hard stop cancelled this token's task; account for it without waiting."""
        if job.line_handed:
            return  # its line was already on its way (see `_write`)
        if state.on_wire:
            self.stats.cut_off += 1
        record = self._stopped_line(job, state, cut_off=state.on_wire)
        if record is None:
            self.stats.not_reached += 1
        else:
            self._write_now(record, job)

    # -- lines out ---------------------------------------------------------------------------

    def _line(
        self,
        *,
        token: str,
        status: Status,
        final: bool,
        attempts: int,
        response: dict[str, Any] | None = None,
        error: ErrorInfo | None = None,
        request_id: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return build_record(
            token=token,
            status=status,
            final=final,
            attempts=attempts,
            checked_at=self.clock(),
            response=response,
            error=error,
            request_id=request_id,
            detail=self.settings.detail,
            with_evidence=self._archiving is not None,
            evidence=evidence,
        )

    def _error_line(self, job: Job, fault: Fault, message: str | None = None) -> dict[str, Any]:
        """An `error` line, not final, for a token that reached the server and did not settle."""
        return self._line(
            token=job.token,
            status=Status.ERROR,
            final=False,
            attempts=job.attempts,
            error=ErrorInfo(fault.code, fault.message if message is None else message),
            request_id=fault.request_id,
        )

    async def _write(self, record: dict[str, Any], job: Job | None = None) -> dict[str, Any]:
        """Hand a line to the writer (waiting while a slow reader holds the buffer full);
        returns it."""
        assert self._writer is not None, "lines are written only while the engine runs"
        if job is not None:
            job.line_handed = True
        try:
            await self._writer.write(record)
        except OutputError:
            # The output just failed: this line is one of those that never reach it; count
            # it like the others (the token did reach the server), then stop everything.
            self._hard_stop = True
            self._writer.write_nowait(record)
            self.stats.count(record)
            raise
        except asyncio.CancelledError:
            if self._hard_stop:  # cut off while waiting for room: queue it past the bound
                self._writer.write_nowait(record)
                self.stats.count(record)
            raise
        self.stats.count(record)
        return record

    def _write_now(self, record: dict[str, Any], job: Job | None) -> None:
        """Hand a line over at once, past the buffer's bound: for the few lines of a stop."""
        assert self._writer is not None, "lines are written only while the engine runs"
        if job is not None:
            job.line_handed = True
        self._writer.write_nowait(record)
        self.stats.count(record)

    def __repr__(self) -> str:
        return (
            f"<Engine tokens={self.stats.tokens} requests={self.stats.requests} "
            f"{self.pacer!r} {self.budget!r} {self.breaker!r}>"
        )


async def _batches(items: Iterable[InputItem]) -> AsyncIterator[list[InputItem]]:
    """The input in batches. A file or a pipe is read on a daemon thread of its own: a slow
    stdin or disk never stalls the workers, and a stop never waits for a read to return. A
    collection already in memory cannot block, so it needs no thread (and a test on virtual
    time needs none); it is taken a batch at a time, so a million tokens handed over from
    Python start being asked at once instead of after every one of them has been checked."""
    if isinstance(items, Collection):
        remaining = iter(items)
        while batch := list(itertools.islice(remaining, MEMORY_BATCH)):
            yield batch
        return
    async for batch in ThreadedReader(iter(items)).batches():
        yield batch


def _describe_local(exc: BaseException) -> str:
    if isinstance(exc, OutputError):
        return exc.describe()
    if isinstance(exc, InputError):
        return str(exc).rstrip(".")
    if isinstance(exc, OSError):
        # Not from the output (that is an OutputError) nor the input: say what it was.
        return f"an unexpected system error: {exc.strerror or exc}"
    return str(exc).rstrip(".")
