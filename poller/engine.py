"""The batch job: tokens in → bounded queue → workers (pacer, retries, client) → lines out.

A token whose first attempt fails is retried under a fresh tenacity `AsyncRetrying`; every
attempt first takes a pacer slot (a retry spends quota too), then signs and sends a new
request. A fatal
API error (SPEC §2) cancels everything at once: no new requests, no lines for tokens that
were never settled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from poller.client import ApiError, FaceIdClient, Reply, TransportFault
from poller.errors import ErrorClass, classify
from poller.pacing import Pacer, RetryBudget
from poller.reader import ThreadedReader
from poller.records import (
    ErrorInfo,
    JsonlSink,
    Status,
    build_record,
    status_for_result,
)
from poller.settings import Settings
from poller.tokens import BadEntry, InputError, InputItem
from poller.triage import Triage, Verdict
from poller.workqueue import Job, WorkQueue

log = logging.getLogger("poller")


class FatalRunError(Exception):
    """An error that every other token would hit too: the run stops (exit 3).

    `breaker` is True when no single answer was fatal but the same non-success outcome
    settled `breaker_threshold` tokens in a row (SPEC §2, circuit breaker)."""

    def __init__(self, code: str, message: str, *, breaker: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.breaker = breaker


class RetryableFault(Exception):
    """One failed attempt that deserves another: throttle, transient error, transport fault."""

    def __init__(self, klass: ErrorClass, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.klass = klass
        self.code = code
        self.message = message


@dataclass(slots=True)
class RunStats:
    """Counters for the summary line (and, later, the metrics file)."""

    by_status: Counter[str] = field(default_factory=Counter)
    result_codes: Counter[str] = field(default_factory=Counter)
    not_final: int = 0
    charges: int = 0
    requests: int = 0
    retries: int = 0
    throttles: int = 0
    duplicates: int = 0
    skipped_final: int = 0  # already final in the output file (resume)
    expired_local: int = 0  # older than max_token_age by their issued_at: never sent
    rechecks: int = 0  # re-polls of pending tokens within the run
    budget_denied: int = 0
    last_success: float | None = None  # wall-clock time of the last well-formed API answer
    started: float = 0.0
    finished: float = 0.0
    fatal: FatalRunError | None = None
    stopped_by: str | None = None  # "SIGINT" / "SIGTERM" when a signal ended the run early
    local_error: str | None = None  # an output/input failure that stopped the run (exit 4)

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
        if record["result"] is not None and record["status"] in ("passed", "failed"):
            self.result_codes[record["result"]] += 1
        if record["charge_count"]:
            self.charges += record["charge_count"]

    def exit_status(self) -> int:
        """SPEC §3: 0 all final, 1 some not final, 3 a fatal API error stopped the run."""
        if self.fatal is not None:
            return 3
        if self.local_error is not None:
            return 4
        if self.stopped_by == "SIGINT":
            return 130
        if self.stopped_by == "SIGTERM":
            return 143
        return 1 if self.not_final else 0


@dataclass(slots=True)
class _TokenState:
    attempts: int = 0
    clock_skews: int = 0
    budget_denied: bool = False


class _BudgetStop(stop_base):
    """Stops retrying when the run-wide budget says no.

    Combined as `stop_after_attempt(n) | _BudgetStop(...)`: tenacity's `stop_any` checks the
    attempt limit first, so the budget is only charged for a retry that would really happen."""

    def __init__(self, budget: RetryBudget, state: _TokenState) -> None:
        self._budget = budget
        self._state = state

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self._budget.try_spend():
            return False
        self._state.budget_denied = True
        return True


class Engine:
    """Runs one batch; holds the shared pacer, retry budget, client and sink."""

    def __init__(
        self,
        settings: Settings,
        client: FaceIdClient,
        sink: JsonlSink,
        *,
        pacer: Pacer | None = None,
        budget: RetryBudget | None = None,
        clock: Callable[[], float] = time.time,
        already_final: Callable[[str], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.sink = sink
        self.pacer = pacer or Pacer(settings.pacing_rate)
        self.budget = budget or RetryBudget(settings.retry_budget, settings.retry_refill)
        self.clock = clock
        self.stats = RunStats()
        # Full jitter (AWS's "Full Jitter"): uniform(0, min(cap, base * 2**n)). tenacity's
        # wait_exponential_jitter adds jitter on top of the full delay, which keeps retries of
        # many tokens failing together in lockstep; full jitter spreads them.
        self._backoff = wait_random_exponential(
            multiplier=settings.backoff_base, max=settings.backoff_max
        )
        # Tokens that already have a final line in the output (resume) are skipped.
        self._triage = Triage(
            max_token_age=settings.max_token_age, clock=clock, already_final=already_final
        )
        self._queue = WorkQueue(settings.concurrency * 4)
        self._workers: list[asyncio.Task[None]] = []
        self._producer: asyncio.Task[None] | None = None

    # -- the pipeline ------------------------------------------------------------------------

    async def run(self, items: Iterator[InputItem]) -> RunStats:
        """Drain `items` through the workers; returns the counters (fatal recorded in them)."""
        self.stats.started = self.clock()
        try:
            async with asyncio.TaskGroup() as tg:
                self._producer = tg.create_task(self._produce(items), name="producer")
                self._workers = [
                    tg.create_task(self._work(), name=f"worker-{n}")
                    for n in range(self.settings.concurrency)
                ]
        except* FatalRunError as group:
            fatal = group.exceptions[0]
            assert isinstance(fatal, FatalRunError)
            self.stats.fatal = fatal
        except* (OSError, InputError) as group:
            # The output cannot be written (disk full, a closed pipe) or the input broke off
            # mid-file: stop, keep what was written, and say so in one sentence.
            self.stats.local_error = _describe_local(group.exceptions[0])
        finally:
            self.stats.finished = self.clock()
            self.stats.budget_denied = self.budget.denied
        return self.stats

    async def _produce(self, items: Iterator[InputItem]) -> None:
        # The reader runs on its own daemon thread: a slow stdin or disk never stalls the
        # workers, and a stop never waits for a read to return.
        async for batch in ThreadedReader(items).batches():
            for item in batch:
                if self._queue.stopped:
                    return
                verdict = self._triage(item)
                if verdict is Verdict.QUERY:
                    if not await self._queue.put(Job(item.token, item.line)):
                        return
                else:
                    self._settle_locally(item, verdict)
        await self._queue.close_input()

    def _settle_locally(self, item: InputItem, verdict: Verdict) -> None:
        """Tokens decided without a request: duplicates, resumed, invalid, too old."""
        if verdict is Verdict.DUPLICATE:
            self.stats.duplicates += 1
        elif verdict is Verdict.ALREADY_FINAL:
            self.stats.skipped_final += 1
        elif isinstance(item, BadEntry):
            error = ErrorInfo("InvalidInput", item.reason)
            self._emit(
                token=item.token, status=Status.INVALID_TOKEN, final=True, attempts=0, error=error
            )
        else:
            age = self._triage.age(item.issued_at) or 0.0
            self.stats.expired_local += 1
            error = ErrorInfo(
                "TokenTooOld",
                f"issued {age / 3600:.1f} h ago, past the "
                f"{self.settings.max_token_age / 3600:g} h query window; not sent",
            )
            self._emit(token=item.token, status=Status.EXPIRED, final=True, attempts=0, error=error)

    async def _work(self) -> None:
        while (job := await self._queue.get()) is not None:
            try:
                await self.process(job)
            finally:
                await self._queue.task_done()

    # -- stopping early ----------------------------------------------------------------------

    async def stop(self, reason: str) -> None:
        """Take no new tokens; tokens in flight finish (see `abort` for the hard stop).

        Tokens waiting for a pending re-check are written now as `pending` (not final)."""
        if self.stats.stopped_by is None:
            self.stats.stopped_by = reason
        for job in await self._queue.stop():
            self._emit_pending(job)
        if self._producer is not None:
            self._producer.cancel()

    def abort(self) -> None:
        """Cancel the tokens in flight: they get no line, and the next run re-queries them."""
        for task in self._workers:
            task.cancel()
        if self._producer is not None:
            self._producer.cancel()

    # -- one token ---------------------------------------------------------------------------

    async def process(self, job: Job) -> dict[str, Any] | None:
        """Query one token until it settles for this run; write and return its line.

        Returns None when the token is pending and was scheduled for a re-check instead."""
        token = job.token
        state = _TokenState(attempts=job.attempts)
        try:
            try:
                # Most tokens settle on their first attempt: they skip tenacity's machinery,
                # which cost a tenth of the CPU per token (benchmarks).
                reply = await self._attempt(token, state)
            except RetryableFault as first:
                reply = await self._retry(token, state, first)
        except RetryableFault as fault:
            job.attempts = state.attempts
            message = fault.message
            if state.budget_denied:
                message += " (the run's retry budget is spent: too many failures at once)"
            return self._emit(
                token=token,
                status=Status.ERROR,
                final=False,
                attempts=state.attempts,
                error=ErrorInfo(fault.code, message),
            )
        job.attempts = state.attempts
        if reply.error is None:
            status = status_for_result(reply.response, self.settings.pending_codes)
            if status is Status.PENDING and await self._recheck_later(job, reply):
                return None
        return self._settle(token, reply, state.attempts)

    async def _recheck_later(self, job: Job, reply: Reply) -> bool:
        """Schedule a pending token for another look, if its wait allows; False if not."""
        now = asyncio.get_running_loop().time()
        if job.first_pending_at is None:
            job.first_pending_at = now
        wait = self.settings.recheck_after
        if (
            self._queue.stopped
            or now + wait - job.first_pending_at > self.settings.max_pending_wait
        ):
            return False
        job.last_response = reply.response
        self.stats.rechecks += 1
        await self._queue.schedule_recheck(job, wait)
        return True

    def _emit_pending(self, job: Job) -> None:
        self._emit(
            token=job.token,
            status=Status.PENDING,
            final=False,
            attempts=job.attempts,
            response=job.last_response,
        )

    async def _retry(self, token: str, state: _TokenState, first: RetryableFault) -> Reply:
        """Attempts 2..max_attempts under a fresh tenacity `AsyncRetrying`.

        The first failure is replayed as tenacity's attempt 1 (no request is made for it), so
        the attempt limit, the retry budget, the backoff and the counters all see it."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_attempts) | _BudgetStop(self.budget, state),
            wait=self._wait,
            retry=retry_if_exception_type(RetryableFault),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        replay = [first]

        async def attempt() -> Reply:
            if replay:
                raise replay.pop()
            return await self._attempt(token, state)

        reply: Reply = await retrying(attempt)
        return reply

    async def _attempt(self, token: str, state: _TokenState) -> Reply:
        """One attempt: a paced, freshly signed request. `SignatureExpire` is re-signed and
        sent once more at once, inside the attempt, so neither the attempt limit nor the
        retry budget can keep the second answer (which proves the clock wrong) from coming."""
        try:
            return await self._send(token, state)
        except RetryableFault as fault:
            if fault.klass is not ErrorClass.CLOCK:
                raise
        return await self._send(token, state)

    async def _send(self, token: str, state: _TokenState) -> Reply:
        await self.pacer.acquire()
        state.attempts += 1
        self.stats.requests += 1
        try:
            reply = await self.client.get_result(token)
        except TransportFault as fault:
            log.debug("token %s attempt %d: %s", token, state.attempts, fault)
            raise RetryableFault(ErrorClass.TRANSIENT, fault.code, fault.message) from None
        self.stats.last_success = self.clock()
        if reply.error is None:
            self.pacer.on_success()
            self.budget.on_success()
            return reply
        return self._check_error(reply.error, token, state, reply)

    def _check_error(self, error: ApiError, token: str, state: _TokenState, reply: Reply) -> Reply:
        klass = classify(error.code)
        log.debug("token %s attempt %d: %s (%s)", token, state.attempts, error.code, klass.value)
        if klass is ErrorClass.THROTTLE:
            self.stats.throttles += 1
            if self.pacer.on_throttle():
                log.info("throttled by the server: pacing lowered to %.2f req/s", self.pacer.rate)
        elif klass is ErrorClass.CLOCK:
            state.clock_skews += 1
            if state.clock_skews > 1:  # a fresh signature was rejected too
                raise FatalRunError(
                    error.code,
                    "the server rejected two freshly signed requests as expired: this "
                    "machine's clock is more than 5 minutes off; fix it (e.g. enable NTP)",
                )
        elif klass is ErrorClass.FATAL:
            raise FatalRunError(error.code, error.message)
        if klass in (ErrorClass.THROTTLE, ErrorClass.TRANSIENT, ErrorClass.CLOCK):
            raise RetryableFault(klass, error.code, error.message)
        return reply  # a final per-token error (expired, invalid, other): settled below

    def _wait(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RetryableFault) and exc.klass is ErrorClass.THROTTLE:
            # The pacer has already slowed the whole run down; this token only needs to go
            # to the back of the line, not sit out an exponentially growing penalty.
            return random.uniform(0, self.settings.backoff_base)
        return self._backoff(retry_state)

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        self.stats.retries += 1

    # -- lines out ---------------------------------------------------------------------------

    def _settle(self, token: str, reply: Reply, attempts: int) -> dict[str, Any]:
        if reply.error is not None:
            klass = classify(reply.error.code)
            status = {
                ErrorClass.EXPIRED: Status.EXPIRED,
                ErrorClass.INVALID_TOKEN: Status.INVALID_TOKEN,
            }.get(klass, Status.ERROR)
            return self._emit(
                token=token,
                status=status,
                final=True,
                attempts=attempts,
                error=ErrorInfo(reply.error.code, reply.error.message),
                request_id=reply.request_id,
            )
        status = status_for_result(reply.response, self.settings.pending_codes)
        return self._emit(
            token=token,
            status=status,
            final=status is not Status.PENDING,
            attempts=attempts,
            response=reply.response,
        )

    def _emit(
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
        record = build_record(
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
        self.sink.write(record)
        self.stats.count(record)
        return record

    def __repr__(self) -> str:
        return (
            f"<Engine tokens={self.stats.tokens} requests={self.client.calls} "
            f"{self.pacer!r} {self.budget!r}>"
        )


def _describe_local(exc: BaseException) -> str:
    if isinstance(exc, BrokenPipeError):
        return "the output pipe was closed by the reader"
    if isinstance(exc, OSError):  # input failures arrive as InputError: this is the output
        return f"cannot write the output: {exc.strerror or exc}"
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
    return "summary: " + "; ".join(parts)
