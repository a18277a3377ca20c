"""What a run did and how it ended: the counters, the exit policy and the summary (pure).

The engine counts into one `RunStats`; the progress line and the metrics file read it while the
run goes on, and at the end `exit_status` (SPEC §3) and the summary read it once more. Each fact
has one counter: `requests` is every request that really left (a SignatureExpire re-send
included), counted at the moment it left.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from poller.api.outcomes import Status
from poller.errors import PollerError
from poller.pipeline.pacing import Pacing


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


@dataclass(slots=True)
class RunStats:
    """The run's counters: the summary, the progress line and the metrics file read them."""

    by_status: Counter[str] = field(default_factory=Counter)
    result_codes: Counter[str] = field(default_factory=Counter)
    not_final: int = 0
    charges: int = 0
    requests: int = 0  # every request that left, retries and re-checks included
    retries: int = 0  # requests sent again after a failure (throttles are counted apart)
    throttles: int = 0
    duplicates: int = 0
    skipped_final: int = 0  # already final in the output file (resume)
    final_earlier: int = 0  # final in an earlier run's file (--skip-final-in): no line
    expired_local: int = 0  # older than max_token_age by their issued_at: never sent
    rechecks: int = 0  # re-polls of pending tokens sent within the run
    budget_denied: int = 0
    last_success: float | None = None  # wall-clock time of the last well-formed API answer
    started: float = 0.0
    finished: float = 0.0
    fatal: FatalRunError | None = None
    stopped_by: str | None = None  # "SIGINT" / "SIGTERM" / "deadline" (--stop-after): ended early
    local_error: str | None = None  # an output/input failure that stopped the run (exit 4)
    output_closed: bool = False  # the local error is the reader closing the output pipe
    cut_off: int = 0  # requests on the wire when a hard stop came (their tokens: not final)
    unwritten: int = 0  # lines counted here that never reached the output (it failed/stalled)
    # Input tokens a stop left unasked (no line: the next run asks them). Exact when the whole
    # input was read (`not_reached_exact`); else what the run held, and more may follow.
    not_reached: int = 0
    asked: int = 0  # distinct tokens sent at least once this run
    not_reached_exact: bool = True
    # --evidence: tokens whose answers offered files, of them not all kept (not final), files
    # and bytes downloaded this run, and answers asked again for fresh links.
    evidence_on: bool = False
    evidence_waiting: int = 0  # answers whose media are being kept, their lines not yet written
    evidence_tokens: int = 0
    evidence_incomplete: int = 0
    evidence_files: int = 0
    evidence_bytes: int = 0
    evidence_requeries: int = 0

    @property
    def tokens(self) -> int:
        return sum(self.by_status.values())

    @property
    def elapsed(self) -> float:
        """Seconds since the start; while running, up to now."""
        end = self.finished or time.time()
        return max(end - self.started, 0.0)

    def count(self, record: dict[str, Any]) -> None:
        """Count one line handed to the output."""
        self.by_status[record["status"]] += 1
        if not record["final"]:
            self.not_final += 1
        if record["result"] is not None and record["status"] in ("passed", "failed", "pending"):
            self.result_codes[record["result"]] += 1
        if record["charge_count"]:
            self.charges += record["charge_count"]
        evidence = record.get("evidence")
        if evidence is not None:
            self.evidence_tokens += 1
            self.evidence_files += evidence["fetched"]
            self.evidence_bytes += evidence["fetched_bytes"]
            if evidence["missing"]:
                self.evidence_incomplete += 1

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
        if self.stopped_by == "deadline":
            return 1  # SPEC §3: tokens are left for the next run, which resumes them
        return 1 if self.not_final else 0

    @property
    def not_reached_text(self) -> str:
        """ "12", or "at least 12" when the rest of the input could not be counted."""
        return f"{'' if self.not_reached_exact else 'at least '}{self.not_reached}"


def format_summary(stats: RunStats, pacer: Pacing, *, terminal: bool = False) -> str:
    """The end-of-run summary: one `summary: ...` line for cron logs (and for grep), or, for a
    person at a `terminal`, the same numbers as a short aligned table."""
    return _table(stats, pacer) if terminal else _line(stats, pacer)


