"""The batch job: tokens in → bounded queue → workers (pacer, retries, client) → lines out.

A token whose first attempt fails is retried under a fresh tenacity `AsyncRetrying`; every
attempt first takes a pacer slot (a retry spends quota too), then signs and sends a new
request. A stop (a signal, a fatal API error, the circuit breaker, a local failure) sets one
latch: no request leaves after it, requests on the wire finish and are written, and a token
that never reached the server gets no line (SPEC §3). So the requests the server saw always
equal the sum of the lines' `attempts`, unless a hard stop (`abort`) cut requests off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from poller.api.client import FaceIdClient, Reply, TransportFault
from poller.api.outcomes import ErrorClass, classify
from poller.config.settings import Settings
from poller.errors import PollerError
from poller.input.reader import ThreadedReader
from poller.input.tokens import BadEntry, InputError, InputItem
from poller.input.triage import Triage, Verdict
from poller.output.records import (
    LOCAL_EXPIRY_CODE,
    ErrorInfo,
    Status,
    build_record,
    status_for_result,
)
from poller.output.sink import Sink
from poller.output.writer import LineOutput, LineWriter, OutputError
from poller.pipeline.breaker import Breaker
from poller.pipeline.pacing import Pacer, RetryBudget
from poller.pipeline.stopping import StopLatch, Stopped
from poller.pipeline.workqueue import Job, WorkQueue

log = logging.getLogger("poller")

# After a hard stop, seconds the writer thread gets to write the lines it holds: enough for a
# working disk or pipe, short enough that a stalled reader does not hold the exit up.
ABORT_DRAIN = 1.0


class FatalRunError(PollerError):
    """An error that every other token would hit too: the run stops (exit 3).

    `breaker` is True when no single answer was fatal but the same non-success outcome
    settled `breaker_threshold` tokens in a row (SPEC §2, circuit breaker)."""

    def __init__(
        self, code: str, message: str, *, breaker: bool = False, request_id: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.breaker = breaker
        self.request_id = request_id  # of the answer that was fatal, for its token's line


class RetryableFault(Exception):
    """One failed attempt that deserves another: throttle, transient error, transport fault."""

    def __init__(
        self, klass: ErrorClass, code: str, message: str, request_id: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.klass = klass
        self.code = code
        self.message = message
        self.request_id = request_id  # of the API's answer, for the token's line (support)


@dataclass(slots=True)
class RunStats:
    """Counters for the summary line (and, later, the metrics file)."""

    by_status: Counter[str] = field(default_factory=Counter)
    result_codes: Counter[str] = field(default_factory=Counter)
    not_final: int = 0
    charges: int = 0
    requests: int = 0
    retries: int = 0  # requests sent again after a failure (throttles are counted apart)
    throttles: int = 0
    duplicates: int = 0
    skipped_final: int = 0  # already final in the output file (resume)
    expired_local: int = 0  # older than max_token_age by their issued_at: never sent
    rechecks: int = 0  # re-polls of pending tokens sent within the run
    budget_denied: int = 0
    last_success: float | None = None  # wall-clock time of the last well-formed API answer
    started: float = 0.0
    finished: float = 0.0
    fatal: FatalRunError | None = None
    stopped_by: str | None = None  # "SIGINT" / "SIGTERM" when a signal ended the run early
    local_error: str | None = None  # an output/input failure that stopped the run (exit 4)
    output_closed: bool = False  # the local error is the reader closing the output pipe
    cut_off: int = 0  # requests on the wire when a hard stop came (their tokens: not final)
    unwritten: int = 0  # lines counted here that never reached the output (it failed/stalled)

    @property
    def tokens(self) -> int:
        return sum(self.by_status.values())

    @property
    def elapsed(self) -> float:
        """Seconds since the start; while running, up to now."""
        end = self.finished or time.time()
        return max(end - self.started, 0.0)

    def count(self, record: dict[str, Any]) -> None:
        self.by_status[record["status"]] += 1
        if not record["final"]:
            self.not_final += 1
        if record["result"] is not None and record["status"] in ("passed", "failed", "pending"):
            self.result_codes[record["result"]] += 1
        if record["charge_count"]:
            self.charges += record["charge_count"]

    def exit_status(self) -> int:
        """SPEC §3: 0 all final, 1 some not final, 3 a fatal API error stopped the run, 4 a
        local failure, 130/143 a signal."""
        if self.fatal is not None:
            return 3
        # Ctrl-C on `poller run --output - | consumer` reaches the consumer too, which dies and
        # closes the pipe: that closed pipe is the interrupt's doing, not a broken machine.
        if self.local_error is not None and not (self.stopped_by and self.output_closed):
            return 4
        if self.stopped_by == "SIGINT":
            return 130
        if self.stopped_by == "SIGTERM":
            return 143
        return 1 if self.not_final else 0


@dataclass(slots=True)
class _TokenState:
    """One token's attempts within one `process` call (a re-check starts a new one)."""

    tries: int = 0  # attempts made (a SignatureExpire re-send is part of its attempt)
    on_wire: bool = False  # a request of this token is out, not answered yet
    throttled: int = 0  # of them, answered RequestLimitExceeded
    budget_denied: bool = False
    last_fault: RetryableFault | None = None  # why the latest attempt failed
    # What the next request that really leaves counts as (counted when sent, not planned).
    is_recheck: bool = False
    is_retry: bool = False


