"""Issue 9, item 8: a slow or stalled output reader slows the run down; it never freezes it.

Lines are written on a thread of their own (poller/writer.py): the event loop only queues them,
so the pacer, the timeouts and the signal handlers keep running while a write blocks.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from poller.api.outcomes import Status
from poller.api.reply import Reply
from poller.input.tokens import TokenEntry
from poller.job import _Stopper
from poller.output.records import build_record
from poller.output.sink import JsonlSink, Sink
from poller.output.writer import BUFFER_LINES, LineWriter
from poller.pipeline.engine import Engine
from poller.pipeline.stats import format_summary
from tests.fake_api import FakeClient
from tests.helpers import make_settings, ok


class StalledSink(JsonlSink):
    """A reader that stops reading: every write blocks until `release` is set."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(path)
        self.release = threading.Event()
        self.entered = asyncio.Event()
        self._loop = loop

    def write_lines(self, data: bytes, count: int) -> None:
        self._loop.call_soon_threadsafe(self.entered.set)
        self.release.wait(timeout=30)
        super().write_lines(data, count)


def _record(token: str) -> dict[str, object]:
    return build_record(token=token, status=Status.PASSED, final=True, attempts=1, checked_at=0.0)


async def _spin_until(condition: object, limit: int = 100_000) -> None:
    """Give the loop turns (no wall-clock sleep) until `condition()` holds."""
    for _ in range(limit):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_full_buffer_makes_writers_wait_then_lets_them_through(tmp_path: Path) -> None:
    sink = StalledSink(str(tmp_path / "out.jsonl"), asyncio.get_running_loop())
    writer = LineWriter(sink)
    await writer.write(_record("first"))
    await sink.entered.wait()  # the thread holds "first" and is stuck in the write
    for n in range(BUFFER_LINES):
        await writer.write(_record(f"t{n}"))  # fills the buffer without waiting
    blocked = asyncio.create_task(writer.write(_record("one-too-many")))
    await _spin_until(lambda: writer.pending == BUFFER_LINES)
    for _ in range(100):
        await asyncio.sleep(0)
    assert not blocked.done()  # backpressure: the worker waits, memory stays bounded
    sink.release.set()
    await blocked
    await writer.close()
    sink.close()
    tokens = [json.loads(x)["token"] for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert tokens == ["first", *(f"t{n}" for n in range(BUFFER_LINES)), "one-too-many"]


async def test_a_stalled_reader_does_not_stop_ctrl_c_from_stopping_the_run(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    settings = make_settings(rate=1e6, rate_margin=0.0, concurrency=8, grace_period=0.05)
    sink = StalledSink(str(tmp_path / "out.jsonl"), loop)
    client = FakeClient({}, default=ok())
    writers: list[LineWriter] = []

    def output(sink: Sink) -> LineWriter:
        writers.append(LineWriter(sink))
        return writers[0]

    engine = Engine(settings, client, sink, output=output)
    stopper = _Stopper(engine, settings.grace_period)
    tokens = [TokenEntry(f"t{n}", n, None) for n in range(5000)]

    async def stall_then_interrupt() -> int:
        await sink.entered.wait()
        await _spin_until(lambda: bool(writers) and writers[0].pending >= 256)
        for _ in range(200):  # workers keep going only as far as the buffer lets them
            await asyncio.sleep(0)
        calls = client.calls
        stopper("SIGINT")  # the loop is free: the signal handler runs at once
        return calls

    side = asyncio.create_task(stall_then_interrupt())
    started = loop.time()
    await engine.run(tokens)
    ended = loop.time()
    calls_at_stop = await side
    stopper.close()
    # Bounded: the batch the thread holds (at most a full buffer), the buffer, and one line
    # per waiting worker; of 5,000 tokens.
    assert calls_at_stop <= 2 * BUFFER_LINES + settings.concurrency
    assert client.calls == calls_at_stop  # nothing was sent after the stop
    assert engine.stats.exit_status() == 130
    assert ended - started < 10  # stopped by the grace timer, not by the reader coming back
    # The summary says how many counted lines never reached the output.
    assert engine.stats.unwritten >= BUFFER_LINES
    assert "never reached the output" in format_summary(engine.stats, engine.pacer)
    sink.release.set()
    writers[0]._thread.join(timeout=10)
    sink.close()


class _FsyncFails(JsonlSink):
    def sync(self) -> None:
        raise OSError(5, "Input/output error")


async def test_an_fsync_error_at_the_end_is_a_local_failure_in_one_sentence(
    tmp_path: Path,
) -> None:
    sink = _FsyncFails(str(tmp_path / "out.jsonl"), fsync_interval=1e9)
    engine = Engine(make_settings(), FakeClient({"t": [ok()]}), sink)
    stats = await engine.run([TokenEntry("t", 1, None)])
    sink._owns = False  # close() would fsync again
    sink.close()
    assert stats.local_error == "cannot write the output: Input/output error"
    assert stats.exit_status() == 4


class _OddClient(FakeClient):
    async def get_result(self, token: str) -> Reply:
        raise TimeoutError("a stray timeout nobody converted")


async def test_an_unexpected_oserror_is_not_called_an_output_failure(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    engine = Engine(make_settings(), _OddClient({}), sink)
    stats = await engine.run([TokenEntry("t", 1, None)])
    sink.close()
    assert stats.local_error is not None
    assert "cannot write the output" not in stats.local_error
    assert "unexpected system error" in stats.local_error
    assert stats.exit_status() == 4


class _BrokenSink(JsonlSink):
    def write_lines(self, data: bytes, count: int) -> None:
        raise ValueError("a bug, not an OSError")


async def test_any_failure_of_the_writer_thread_stops_the_run_instead_of_hanging_it(
    tmp_path: Path,
) -> None:
    sink = _BrokenSink(str(tmp_path / "out.jsonl"))
    tokens = [TokenEntry(f"t{n}", n, None) for n in range(600)]  # more than the buffer holds
    engine = Engine(make_settings(rate=1e6, rate_margin=0.0), FakeClient({}, default=ok()), sink)
    stats = await asyncio.wait_for(engine.run(tokens), timeout=30)
    sink.close()
    assert stats.exit_status() == 4
    assert stats.local_error == "cannot write the output: ValueError: a bug, not an OSError"
