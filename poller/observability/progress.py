"""Progress while a batch runs: a live bar on a terminal, one log line a minute under cron.

A terminal gets a tqdm bar (done / total, rate, ETA, and the statuses so far with the current
pacing rate). Anything else (cron mails, journald, a file) gets one plain INFO line per
`interval` through the "poller" logger: no bar, no carriage returns, nothing to garble a log.

The numbers are read from the live `RunStats` and `Pacer`; nothing here writes to them. `tick()`
is meant to be called often (after every record, and by `run_periodically`): it costs one clock
read and a comparison unless something is due.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from poller.pipeline.pacing import Pacing
from poller.pipeline.stats import RunStats

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger("poller")

# A redraw costs a write to the terminal; twice a second looks live and costs nothing.
BAR_REFRESH = 0.5
# The statuses shown on the bar: the ones a watcher cares about, short enough for 80 columns.
BAR_STATUSES = ("passed", "failed", "pending", "error")
# The log line shows every status, so its counts add up to the tokens done.
LINE_STATUSES = ("passed", "failed", "pending", "expired", "invalid_token", "error")


class Progress:
    """Reports how far the run is; a no-op when disabled (`--quiet`).

    `total`, when known, is the number of input entries. Entries that produce no output line
    (duplicates, tokens already final in the output file) count as done, so the bar and the
    percentage reach 100% at the end of a resumed run too.
    """

    __slots__ = (
        "_bar",
        "_clock",
        "_closed",
        "_last_done",
        "_last_line",
        "_next_due",
        "enabled",
        "interval",
        "pacer",
        "stats",
        "stream",
        "total",
    )

    def __init__(
        self,
        stats: RunStats,
        pacer: Pacing,
        *,
        stream: TextIO = sys.stderr,
        total: int | None = None,
        interval: float = 60.0,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be above 0 seconds, not {interval!r}")
        self.stats = stats
        self.pacer = pacer
        self.stream = stream
        self.total = total
        self.interval = interval
        self.enabled = enabled
        self._clock = clock
        self._closed = not enabled
        now = clock()
        # The log line's rate (and so its ETA) covers the last interval, not the whole run:
        # after a slowdown, or after a burst of skipped entries on resume, it is right within
        # one line instead of drifting for hours.
        self._last_line = now
        self._last_done = 0
        self._bar: tqdm[Any] | None = None
        if enabled and _is_tty(stream):
            from tqdm import tqdm  # only on a terminal: its import is ~10 ms of every start

            self._bar = tqdm(
                total=total,
                file=stream,
                unit="tok",
                dynamic_ncols=True,
                # tick() decides when to redraw; tqdm should draw whenever it is asked to.
                mininterval=0,
                miniters=1,
                disable=False,
            )
            self._next_due = now + BAR_REFRESH
        else:
            self._next_due = now + interval

    @property
    def done(self) -> int:
        """Input entries dealt with: lines written plus entries skipped without a line."""
        return (
            self.stats.tokens
            + self.stats.duplicates
            + self.stats.skipped_final
            + self.stats.final_earlier
        )

    @property
    def is_bar(self) -> bool:
        return self._bar is not None

    def tick(self) -> None:
        """Redraw the bar or write the log line if one is due; otherwise return at once."""
        if self._closed:
            return
        now = self._clock()
        if now < self._next_due:
            return
        if self._bar is not None:
            self._draw(self._bar)
            self._next_due = now + BAR_REFRESH
        else:
            self._log_line(now)
            # Keep to the schedule (a line at 60, 120, 180 s...), but after a long stall write
            # one line, not one for every interval missed.
            missed = (now - self._next_due) // self.interval
            self._next_due += (missed + 1) * self.interval

    def close(self) -> None:
        """Draw the final counts and release the terminal line. Safe to call twice.

        Under cron it writes nothing: the run's summary line follows."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._draw(self._bar)
            self._bar.close()

    async def run_periodically(self, every: float = 1.0) -> None:
        """Tick every `every` seconds until cancelled: keeps the bar (and ETA) moving while
        no record is written, e.g. during a long backoff."""
        while not self._closed:
            self.tick()
            await asyncio.sleep(every)

    # -- output ------------------------------------------------------------------------------

    def _draw(self, bar: tqdm[Any]) -> None:
        by_status = self.stats.by_status
        counts = " ".join(f"{s} {by_status.get(s, 0)}" for s in BAR_STATUSES)
        archive = f", archiving {self.stats.evidence_waiting}" if self.stats.evidence_on else ""
        bar.set_postfix_str(f"{counts}, pacing {self.pacer.rate:.1f} req/s{archive}", refresh=False)
        delta = self.done - bar.n
        if delta:
            bar.update(delta)  # redraws (mininterval=0) and feeds tqdm's rate estimate
        else:
            bar.refresh()

    def _log_line(self, now: float) -> None:
        done = self.done
        window = now - self._last_line
        rate = (done - self._last_done) / window if window > 0 else 0.0
        self._last_line, self._last_done = now, done
        by_status = {s: self.stats.by_status.get(s, 0) for s in LINE_STATUSES}
        counts = " ".join(f"{s} {n}" for s, n in by_status.items())
        eta: float | None = None
        if self.total is not None and self.total > 0:
            remaining = max(self.total - done, 0)
            if remaining == 0:
                eta = 0.0
            elif rate > 0:
                eta = remaining / rate
            head = f"{done}/{self.total} tokens ({100.0 * done / self.total:.1f}%)"
        else:
            head = f"{done} tokens"
        parts = [
            head,
            f"{rate:.1f} tokens/s",
            f"pacing {self.pacer.rate:.1f} req/s",
            counts,
        ]
        if self.stats.evidence_on:
            # Answers waiting for their media: when this stays near evidence_backlog, the
            # archive's bandwidth, not the quota, sets the pace.
            parts.append(f"archiving {self.stats.evidence_waiting}")
        if self.total is not None:
            parts.append("eta " + (format_duration(eta) if eta is not None else "unknown"))
        log.info(
            "progress: %s",
            ", ".join(parts),
            # Structured copy of the same numbers for --log-format json.
            extra={
                "progress": {
                    "done": done,
                    "total": self.total,
                    "tokens_per_second": round(rate, 3),
                    "pacing_rate": round(self.pacer.rate, 3),
                    "by_status": by_status,
                    "eta_seconds": None if eta is None else round(eta),
                    **(
                        {"archiving": self.stats.evidence_waiting} if self.stats.evidence_on else {}
                    ),
                }
            },
        )

    def __repr__(self) -> str:
        mode = "off" if not self.enabled else ("bar" if self._bar is not None else "log")
        total = "?" if self.total is None else self.total
        return f"<Progress {mode} done={self.done}/{total} closed={self._closed}>"


def format_duration(seconds: float) -> str:
    """45s, 33m20s, 2h05m: short, and exact enough for an ETA."""
    s = max(round(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or already closed
        return False
