"""Quota use: the real `poller run` against a simulator that enforces a strict 1 s window.

Share of the quota used = (requests the server admitted / quota) / elapsed, with elapsed the
span from the first to the last request the simulator saw (`first_request_at`,
`last_request_at` in `/__stats`): process start-up is reported on its own (see `startup`), and
a poller pacing at the default 5% margin would ideally score 0.95. Retries spend quota too, so
they are counted; throttled requests are not admitted and count against the poller.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.model import ACTION, MARGIN, Section, Sizes, Table, Target, fmt
from bench.procs import (
    ChildResult,
    PollerSummary,
    add_run,
    check_exit,
    parse_summary,
    poller_run,
    run_child,
    scratch,
    simulator,
    write_tokens,
)

TARGET_SHARE = 0.95
LATENCY_MS = 80.0
PRE_JITTER_MS = 20.0
FAULT_RATE = 0.05
STALL_SECONDS = 2.0
FAULT_TIMEOUT = 1.0  # the poller's --timeout when faults are on: below the stall
# The heavy-jitter case: the pre-count network leg varies by +-this much, several times a slot.
HEAVY_LATENCY_MS = 200.0
HEAVY_PRE_JITTER_MS = 100.0


@dataclass(frozen=True, slots=True)
class QuotaCase:
    name: str
    rate: float
    tokens: int
    latency_ms: float = LATENCY_MS
    pre_jitter_ms: float = PRE_JITTER_MS
    faults: bool = False

    def simulator_flags(self) -> tuple[str, ...]:
        flags = [
            "--any-token", "--rate", f"{self.rate:g}", "--latency-ms", f"{self.latency_ms:g}",
            "--pre-jitter-ms", f"{self.pre_jitter_ms:g}",
        ]  # fmt: skip
        if self.faults:
            flags += ["--fault-rate", f"{FAULT_RATE:g}", "--stall-seconds", f"{STALL_SECONDS:g}"]
        return tuple(flags)

    def poller_flags(self) -> tuple[str, ...]:
        flags = ["--rate", f"{self.rate:g}"]
        if self.faults:
            flags += ["--timeout", f"{FAULT_TIMEOUT:g}"]
        return tuple(flags)


@dataclass(frozen=True, slots=True)
class QuotaResult:
    case: QuotaCase
    admitted: int
    throttled: int
    max_in_window: int
    span: float
    share: float
    share_with_startup: float  # the same over the poller process's whole wall time
    unused: float  # seconds of the span not explained by pacing: slots nobody took
    lines: int
    summary: PollerSummary
    child: ChildResult
    simulator_argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QuotaUse:
    """A run's use of the quota as the simulator's `/__stats` counted it (the module's
    definition), for every measurement that holds a run against the quota."""

    admitted: int
    throttled: int
    max_in_window: int
    span: float  # first to last API request the simulator saw
    rate: float  # the quota, requests/s

    @property
    def share(self) -> float:
        return (self.admitted / self.rate) / self.span if self.span > 0 else 0.0


def quota_use(stats: Mapping[str, Any], rate: float) -> QuotaUse:
    requests = int(stats["by_action"].get(ACTION, 0))
    throttled = int(stats["throttled"])
    return QuotaUse(
        admitted=requests - throttled - int(stats["signature_failures"]),
        throttled=throttled,
        max_in_window=int(stats["max_in_window"]),
        span=float(stats["last_request_at"] or 0.0) - float(stats["first_request_at"] or 0.0),
        rate=rate,
    )


def tokens_for(rate: float, seconds: float) -> int:
    """Enough tokens to keep a poller pacing 5% under `rate` busy for `seconds`."""
    return max(5, round(rate * (1.0 - MARGIN) * seconds))


def measure(case: QuotaCase, workdir: Path) -> QuotaResult:
    """Run one case end to end (its own simulator, its own token file) and read the counters."""
    tokens = write_tokens(workdir / f"tokens-{case.tokens}.txt", case.tokens)
    output = workdir / "out.jsonl"
    output.unlink(missing_ok=True)
    with simulator(*case.simulator_flags()) as sim:
        argv = poller_run(tokens, output, sim.endpoint, *case.poller_flags())
        child = run_poller(argv)
        stats = sim.stats()
        sim_argv = sim.argv
    use = quota_use(stats, case.rate)
    admitted, span = use.admitted, use.span
    with output.open("rb") as fh:
        lines = sum(1 for _ in fh)
    return QuotaResult(
        case=case,
        admitted=admitted,
        throttled=use.throttled,
        max_in_window=use.max_in_window,
        span=span,
        share=use.share,
        share_with_startup=(admitted / case.rate) / child.wall,
        unused=max(span - (admitted - 1) / (case.rate * (1.0 - MARGIN)), 0.0),
        lines=lines,
        summary=parse_summary(child.stderr),
        child=child,
        simulator_argv=sim_argv,
    )


def run_poller(argv: tuple[str, ...]) -> ChildResult:
    child = run_child(argv, timeout=600)
    # 1: some tokens not final (transient errors outlasted the retries) is a result, not a crash.
    check_exit(child, (0, 1))
    return child


def _row(r: QuotaResult) -> list[str]:
    c = r.case
    return [
        c.name,
        f"{c.rate:g}",
        str(c.tokens),
        str(r.admitted),
        fmt(r.span, 2),
        f"**{r.share:.3f}**",
        fmt(r.unused, 2),
        f"{r.share_with_startup:.3f}",
        str(r.throttled),
        f"{r.max_in_window} / {int(c.rate)}",
        f"{r.summary.retries}",
        f"{r.summary.slowdowns}",
        f"{r.lines}",
    ]


HEADERS = (
    "case", "quota /s", "tokens", "requests admitted", "span s", "quota use", "unused slots s",
    "incl. start-up", "over quota (throttled)", "max in 1 s window", "retries", "slowdowns",
    "lines out",
)  # fmt: skip


def _target(r: QuotaResult) -> Target:
    c = r.case
    # Compared at the 3 decimals shown: one slot more or less of a 16 s run is 0.0006, and the
    # target is the ceiling the 5% margin allows, so noise of one wake-up must not decide it.
    ok_share = round(r.share, 3) >= TARGET_SHARE
    ok_quota = r.throttled == 0 and r.max_in_window <= int(c.rate)
    why = []
    if not ok_share:
        why.append(
            f"quota use {r.share:.3f} < {TARGET_SHARE}: "
            + (
                f"{r.unused:.2f} s of slots went unused; per-request arrival logs taken while "
                "building this benchmark put such gaps in the last second(s) of the run, where "
                "the last faulted tokens wait out their timeout and backoff with no other "
                "token left to fill the slots (the steady state runs at the full paced rate)"
                if c.faults
                else f"the pacer left {r.unused:.2f} s of slots unused"
            )
        )
    if not ok_quota:
        why.append(f"{r.throttled} requests over the quota (max {r.max_in_window} in 1 s)")
    return Target(
        what=f"quota use, {c.name}",
        goal=f">= {TARGET_SHARE}, 0 over quota",
        value=f"{r.share:.3f}, {r.throttled} over quota",
        met=ok_share and ok_quota,
        why="; ".join(why),
    )


def run(sizes: Sizes) -> Section:
    started = time.perf_counter()
    seconds = sizes.quota_seconds
    cases = [
        QuotaCase("20/s", 20.0, tokens_for(20.0, seconds)),
        QuotaCase("100/s", 100.0, tokens_for(100.0, seconds)),
        QuotaCase("20/s, 5% faults", 20.0, tokens_for(20.0, seconds), faults=True),
        QuotaCase("100/s, 5% faults", 100.0, tokens_for(100.0, seconds), faults=True),
    ]
    heavy = QuotaCase(
        "20/s, heavy jitter",
        20.0,
        tokens_for(20.0, seconds),
        latency_ms=HEAVY_LATENCY_MS,
        pre_jitter_ms=HEAVY_PRE_JITTER_MS,
    )
    with scratch("quota") as workdir:
        results = [measure(case, workdir) for case in cases]
        heavy_result = measure(heavy, workdir)
    section = Section(
        title="Quota use",
        intro=(
            f"The real `poller run` (subprocess, `--rate` = the quota, default 5% margin) against "
            f"the simulator in its own process enforcing a strict sliding 1 s window, "
            f"`--latency-ms {LATENCY_MS:g}` with the pre-count leg varying "
            f"+-{PRE_JITTER_MS:g} ms (`--pre-jitter-ms`), `--any-token`. **Quota use** = "
            "(requests admitted / quota) / span, where span runs from the first to the last "
            "request the simulator saw; the ideal at a 5% margin is 0.95 (compared at the 3 "
            "decimals shown). *unused slots* = span - (admitted - 1) / paced rate: time the "
            "pacer had a slot and nobody took it. *incl. start-up* divides by the poller "
            "process's whole wall time instead. With faults: "
            f"`--fault-rate {FAULT_RATE:g} --stall-seconds {STALL_SECONDS:g}` on the simulator, "
            f"`--timeout {FAULT_TIMEOUT:g}` on the poller; every retry takes a paced slot."
        ),
    )
    section.tables.append(Table(HEADERS, [_row(r) for r in results]))
    section.targets.extend(_target(r) for r in results)
    section.tables.append(Table(HEADERS, [_row(heavy_result)]))
    h = heavy_result
    section.notes.append(
        f"Heavy jitter (reported on its own, no target): `--latency-ms {HEAVY_LATENCY_MS:g} "
        f"--pre-jitter-ms {HEAVY_PRE_JITTER_MS:g}` makes arrivals at the server bunch by up to "
        f"{2 * HEAVY_PRE_JITTER_MS:g} ms against a {1000 / (20 * (1 - MARGIN)):.1f} ms spacing. "
        f"The poller saw {h.summary.throttled} RequestLimitExceeded answers out of "
        f"{h.summary.requests} requests and slowed down {h.summary.slowdowns} time(s); "
        f"quota use {h.share:.3f}."
    )
    for r in [*results, heavy_result]:
        add_run(section, r.case.name, r.simulator_argv, r.child.argv)
    section.seconds = time.perf_counter() - started
    return section
