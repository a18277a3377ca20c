"""`ResultChannel` (poller/output/channel.py): lines handed to a consumer in the same loop.

Bounded: a slow consumer holds the writers back; a consumer that leaves lets them all through.
`poll` built on it (backpressure, breaking out early) is tests/test_api.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from poller.output.channel import NullSink, ResultChannel
from poller.output.sink import Sink


def _line(token: str) -> dict[str, Any]:
    return {"token": token}


async def _settle() -> None:
    """Let every ready task run until it waits."""
    for _ in range(5):
        await asyncio.sleep(0)


async def _tokens(channel: ResultChannel) -> list[str]:
    got: list[str] = []
    while (line := await channel.get()) is not None:
        got.append(line["token"])
    return got


@pytest.mark.parametrize("bound", [0, -1])
async def test_the_bound_is_at_least_1(bound: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ResultChannel(bound)


async def test_lines_come_out_in_order_then_the_end() -> None:
    channel = ResultChannel(10)
    for token in "abc":
        await channel.write(_line(token))
    await channel.close()
    assert await _tokens(channel) == ["a", "b", "c"]
    assert await channel.get() is None  # and stays ended
    assert (channel.queued, channel.taken, channel.written, channel.waiting) == (3, 3, 3, 0)


async def test_a_consumer_waits_for_the_next_line_and_is_woken_by_the_end() -> None:
    channel = ResultChannel(2)
    consumer = asyncio.create_task(_tokens(channel))
    await _settle()
    assert not consumer.done()
    await channel.write(_line("a"))
    await _settle()
    assert channel.taken == 1
    await channel.close()
    assert await asyncio.wait_for(consumer, timeout=5) == ["a"]


async def test_a_writer_waits_while_bound_lines_wait_for_the_consumer() -> None:
    channel = ResultChannel(2)
    await channel.write(_line("a"))
    await channel.write(_line("b"))
    writer = asyncio.create_task(channel.write(_line("c")))
    await _settle()
    assert not writer.done()  # held back: the consumer has not taken anything
    assert channel.waiting == 2
    first = await channel.get()
    assert first is not None
    assert first["token"] == "a"
    await asyncio.wait_for(writer, timeout=5)
    assert channel.waiting == 2
    await channel.close()
    assert await _tokens(channel) == ["b", "c"]


async def test_write_nowait_goes_past_the_bound() -> None:
    channel = ResultChannel(1)
    await channel.write(_line("a"))
    channel.write_nowait(_line("stop-1"))
    channel.write_nowait(_line("stop-2"))
    assert channel.waiting == 3
    await channel.close()
    assert await _tokens(channel) == ["a", "stop-1", "stop-2"]


async def test_a_detached_consumer_lets_every_writer_through_and_drops_the_lines() -> None:
    channel = ResultChannel(1)
    await channel.write(_line("a"))
    writers = [asyncio.create_task(channel.write(_line(t))) for t in "bc"]
    await _settle()
    assert not any(w.done() for w in writers)
    channel.detach()
    await asyncio.wait_for(asyncio.gather(*writers), timeout=5)
    await channel.write(_line("d"))  # returns at once, dropped
    assert channel.waiting == 0
    assert await channel.get() is None
    assert (channel.queued, channel.written) == (4, 0)  # none reached a consumer


async def test_a_detach_wakes_a_waiting_consumer() -> None:
    channel = ResultChannel(1)
    consumer = asyncio.create_task(channel.get())
    await _settle()
    channel.detach()
    assert await asyncio.wait_for(consumer, timeout=5) is None


async def test_attach_gives_the_channel_itself_whatever_the_sink() -> None:
    channel = ResultChannel(1)
    sink: Sink = NullSink()
    assert channel.attach(sink) is channel


def test_the_null_sink_counts_the_lines_and_keeps_nothing() -> None:
    sink = NullSink()
    sink.write_lines(b'{"token": "a"}\n{"token": "b"}\n', 2)
    sink.write_lines(b'{"token": "c"}\n', 1)
    sink.sync()
    sink.close()
    assert sink.lines_written == 3
    assert not hasattr(sink, "__dict__")  # slots: no buffer hides anywhere


def test_the_repr_shows_the_counts() -> None:
    channel = ResultChannel(4)
    channel.write_nowait(_line("a"))
    assert repr(channel) == (
        "<ResultChannel waiting=1/4 queued=1 taken=0 closed=False detached=False>"
    )
