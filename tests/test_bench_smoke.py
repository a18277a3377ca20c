"""The benchmark machinery on a tiny case: what it measures and reports, never a timing target."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench import cpu, quota
from bench.model import Section, Sizes, Table
from bench.procs import ChildResult, parse_summary
from bench.report import render


def test_one_quota_measurement_end_to_end(tmp_path: Path) -> None:
    # More tokens than the quota allows in one second, so a burst would show: at a strict 20/s
    # the simulator rejects the 21st request of any 1 s window (about 1.6 s of pacing at 19/s).
    case = quota.QuotaCase("smoke", rate=20.0, tokens=30, latency_ms=0.0, pre_jitter_ms=0.0)
    result = quota.measure(case, tmp_path)
    assert result.child.returncode == 0
    assert result.lines == result.summary.tokens == 30
    assert result.admitted + result.throttled == result.summary.requests
    # What the benchmark exists to show: the server never saw the quota exceeded.
    assert result.throttled == 0
    assert 0 < result.max_in_window <= 20
    assert result.admitted >= 30  # every token was asked (a pending one more than once)
    assert result.span > 0
    assert result.share == pytest.approx((result.admitted / 20.0) / result.span)
    assert result.child.cpu > 0
    assert result.child.maxrss_mb > 0

    # The verdict is the measurement held against the goal, and a miss says why.
    target = quota._target(result)
    assert target.value == f"{result.share:.3f}, 0 over quota"
    assert target.met is (round(result.share, 3) >= quota.TARGET_SHARE)
    assert (target.why == "") is target.met
    if not target.met:
        assert target.why.startswith(f"quota use {result.share:.3f} < {quota.TARGET_SHARE}")

    section = Section("Quota use", "intro", [Table(quota.HEADERS, [quota._row(result)])], [target])
    text = render(
        [section],
        command="python -m bench",
        started=datetime.now(UTC),
        seconds=1.0,
        load_before=(0.0, 0.0, 0.0),
        load_after=(0.0, 0.0, 0.0),
    )
    # The report carries the measured figures, not just its headings.
    targets_row = (
        f"| quota use, smoke | >= {quota.TARGET_SHARE}, 0 over quota | "
        f"{result.share:.3f}, 0 over quota | **{target.verdict}** | {target.why or '-'} |"
    )
    assert targets_row in text.splitlines()
    assert any(
        line.startswith(f"| smoke | 20 | 30 | {result.admitted} | ")
        and f"| **{result.share:.3f}** |" in line
        and f"| 0 | {result.max_in_window} / 20 |" in line
        and line.endswith(" | 30 |")
        for line in text.splitlines()
    ), text
    assert "\n\n\n" not in text


def test_a_missed_quota_target_is_not_met_and_says_why() -> None:
    """The verdict logic on both sides of its goal, without a run: over quota and under-used."""
    case = quota.QuotaCase("made-up", rate=20.0, tokens=40, latency_ms=0.0, pre_jitter_ms=0.0)
    stderr = (
        "summary: 40 tokens in 2.0 s: passed 40; not final 0; requests 40 (retries 0, "
        "throttled 0, slowdowns 0); effective rate 20.00 req/s (pacing 19.00 of 19.00)\n"
    )
    child = ChildResult((), 0, 0.0, 2.2, 0.3, 0.05, 40.0, "", stderr)
    base = quota.QuotaResult(
        case=case, admitted=40, throttled=0, max_in_window=20, span=39 / 19, share=0.975,
        share_with_startup=0.9, unused=0.0, lines=40, summary=parse_summary(stderr), child=child,
        simulator_argv=(),
    )  # fmt: skip
    assert quota._target(base).met is True
    assert quota._target(base).why == ""
    over = quota._target(replace(base, throttled=3, max_in_window=23))
    assert over.met is False
    assert over.value == "0.975, 3 over quota"
    assert over.why == "3 requests over the quota (max 23 in 1 s)"
    idle = quota._target(replace(base, share=0.8, unused=0.4))
    assert idle.met is False
    assert idle.why == "quota use 0.800 < 0.95: the pacer left 0.40 s of slots unused"


def test_the_summary_line_is_parsed() -> None:
    line = (
        "summary: 7 tokens in 1.5 s: passed 7; not final 0; requests 9 (retries 2, throttled 1, "
        "slowdowns 1); effective rate 6.00 req/s (pacing 19.00 of 19.00)"
    )
    summary = parse_summary("poller: something\n" + line + "\n")
    assert (summary.tokens, summary.elapsed, summary.requests) == (7, 1.5, 9)
    assert (summary.retries, summary.throttled, summary.slowdowns) == (2, 1, 1)


def _child(cpu: float, wall: float = 2.0) -> ChildResult:
    return ChildResult(("python", "-m", "poller"), 0, 0.0, wall, cpu, 0.0, 40.0, "", "")


def test_the_cpu_figure_is_the_median_held_against_the_floor() -> None:
    """The CPU case's verdict without a run: median of the repeats, <= 1.3x the floor's."""
    floor = cpu.CpuResult(cpu.FLOOR, 8000, tuple(map(_child, (2.4, 2.0, 9.0))), _child(0.3))
    assert floor.ms_per_token == pytest.approx(0.3)  # the median, not the 9 s outlier
    assert floor.best_ms_per_token == pytest.approx(0.25)
    assert floor.marginal_ms_per_token == pytest.approx(2.1 / 8)
    within = cpu.CpuResult(cpu.POLLER, 8000, tuple(map(_child, (3.1, 3.0, 2.9))), _child(0.4))
    target = cpu.floor_target(within, floor)
    assert target.met is True
    assert target.value == "0.375 vs 0.300 ms = 1.25x"
    assert target.why == ""
    over = cpu.CpuResult(cpu.POLLER, 8000, tuple(map(_child, (3.4, 3.3, 3.5))), _child(0.4))
    missed = cpu.floor_target(over, floor)
    assert missed.met is False
    assert missed.goal == "<= 1.3x floor"
    assert missed.why.startswith("work the floor does not do")


def test_the_bench_command_names_one_measurement() -> None:
    # `python -m bench cpu` runs that case alone; an unknown name is refused before any run.
    with pytest.raises(SystemExit) as info:
        bench_main.main(["cpu", "no-such-measurement"])
    assert info.value.code == 2
    assert cpu.CONCURRENCY == 64
    assert Sizes.full().cpu_tokens == 8_000
