"""Issue 9, items 5 and 7: throttles are not failures; one clock rejection is not a wrong clock."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from poller.api.outcomes import Transient
from poller.api.reply import TransportFault
from poller.config.settings import Settings
from poller.output.sink import JsonlSink
from poller.pipeline.engine import Engine
from poller.pipeline.pacing import RetryBudget
from poller.pipeline.stats import format_summary
from tests.fake_api import FakeClient, FakeStep, run_engine_virtual
from tests.helpers import api_error, make_settings, ok, run_virtual

THROTTLE = api_error("RequestLimitExceeded", "over the limit")


def _run(
    tmp_path: Path, settings: Settings, scripts: dict[str, list[FakeStep]], budget: float = 200.0
) -> tuple[Engine, FakeClient, dict[str, dict[str, Any]]]:
    client = FakeClient(scripts)
    engine, lines, _ = run_engine_virtual(
        tmp_path, settings, client, list(scripts), budget=RetryBudget(budget, 0.0)
    )
    return engine, client, {line["token"]: line for line in lines}


def test_throttles_draw_on_neither_max_attempts_nor_the_budget(tmp_path: Path) -> None:
    # max_attempts 2 and an empty budget: ten throttles still end in a pass.
    settings = make_settings(max_attempts=2, backoff_base=0.01)
    script: list[FakeStep] = [*[THROTTLE] * 10, ok()]
    engine, _client, lines = _run(tmp_path, settings, {"t": script}, budget=0.0)
    assert (lines["t"]["status"], lines["t"]["final"], lines["t"]["attempts"]) == (
        "passed",
        True,
        11,
    )
    assert engine.stats.throttles == 10
    assert engine.stats.retries == 0  # a throttle is counted apart, not as a retry
    assert engine.budget.denied == 0
    summary = format_summary(engine.stats, engine.pacer)
    assert "retries 0, throttled 10" in summary


def test_a_permanently_throttled_token_stops_at_its_own_bound(tmp_path: Path) -> None:
    settings = make_settings(max_throttled_attempts=7, backoff_base=0.01)
    _engine, client, lines = _run(tmp_path, settings, {"t": [THROTTLE]})
    line = lines["t"]
    assert (line["status"], line["final"], line["attempts"]) == ("error", False, 7)
    assert "throttled 7 times" in line["error"]["message"]
    assert client.calls == 7


def test_transient_failures_still_count_against_max_attempts_between_throttles(
    tmp_path: Path,
) -> None:
    boom = TransportFault("Transport.HTTP502", "HTTP 502")
    script: list[FakeStep] = [boom, THROTTLE, boom, THROTTLE, boom, ok()]
    settings = make_settings(max_attempts=3, backoff_base=0.01)
    engine, _client, lines = _run(tmp_path, settings, {"t": script})
    # Three non-throttled failures reach max_attempts 3: the sixth request is never made.
    assert (lines["t"]["status"], lines["t"]["attempts"]) == ("error", 5)
    assert lines["t"]["error"]["code"] == "Transport.HTTP502"
    assert engine.stats.retries == 2
    assert engine.stats.throttles == 2


def test_two_clock_rejections_minutes_apart_do_not_stop_the_run(tmp_path: Path) -> None:
    expire = api_error("AuthFailure.SignatureExpire", "expired")
    boom = TransportFault("Transport.HTTP503", "HTTP 503")
    # Expired, re-signed at once and accepted (503); later expired again, re-signed: passed.
    script: list[FakeStep] = [expire, boom, expire, ok()]
    settings = make_settings(backoff_base=0.01)
    engine, _client, lines = _run(tmp_path, settings, {"t": script})
    assert engine.stats.fatal is None
    assert (lines["t"]["status"], lines["t"]["attempts"]) == ("passed", 4)


def test_backoff_waits_follow_full_jitter_with_a_seeded_rng(tmp_path: Path) -> None:
    settings = make_settings(backoff_base=0.5, backoff_max=4.0)

    async def main() -> list[float]:
        sink = JsonlSink(str(tmp_path / "o.jsonl"))
        engine = Engine(settings, FakeClient({}), sink)
        sink.close()
        fault = Transient("InternalError", "x")
        return [engine.retries.backoff(fault, attempts=attempt) for attempt in range(1, 8)]

    random.seed(1234)
    waits = run_virtual(main)
    rng = random.Random(1234)
    # Full jitter: uniform(0, min(cap, base * 2**(n-1))) for attempt n (tenacity's formula).
    expected = [rng.uniform(0, min(4.0, 0.5 * 2 ** (n - 1))) for n in range(1, 8)]
    assert waits == expected
    assert all(w <= 4.0 for w in waits)


def test_throttles_and_errors_never_count_as_a_success_for_the_staleness_alert(
    tmp_path: Path,
) -> None:
    """Issue 9, item 10: `last_success` feeds the metrics' staleness alert."""
    settings = make_settings(max_throttled_attempts=3, backoff_base=0.01)
    scripts: dict[str, list[FakeStep]] = {
        "throttled": [THROTTLE],
        "unknown": [api_error("FailedOperation.SomethingNew")],
        "gone": [TransportFault("Transport.Connection", "refused")],
    }
    engine, _client, lines = _run(tmp_path, settings, scripts)
    assert len(lines) == 3
    assert engine.stats.last_success is None
    engine, _client, _lines = _run(tmp_path, settings, {"p": [ok("-999")]})
    assert engine.stats.last_success is not None  # a pending answer is a healthy answer
