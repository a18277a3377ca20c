"""The stop latch (poller/pipeline/stopping.py): once set, every sleep through it ends at once.

On the virtual-time loop, so "at once" is exact: the loop's clock does not move.
"""

from __future__ import annotations

import asyncio

import pytest

from poller.pipeline.stopping import StopLatch, Stopped
from tests.helpers import run_virtual


def test_a_sleep_lasts_its_delay_when_nothing_stops_it() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await StopLatch().sleep(2.5)
        return loop.time() - start

    assert run_virtual(main) == pytest.approx(2.5)


def test_set_ends_every_sleep_at_once_with_stopped() -> None:
    async def main() -> tuple[float, float, list[BaseException | None]]:
        loop = asyncio.get_running_loop()
        latch = StopLatch()
        sleepers = [asyncio.create_task(latch.sleep(d)) for d in (5.0, 60.0, 3600.0)]
        await asyncio.sleep(1.0)
        stopped_at = loop.time()
        latch.set()
        await asyncio.wait(sleepers)
        return stopped_at, loop.time(), [t.exception() for t in sleepers]

    stopped_at, ended, errors = run_virtual(main)
    assert ended == stopped_at
    assert all(isinstance(e, Stopped) for e in errors)


def test_after_set_a_sleep_or_check_raises_without_waiting() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        latch = StopLatch()
        assert not latch.is_set
        latch.check()  # not set: nothing happens
        latch.set()
        assert latch.is_set
        start = loop.time()
        with pytest.raises(Stopped):
            latch.check()
        for delay in (0.0, 10.0):
            with pytest.raises(Stopped):
                await latch.sleep(delay)
        return start, loop.time()

    start, ended = run_virtual(main)
    assert ended == start


def test_a_sleep_of_zero_or_less_returns_without_waiting() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        latch = StopLatch()
        await latch.sleep(0.0)
        await latch.sleep(-1.0)
        return loop.time() - start

    assert run_virtual(main) == 0.0


def test_a_finished_or_cancelled_sleep_leaves_no_sleeper_behind() -> None:
    async def main() -> StopLatch:
        latch = StopLatch()
        await latch.sleep(0.5)
        task = asyncio.create_task(latch.sleep(10.0))
        await asyncio.sleep(0.1)
        assert "sleepers=1" in repr(latch)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return latch

    latch = run_virtual(main)
    assert repr(latch) == "<StopLatch set=False sleepers=0>"


def test_setting_twice_is_harmless() -> None:
    async def main() -> None:
        latch = StopLatch()
        task = asyncio.create_task(latch.sleep(10.0))
        await asyncio.sleep(0)
        latch.set()
        latch.set()
        with pytest.raises(Stopped):
            await task

    run_virtual(main)
