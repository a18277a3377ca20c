"""The archive stage: between a token's answer and its line, the answer's media are kept.

A worker that gets an answer with files to keep hands it here and takes its next token: the
downloads have their own tasks, connections and limit, so they never hold up the API pace
(only a full backlog does: then the bandwidth is the limit, and the workers wait for room).
Each token's line is written here once its archive pass ends: complete, or with what is missing
and why (then not final, so the next run asks again and fetches only what is missing).

An expired or refused link is renewed by asking the API again (`requery`, a paced request that
counts in the token's `attempts`), at most `requeries` times per token. After a stop no request
leaves (a link that expired stays missing), but the downloads of answers in hand go on until
the grace period ends: they spend no quota, and each kept file is one the next run need not
ask for. A hard stop cancels the stage's tasks; each token it held still gets its line
(`abandon`, and the cancelled pass's own handler).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from poller.api.outcomes import Settled
from poller.evidence.archive import Archive, Missing, Report, TokenArchive
from poller.evidence.fields import wanted
from poller.evidence.manifest import MANIFEST
from poller.evidence.store import StoreError
from poller.pipeline.workqueue import Job

#: The line of a token: its job, the answer whose files were kept, what was kept of them.
Write = Callable[[Job, Settled, Report], Awaitable[None]]
WriteNow = Callable[[Job, Settled, Report], None]
#: Ask again for fresh links: the fresh answer, or why there is none.
Requery = Callable[[Job], Awaitable[Settled | str]]

log = logging.getLogger("poller.evidence")

STOPPED_AT_ONCE = "not kept: the run was stopped at once before this file was stored"


@dataclass(slots=True)
class _Held:
    job: Job
    settled: Settled


class ArchiveStage:
    """The bounded backlog of answers waiting for their media, and the tasks that keep them."""

    def __init__(
        self,
        archive: Archive,
        *,
        backlog: int,
        requeries: int,
        requery: Requery,
        write: Write,
        write_now: WriteNow,
        stopping: Callable[[], bool],
        stopped: Callable[[], bool] | None = None,
        threshold: int = 0,
        on_broken: Callable[[str], None] | None = None,
    ) -> None:
        self.archive = archive
        self._requeries = requeries
        self._requery = requery
        self._write = write
        self._write_now = write_now
        self._stopping = stopping  # downloads give up (a hard stop)
        self._stopped = stopped or stopping  # no request leaves (any stop)
        self._room = asyncio.Semaphore(backlog)
        self._queue: asyncio.Queue[_Held | None] = asyncio.Queue()
        self._closed = False
        self._workers = 0
        # Like the circuit breaker for answers (SPEC §2): this many tokens in a row with files
        # to keep and none kept mean the media host or the store is down; the run stops
        # instead of spending the night's quota on answers whose media it cannot keep.
        self._threshold = threshold
        self._on_broken = on_broken
        self._nothing_kept = 0

    def offers(self, settled: Settled) -> bool:
        return self.archive.offers(settled.response)

    async def put(self, job: Job, settled: Settled) -> None:
        """Hand an answer over; waits while the backlog is full. Cancelled (a hard stop) while
        waiting, the token's line is written at once with nothing kept."""
        try:
            await self._room.acquire()
        except asyncio.CancelledError:
            self._untouched(_Held(job, settled))
            raise
        self._queue.put_nowait(_Held(job, settled))

    def close(self, workers: int) -> None:
        """No more answers come: each of the `workers` tasks ends once the backlog is empty."""
        if not self._closed:
            self._closed = True
            for _ in range(workers):
                self._queue.put_nowait(None)

    def abandon(self) -> None:
        """After a hard stop or a failure: every answer still waiting gets its line now."""
        while not self._queue.empty():
            held = self._queue.get_nowait()
            if held is not None:
                self._untouched(held)

    async def work(self) -> None:
        while (held := await self._queue.get()) is not None:
            self._room.release()
            await self._keep(held)

    async def _keep(self, held: _Held) -> None:
        job, settled = held.job, held.settled
        try:
            token = await self.archive.token(job.token)
        except asyncio.CancelledError:
            self._untouched(held)
            raise
        except StoreError as exc:
            # The store failed under us (its manifest unreadable, the bucket gone): nothing is
            # fetched for this token; its line says why, not final, and the next run retries.
            report = self._report(held, f"the archive failed: {exc}")
            await self._write(job, settled, report)
            self._watch(report)  # a store that fails every token is the breaker's to see
            return
        try:
            settled = await self._pass(job, settled, token)
            extra: list[Missing] = []
            try:
                await token.save()
            except StoreError as exc:
                # The files are stored; the next run finds them by name and writes the list.
                extra.append(Missing(MANIFEST, f"the manifest could not be written: {exc}"))
        except asyncio.CancelledError:
            if not job.line_handed:
                self._write_now(job, settled, self._cut_short(token, settled))
            raise
        report = token.report()
        report.missing += extra
        await self._write(job, settled, report)
        self._watch(report)

    def _watch(self, report: Report) -> None:
        if report.complete or report.stored:
            self._nothing_kept = 0
            return
        if self._stopped():
            return  # what a stop left unfetched says nothing about the archive
        self._nothing_kept += 1
        if self._threshold and self._nothing_kept == self._threshold and self._on_broken:
            why = report.missing[0].reason if report.missing else "no reason given"
            self._on_broken(
                f"the evidence archive kept no file of {self._nothing_kept} tokens in a row "
                f"(the last: {why}); the run stops instead of spending the quota on answers "
                "whose media it cannot keep"
            )

    async def _pass(self, job: Job, settled: Settled, token: TokenArchive) -> Settled:
        """Keep the answer's files; for links that expired, ask again (bounded) and keep the
        fresh answer's. Returns the answer whose files were kept (the line's `response`)."""
        asked = 0
        earlier: dict[str, Missing] = {}  # not kept by an earlier pass
        while True:
            assert settled.response is not None
            result = await token.fetch(settled.response, stopping=self._stopping)
            offered = {w.field for w in result.wanted} | {m.field for m in result.missing}
            for field, missing in earlier.items():
                # A fresh answer without a link for a file the first one offered does not
                # make the evidence complete: it stays missing, and the token not final.
                if field not in offered and not token.holds(field):
                    reason = f"{missing.reason}; the fresh answer offers no link for it"
                    result.missing.append(Missing(field, reason))
            if not result.relink or asked >= self._requeries or self._stopped():
                break
            earlier.update((m.field, m) for m in result.missing)
            asked += 1
            token.requeries += 1
            fresh = await self._requery(job)
            if isinstance(fresh, str):
                result.missing[:] = [_why_not(m, fresh) for m in result.missing]
                break
            _changed(job.token, settled, fresh)
            settled = fresh
        if result.relink and asked:
            result.missing[:] = [_asked(m, asked) for m in result.missing]
        return settled

    def _cut_short(self, token: TokenArchive, settled: Settled) -> Report:
        """What a pass cancelled midway kept: files it stored count, the rest are missing."""
        found, bad = wanted(settled.response or {}, self.archive.fields)
        missing = [Missing(u.field, u.reason) for u in bad]
        missing += [
            Missing(w.field, STOPPED_AT_ONCE)
            for w in found
            if token.manifest.has(w.field, w.md5) is None
        ]
        if token.unsaved:
            # Its files are stored but not listed: not final, so the next run lists them.
            missing.append(Missing(MANIFEST, "not written: the run was stopped at once"))
        return token.report(missing, found)

    def _untouched(self, held: _Held) -> None:
        if not held.job.line_handed:
            self._write_now(held.job, held.settled, self._report(held, STOPPED_AT_ONCE))

    def _report(self, held: _Held, reason: str) -> Report:
        """Nothing of this answer was looked at: every file missing, for `reason`."""
        found, bad = wanted(held.settled.response or {}, self.archive.fields)
        missing = [Missing(u.field, u.reason) for u in bad]
        missing += [Missing(w.field, reason) for w in found]
        return Report(
            stored=0,
            bytes=0,
            manifest=self.archive.manifest_where(held.job.token),
            missing=missing,
        )


def _changed(token: str, before: Settled, after: Settled) -> None:
    """Say so when asking again for fresh links brought another verdict (SPEC §9: a token
    that passed and then did not is the case to look at); the line keeps the fresh answer."""
    was = (before.response or {}).get("Result")
    now = (after.response or {}).get("Result")
    if was != now:
        log.warning(
            "token %s: asked again for fresh media links, the answer changed from %s (Result "
            "%s) to %s (Result %s); the line keeps the fresh answer",
            token,
            before.status.value,
            was,
            after.status.value,
            now,
        )


def _why_not(missing: Missing, reason: str) -> Missing:
    if not missing.relink:
        return missing
    return Missing(missing.field, f"{missing.reason}; {reason}", relink=True)


def _asked(missing: Missing, asked: int) -> Missing:
    if not missing.relink or "asked again" in missing.reason:
        return missing
    times = "once" if asked == 1 else f"{asked} times"
    return Missing(missing.field, f"{missing.reason} (asked again for fresh links {times})", True)
