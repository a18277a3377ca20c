"""The pacer never lets more than `rate` requests into any 1-second window (SPEC §5).

Runs on a virtual-time event loop: timers fire at once with exact timestamps, so these tests
measure the schedule itself, deterministically, without waiting for wall-clock time. The pacer's
other promises (drift, slowdown, recovery, the retry budget) are in tests/pipeline/test_pacing.py.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from poller.pipeline.pacing import Pacer
from tests.helpers import acquire_many, max_in_window, run_virtual


@pytest.mark.parametrize("rate", [19.0, 20.0, 95.0])
def test_cold_start_has_no_burst(rate: float) -> None:
    stamps: list[float] = []

    async def main() -> None:
        await acquire_many(Pacer(rate), 200, workers=32, stamps=stamps)

    run_virtual(main)
    assert len(stamps) == 200
    assert max_in_window(stamps) <= rate
    # The first second is where a bucket limiter bursts: it holds no more than the rate.
    first_second = [t for t in stamps if t < stamps[0] + 1.0]
    assert len(first_second) <= rate
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.75 / rate - 1e-9


def test_no_burst_after_an_idle_gap() -> None:
    stamps: list[float] = []

    async def main() -> None:
        pacer = Pacer(20.0)
        await acquire_many(pacer, 30, workers=8, stamps=stamps)
        await asyncio.sleep(5.0)  # idle: a leaky bucket would refill and burst here
        await acquire_many(pacer, 60, workers=8, stamps=stamps)

    run_virtual(main)
    assert len(stamps) == 90
    assert max_in_window(stamps) <= 20


def test_no_burst_with_retries_mixed_in() -> None:
    """Workers that fail at random and re-acquire after a short backoff, as retries do."""
    stamps: list[float] = []
    rng = random.Random(7)

    async def main() -> None:
        pacer = Pacer(19.0)
        loop = asyncio.get_running_loop()

        async def token() -> None:
            for _attempt in range(4):
                await pacer.acquire()
                stamps.append(loop.time())
                if rng.random() < 0.6:
                    return
                await asyncio.sleep(rng.uniform(0.0, 0.3))

        await asyncio.gather(*(token() for _ in range(150)))

    run_virtual(main)
    assert len(stamps) > 150  # retries happened
    assert max_in_window(stamps) <= 19


def test_a_stall_does_not_turn_into_a_catch_up_burst() -> None:
    stamps: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pacer = Pacer(20.0)

        def stall() -> None:  # the loop is blocked for 2 s (GC, a slow disk, a paused VM)
            loop.advance(2.0)  # type: ignore[attr-defined]

        loop.call_later(1.02, stall)
        await acquire_many(pacer, 80, workers=16, stamps=stamps)

    run_virtual(main)
    assert len(stamps) == 80
    assert max_in_window(stamps) <= 20
