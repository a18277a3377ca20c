"""The pacer never lets more than `rate` requests into any 1-second window (SPEC §5).

Runs on a virtual-time event loop: timers fire at once with exact timestamps, so these tests
measure the schedule itself, deterministically, without waiting for wall-clock time.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from poller.pipeline.pacing import RECOVERY_HOLD, RECOVERY_STEPS, SLOWDOWN_FACTOR, Pacer
from tests.helpers import max_in_window, run_virtual


async def _acquire_many(pacer: Pacer, n: int, workers: int, stamps: list[float]) -> None:
    loop = asyncio.get_running_loop()
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            await pacer.acquire()
            stamps.append(loop.time())

    await asyncio.gather(*(worker() for _ in range(workers)))


@pytest.mark.parametrize("rate", [19.0, 20.0, 95.0])
def test_cold_start_has_no_burst(rate: float) -> None:
    stamps: list[float] = []

    async def main() -> None:
        await _acquire_many(Pacer(rate), 200, workers=32, stamps=stamps)

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
        await _acquire_many(pacer, 30, workers=8, stamps=stamps)
        await asyncio.sleep(5.0)  # idle: a leaky bucket would refill and burst here
        await _acquire_many(pacer, 60, workers=8, stamps=stamps)

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


def test_schedule_is_drift_free_when_wakeups_run_late() -> None:
    """Every wake-up 2 ms late (a busy loop): the schedule does not lose those milliseconds."""
    stamps: list[float] = []

    async def main() -> None:
        await _acquire_many(Pacer(38.0), 381, workers=16, stamps=stamps)

    run_virtual(main, lag=0.002)
    elapsed = stamps[-1] - stamps[0]
    # 380 intervals at 38/s is 10 s; a pacer losing 2 ms per slot would take 10.76 s.
    assert elapsed == pytest.approx(10.0, abs=0.05)
    assert max_in_window(stamps) <= 38


def test_a_stall_does_not_turn_into_a_catch_up_burst() -> None:
    stamps: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pacer = Pacer(20.0)

        def stall() -> None:  # the loop is blocked for 2 s (GC, a slow disk, a paused VM)
            loop.advance(2.0)  # type: ignore[attr-defined]

        loop.call_later(1.02, stall)
        await _acquire_many(pacer, 80, workers=16, stamps=stamps)

    run_virtual(main)
    assert len(stamps) == 80
    assert max_in_window(stamps) <= 20


def test_throttle_slows_down_once_per_cooldown_and_recovers_slowly() -> None:
    async def main() -> Pacer:
        pacer = Pacer(20.0)
        assert pacer.on_throttle() is True
        assert pacer.on_throttle() is False  # in-flight throttles say the same thing once
        assert pacer.rate == pytest.approx(20.0 * SLOWDOWN_FACTOR)
        await asyncio.sleep(1.5)
        assert pacer.on_throttle() is True
        lowered = pacer.rate
        pacer.on_success()
        assert pacer.rate == lowered  # no climbing back right after a throttle
        await asyncio.sleep(RECOVERY_HOLD)
        pacer.on_success()
        assert lowered < pacer.rate < 20.0  # recovery is gradual
        for _ in range(RECOVERY_STEPS):
            pacer.on_success()
        assert pacer.rate == 20.0
        return pacer

    pacer = run_virtual(main)
    assert pacer.slowdowns == 2


def test_slowed_pacer_spaces_requests_wider() -> None:
    stamps: list[float] = []

    async def main() -> None:
        pacer = Pacer(20.0)
        pacer.on_throttle()
        await _acquire_many(pacer, 40, workers=4, stamps=stamps)

    run_virtual(main)
    assert max_in_window(stamps) <= 20.0 * SLOWDOWN_FACTOR + 1
