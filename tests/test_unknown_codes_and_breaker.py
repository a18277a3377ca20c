"""Issue 9, item 3: an unlisted code is `error`, not final; the circuit breaker (SPEC §2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poller.api.reply import TransportFault
from poller.config.settings import Settings
from poller.pipeline.engine import Engine
from tests.fake_api import FakeClient, FakeStep, run_engine_virtual
from tests.helpers import api_error, make_settings, ok

NEW_CODE = "FailedOperation.SomethingNew"


def _run(
    tmp_path: Path, settings: Settings, scripts: dict[str, list[FakeStep]], tokens: list[str]
) -> tuple[Engine, FakeClient, list[dict[str, Any]]]:
    client = FakeClient(scripts)
    engine, lines, _ = run_engine_virtual(tmp_path, settings, client, tokens)
    return engine, client, lines


def test_an_unknown_code_is_error_not_final_and_the_run_exits_1(tmp_path: Path) -> None:
    scripts: dict[str, list[FakeStep]] = {"new": [api_error(NEW_CODE, "??")], "ok": [ok()]}
    engine, client, lines = _run(tmp_path, make_settings(), scripts, ["new", "ok"])
    by_token = {line["token"]: line for line in lines}
    assert (by_token["new"]["status"], by_token["new"]["final"]) == ("error", False)
    assert by_token["new"]["error"]["code"] == NEW_CODE
    assert client.by_token["new"] == 1  # not retried within the run
    assert engine.stats.exit_status() == 1  # cron sees that something is not settled


def test_the_breaker_stops_the_run_after_threshold_identical_unknown_codes(
    tmp_path: Path,
) -> None:
    tokens = [f"t{n:03}" for n in range(200)]
    settings = make_settings(breaker_threshold=10, concurrency=1)
    scripts: dict[str, list[FakeStep]] = {t: [api_error(NEW_CODE)] for t in tokens}
    engine, client, lines = _run(tmp_path, settings, scripts, tokens)
    fatal = engine.stats.fatal
    assert fatal is not None
    assert fatal.breaker
    assert fatal.code == NEW_CODE
    assert "10 tokens in a row" in fatal.message
    assert engine.stats.exit_status() == 3
    assert client.calls == 10  # tens of requests, not the whole file
    assert len(lines) == 10
    assert all(not line["final"] for line in lines)


def test_any_other_outcome_in_between_resets_the_breaker(tmp_path: Path) -> None:
    tokens = [f"t{n:03}" for n in range(60)]
    # Every fifth token passes: never 5 unknown codes in a row.
    scripts: dict[str, list[FakeStep]] = {
        t: [ok() if n % 5 == 4 else api_error(NEW_CODE)] for n, t in enumerate(tokens)
    }
    settings = make_settings(breaker_threshold=5, concurrency=1)
    engine, _client, lines = _run(tmp_path, settings, scripts, tokens)
    assert engine.stats.fatal is None
    assert len(lines) == 60
    assert engine.stats.exit_status() == 1


def test_two_different_unknown_codes_alternating_do_not_trip_it(tmp_path: Path) -> None:
    tokens = [f"t{n:03}" for n in range(40)]
    scripts: dict[str, list[FakeStep]] = {
        t: [api_error(NEW_CODE if n % 2 else "FailedOperation.Other")] for n, t in enumerate(tokens)
    }
    settings = make_settings(breaker_threshold=5, concurrency=1)
    engine, _, lines = _run(tmp_path, settings, scripts, tokens)
    assert engine.stats.fatal is None
    assert len(lines) == 40


def test_faults_that_outlast_the_retries_trip_the_breaker(tmp_path: Path) -> None:
    tokens = [f"t{n:03}" for n in range(100)]
    # An outage: timeouts and 503s mixed, every token exhausts its attempts.
    scripts: dict[str, list[FakeStep]] = {
        t: [
            TransportFault("Transport.Timeout", "no answer"),
            TransportFault("Transport.HTTP503", "HTTP 503"),
        ]
        for t in tokens
    }
    settings = make_settings(
        breaker_threshold=4, concurrency=1, max_attempts=2, backoff_base=0.01, retry_budget=1e6
    )
    engine, client, lines = _run(tmp_path, settings, scripts, tokens)
    fatal = engine.stats.fatal
    assert fatal is not None
    assert fatal.breaker
    assert "outlasted their retries" in fatal.message
    assert client.calls == 8  # 4 tokens x 2 attempts
    assert [line["status"] for line in lines] == ["error"] * 4
    assert engine.stats.exit_status() == 3


def test_threshold_0_turns_the_breaker_off(tmp_path: Path) -> None:
    tokens = [f"t{n:03}" for n in range(80)]
    scripts: dict[str, list[FakeStep]] = {t: [api_error(NEW_CODE)] for t in tokens}
    engine, client, lines = _run(tmp_path, make_settings(breaker_threshold=0), scripts, tokens)
    assert engine.stats.fatal is None
    assert client.calls == 80
    assert len(lines) == 80


def test_a_throttled_out_account_trips_the_breaker_saying_so(tmp_path: Path) -> None:
    tokens = [f"t{n:03}" for n in range(20)]
    throttle = api_error("RequestLimitExceeded", "over the limit")
    scripts: dict[str, list[FakeStep]] = {t: [throttle] for t in tokens}
    settings = make_settings(
        breaker_threshold=3, concurrency=1, max_throttled_attempts=2, backoff_base=0.01
    )
    engine, client, lines = _run(tmp_path, settings, scripts, tokens)
    fatal = engine.stats.fatal
    assert fatal is not None
    assert fatal.breaker
    assert "throttled" in fatal.message
    assert "another client" in fatal.message
    assert "unavailable" not in fatal.message  # the service is not down: the quota is taken
    assert client.calls == 6
    assert len(lines) == 3
