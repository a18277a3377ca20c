"""The benchmark machinery on a tiny case: structure only, never a timing target."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench import quota
from bench.model import Section, Table
from bench.procs import parse_summary
from bench.report import render


def test_one_quota_measurement_end_to_end(tmp_path: Path) -> None:
    case = quota.QuotaCase("smoke", rate=200.0, tokens=20, latency_ms=0.0, pre_jitter_ms=0.0)
    result = quota.measure(case, tmp_path)
    assert result.lines == 20
    assert result.summary.tokens == 20
    assert result.admitted + result.throttled == result.summary.requests
    assert 0 < result.max_in_window <= 200
    assert result.span > 0
    assert result.share > 0
    assert result.child.returncode == 0
    assert result.child.cpu > 0
    assert result.child.maxrss_mb > 0
    target = quota._target(result)
    assert target.met in (True, False)
    section = Section("Quota use", "intro", [Table(quota.HEADERS, [quota._row(result)])], [target])
    text = render(
        [section],
        command="python -m bench",
        started=datetime.now(UTC),
        seconds=1.0,
        load_before=(0.0, 0.0, 0.0),
        load_after=(0.0, 0.0, 0.0),
    )
    assert "## Targets" in text
    assert "| quota use, smoke |" in text
    assert "\n\n\n" not in text


def test_the_summary_line_is_parsed() -> None:
    line = (
        "summary: 7 tokens in 1.5 s: passed 7; not final 0; requests 9 (retries 2, throttled 1, "
        "slowdowns 1); effective rate 6.00 req/s (pacing 19.00 of 19.00)"
    )
    summary = parse_summary("poller: something\n" + line + "\n")
    assert (summary.tokens, summary.elapsed, summary.requests) == (7, 1.5, 9)
    assert (summary.retries, summary.throttled, summary.slowdowns) == (2, 1, 1)