def _line(stats: RunStats, pacer: Pacing) -> str:
    statuses = ", ".join(f"{s.value} {stats.by_status.get(s.value, 0)}" for s in Status)
    parts = [
        f"{stats.tokens} tokens in {stats.elapsed:.1f} s: {statuses}",
        f"not final {stats.not_final}",
        f"skipped: already final {stats.skipped_final}, "
        f"final in an earlier run {stats.final_earlier}, duplicates {stats.duplicates}",
        f"expired by issued_at {stats.expired_local}",
        f"pending re-checks {stats.rechecks}",
        f"result codes {_codes(stats)}",
        f"charge_count total {stats.charges}",
        f"requests {stats.requests} (retries {stats.retries}, throttled {stats.throttles}, "
        f"slowdowns {pacer.slowdowns}, below target pace {pacer.seconds_below_target:.1f} s)",
        f"effective rate {_rate(stats):.2f} req/s (pacing {pacer.rate:.2f} of "
        f"{pacer.target_rate:.2f})",
    ]
    if stats.evidence_on:
        parts.append(f"evidence {_evidence(stats)}")
    parts += [f"{label} {n}" for label, _, n in _exceptional(stats)]
    if stats.stopped_by:
        parts.append(f"stopped by {_stopped(stats)}; not reached {stats.not_reached_text}")
    return "summary: " + "; ".join(parts)


def _table(stats: RunStats, pacer: Pacing) -> str:
    statuses = ", ".join(f"{s.value} {n}" for s in Status if (n := stats.by_status.get(s.value, 0)))
    rows = [
        ("tokens", f"{stats.tokens}" + (f" ({statuses})" if statuses else "")),
        ("not final", f"{stats.not_final}"),
        (
            "skipped",
            f"already final {stats.skipped_final}, final in an earlier run "
            f"{stats.final_earlier}, duplicates {stats.duplicates}, "
            f"expired by issued_at {stats.expired_local}",
        ),
        (
            "requests",
            f"{stats.requests} (retries {stats.retries}, throttled {stats.throttles}, "
            f"pending re-checks {stats.rechecks})",
        ),
        (
            "rate",
            f"{_rate(stats):.2f} req/s (pacing {pacer.rate:.2f} of {pacer.target_rate:.2f}, "
            f"slowdowns {pacer.slowdowns}, below target {pacer.seconds_below_target:.1f} s)",
        ),
        ("elapsed", f"{stats.elapsed:.1f} s"),
        ("charges", f"{stats.charges}"),
        ("result codes", _codes(stats)),
        *((("evidence", _evidence(stats)),) if stats.evidence_on else ()),
        *((label, f"{n}") for _, label, n in _exceptional(stats)),
    ]
    if stats.stopped_by:
        rows += [
            ("stopped by", _stopped(stats)),
            ("not reached", f"{stats.not_reached_text} (the next run asks them)"),
        ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(["summary", *(f"  {label:<{width}}  {value}" for label, value in rows)])


def _stopped(stats: RunStats) -> str:
    return (
        "the deadline (--stop-after)" if stats.stopped_by == "deadline" else f"{stats.stopped_by}"
    )


def _evidence(stats: RunStats) -> str:
    return (
        f"{stats.evidence_tokens} tokens with files to keep, {stats.evidence_files} files "
        f"fetched ({stats.evidence_bytes / 1e6:.1f} MB), incomplete {stats.evidence_incomplete} "
        f"(not final), re-asked for fresh links {stats.evidence_requeries}"
    )


def _codes(stats: RunStats) -> str:
    return " ".join(f"{code}:{n}" for code, n in sorted(stats.result_codes.items())) or "none"


def _rate(stats: RunStats) -> float:
    return stats.requests / stats.elapsed if stats.elapsed > 0 else 0.0


def _exceptional(stats: RunStats) -> list[tuple[str, str, int]]:
    """What appears only when something went wrong (absent, it would be noise): the line's
    wording, the table's shorter label, the count."""
    rows = [
        ("retries refused by the retry budget", "budget refused", stats.budget_denied),
        ("requests cut off on the wire by the hard stop", "cut off", stats.cut_off),
        ("lines that never reached the output", "never written", stats.unwritten),
    ]
    return [row for row in rows if row[2]]
