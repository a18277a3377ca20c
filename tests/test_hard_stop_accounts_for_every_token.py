"""A hard stop still accounts for every token that reached the server (second review of issue 9).

Found by trying to break the first fixes: two signals a few milliseconds apart lost the lines of
tokens that were waiting for a retry or a re-check (the cancellation overtook the stop's own
wake-up); a stop with the output stalled and re-checks waiting hung for good; an output failure
cancelled requests on the wire without a trace; Ctrl-C on `poller run | consumer` exited 4.
"""

from __future__ import annotations

import asyncio
import errno
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from poller.api.reply import TransportFault
from poller.input.tokens import TokenEntry
from poller.job import _Stopper
from poller.output.sink import JsonlSink, Sink
from poller.output.writer import LineWriter
from poller.pipeline.engine import Engine
from poller.pipeline.stats import RunStats
from tests.fake_api import FakeClient, FakeStep, Slow, run_engine_virtual
from tests.helpers import make_settings, ok
from tests.output.test_writer import StalledSink, _spin_until


def test_two_signals_at_once_still_write_tokens_waiting_for_a_retry_or_recheck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Full jitter draws the backoff from [0, cap): take the cap, so no retry falls before the
    # signals by chance.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    boom = TransportFault("Transport.HTTP503", "HTTP 503")
    tokens = [f"t{n:02}" for n in range(30)]
    scripts: dict[str, list[FakeStep]] = {}
    for n, token in enumerate(tokens):
        # A third fail and wait in a long backoff, a third wait for a re-check, a third
        # are on the wire for a long time when the signals come.
        scripts[token] = [boom] if n % 3 == 0 else [ok("-999")] if n % 3 == 1 else [Slow(60, ok())]
    settings = make_settings(
        rate=100.0,
        rate_margin=0.0,
        concurrency=32,
        backoff_base=60.0,
        backoff_max=60.0,
        recheck_after=60.0,
        max_pending_wait=600.0,
        grace_period=30.0,
    )
    client = FakeClient(scripts)

    async def two_signals(engine: Engine) -> None:
        await asyncio.sleep(1.0)  # every token has been asked once
        stopper = _Stopper(engine, settings.grace_period)
        stopper("SIGINT")
        stopper("SIGINT")  # in the same instant: no loop turn for the stop's wake-ups
        stopper.close()

    engine, lines, _ = run_engine_virtual(tmp_path, settings, client, tokens, during=two_signals)
    assert client.calls == 30
    assert sorted(line["token"] for line in lines) == tokens  # every one that reached it
    assert sum(line["attempts"] for line in lines) == client.calls
    assert not any(line["final"] for line in lines if line["token"] not in tokens[2::3])
    by_status = {line["token"]: line["status"] for line in lines}
    assert {by_status[t] for t in tokens[0::3]} == {"error"}  # their retry never left
    assert {by_status[t] for t in tokens[1::3]} == {"pending"}  # their re-check never left
    assert {by_status[t] for t in tokens[2::3]} == {"error"}  # cut off on the wire
    assert engine.stats.cut_off == 10
    assert engine.stats.exit_status() == 130


async def test_a_stop_with_the_output_stalled_and_rechecks_waiting_ends_with_the_grace(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    settings = make_settings(
        rate=1e6,
        rate_margin=0.0,
        concurrency=8,
        grace_period=0.1,
        recheck_after=600.0,
        max_pending_wait=6000.0,
    )
    sink = StalledSink(str(tmp_path / "out.jsonl"), loop)
    writers: list[LineWriter] = []

    def output(sink: Sink) -> LineWriter:
        writers.append(LineWriter(sink))
        return writers[0]

    tokens = [TokenEntry(f"t{n}", n, None) for n in range(2000)]
    # Half pass (filling the stalled output), half are pending and wait for a re-check.
    client = FakeClient({f"t{n}": [ok("-999")] for n in range(1, 2000, 2)}, default=ok())
    engine = Engine(settings, client, sink, output=output)
    stopper = _Stopper(engine, settings.grace_period)

    async def stall_then_stop() -> None:
        await _spin_until(lambda: bool(writers) and writers[0].pending >= 256)
        await _spin_until(lambda: client.calls >= 500)  # hundreds of re-checks are waiting
        stopper("SIGTERM")

    side = asyncio.create_task(stall_then_stop())
    await asyncio.wait_for(engine.run(tokens), timeout=20)  # it used to hang here for good
    await side
    stopper.close()
    assert engine.stats.exit_status() == 143
    assert engine.stats.unwritten > 0
    # Every token asked has a line counted, written or not: none went missing.
    assert engine.stats.tokens == client.calls
    sink.release.set()
    writers[0]._thread.join(timeout=10)
    sink.close()


class _Recorder(LineWriter):
    """The real writer, remembering every line handed to it (whether it got written or not)."""

    def __init__(self, sink: Sink) -> None:
        super().__init__(sink)
        self.records: list[Mapping[str, Any]] = []

    async def write(self, record: Mapping[str, Any]) -> None:
        await super().write(record)
        self.records.append(record)  # only once it is really queued

    def write_nowait(self, record: Mapping[str, Any]) -> None:
        self.records.append(record)
        super().write_nowait(record)


class _FailsOnThirdBatch(JsonlSink):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.batches = 0

    def write_lines(self, data: bytes, count: int) -> None:
        self.batches += 1
        if self.batches >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write_lines(data, count)


async def test_an_output_failure_accounts_for_the_requests_it_cut_off(tmp_path: Path) -> None:
    settings = make_settings(
        rate=1000.0, rate_margin=0.0, concurrency=16, recheck_after=600, max_pending_wait=6000
    )
    # A third are pending and wait for a re-check when the output fails: they count too.
    pending: dict[str, list[FakeStep]] = {f"t{n}": [ok("-999")] for n in range(0, 300, 3)}
    client = FakeClient(pending, default=Slow(0.05, ok()))
    recorders: list[_Recorder] = []

    def output(sink: Sink) -> _Recorder:
        recorders.append(_Recorder(sink))
        return recorders[0]

    sink = _FailsOnThirdBatch(str(tmp_path / "out.jsonl"))
    engine = Engine(settings, client, sink, output=output)
    stats = await engine.run([TokenEntry(f"t{n}", n, None) for n in range(300)])
    sink.close()
    assert stats.exit_status() == 4
    assert stats.local_error == "cannot write the output: No space left on device"
    handed = recorders[0].records
    assert sum(line["attempts"] for line in handed) == client.calls  # every request, a line
    assert stats.tokens == stats.requests == client.calls  # and every one is counted
    assert stats.cut_off > 0  # on the wire when the output failed
    assert stats.unwritten > 0


def test_a_closed_pipe_after_ctrl_c_is_the_interrupt_not_a_broken_machine() -> None:
    stats = RunStats(stopped_by="SIGINT", local_error="the output pipe was closed by the reader")
    stats.output_closed = True
    assert stats.exit_status() == 130
    stats.output_closed = False  # a full disk stays a local failure, signal or not
    assert stats.exit_status() == 4
    alone = RunStats(local_error="the output pipe was closed by the reader", output_closed=True)
    assert alone.exit_status() == 4  # `| head`: no signal, the reader just left
