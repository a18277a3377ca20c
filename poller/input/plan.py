"""`poller run --dry-run`: read, validate and de-duplicate the input, and say what a run would do.

No request is made. The counts come from the same `Triage` the real run uses.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from poller.config.durations import format_duration
from poller.config.redis_address import parse_address
from poller.config.settings import EVIDENCE_FIELDS, Settings
from poller.input.entries import InputItem, TokenEntry
from poller.input.order import late_count
from poller.input.triage import Triage, Verdict


@dataclass(slots=True)
class Deadlines:
    """Whether the tokens to query are reached inside their window (SPEC §9), at the pace.

    Fed the issue time of every token to query, in input order (8 bytes each); the k-th (from
    0) is asked at `start + k / rate`, so a token issued longer than `max_age` before its turn
    would be asked too late (the server answers it expired)."""

    start: float
    rate: float
    max_age: float
    issued: array[float] = field(default_factory=lambda: array("d"))

    def add(self, issued_at: float | None) -> None:
        self.issued.append(math.nan if issued_at is None else issued_at)

    @property
    def to_query(self) -> int:
        return len(self.issued)

    @property
    def dated(self) -> int:
        return sum(1 for t in self.issued if t == t)  # NaN != NaN

    @property
    def duration(self) -> float:
        """Seconds the first attempts take at the pace."""
        return self.to_query / self.rate

    def late_in_input_order(self) -> int:
        return late_count(_known(self.issued), self.start, self.rate, self.max_age)

    def late_in_expiry_order(self) -> int:
        # Oldest first, the undated after them (they cannot be late by this count).
        dated = sorted(t for t in self.issued if t == t)
        return late_count(dated, self.start, self.rate, self.max_age)

    def describe(self, order: str) -> str:
        """One sentence: how long the queries take, and how many tokens come too late."""
        window = f"{self.max_age / 3600:.3g} h"
        text = (
            f"{self.to_query} tokens to query take {format_duration(self.duration)} at "
            f"{self.rate:.2f} req/s; of the {self.dated} with an issued_at, "
            f"{self.late_in_input_order()} would pass their {window} before their turn in input "
            f"order, {self.late_in_expiry_order()} in expiry order (--order expiry)"
        )
        return text + (" (the order of this run)" if order == "expiry" else "")


def _known(issued: array[float]) -> Iterator[float | None]:
    return (None if t != t else t for t in issued)


@dataclass(slots=True)
class Plan:
    counts: Counter[Verdict] = field(default_factory=Counter)
    first_invalid: list[str] = field(default_factory=list)  # a few reasons, for the user
    deadlines: Deadlines | None = None  # set when asked for (`make_plan(deadlines=...)`)

    @property
    def read(self) -> int:
        return sum(self.counts.values())


def make_plan(
    items: Iterator[InputItem],
    triage: Triage,
    *,
    keep_reasons: int = 5,
    deadlines: Deadlines | None = None,
) -> Plan:
    plan = Plan(deadlines=deadlines)
    for item in items:
        verdict = triage(item)
        plan.counts[verdict] += 1
        if deadlines is not None and verdict is Verdict.QUERY and isinstance(item, TokenEntry):
            deadlines.add(item.issued_at)
        if verdict is Verdict.INVALID and len(plan.first_invalid) < keep_reasons:
            plan.first_invalid.append(getattr(item, "reason", ""))
    return plan


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def format_plan(plan: Plan, settings: Settings, *, tokens: str, output: str) -> str:
    c = plan.counts
    to_query = c[Verdict.QUERY]
    rate = settings.run_rate
    creds = settings.credentials
    rows = [
        ("to query", to_query),
        (f"skipped, already final in {output}", c[Verdict.ALREADY_FINAL]),
        ("skipped, final in an earlier run (--skip-final-in)", c[Verdict.FINAL_EARLIER]),
        (f"expired, issued over {settings.max_token_age / 3600:.3g} h ago", c[Verdict.EXPIRED]),
        ("invalid (an invalid_token line each)", c[Verdict.INVALID]),
        ("duplicates (reported once)", c[Verdict.DUPLICATE]),
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["dry run: no request was made", f"input {tokens}: {plan.read} entries read"]
    lines += [f"  {label:<{width}}  {n}" for label, n in rows]
    lines += [f"    {reason}" for reason in plan.first_invalid]
    lines += [
        f"endpoint {settings.endpoint}, region {settings.region}",
        "credentials: "
        + (f"secret id {creds.secret_id} from {creds.source}" if creds else "none found"),
        f"pacing {rate:.2f} req/s (quota {settings.rate:g}/s less {settings.rate_margin:.0%}"
        + (f", this run's share {settings.max_share:g}" if settings.max_share < 1 else "")
        + ")",
        f"estimated duration: {_duration(to_query / rate)} for the first attempts "
        f"({to_query} / {rate:.2f} per s); retries and pending re-checks add to it",
    ]
    if settings.shared_quota:
        lines.append(
            f"shared quota: {parse_address(settings.shared_quota).shown} answers; other pollers "
            "on the account take slots from the same schedule, so the run may take longer"
        )
    if settings.evidence:
        fields = (
            "every field"
            if set(settings.evidence_fields) == set(EVIDENCE_FIELDS)
            else ", ".join(settings.evidence_fields)
        )
        lines.append(
            f"evidence: {fields} of each answer kept in {settings.evidence} (checked: it can be "
            f"written), {settings.evidence_concurrency} downloads at once"
        )
    d = plan.deadlines
    if d is not None and d.dated:
        lines.append("deadlines: " + d.describe(settings.order))
    if settings.stop_after:
        lines.append(
            f"stop after {format_duration(settings.stop_after)}: about "
            f"{min(to_query, int(settings.stop_after * rate))} of the {to_query} first attempts "
            "fit; the next run resumes the rest"
        )
    return "\n".join(lines)
