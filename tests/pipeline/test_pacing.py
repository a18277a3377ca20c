"""The pacer and the retry budget (poller/pipeline/pacing.py), on a virtual-time loop.

The run-wide invariant that no 1-second window holds more than `rate` requests, whatever the
workers do, is tests/test_no_burst_over_quota.py; these are the pacer's own promises.
"""

from __future__ import annotations

import asyncio

import pytest

from poller.pipeline.pacing import Pacer, RetryBudget
from poller.pipeline.stopping import StopLatch, Stopped
from poller.quota.pace import PaceRule
from tests.helpers import acquire_many, max_in_window, run_virtual

RULE = PaceRule()
SLOWDOWN_FACTOR = RULE.factor
SLOWDOWN_COOLDOWN = RULE.cooldown
MIN_RATE_FRACTION = RULE.floor

# -- Pacer: the schedule -------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_a_rate_that_is_not_above_0_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="above 0"):
        Pacer(rate)


def test_slots_are_evenly_spaced_at_the_rate_and_the_first_is_at_once() -> None:
    async def main() -> tuple[float, list[float]]:
        start = asyncio.get_running_loop().time()
        stamps: list[float] = []
        await acquire_many(Pacer(4.0), 9, workers=3, stamps=stamps)
        return start, stamps

    start, stamps = run_virtual(main)
    assert stamps == pytest.approx([start + k * 0.25 for k in range(9)], abs=1e-9)


def test_schedule_is_drift_free_when_wakeups_run_late() -> None:
    """Every wake-up 2 ms late (a busy loop): the schedule does not lose those milliseconds."""
    stamps: list[float] = []

    async def main() -> None:
        await acquire_many(Pacer(38.0), 381, workers=16, stamps=stamps)

    run_virtual(main, lag=0.002)
    elapsed = stamps[-1] - stamps[0]
    # 380 intervals at 38/s is 10 s; a pacer losing 2 ms per slot would take 10.76 s.
    assert elapsed == pytest.approx(10.0, abs=0.05)
    assert max_in_window(stamps) <= 38


