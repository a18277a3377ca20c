"""The benchmark machinery on a tiny case: what it measures and reports, never a timing target."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench import contention, cpu, evidence, quota, shared
from bench.model import QUOTA, Section, Sizes, Table
from bench.procs import ChildResult, parse_summary
from bench.report import render
from poller.evidence.local import PART
from poller.evidence.manifest import MANIFEST


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


def test_the_shared_quota_measurement_end_to_end(tmp_path: Path) -> None:
    # Two real pollers on one schedule in the bench's own redis-server, more tokens than one
    # second of the quota: a burst, or each poller pacing at 19/s on its own, would show.
    with shared.redis_server(tmp_path) as redis:
        result, token_files = shared.measure_case(2, 30, redis, tmp_path)
        cost = shared.reserve_cost(redis, 20)
    assert len(token_files) == 2
    assert [run.tokens for run in result.runs] == [15, 15]
    assert all(run.child.returncode == 0 for run in result.runs)
    assert result.exactly_once
    assert result.requests == sum(len(run.arrivals) for run in result.runs) == 30
    assert result.throttled == 0
    assert 0 < result.max_in_window <= 20
    assert result.together > 0
    assert result.rate == pytest.approx((result.together_requests - 1) / result.together)
    assert sum(result.in_together(run) for run in result.runs) == result.together_requests
    # Together, not each: two pollers pacing at 19/s apiece would send about 38/s.
    assert result.rate < QUOTA
    assert cost.count == 20
    assert 0 < cost.median_us <= cost.p99_us
    assert cost.cpu_us > 0

    target = shared._target(result)
    assert target.met is (round(result.use_paced, 3) >= shared.TARGET_USE)
    assert (target.why == "") is target.met
    row = shared._row(result)
    assert row[:3] == ["2", "30", "30"]
    assert row[-1] == "yes"


def test_a_missed_shared_target_is_not_met_and_says_why(tmp_path: Path) -> None:
    """The shared verdict without a run: over quota, under-used, a token without its line."""
    child = ChildResult((), 0, 0.0, 2.0, 0.4, 0.05, 40.0, "", "")
    stderr = (
        "summary: 2 tokens in 1.0 s: passed 2; not final 0; requests 2 (retries 0, "
        "throttled 0, slowdowns 0); effective rate 2.00 req/s (pacing 19.00 of 19.00)\n"
    )
    run = shared.PollerRun(2, child, parse_summary(stderr), (0.0, 1.0), "")
    base = shared.CaseResult(
        pollers=2, runs=(run, run), requests=4, throttled=0, max_in_window=4,
        together_start=0.0, together_end=3 / 19, together_requests=4, first=0.0, last=1.0,
        simulator_argv=(),
    )  # fmt: skip
    assert base.rate == pytest.approx(19.0)
    assert shared._target(base).met is True
    over = shared._target(replace(base, throttled=2, max_in_window=22))
    assert over.met is False
    assert over.why == "2 throttled, max 22 in 1 s"
    slow = shared._target(replace(base, together_end=1.0))
    assert slow.met is False
    assert slow.why == "together 3.00/s = 0.158 of the paced 19/s < 0.9"
    lost = replace(base, runs=(run, replace(run, problem="1 tokens without a line")))
    assert shared._target(lost).met is False
    assert shared._target(lost).why == "poller 2: 1 tokens without a line"
    assert shared._row(lost)[-1] == "**no**"

    out = tmp_path / "out.jsonl"
    out.write_text('{"token": "a"}\n{"token": "a"}\n{"token": "x"}\nnot json\n', encoding="utf-8")
    assert shared.check_lines(out, ["a", "b"]) == (
        "1 tokens without a line, 1 tokens twice or more, 1 lines of other tokens, "
        "1 unreadable lines"
    )
    out.write_text('{"token": "b"}\n{"token": "a"}\n', encoding="utf-8")
    assert shared.check_lines(out, ["a", "b"]) == ""


def test_the_shared_measurement_without_redis_server_fails_in_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert bench_main.main(["shared"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: redis-server is not installed")
    assert "\n" not in err


def test_the_contention_measurement_end_to_end(tmp_path: Path) -> None:
    # The poller alone for half a second, then another client at 15 req/s of the 20/s quota for
    # 1.5 s (its own tokens, the same credentials), then the poller alone again.
    case = contention.ContentionCase(15.0, tokens=60, start=0.5, seconds=1.5)
    result = contention.measure(case, tmp_path)
    assert result.child.returncode == 0
    assert result.summary.tokens == 60
    # Whose request each arrival was, from the simulator's log: every poller request is in it,
    # and its throttles (the server's, less the other client's) are the ones it counted.
    assert result.requests == result.summary.requests
    assert result.throttled == result.summary.throttled
    assert result.admitted == 60  # pending off: one admitted request a token
    assert len(result.other) == result.other_client.sent == case.other_requests == 22
    assert result.other_client.failed == 0
    # Evenly spaced at 15/s, from about half a second after the poller's first request.
    gaps = [b - a for a, b in zip(result.other, result.other[1:], strict=False)]
    assert statistics.median(gaps) == pytest.approx(1 / 15, abs=0.01)
    assert result.other[-1] - result.other[0] == pytest.approx(21 / 15, abs=0.1)
    assert result.other[0] - result.poller[0] == pytest.approx(0.5, abs=0.3)
    # Nobody went over the quota: the simulator refused what would have.
    assert 0 < result.max_in_window <= 20
    assert result.span > 0
    assert result.quota_use == pytest.approx(60 / (20.0 * result.span))
    assert sum(result.per_second(result.poller)) == result.requests
    assert sum(result.per_second(result.other)) == 22

    throttled = contention.throttled_target(result)
    assert throttled.met is (result.throttled_share <= contention.TARGET_THROTTLED)
    assert (throttled.why == "") is throttled.met
    recovery = contention.recovery_target(result)
    if result.recovery is None:
        assert recovery.met is None
    else:
        assert recovery.met is (result.recovery <= contention.TARGET_RECOVERY)
        assert recovery.value == f"{result.recovery:.2f} s"

    table = contention.case_table(result)
    section = Section("Contention", "intro", [table], [throttled, recovery])
    text = render(
        [section],
        command="python -m bench --only contention",
        started=datetime.now(UTC),
        seconds=1.0,
        load_before=(0.0, 0.0, 0.0),
        load_after=(0.0, 0.0, 0.0),
    )
    lines = text.splitlines()
    assert "| other client 15 req/s for 1.5 s | measured | target | verdict |" in lines
    assert (
        f"| contention, other client 15 req/s: throttled | <= 5% of the poller's requests | "
        f"{throttled.value} | **{throttled.verdict}** | {throttled.why or '-'} |"
    ) in lines
    assert (
        f"| throttled, share of the poller's requests | {throttled.value} | <= 5% | "
        f"**{throttled.verdict}** |"
    ) in lines
    series = " ".join(map(str, result.per_second(result.other)))
    assert f"| other client req/s, the same seconds | `{series}` |  |  |" in lines


def test_recovery_is_read_from_a_trailing_one_second_window() -> None:
    def paced(rate: float, start: float, end: float) -> list[float]:
        return [start + k / rate for k in range(round((end - start) * rate))]

    # 19/s, 10/s from 5 s to 8 s, 19/s again to 20 s: the trailing 1 s window holds >= 17.1
    # once 8/9 of it is past 8 s (19x + 10(1 - x) >= 18 requests).
    arrivals = paced(19, 0, 5) + paced(10, 5, 8) + paced(19, 8, 20)
    seconds = contention.recovery_seconds(arrivals, 6.0)
    assert seconds == pytest.approx(8 + 8 / 9 - 6.0, abs=0.06)
    # Back at once when the pace never fell; and it has to stay there for 2 s: a dip counts
    # again from after it.
    assert contention.recovery_seconds(paced(19, 0, 10), 2.0) == 0.0
    # Three requests missing between 10.0 and 10.2 s: the window is short of 18 until 11.1 s.
    dip = [t for t in arrivals if not 10.0 < t < 10.2]
    assert contention.recovery_seconds(dip, 6.0) == pytest.approx(11.11 - 6.0, abs=0.06)
    # Not seen: the run ends before 2 s at the pace.
    assert contention.recovery_seconds(paced(19, 0, 5) + paced(10, 5, 9), 6.0) is None
    assert contention.recovery_seconds(paced(19, 0, 5) + paced(19, 8, 9.5), 6.0) is None


def test_a_missed_contention_target_is_not_met_and_says_why() -> None:
    assert "contention" in bench_main.MEASUREMENTS
    stderr = (
        "summary: 90 tokens in 6.0 s: passed 90; not final 0; requests 100 (retries 10, "
        "throttled 10, slowdowns 3, below target pace 4.5 s); effective rate 15.00 req/s "
        "(pacing 19.00 of 19.00)\n"
    )
    summary = parse_summary(stderr)
    assert summary.below_target == 4.5
    child = ChildResult((), 0, 0.0, 6.5, 0.4, 0.05, 40.0, "", stderr)
    poller = tuple(k / 19 for k in range(100))
    base = contention.ContentionResult(
        case=contention.ContentionCase(8.0, tokens=90, start=1.0, seconds=2.0),
        poller=poller, other=(1.0, 1.125), throttled=10,
        other_client=contention.OtherClient(sent=2, throttled=0, failed=0), max_in_window=20,
        summary=summary, child=child, simulator_argv=(),
    )  # fmt: skip
    throttled = contention.throttled_target(base)
    assert throttled.met is False
    assert throttled.value == "10.0% (10 of 100)"
    assert throttled.why == "10 of 100 requests throttled"
    assert contention.throttled_target(replace(base, throttled=5)).met is True
    # Steady 19/s throughout: back at once; too few arrivals after: not available, never met.
    assert contention.recovery_target(base).met is True
    assert contention.recovery_target(base).value == "0.00 s"
    short = contention.recovery_target(replace(base, other=(4.0, 4.5)))
    assert short.met is None
    assert short.value == "not seen"
    assert short.why.startswith("the run ended before 2 s")
    late = replace(base, poller=poller[:40] + tuple(40 / 19 + 8 + k / 19 for k in range(60)))
    slow = contention.recovery_target(replace(late, other=(1.0, 2.0)))
    assert slow.met is False
    assert slow.why.endswith(" s > 5 s")
    rows = contention.case_table(base).rows
    assert rows[0] == ["poller requests (admitted + throttled)", "100 (90 + 10)", "", ""]
    assert rows[2][2:] == ["<= 5 s", "**met**"]


def test_the_evidence_measurement_end_to_end(tmp_path: Path) -> None:
    # A real run with --evidence against the simulator's media at 1% of Tencent's sizes: every
    # file is counted from DEST, against the lines and the simulator, and DEST is gone after.
    case = evidence.EvidenceCase("smoke", tokens=30, scale=0.01)
    result = evidence.measure(case, tmp_path)
    assert not (tmp_path / "evidence").exists()
    assert result.child.returncode == 0
    assert result.summary.tokens == 30
    assert result.stored.files > 30  # a card and at least one attempt a token
    assert result.stored.bytes == result.fetched_bytes > 0
    assert len(result.stored.manifests) == 30
    assert sum(result.stored.per_second) == result.stored.bytes
    assert result.stored.first <= result.stored.last
    assert result.use.throttled == 0
    assert 0 < result.use.max_in_window <= 20
    assert result.use.admitted == 30
    assert result.use.share == pytest.approx(30 / (20.0 * result.use.span))
    assert len(result.api) == 30
    assert result.api[0] == 0.0
    assert sum(result.api_per_second()) == 30
    assert 1 <= result.backlog_max <= evidence.BACKLOG
    assert result.backlog_full_at is None
    assert result.mb_per_token == pytest.approx(result.stored.bytes / 1e6 / 30)

    target = evidence.use_target(result)
    assert target.met is (round(result.use.share, 3) >= evidence.TARGET_USE)
    assert (target.why == "") is target.met
    section = Section("Evidence archiving", "intro", [], [target])
    section.tables.append(Table(evidence.HEADERS, [evidence._row(result)]))
    section.tables.append(evidence.series_table([result]))
    text = render(
        [section],
        command="python -m bench --only evidence",
        started=datetime.now(UTC),
        seconds=1.0,
        load_before=(0.0, 0.0, 0.0),
        load_after=(0.0, 0.0, 0.0),
    )
    lines = text.splitlines()
    assert (
        f"| quota use with archiving on, smoke | >= 0.9 | {target.value} | "
        f"**{target.verdict}** | {target.why or '-'} |"
    ) in lines
    started = f"| smoke | all | {evidence.DEFAULT_CONCURRENCY} | 30 | "
    assert any(line.startswith(started) for line in lines), text


def _evidence_result(**changes: object) -> evidence.EvidenceResult:
    stderr = (
        "summary: 100 tokens in 20.0 s: passed 100; not final 0; requests 100 (retries 0, "
        "throttled 0, slowdowns 0); effective rate 5.00 req/s (pacing 19.00 of 19.00)\n"
    )
    # 100 tokens of 20 MB: 2000 MB stored in 20 s of wall time, the files over 16 s.
    base = evidence.EvidenceResult(
        case=evidence.EvidenceCase("made-up", tokens=100, scale=1.0),
        use=quota.QuotaUse(admitted=100, throttled=0, max_in_window=20, span=99 / 19, rate=20.0),
        stored=evidence.Stored(
            files=2500, bytes=2_000_000_000, first=1000.0, last=1016.0,
            per_second=(125e6,) * 16, manifests=(),
        ),
        fetched_bytes=2_000_000_000,
        api=tuple(k / 19 for k in range(100)),
        backlog_max=40,
        backlog_full_at=None,
        summary=parse_summary(stderr),
        child=ChildResult((), 0, 0.0, 20.0, 8.0, 2.0, 60.0, "", stderr),
        simulator_cpu=6.0,
        simulator_argv=(),
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_evidence_figures_are_bytes_over_time() -> None:
    r = _evidence_result()
    assert r.mb_per_token == pytest.approx(20.0)
    assert r.mb_per_s == pytest.approx(100.0)  # over the wall time
    assert r.mb_per_s_storing == pytest.approx(125.0)  # first file stored to last
    assert r.tokens_per_s == pytest.approx(6.25)
    assert r.pace(0.0, 1.0) == pytest.approx(19.0)
    assert r.pace(2.0, 2.0) == 0.0
    assert r.api_per_second()[:5] == [19, 19, 19, 19, 19]
    assert sum(r.api_per_second()) == 100
    row = evidence._row(r)
    assert row[4:10] == ["20.00", "2,000", "2500", "20.0", "**100.0**", "125.0"]
    assert row[-3:] == ["40 / 256", "10.0 (0.50)", "6.0"]
    # No files stored: no span, no rate (never a division by zero).
    empty = replace(r.stored, files=0, bytes=0, first=0.0, last=0.0)
    assert _evidence_result(stored=empty).mb_per_s_storing == 0.0


def test_a_missed_evidence_target_says_whether_the_archive_or_the_pacer_was_the_limit() -> None:
    ok = evidence.use_target(_evidence_result())
    assert ok.met is True
    assert ok.value == f"{100 / 20 / (99 / 19):.3f}, 0 throttled"
    assert ok.why == ""
    # The backlog filled at 10 s: 19/s before, 5/s after (10 s more for the last 50).
    api = tuple(k / 19 for k in range(190)) + tuple(10 + k / 5 for k in range(50))
    use = quota.QuotaUse(admitted=240, throttled=2, max_in_window=21, span=api[-1], rate=20.0)
    full = evidence.use_target(
        _evidence_result(api=api, use=use, backlog_max=264, backlog_full_at=10.0)
    )
    assert full.met is False
    assert full.value == f"{240 / 20 / api[-1]:.3f}, 2 throttled"
    assert full.why.startswith("the archive is the limit: it stored 125 MB/s = 6.2 tokens/s")
    assert "reached its 256 at 10.0 s" in full.why
    assert "from 19.0/s before to 5.0/s after" in full.why
    assert full.why.endswith(
        "; 2 requests throttled, the pace lowered 0 time(s), 0.0 s below its target "
        "(the backlog at most 264)"
    )
    throttled = evidence.use_target(_evidence_result(use=replace(use, admitted=100)))
    assert throttled.met is False
    assert throttled.why.startswith("2 requests throttled, the pace lowered 0 time(s)")
    idle = evidence.use_target(_evidence_result(use=replace(use, admitted=100, throttled=0)))
    assert idle.why == "the API left slots unused with the backlog at most 40"


def test_the_sustained_quota_use_is_the_archive_rate_over_the_quota() -> None:
    # 125 MB/s at 20 MB a token: 6.25 tokens/s, 0.3125 of the 20/s quota, whatever the run.
    slow = evidence.sustained_target(_evidence_result())
    assert slow.met is False
    assert slow.value == "0.312 (6.2 tokens/s archived)"
    assert slow.why.startswith("bandwidth: 125 MB/s stored (loopback, MD5, disk; the poller at")
    assert slow.why.endswith("a run longer than the 256-answer backlog can hide goes at that pace")
    # An archive faster than the pace: the pace is the limit, 19/20.
    fast = replace(_evidence_result().stored, last=1000.5)  # 4000 MB/s: 200 tokens/s
    kept_up = evidence.sustained_target(_evidence_result(stored=fast))
    assert kept_up.met is True
    assert kept_up.value.startswith("0.950 (")
    assert evidence.sustained_use(_evidence_result(stored=fast)) == pytest.approx(0.95)


def test_the_backlog_is_answers_not_yet_archived() -> None:
    # Answered at 0, 1, 2, 3; archived at 0.5, 4, 4, 5: two wait at 2, three at 3.
    assert evidence.max_backlog([0, 1, 2, 3], [0.5, 4, 4, 5], room=3) == (3, 3)
    assert evidence.max_backlog([0, 1, 2, 3], [0.5, 4, 4, 5], room=4) == (3, None)
    assert evidence.max_backlog([], [], room=1) == (0, None)


def test_every_token_needs_one_final_line_with_complete_evidence() -> None:
    def line(
        token: str, *, final: bool = True, missing: int = 0, evidence_on: bool = True
    ) -> bytes:
        ev = {"missing": [{"field": "BestFrame", "reason": "x"}] * missing}
        return json.dumps(
            {"token": token, "final": final, "evidence": ev if evidence_on else None}
        ).encode()

    good = [line("a"), line("b")]
    assert evidence.evidence_problems(good, ["a", "b"]) == ""
    bad = [
        line("a", final=False),
        line("a"),
        line("x", evidence_on=False),
        line("b", missing=1),
        b"not json",
    ]
    assert evidence.evidence_problems(bad, ["a", "b", "c"]) == (
        "1 tokens without a line, 1 tokens twice or more, 1 lines of other tokens, "
        "1 unreadable lines, 1 lines not final, 1 lines without evidence, "
        "1 lines with evidence missing (e.g. {'field': 'BestFrame', 'reason': 'x'})"
    )


def test_dest_is_read_back_file_by_file(tmp_path: Path) -> None:
    token = tmp_path / "tok-1"
    token.mkdir()
    for name, size, at in (("a.mp4", 3000, 101.2), ("b.jpg", 500, 103.9), (MANIFEST, 80, 104.0)):
        (token / name).write_bytes(b"x" * size)
        os.utime(token / name, (at, at))
    stored = evidence.read_dest(tmp_path, origin=100.0)
    assert (stored.files, stored.bytes) == (2, 3500)
    assert stored.first == pytest.approx(101.2)
    assert stored.last == pytest.approx(103.9)
    assert stored.per_second == (0.0, 3000.0, 0.0, 500.0)
    [(where, when)] = stored.manifests
    assert where == "tok-1"
    assert when == pytest.approx(104.0)
    (token / f".c.jpg{PART}1-ab").write_bytes(b"")
    with pytest.raises(RuntimeError, match="a partial download was left"):
        evidence.read_dest(tmp_path, origin=100.0)