class _TokenStop(stop_base):
    """When to give up on a token (issue 9, item 5: throttles are not failures).

    A throttled attempt took a slot and slowed the pace, but nothing failed: it counts against
    its own, larger bound (`max_throttled_attempts`), never against `max_attempts` or the
    run-wide retry budget. Any other failure counts against `max_attempts`, then the budget,
    which is charged only for a retry that would really happen."""

    def __init__(self, settings: Settings, budget: RetryBudget, state: _TokenState) -> None:
        self._settings = settings
        self._budget = budget
        self._state = state

    def __call__(self, retry_state: RetryCallState) -> bool:
        state = self._state
        fault = state.last_fault
        if fault is not None and fault.klass is ErrorClass.THROTTLE:
            return state.throttled >= self._settings.max_throttled_attempts
        if state.tries - state.throttled >= self._settings.max_attempts:
            return True
        if self._budget.try_spend():
            return False
        state.budget_denied = True
        return True


class Engine:
    """Runs one batch; holds the shared pacer, retry budget, client and sink."""

    def __init__(
        self,
        settings: Settings,
        client: FaceIdClient,
        sink: Sink,
        *,
        pacer: Pacer | None = None,
        budget: RetryBudget | None = None,
        clock: Callable[[], float] = time.time,
        already_final: Callable[[str], bool] | None = None,
        expired_before: Callable[[str], bool] | None = None,
        output: Callable[[Sink], LineOutput] = LineWriter,
    ) -> None:
        self.settings = settings
        self.client = client
        self.sink = sink
        # The stop latch ends every wait for a slot or a backoff at once (SPEC §3 "Stopping").
        self._stop = StopLatch()
        self.pacer = pacer or Pacer(settings.pacing_rate, stop=self._stop)
        self.budget = budget or RetryBudget(settings.retry_budget, settings.retry_refill)
        self.clock = clock
        self.stats = RunStats()
        self.breaker = Breaker(settings.breaker_threshold)
        # Full jitter (AWS's "Full Jitter"): uniform(0, min(cap, base * 2**n)). tenacity's
        # wait_exponential_jitter adds jitter on top of the full delay, which keeps retries of
        # many tokens failing together in lockstep; full jitter spreads them.
        self._backoff = wait_random_exponential(
            multiplier=settings.backoff_base, max=settings.backoff_max
        )
        # Tokens that already have a final line in the output (resume) are skipped.
        self._triage = Triage(
            max_token_age=settings.max_token_age,
            clock=clock,
            already_final=already_final,
            expired_before=expired_before,
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

    # -- the pipeline ------------------------------------------------------------------------

    async def run(self, items: Iterable[InputItem]) -> RunStats:
        """Drain `items` through the workers; returns the counters (fatal recorded in them)."""
        self.stats.started = self.clock()
        self._writer = self._output(self.sink)
        try:
            async with asyncio.TaskGroup() as tg:
                self._group = tg
                self._producer = tg.create_task(self._produce(items), name="producer")
                self._workers = [
                    tg.create_task(self._work(), name=f"worker-{n}")
                    for n in range(self.settings.concurrency)
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
            await self._close_output()
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

    async def _feed(self, items: Iterable[InputItem]) -> None:
        async for batch in _batches(items):
            for item in batch:
                if self._stop.is_set:
                    return
                verdict = self._triage(item)
                if verdict is Verdict.QUERY:
                    if not await self._queue.put(Job(item.token, item.line)):
                        return
                else:
                    await self._settle_locally(item, verdict)
        await self._queue.close_input()

    async def _settle_locally(self, item: InputItem, verdict: Verdict) -> None:
        """Tokens decided without a request: duplicates, resumed, invalid, too old."""
        if verdict is Verdict.DUPLICATE:
            self.stats.duplicates += 1
        elif verdict is Verdict.ALREADY_FINAL:
            self.stats.skipped_final += 1
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
        if self._producer is not None and self._producer is not asyncio.current_task():
            self._producer.cancel()
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
        self._hard_stop = True
        self._stop.set()
        for task in self._workers:
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

    def _record_local_error(self, exc: BaseException) -> None:
        if self.stats.local_error is None:
            self.stats.local_error = _describe_local(exc)
            self.stats.output_closed = isinstance(exc, OutputError) and exc.pipe_closed

    # -- one token ---------------------------------------------------------------------------

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
            try:
                # Most tokens settle on their first attempt: they skip tenacity's machinery,
                # which cost a tenth of the CPU per token (benchmarks).
                reply = await self._attempt(job, state)
            except RetryableFault as first:
                reply = await self._retry(job, state, first)
        except RetryableFault as fault:
            return await self._give_up(job, state, fault)
        except Stopped:
            return await self._settle_stopped(job, state)
        except FatalRunError as fatal:
            # The token did reach the server: its line says why the run stopped (not final).
            await self._write(
                self._line(
                    token=job.token,
                    status=Status.ERROR,
                    final=False,
                    attempts=job.attempts,
                    error=ErrorInfo(fatal.code, fatal.message),
                    request_id=fatal.request_id,
                ),
                job,
            )
            raise
        if reply.error is not None:
            return await self._settle_error(job, reply)
        status = status_for_result(reply.response, self.settings.pending_codes)
        # A verification result (passed, failed or pending) is what "healthy" means for the
        # metrics' staleness alert, and what ends a breaker streak; throttles and errors never.
        self.stats.last_success = self.clock()
        self._check_breaker(None)
        if status is Status.PENDING and await self._recheck_later(job, reply):
            return None
        return await self._write(
            self._line(
                token=job.token,
                status=status,
                final=status is not Status.PENDING,
                attempts=job.attempts,
                response=reply.response,
            ),
            job,
        )

    async def _recheck_later(self, job: Job, reply: Reply) -> bool:
        """Schedule a pending token for another look, if its wait allows; False if not."""
        now = asyncio.get_running_loop().time()
        if job.first_pending_at is None:
            job.first_pending_at = now
        wait = self.settings.recheck_after
        if now + wait - job.first_pending_at > self.settings.max_pending_wait:
            return False
        job.last_response = reply.response
        # Refused once the run is stopping (the queue checks under its lock): then the token
        # is written `pending` by the caller instead of vanishing with the emptied heap.
        return await self._queue.schedule_recheck(job, wait)

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
            return self._line(
                token=job.token,
                status=Status.ERROR,
                final=False,
                attempts=job.attempts,
                error=ErrorInfo(fault.code, f"{fault.message} (the run stopped before a retry)"),
                request_id=fault.request_id,
            )
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
        if record is not None:
            await self._write(record, job)
        return record

    def _settle_hard_stopped(self, job: Job, state: _TokenState) -> None:
        """A hard stop cancelled this token's task; account for it without waiting."""
        if job.line_handed:
            return  # its line was already on its way (see `_write`)
        if state.on_wire:
            self.stats.cut_off += 1
        record = self._stopped_line(job, state, cut_off=state.on_wire)
        if record is not None:
            self._write_now(record, job)

    async def _give_up(
        self, job: Job, state: _TokenState, fault: RetryableFault
    ) -> dict[str, Any] | None:
        """Retries are over for this token: an `error` line, not final; the breaker hears it."""
        message = fault.message
        if fault.klass is ErrorClass.THROTTLE:
            message += f" (throttled {state.throttled} times in a row; the account's quota is busy)"
        elif state.budget_denied:
            message += " (the run's retry budget is spent: too many failures at once)"
        record = await self._write(
            self._line(
                token=job.token,
                status=Status.ERROR,
                final=False,
                attempts=job.attempts,
                error=ErrorInfo(fault.code, message),
                request_id=fault.request_id,
            ),
            job,
        )
        self._check_breaker(fault.code, gave_up=fault.klass)
        return record

    async def _settle_error(self, job: Job, reply: Reply) -> dict[str, Any]:
        """A per-token API error: expired and invalid are final; an unlisted code is not."""
        assert reply.error is not None
        klass = classify(reply.error.code)
        status = {
            ErrorClass.EXPIRED: Status.EXPIRED,
            ErrorClass.INVALID_TOKEN: Status.INVALID_TOKEN,
        }.get(klass, Status.ERROR)
        record = await self._write(
            self._line(
                token=job.token,
                status=status,
                # SPEC §2: a code the table does not know is not final (not retried within the
                # run; the next run asks again), so a new code never marks a whole night settled.
                final=status is not Status.ERROR,
                attempts=job.attempts,
                error=ErrorInfo(reply.error.code, reply.error.message),
                request_id=reply.request_id,
            ),
            job,
        )
        self._check_breaker(reply.error.code if status is Status.ERROR else None)
        return record

    def _check_breaker(self, code: str | None, *, gave_up: ErrorClass | None = None) -> None:
        """Feed the breaker one settled token: `code` None is a success (resets it); an
        unlisted code is one outcome per code; a token given up on (`gave_up`: the class of
        its last fault) is one outcome whatever its code, as timeouts, resets and 5xx mix in
        one outage. A token that only ever met throttles is its own outcome: the account's
        quota is taken, the service is not down, and the message must say so."""
        if gave_up is ErrorClass.THROTTLE:
            outcome: str | None = "throttled"
        elif gave_up is not None:
            outcome = "retries exhausted"
        else:
            outcome = code
        if not self.breaker.record(outcome):
            return
        n = self.breaker.streak
        tokens = f"{n} token{'s' if n != 1 else ''} in a row"
        if outcome == "throttled":
            message = (
                f"{tokens} {'were' if n != 1 else 'was'} throttled ({code}) "
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
                f"{tokens} {'were' if n != 1 else 'was'} answered with {code}, a code this "
                "poller does not know; the run stops instead of spending the quota on the rest"
            )
        raise FatalRunError(code or "", message, breaker=True)

    async def _retry(self, job: Job, state: _TokenState, first: RetryableFault) -> Reply:
        """Attempts 2.. under a fresh tenacity `AsyncRetrying`.

        The first failure is replayed as tenacity's attempt 1 (no request is made for it), so
        the attempt limits, the retry budget, the backoff and the counters all see it. The
        backoff sleeps through the stop latch: a stop ends it at once, with no retry sent."""
        retrying = AsyncRetrying(
            stop=_TokenStop(self.settings, self.budget, state),
            wait=self._wait,
            sleep=self._stop.sleep,
            retry=retry_if_exception_type(RetryableFault),
            reraise=True,
        )
        replay = [first]

        async def attempt() -> Reply:
            if replay:
                raise replay.pop()
            return await self._attempt(job, state)

        reply: Reply = await retrying(attempt)
        return reply

    async def _attempt(self, job: Job, state: _TokenState) -> Reply:
        """One attempt: a paced, freshly signed request. `SignatureExpire` is re-signed and
        sent once more at once, inside the attempt: only a rejection of that immediate,
        freshly signed request proves the clock wrong (two answers minutes apart do not)."""
        state.tries += 1
        fault = state.last_fault
        # A retry after a failure; a throttled attempt's successor is counted apart (throttles).
        state.is_retry = fault is not None and fault.klass is not ErrorClass.THROTTLE
        try:
            return await self._send(job, state)
        except RetryableFault as fault:
            if fault.klass is not ErrorClass.CLOCK:
                raise
        try:
            return await self._send(job, state)
        except RetryableFault as fault:
            if fault.klass is ErrorClass.CLOCK:
                raise FatalRunError(
                    fault.code,
                    "the server rejected a freshly re-signed request as expired right after "
                    "the first: this machine's clock is more than 5 minutes off; fix it "
                    "(e.g. enable NTP)",
                    request_id=fault.request_id,
                ) from None
            raise

    async def _send(self, job: Job, state: _TokenState) -> Reply:
        await self.pacer.acquire()  # raises Stopped once the run is stopping
        job.attempts += 1
        self.stats.requests += 1
        if state.is_recheck:
            self.stats.rechecks += 1
            state.is_recheck = False
        if state.is_retry:
            self.stats.retries += 1
            state.is_retry = False
        self._on_wire += 1
        state.on_wire = True
        # state.on_wire stays True if this is cancelled: the hard stop's accounting reads it.
        try:
            reply = await self.client.get_result(job.token)
        except TransportFault as fault:
            state.on_wire = False
            log.debug("token %s attempt %d: %s", job.token, job.attempts, fault)
            raise self._failed(state, ErrorClass.TRANSIENT, fault.code, fault.message) from None
        finally:
            self._on_wire -= 1
        state.on_wire = False
        if reply.error is None:
            self.pacer.on_success()
            self.budget.on_success()
            return reply
        klass = classify(reply.error.code)
        log.debug("token %s attempt %d: %s (%s)", job.token, job.attempts, reply.error, klass)
        if klass is ErrorClass.THROTTLE:
            self.stats.throttles += 1
            state.throttled += 1
            if self.pacer.on_throttle():
                log.info("throttled by the server: pacing lowered to %.2f req/s", self.pacer.rate)
        elif klass is ErrorClass.FATAL:
            raise FatalRunError(reply.error.code, reply.error.message, request_id=reply.request_id)
        if klass in (ErrorClass.THROTTLE, ErrorClass.TRANSIENT, ErrorClass.CLOCK):
            raise self._failed(
                state, klass, reply.error.code, reply.error.message, reply.request_id
            )
        return reply  # a per-token answer (expired, invalid, an unlisted code): settled above

    @staticmethod
    def _failed(
        state: _TokenState,
        klass: ErrorClass,
        code: str,
        message: str,
        request_id: str | None = None,
    ) -> RetryableFault:
        state.last_fault = RetryableFault(klass, code, message, request_id)
        return state.last_fault

    def _wait(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RetryableFault) and exc.klass is ErrorClass.THROTTLE:
            # The pacer has already slowed the whole run down; this token only needs to go
            # to the back of the line, not sit out an exponentially growing penalty.
            return random.uniform(0, self.settings.backoff_base)
        return self._backoff(retry_state)

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
    time sees it whole at once)."""
    if isinstance(items, Collection):
        yield list(items)
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


def format_summary(stats: RunStats, pacer: Pacer) -> str:
    """One line for cron logs: what happened, in numbers."""
    statuses = ", ".join(f"{s.value} {stats.by_status.get(s.value, 0)}" for s in Status)
    codes = " ".join(f"{code}:{n}" for code, n in sorted(stats.result_codes.items())) or "none"
    rate = stats.requests / stats.elapsed if stats.elapsed > 0 else 0.0
    parts = [
        f"{stats.tokens} tokens in {stats.elapsed:.1f} s: {statuses}",
        f"not final {stats.not_final}",
        f"skipped: already final {stats.skipped_final}, duplicates {stats.duplicates}",
        f"expired by issued_at {stats.expired_local}",
        f"pending re-checks {stats.rechecks}",
        f"result codes {codes}",
        f"charge_count total {stats.charges}",
        f"requests {stats.requests} (retries {stats.retries}, throttled {stats.throttles}, "
        f"slowdowns {pacer.slowdowns})",
        f"effective rate {rate:.2f} req/s (pacing {pacer.rate:.2f} of {pacer.target_rate:.2f})",
    ]
    if stats.budget_denied:
        parts.append(f"retries refused by the retry budget {stats.budget_denied}")
    if stats.cut_off:
        parts.append(f"requests cut off on the wire by the hard stop {stats.cut_off}")
    if stats.unwritten:
        parts.append(f"lines that never reached the output {stats.unwritten}")
    return "summary: " + "; ".join(parts)
