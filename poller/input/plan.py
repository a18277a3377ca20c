"""`poller run --dry-run`: read, validate and de-duplicate the input, and say what a run would do.

No request is made. The counts come from the same `Triage` the real run uses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from poller.config.settings import Settings
from poller.input.entries import InputItem
from poller.input.triage import Triage, Verdict


@dataclass(slots=True)
class Plan:
    counts: Counter[Verdict] = field(default_factory=Counter)
    first_invalid: list[str] = field(default_factory=list)  # a few reasons, for the user

    @property
    def read(self) -> int:
        return sum(self.counts.values())


def make_plan(items: Iterator[InputItem], triage: Triage, *, keep_reasons: int = 5) -> Plan:
    plan = Plan()
    for item in items:
        verdict = triage(item)
        plan.counts[verdict] += 1
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
    rate = settings.pacing_rate
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
        f"pacing {rate:.2f} req/s (quota {settings.rate:g}/s less {settings.rate_margin:.0%})",
        f"estimated duration: {_duration(to_query / rate)} for the first attempts "
        f"({to_query} / {rate:.2f} per s); retries and pending re-checks add to it",
    ]
    return "\n".join(lines)