def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        pacer = Pacer(2.0)
        await pacer.acquire()
        first = loop.time()
        waiter = asyncio.create_task(pacer.acquire())  # due at first + 0.5
        await asyncio.sleep(0.1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await pacer.acquire()
        return first, loop.time()

    first, second = run_virtual(main)
    assert second == pytest.approx(first + 0.5)  # the freed slot, not the one after it


def test_a_rate_change_keeps_the_slot_already_promised_then_spaces_wider() -> None:
    async def main() -> tuple[float, list[float]]:
        pacer = Pacer(10.0)
        stamps: list[float] = []
        await acquire_many(pacer, 1, workers=1, stamps=stamps)
        assert pacer.on_throttle()
        await acquire_many(pacer, 2, workers=1, stamps=stamps)
        return pacer.rate, stamps

    rate, stamps = run_virtual(main)
    assert rate == pytest.approx(10.0 * SLOWDOWN_FACTOR)
    assert stamps[1] - stamps[0] == pytest.approx(0.1)  # promised at the old rate
    assert stamps[2] - stamps[1] == pytest.approx(1 / rate)


def test_slowed_pacer_spaces_requests_wider() -> None:
    stamps: list[float] = []

    async def main() -> None:
        pacer = Pacer(20.0, rule=PaceRule(hold=100.0))  # no climb back within this test
        pacer.on_throttle()
        await acquire_many(pacer, 40, workers=4, stamps=stamps)

    run_virtual(main)
    assert max_in_window(stamps) <= 20.0 * SLOWDOWN_FACTOR + 1


# -- Pacer: slowing down and recovering ----------------------------------------------------------


def test_throttle_slows_down_once_per_cooldown() -> None:
    now = [100.0]
    pacer = Pacer(20.0, time_fn=lambda: now[0])
    assert pacer.on_throttle() is True
    assert pacer.on_throttle() is False  # in-flight throttles say the same thing once
    assert pacer.rate == pytest.approx(20.0 * SLOWDOWN_FACTOR)
    now[0] += 0.5
    assert pacer.on_throttle() is False
    assert pacer.slowdowns == 1


def test_the_cooldown_ends_exactly_one_cooldown_after_the_last_slowdown() -> None:
    now = [100.0]
    pacer = Pacer(20.0, time_fn=lambda: now[0])
    assert pacer.on_throttle()
    now[0] += SLOWDOWN_COOLDOWN - 0.001
    assert not pacer.on_throttle()
    now[0] += 0.001
    assert pacer.on_throttle()
    assert pacer.rate == pytest.approx(20.0 * SLOWDOWN_FACTOR**2)
    assert pacer.slowdowns == 2


def test_throttles_never_take_the_rate_below_its_floor() -> None:
    now = [0.0]
    pacer = Pacer(20.0, time_fn=lambda: now[0])
    for _ in range(50):
        now[0] += SLOWDOWN_COOLDOWN
        pacer.on_throttle()
    assert pacer.rate == pytest.approx(20.0 * MIN_RATE_FRACTION)
    assert pacer.slowdowns == 50


def test_success_changes_nothing_the_pace_recovers_by_time() -> None:
    now = [0.0]
    pacer = Pacer(20.0, time_fn=lambda: now[0])
    pacer.on_throttle()
    for _ in range(5000):
        pacer.on_success()
    assert pacer.rate == pytest.approx(20.0 * SLOWDOWN_FACTOR)  # answers alone lift nothing
    now[0] += RULE.hold + RULE.ramp
    assert pacer.rate == 20.0  # time does


def test_success_at_the_target_rate_changes_nothing() -> None:
    pacer = Pacer(20.0, time_fn=lambda: 0.0)
    for _ in range(10):
        pacer.on_success()
    assert pacer.rate == 20.0
    assert pacer.slowdowns == 0


# -- Pacer: a stop ends every wait for a slot -----------------------------------------------------


def test_a_stop_ends_a_wait_for_a_slot_at_once() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        stop = StopLatch()
        pacer = Pacer(0.1, stop=stop)  # a slot every 10 s
        await pacer.acquire()
        waiter = asyncio.create_task(pacer.acquire())
        await asyncio.sleep(1.0)
        stopped_at = loop.time()
        stop.set()
        with pytest.raises(Stopped):
            await waiter
        return stopped_at, loop.time()

    stopped_at, ended = run_virtual(main)
    assert ended == stopped_at  # not the 9 s left to the slot


def test_no_slot_is_handed_out_after_a_stop() -> None:
    async def main() -> None:
        stop = StopLatch()
        pacer = Pacer(20.0, stop=stop)
        stop.set()
        with pytest.raises(Stopped):
            await pacer.acquire()  # even the first, which would not have waited

    run_virtual(main)


# -- RetryBudget ----------------------------------------------------------------------------------


def test_the_retry_budget_refills_on_success_up_to_its_capacity() -> None:
    budget = RetryBudget(2.0, 0.5)
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()
    assert budget.denied == 1
    budget.on_success()
    assert budget.level == 0.5
    assert not budget.try_spend()
    budget.on_success()
    assert budget.try_spend()
    for _ in range(10):
        budget.on_success()
    assert budget.level == 2.0  # never above capacity


def test_a_refused_spend_costs_nothing_and_is_counted() -> None:
    budget = RetryBudget(5.0, 0.0)
    assert budget.try_spend(cost=3.0)
    assert budget.level == 2.0
    assert not budget.try_spend(cost=3.0)
    assert not budget.try_spend(cost=2.5)
    assert budget.level == 2.0
    assert budget.denied == 2
    assert budget.try_spend(cost=2.0)
    assert budget.level == 0.0
    budget.on_success()  # refill 0: an outage's budget stays spent
    assert budget.level == 0.0
