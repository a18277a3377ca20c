"""Issue 9, items 2 and 6: from a stop on, no new request leaves (SPEC §3 "Stopping").

Runs the engine on the virtual-time loop with a scripted client, so "on the wire" and
"waiting for a slot" are exact states, and the moment of the stop is exact too.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from poller.api.reply import TransportFault
from poller.config.settings import Settings
from poller.input.tokens import InputError, InputItem, TokenEntry
from poller.job import _Stopper
from poller.output.sink import JsonlSink
from poller.pipeline.engine import Engine
from poller.pipeline.workqueue import Job, WorkQueue
from tests.fake_api import FakeClient, Slow, run_engine_virtual
from tests.helpers import make_settings, ok, run_virtual


def _run(
    tmp_path: Path,
    settings: Settings,
    client: FakeClient,
    tokens: list[str],
    during: Callable[[Engine], Coroutine[Any, Any, None]],
) -> tuple[Engine, list[dict[str, Any]], float]:
    return run_engine_virtual(tmp_path, settings, client, tokens, during=during)


def _stop_at(at: float, reason: str = "SIGTERM") -> Callable[[Engine], Coroutine[Any, Any, None]]:
    async def during(engine: Engine) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(at - (loop.time() - 1000.0))
        engine.stop(reason)

    return during


def test_no_request_leaves_after_a_stop_only_those_on_the_wire_finish(tmp_path: Path) -> None:
    # 2 requests/s and 32 workers: almost every worker holds a token and waits for its slot.
    settings = make_settings(rate=2.0, rate_margin=0.0, concurrency=32)
    client = FakeClient({}, default=Slow(0.8, ok()))
    tokens = [f"t{n}" for n in range(200)]
    engine, lines, ended = _run(tmp_path, settings, client, tokens, _stop_at(3.2))
    stop_time = 1000.0 + 3.2
    # Slots at 0, .5, 1, ... 3.0: seven requests left before the stop, none after it.
    assert [t for t, _ in client.sent if t > stop_time] == []
    assert client.calls == 7
    # Every request that left got its line (the last two were on the wire at the stop)...
    assert sorted(line["token"] for line in lines) == sorted(tok for _, tok in client.sent)
    assert all(line["status"] == "passed" for line in lines)
    assert sum(line["attempts"] for line in lines) == client.calls == engine.stats.requests
    # ...and the run ended when the last of them settled, not a slot-queue later.
    assert abs(ended - (1000.0 + 3.0 + 0.8)) < 1e-6
    assert engine.stats.exit_status() == 143


def test_a_stop_during_backoff_sends_no_retry_and_writes_error_not_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Full jitter draws the backoff from [0, cap): take the cap, so the retry cannot fall
    # before the stop by chance.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    settings = make_settings(backoff_base=60.0, backoff_max=60.0, max_attempts=6)
    boom = TransportFault("Transport.HTTP503", "HTTP 503")
    client = FakeClient({"t": [boom]})
    engine, lines, ended = _run(tmp_path, settings, client, ["t"], _stop_at(0.5, "SIGINT"))
    assert client.calls == 1  # the retry waiting in its backoff never left
    [line] = lines
    assert (line["status"], line["final"], line["attempts"]) == ("error", False, 1)
    assert line["error"]["code"] == "Transport.HTTP503"
    assert "stopped before a retry" in line["error"]["message"]
    assert ended - 1000.0 < 0.51  # the backoff ended with the stop, not 60 s later
    assert engine.stats.retries == 0  # counted when sent: this one never was
    assert engine.stats.exit_status() == 130


def test_a_stop_during_a_pending_wait_writes_pending_not_final(tmp_path: Path) -> None:
    settings = make_settings(recheck_after=30.0, max_pending_wait=600.0)
    client = FakeClient({"t": [ok("-999")]})
    engine, lines, ended = _run(tmp_path, settings, client, ["t"], _stop_at(5.0))
    assert client.calls == 1  # the re-check never left
    assert engine.stats.rechecks == 0  # counted when sent, not when planned
    assert engine.stats.result_codes == {"-999": 1}  # pending codes reach the metrics too
    [line] = lines
    assert (line["status"], line["final"], line["attempts"]) == ("pending", False, 1)
    assert line["response"]["Result"] == "-999"
    assert ended - 1000.0 < 5.01


def test_a_pending_answer_arriving_after_the_stop_is_written_pending(tmp_path: Path) -> None:
    """Item 6: `schedule_recheck` after `stop()` emptied the heap used to lose the token."""
    settings = make_settings(recheck_after=1.0, max_pending_wait=600.0)
    client = FakeClient({"t": [Slow(2.0, ok("-999"))]})
    engine, lines, _ = _run(tmp_path, settings, client, ["t"], _stop_at(1.0))
    [line] = lines
    assert (line["token"], line["status"], line["final"]) == ("t", "pending", False)
    assert engine.stats.rechecks == 0
    assert engine.stats.tokens == 1


def test_schedule_recheck_refuses_once_stopped() -> None:
    async def main() -> tuple[bool, bool, Job | None]:
        queue = WorkQueue(4)
        before = await queue.schedule_recheck(Job("a"), 5.0)
        await queue.stop()
        after = await queue.schedule_recheck(Job("b"), 5.0)
        await queue.close_input()
        return before, after, await queue.get()

    before, after, got = run_virtual(main)
    assert (before, after, got) == (True, False, None)


def test_hard_stop_second_signal_aborts_requests_on_the_wire(tmp_path: Path) -> None:
    settings = make_settings(rate=10.0, rate_margin=0.0, concurrency=4, grace_period=30.0)
    client = FakeClient({}, default=Slow(20.0, ok()))
    stopper: list[_Stopper] = []

    async def during(engine: Engine) -> None:
        stopper.append(_Stopper(engine, settings.grace_period))
        await asyncio.sleep(0.25)  # three requests on the wire (slots 0, .1, .2)
        stopper[0]("SIGTERM")
        await asyncio.sleep(1.0)
        stopper[0]("SIGTERM")  # again: stop now, do not wait out the 20 s answers

    engine, lines, ended = _run(tmp_path, settings, client, ["a", "b", "c", "d", "e"], during)
    stopper[0].close()
    assert client.calls == 3
    # Cut off on the wire, but they reached the server: a line each, not final (asked again).
    assert sorted(line["token"] for line in lines) == ["a", "b", "c"]
    assert all(
        (line["status"], line["final"], line["attempts"], line["error"]["code"])
        == ("error", False, 1, "RunStopped")
        for line in lines
    )
    assert engine.stats.cut_off == 3
    assert ended - 1000.0 < 1.3
    assert engine.stats.exit_status() == 143


def test_grace_period_ends_a_graceful_stop(tmp_path: Path) -> None:
    settings = make_settings(rate=10.0, rate_margin=0.0, concurrency=4, grace_period=2.0)
    client = FakeClient({"fast": [ok()]}, default=Slow(60.0, ok()))

    async def during(engine: Engine) -> None:
        await asyncio.sleep(0.15)  # "fast" settled, "slow" on the wire
        stopper = _Stopper(engine, settings.grace_period)
        stopper("SIGINT")

    engine, lines, ended = _run(tmp_path, settings, client, ["fast", "slow", "never"], during)
    assert [(line["token"], line["final"]) for line in lines] == [("fast", True), ("slow", False)]
    assert client.by_token.get("never", 0) == 0
    assert abs(ended - (1000.0 + 0.15 + 2.0)) < 0.01  # the grace timer, not the 60 s answer
    assert engine.stats.exit_status() == 130


async def test_input_breaking_off_lets_the_requests_on_the_wire_finish(tmp_path: Path) -> None:
    """The input failing mid-file stops the run like a signal: nothing more is sent, what is on
    the wire is written, then exit 4 (it used to cancel everything: requests without lines)."""
    settings = make_settings(rate=1000.0, rate_margin=0.0, concurrency=8)
    client = FakeClient({}, default=Slow(0.2, ok()))
    gate = threading.Event()

    def items() -> Iterator[InputItem]:
        for n in range(5):
            yield TokenEntry(f"t{n}", n + 1, None)
        gate.wait(5)  # the five requests are on the wire when the read fails
        raise InputError("reading tokens.txt failed at line 6: Input/output error")

    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    engine = Engine(settings, client, sink)

    async def open_gate() -> None:
        while client.on_wire < 5:  # noqa: ASYNC110 - choosing the moment, bounded by the timeout
            await asyncio.sleep(0.005)
        gate.set()

    opener = asyncio.create_task(open_gate())
    stats = await engine.run(items())
    await opener
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(line["token"] for line in lines) == [f"t{n}" for n in range(5)]
    assert client.calls == 5
    assert stats.exit_status() == 4
    assert stats.local_error is not None
    assert "line 6" in stats.local_error


def test_a_recheck_cut_off_by_the_hard_stop_is_written_pending(tmp_path: Path) -> None:
    settings = make_settings(recheck_after=1.0, max_pending_wait=600.0, grace_period=0.5)
    client = FakeClient({"t": [ok("-999"), Slow(30.0, ok())]})

    async def during(engine: Engine) -> None:
        await asyncio.sleep(1.5)  # the re-check at 1.0 s is on the wire for 30 s
        _Stopper(engine, settings.grace_period)("SIGTERM")

    _engine, lines, ended = _run(tmp_path, settings, client, ["t"], during)
    assert client.calls == 2
    [line] = lines
    assert (line["status"], line["final"], line["attempts"]) == ("pending", False, 2)
    assert line["response"]["Result"] == "-999"  # its last answer
    assert abs(ended - 1002.0) < 0.01  # 1.5 s + the 0.5 s grace period
