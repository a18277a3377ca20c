"""The reader thread (poller/input/reader.py): items reach the loop as soon as they are read,
with a bounded read-ahead, on daemon threads that never hold up the exit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

import poller.input.reader as reader_module
from poller.input.reader import ThreadedReader, run_in_daemon_thread

T = TypeVar("T")


async def _all(reader: ThreadedReader[Any]) -> list[Any]:
    return [x async for batch in reader.batches() for x in batch]


async def test_items_are_handed_over_before_a_slow_input_ends() -> None:
    release = threading.Event()

    def slow() -> Iterator[int]:
        yield 1
        yield 2
        release.wait(10)  # a pipe whose writer has not sent the rest yet
        yield 3

    batches = ThreadedReader(slow()).batches()
    first = await asyncio.wait_for(anext(batches), timeout=5)
    assert first == [1, 2] or first == [1]
    release.set()
    rest = [x for batch in [b async for b in batches] for x in batch]
    assert [*first, *rest] == [1, 2, 3]


async def test_every_item_arrives_once_in_order() -> None:
    items = list(range(5000))  # several buffers' worth
    assert await _all(ThreadedReader(iter(items))) == items
    assert await _all(ThreadedReader(iter([]))) == []


async def test_the_readers_exception_comes_after_the_items_read_before_it() -> None:
    def broken() -> Iterator[str]:
        yield "a"
        yield "b"
        raise OSError("Input/output error")

    got: list[str] = []

    async def consume() -> None:
        async for batch in ThreadedReader(broken()).batches():
            got.extend(batch)

    with pytest.raises(OSError, match="Input/output error"):
        await consume()
    assert got == ["a", "b"]


class _SpyCondition(threading.Condition):
    """Says when the reader thread has to wait for room in the buffer."""

    blocked = threading.Event()

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        if not predicate():
            self.blocked.set()
        return super().wait_for(predicate, timeout)


async def test_the_reader_reads_at_most_a_buffer_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SimpleNamespace(Condition=_SpyCondition, Thread=threading.Thread)
    monkeypatch.setattr(reader_module, "threading", spy)
    monkeypatch.setattr(reader_module, "BUFFER", 3)
    _SpyCondition.blocked = threading.Event()
    pulled: list[int] = []

    def counted() -> Iterator[int]:
        for n in range(10):
            pulled.append(n)
            yield n

    reader = ThreadedReader(counted())
    # Nobody consumes: the thread fills the buffer, takes one more item and waits for room.
    assert await run_in_daemon_thread(lambda: _SpyCondition.blocked.wait(5))
    assert pulled == [0, 1, 2, 3]
    assert await _all(reader) == list(range(10))


async def test_the_reader_thread_is_a_daemon() -> None:
    threads: list[threading.Thread] = []

    def items() -> Iterator[int]:
        threads.append(threading.current_thread())
        yield 1

    assert await _all(ThreadedReader(items())) == [1]
    assert threads[0] is not threading.main_thread()
    assert threads[0].daemon


async def test_run_in_daemon_thread_returns_what_fn_returns_from_a_daemon_thread() -> None:
    def fn() -> tuple[str, bool]:
        here = threading.current_thread()
        return here.name, here.daemon

    assert await run_in_daemon_thread(fn) == ("poller-helper", True)


async def test_run_in_daemon_thread_raises_what_fn_raises() -> None:
    def fn() -> int:
        raise ValueError("no such file")

    with pytest.raises(ValueError, match="no such file"):
        await run_in_daemon_thread(fn)
