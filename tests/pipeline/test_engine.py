"""The engine over mocked HTTP (aioresponses): every path a token can take to its line."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses

from poller.api.client import FaceIdClient
from poller.config.settings import Settings
from poller.input.tokens import BadEntry, InputItem, TokenEntry
from poller.output.sink import JsonlSink
from poller.pipeline.engine import Engine
from poller.pipeline.pacing import Pacer, RetryBudget
from tests.helpers import (
    SECRET_ID,
    SECRET_KEY,
    URL,
    ScriptedServer,
    Step,
    api_error,
    make_settings,
    ok,
    run_virtual,
)
from tests.sdk_signer import assert_sdk_signed
from tests.simulator_support import T0, FakeClock


@dataclass
class Harness:
    engine: Engine
    server: ScriptedServer
    out: Path

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text().splitlines()]

    def by_token(self) -> dict[str, dict[str, Any]]:
        lines = self.lines()
        tokens = [line["token"] for line in lines]
        assert len(tokens) == len(set(tokens)), "a token got more than one line"
        return {line["token"]: line for line in lines}


async def run_engine(
    tmp_path: Path,
    session: aiohttp.ClientSession,
    scripts: dict[str, list[Step]],
    items: list[InputItem] | None = None,
    settings: Settings | None = None,
    budget: RetryBudget | None = None,
    pacer: Pacer | None = None,
) -> Harness:
    settings = settings or make_settings()
    server = ScriptedServer(scripts)
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out))
    engine = Engine(settings, FaceIdClient(session, settings), sink, budget=budget, pacer=pacer)
    feed: Iterator[InputItem] = iter(
        items if items is not None else [TokenEntry(t, n, None) for n, t in enumerate(scripts, 1)]
    )
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        await engine.run(feed)
    sink.close()
    return Harness(engine, server, out)


async def test_a_token_that_passes(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    h = await run_engine(tmp_path, session, {"tok-pass": [ok("0", Extra="order-1")]})
    line = h.by_token()["tok-pass"]
    assert line["status"] == "passed"
    assert line["final"] is True
    assert line["result"] == "0"
    assert line["attempts"] == 1
    assert line["charge_count"] == 1
    assert line["response"]["Extra"] == "order-1"
    assert line["error"] is None
    assert h.engine.stats.exit_status() == 0
    assert h.server.calls["tok-pass"] == 1


async def test_a_token_that_fails_with_a_non_zero_result(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    h = await run_engine(tmp_path, session, {"tok-fail": [ok("1005")]})
    line = h.by_token()["tok-fail"]
    assert (line["status"], line["final"], line["result"]) == ("failed", True, "1005")
    assert h.engine.stats.result_codes == {"1005": 1}
    assert h.engine.stats.exit_status() == 0


class CountingPacer(Pacer):
    """A pacer that counts the slots it hands out (the engine's one count is `requests`)."""

    slots = 0

    async def acquire(self) -> None:
        await super().acquire()
        self.slots += 1


TRANSIENT_FAULTS: dict[str, Step] = {
    "internal_error": api_error("InternalError"),
    "html_502": CallbackResult(status=502, body="<html><body>Bad Gateway</body></html>"),
    "http_503": CallbackResult(status=503, body="Service Unavailable"),
    "truncated_json": CallbackResult(status=200, body='{"Response": {"Result": "0", "Desc'),
    "connection_reset": aiohttp.ServerDisconnectedError(),
    "connection_refused": aiohttp.ClientOSError(104, "Connection reset by peer"),
    "timeout": TimeoutError(),
}


@pytest.mark.parametrize("fault", list(TRANSIENT_FAULTS))
async def test_transient_fault_is_retried_then_passes(
    tmp_path: Path, session: aiohttp.ClientSession, fault: str
) -> None:
    step = TRANSIENT_FAULTS[fault]
    pacer = CountingPacer(10_000.0)
    h = await run_engine(tmp_path, session, {"tok": [step, step, ok("0")]}, pacer=pacer)
    line = h.by_token()["tok"]
    assert line["status"] == "passed"
    assert line["attempts"] == 3
    assert h.server.calls["tok"] == 3
    assert h.engine.stats.retries == 2
    assert h.engine.stats.requests == 3
    # Every attempt, retries included, took a pacer slot.
    assert pacer.slots == 3


async def test_throttle_then_pass_lowers_the_rate(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    h = await run_engine(tmp_path, session, {"tok": [api_error("RequestLimitExceeded"), ok()]})
    line = h.by_token()["tok"]
    assert (line["status"], line["attempts"]) == ("passed", 2)
    stats, pacer = h.engine.stats, h.engine.pacer
    assert stats.throttles == 1
    assert pacer.slowdowns == 1
    assert pacer.rate < pacer.target_rate


@pytest.mark.parametrize(
    ("code", "status", "final"),
    [
        ("InvalidParameterValue.BizTokenIllegal", "invalid_token", True),
        ("FailedOperation.InvalidTokenParameter", "invalid_token", True),
        ("InvalidParameterValue.BizTokenExpired", "expired", True),
        # SPEC §2: a code the table does not know is not final (the next run asks again).
        ("FailedOperation.NewCodeNobodyKnows", "error", False),
    ],
)
async def test_per_token_errors_are_not_retried(
    tmp_path: Path, session: aiohttp.ClientSession, code: str, status: str, final: bool
) -> None:
    h = await run_engine(tmp_path, session, {"tok": [api_error(code, "why")], "next": [ok()]})
    line = h.by_token()["tok"]
    assert (line["status"], line["final"], line["attempts"]) == (status, final, 1)
    assert line["error"] == {"code": code, "message": "why"}
    assert line["response"] is None
    assert line["request_id"] == "req-err"
    assert h.by_token()["next"]["status"] == "passed"  # the run went on
    assert h.engine.stats.exit_status() == (0 if final else 1)


async def test_forever_transient_ends_as_error_not_final(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    h = await run_engine(tmp_path, session, {"tok": [api_error("InternalError", "boom")]})
    line = h.by_token()["tok"]
    assert (line["status"], line["final"]) == ("error", False)
    assert line["attempts"] == 6  # max_attempts default: total attempts, first included
    assert line["error"]["code"] == "InternalError"
    assert h.server.calls["tok"] == 6
    assert h.engine.stats.exit_status() == 1


async def test_fatal_code_stops_the_run_and_leaves_later_tokens_untouched(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    scripts: dict[str, list[Step]] = {
        "first": [ok()],
        "bad": [api_error("AuthFailure.SignatureFailure", "signature mismatch")],
        "later-1": [ok()],
        "later-2": [ok()],
    }
    h = await run_engine(tmp_path, session, scripts, settings=make_settings(concurrency=1))
    assert set(h.by_token()) == {"first", "bad"}
    # The token that reached the server gets a line (requests seen = sum of attempts), not final.
    bad = h.by_token()["bad"]
    assert (bad["status"], bad["final"], bad["attempts"]) == ("error", False, 1)
    assert bad["error"]["code"] == "AuthFailure.SignatureFailure"
    assert h.server.calls.get("later-1", 0) == 0
    assert h.server.calls.get("later-2", 0) == 0
    assert h.server.calls["bad"] == 1  # fatal is never retried
    fatal = h.engine.stats.fatal
    assert fatal is not None
    assert fatal.code == "AuthFailure.SignatureFailure"
    assert h.engine.stats.exit_status() == 3


async def test_signature_expire_is_resigned_once(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    h = await run_engine(
        tmp_path, session, {"tok": [api_error("AuthFailure.SignatureExpire"), ok()]}
    )
    assert h.by_token()["tok"]["attempts"] == 2
    assert h.engine.stats.exit_status() == 0


async def test_signature_expire_twice_means_the_clock_is_wrong(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    h = await run_engine(tmp_path, session, {"tok": [api_error("AuthFailure.SignatureExpire")]})
    assert h.server.calls["tok"] == 2
    fatal = h.engine.stats.fatal
    assert fatal is not None
    assert "clock" in fatal.message
    assert h.engine.stats.exit_status() == 3
    [line] = h.lines()  # both requests are accounted for, in a line that is not final
    assert (line["status"], line["final"], line["attempts"]) == ("error", False, 2)
    assert line["request_id"] == "req-err"  # the rejecting answer's, for a support ticket


async def test_retry_budget_caps_the_whole_runs_retries(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    scripts: dict[str, list[Step]] = {f"t{i}": [api_error("InternalError")] for i in range(5)}
    h = await run_engine(tmp_path, session, scripts, budget=RetryBudget(capacity=3, refill=0))
    lines = h.by_token()
    assert len(lines) == 5
    assert sum(h.server.calls.values()) == 5 + 3  # first attempts plus the budget, no more
    assert h.engine.stats.retries == 3
    assert h.engine.budget.denied == 5
    assert all(line["status"] == "error" and not line["final"] for line in lines.values())
    assert any("retry budget" in line["error"]["message"] for line in lines.values())


async def test_duplicates_are_queried_and_reported_once(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    items: list[InputItem] = [
        TokenEntry("a", 1, None),
        TokenEntry("b", 2, None),
        TokenEntry("a", 3, None),
    ]
    h = await run_engine(tmp_path, session, {"a": [ok()], "b": [ok()]}, items=items)
    assert sorted(h.by_token()) == ["a", "b"]
    assert h.server.calls["a"] == 1
    assert h.engine.stats.duplicates == 1


async def test_bad_input_gets_an_invalid_token_line_and_is_never_sent(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    items: list[InputItem] = [
        BadEntry("x" * 300, 1, "line 1: token is longer than 256 characters"),
        TokenEntry("good", 2, None),
    ]
    h = await run_engine(tmp_path, session, {"good": [ok()]}, items=items)
    bad = h.by_token()["x" * 300]
    # Decided by the input, so not final: a fixed export is asked afresh next run (SPEC §2).
    assert (bad["status"], bad["final"], bad["attempts"]) == ("invalid_token", False, 0)
    assert "line 1" in bad["error"]["message"]
    assert dict(h.server.calls) == {"good": 1}


async def test_pending_result_is_not_final(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    h = await run_engine(tmp_path, session, {"p1": [ok("-999")], "p2": [ok("")]})
    lines = h.by_token()
    assert {line["status"] for line in lines.values()} == {"pending"}
    assert not any(line["final"] for line in lines.values())
    assert h.engine.stats.exit_status() == 1


async def test_every_request_is_signed_afresh(
    tmp_path: Path, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A retry is a new request: a new X-TC-Timestamp and a new signature over it (SPEC §1.1)."""

    class Recording(ScriptedServer):
        """Records each request's body too, and lets 90 s pass after each answer (a backoff)."""

        def __init__(self, scripts: dict[str, list[Step]]) -> None:
            super().__init__(scripts)
            self.bodies: list[bytes] = []

        def __call__(self, url: Any, **kwargs: Any) -> CallbackResult:
            self.bodies.append(kwargs["data"])
            result = super().__call__(url, **kwargs)
            clock.advance(90)
            return result

    settings = make_settings()
    server = Recording({"tok": [api_error("InternalError"), ok()]})
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    engine = Engine(settings, FaceIdClient(session, settings, clock=clock), sink)
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        await engine.run(iter([TokenEntry("tok", 1, None)]))
    sink.close()

    first, retry = server.headers
    assert first["X-TC-Action"] == retry["X-TC-Action"] == "GetSdkVerificationResult"
    assert server.bodies[0] == server.bodies[1] == b'{"SdkToken":"tok"}'
    assert int(first["X-TC-Timestamp"]) == int(T0)
    assert int(retry["X-TC-Timestamp"]) == int(T0) + 90  # the clock when the retry left
    assert first["Authorization"] != retry["Authorization"]
    # Each Authorization is the official SDK's signature for its own timestamp and body.
    for headers, body in zip(server.headers, server.bodies, strict=True):
        assert_sdk_signed(headers, body, secret_id=SECRET_ID, secret_key=SECRET_KEY)


async def test_pending_token_is_rechecked_until_it_settles(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = make_settings(recheck_after=0.01, max_pending_wait=5.0)
    scripts: dict[str, list[Step]] = {"slow": [ok("-999"), ok("-999"), ok("0")], "fast": [ok()]}
    h = await run_engine(tmp_path, session, scripts, settings=settings)
    line = h.by_token()["slow"]
    assert (line["status"], line["final"], line["attempts"]) == ("passed", True, 3)
    assert h.engine.stats.rechecks == 2
    assert h.engine.stats.exit_status() == 0


def test_pending_past_the_wait_gets_a_pending_line(tmp_path: Path) -> None:
    """On virtual time (`run_virtual`): the re-checks fall due at exact loop instants, so a
    loaded machine can neither add nor lose a look."""
    settings = make_settings(recheck_after=0.02, max_pending_wait=0.05)
    asked_at: list[float] = []

    class Timed(ScriptedServer):
        def __call__(self, url: Any, **kwargs: Any) -> CallbackResult:
            asked_at.append(asyncio.get_running_loop().time())
            return super().__call__(url, **kwargs)

    server = Timed({"stuck": [ok("17")]})

    async def main() -> Engine:
        async with aiohttp.ClientSession() as session:
            sink = JsonlSink(str(tmp_path / "out.jsonl"))
            engine = Engine(settings, FaceIdClient(session, settings), sink)
            with aioresponses() as mocked:
                mocked.post(URL, callback=server, repeat=True)
                await engine.run(iter([TokenEntry("stuck", 1, None)]))
            sink.close()
            return engine

    engine = run_virtual(main)
    (line,) = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert (line["status"], line["final"], line["result"]) == ("pending", False, "17")
    # Asked at 0, 0.02 and 0.04 s; a fourth look at 0.06 s would pass the 0.05 s wait.
    assert line["attempts"] == server.calls["stuck"] == 3
    assert [round(t - asked_at[0], 6) for t in asked_at] == [0.0, 0.02, 0.04]
    assert engine.stats.rechecks == 2
    assert engine.stats.exit_status() == 1


async def test_tokens_past_the_72h_window_are_expired_without_a_call(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:

    now = time.time()
    items: list[InputItem] = [
        TokenEntry("old", 1, now - 73 * 3600),
        TokenEntry("fresh", 2, now - 71 * 3600),
        TokenEntry("undated", 3, None),
    ]
    h = await run_engine(tmp_path, session, {"fresh": [ok()], "undated": [ok()]}, items=items)
    old = h.by_token()["old"]
    assert (old["status"], old["final"], old["attempts"]) == ("expired", True, 0)
    assert old["error"]["code"] == "TokenTooOld"
    assert "old" not in h.server.calls
    assert h.engine.stats.expired_local == 1
    assert h.by_token()["fresh"]["status"] == "passed"


async def test_already_final_tokens_are_skipped(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = make_settings()
    server = ScriptedServer({"new": [ok()]})
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    engine = Engine(
        settings, FaceIdClient(session, settings), sink, already_final=lambda t: t == "done"
    )
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        await engine.run(iter([TokenEntry("done", 1, None), TokenEntry("new", 2, None)]))
    sink.close()
    assert dict(server.calls) == {"new": 1}
    assert engine.stats.skipped_final == 1


async def test_stop_takes_no_new_tokens_and_writes_waiting_rechecks(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """A graceful stop: in-flight tokens finish, queued ones are left for the next run."""
    settings = make_settings(concurrency=1, recheck_after=60.0, max_pending_wait=600.0)
    first_answered = asyncio.Event()
    engine_box: list[Engine] = []

    class StopAfterFirst(ScriptedServer):
        def __call__(self, url: Any, **kwargs: Any) -> CallbackResult:
            result = super().__call__(url, **kwargs)
            first_answered.set()
            return result

    scripts: dict[str, list[Step]] = {f"t{n}": [ok("-999")] for n in range(50)}
    server = StopAfterFirst(scripts)
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    engine = Engine(settings, FaceIdClient(session, settings), sink)
    engine_box.append(engine)

    async def stop_soon() -> None:
        await first_answered.wait()
        await asyncio.sleep(0)
        engine.stop("SIGTERM")

    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        stopper = asyncio.create_task(stop_soon())
        await engine.run(iter([TokenEntry(t, n, None) for n, t in enumerate(scripts, 1)]))
        await stopper
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert 1 <= len(lines) < 50  # not every token: the rest is left for the next run
    assert all(line["status"] == "pending" and not line["final"] for line in lines)
    assert sum(server.calls.values()) == len(lines)
    assert engine.stats.exit_status() == 143
