"""How the pace falls and climbs back (poller/quota/pace.py), on a clock the test moves.

Issue 14: recovery by time, not by a count of successes. The same rule runs in Redis for
pollers that share a schedule (gcra.lua): the last test runs both on the same events.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from poller.pipeline.pacing import Pacer
from poller.quota.pace import PaceRule, PaceState, pace_at
from tests.helpers import acquire_many, max_in_window, run_virtual

RULE = PaceRule()  # factor 0.7, floor 0.05, cooldown 1 s, hold 1 s (max 2 s), ramp 1.5 s


def test_a_burst_of_throttles_multiplies_down_once_per_cooldown_to_the_floor() -> None:
    state = PaceState(RULE)
    t = 0.0
    assert state.on_throttle(t)
    assert not state.on_throttle(t + 0.3)  # the same throttle, heard from requests in flight
    for k in range(2, 12):
        t += RULE.cooldown
        assert state.on_throttle(t)
        assert state.pace_at(t) == pytest.approx(max(0.7**k, RULE.floor))
    assert state.pace_at(t) == RULE.floor


def test_after_the_quiet_spell_the_pace_climbs_back_within_the_ramp() -> None:
    state = PaceState(RULE)
    state.on_throttle(10.0)
    base = 0.7
    assert state.pace_at(10.0 + RULE.hold) == pytest.approx(base)  # held for the quiet spell
    assert state.pace_at(10.0 + RULE.hold + RULE.ramp / 2) == pytest.approx((base + 1) / 2)
    assert state.pace_at(10.0 + RULE.hold + RULE.ramp) == 1.0
    assert state.pace_at(10.0 + 60) == 1.0


def test_a_throttle_during_the_climb_backs_off_from_where_it_was_and_holds_longer() -> None:
    state = PaceState(RULE)
    state.on_throttle(0.0)  # 0.7, hold 1
    t = RULE.hold + RULE.ramp / 2  # halfway up: 0.85
    assert state.pace_at(t) == pytest.approx(0.85)
    assert state.on_throttle(t)
    assert state.pace_at(t) == pytest.approx(0.85 * 0.7)
    assert state.hold == 2 * RULE.hold  # the other client is still there: probe gently
    assert state.pace_at(t + 2 * RULE.hold) == pytest.approx(0.85 * 0.7)  # still held
    t2 = t + 2 * RULE.hold + 0.5
    assert state.on_throttle(t2)  # and again during that climb
    assert state.hold == RULE.hold_max == 2 * RULE.hold  # capped: doubled no further
    t3 = t2 + RULE.hold_max + RULE.ramp + 1  # fully back; a later throttle starts afresh
    assert state.pace_at(t3) == 1.0
    assert state.on_throttle(t3)
    assert state.hold == RULE.hold


def test_back_at_90_percent_within_the_bound_after_any_throttles() -> None:
    """Whatever came before, 90% of the pace is back by hold_max + 0.9 x ramp (3.35 s) after
    the last throttle: within the benchmark's 5 s even when the last throttle comes a second
    after the other client stopped (its requests still in the server's window)."""
    rng = random.Random(14)
    for _ in range(300):
        state = PaceState(RULE)
        t = 0.0
        for _ in range(rng.randint(1, 25)):
            t += rng.choice([0.2, 1.0, 1.5, 3.0, 6.0]) * rng.random() + 0.01
            state.on_throttle(t)
        last = state.slowed
        assert state.pace_at(last + RULE.hold_max + 0.9 * RULE.ramp) >= 0.9 - 1e-9
        assert RULE.hold_max + 0.9 * RULE.ramp + 1.0 <= 5.0


def test_time_below_target_counts_each_spell_once() -> None:
    state = PaceState(RULE)
    assert state.seconds_below(100.0) == 0.0
    state.on_throttle(0.0)
    assert state.seconds_below(1.0) == pytest.approx(1.0)
    assert state.seconds_below(50.0) == pytest.approx(RULE.hold + RULE.ramp)  # spell over
    state.on_throttle(50.0)
    state.on_throttle(51.5)  # during the hold: the same spell, made longer (hold 2 s)
    assert state.seconds_below(100.0) == pytest.approx(
        (RULE.hold + RULE.ramp) + (1.5 + 2 * RULE.hold + RULE.ramp)
    )


def test_no_burst_at_any_moment_of_the_climb() -> None:
    """Throttled at the start, then 3 s of climbing with 16 workers pressing: no 1 s window
    over the target, no two requests closer than the guard, and the pace does come back."""
    stamps: list[float] = []

    async def main() -> Pacer:
        pacer = Pacer(20.0)
        pacer.on_throttle()
        await asyncio.sleep(0.5)
        pacer.on_throttle()  # cooldown: ignored
        await acquire_many(pacer, 120, workers=16, stamps=stamps)
        return pacer

    pacer = run_virtual(main)
    assert max_in_window(stamps) <= 20
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.75 / 20 - 1e-9
    assert pacer.rate == 20.0
    # The last second ran at the full pace again.
    assert max_in_window(stamps[-25:]) >= 19


def test_the_pacer_follows_the_rule_on_its_clock() -> None:
    now = [0.0]
    pacer = Pacer(20.0, time_fn=lambda: now[0], rule=PaceRule(hold=0.5, ramp=1.0))
    pacer.on_throttle()
    now[0] = 0.5 + 0.5
    assert pacer.rate == pytest.approx(20 * (0.7 + 0.3 * 0.5))
    now[0] = 3.0
    assert pacer.rate == 20.0
    assert pacer.seconds_below_target == pytest.approx(1.5)


@pytest.mark.parametrize("ramp", [0.0, 2.0])
def test_pace_at_is_a_straight_climb(ramp: float) -> None:
    assert pace_at(0.4, 10.0, 1.0, ramp, 10.5) == 0.4
    assert pace_at(0.4, 10.0, 1.0, ramp, 12.0) == (0.7 if ramp else 1.0)
