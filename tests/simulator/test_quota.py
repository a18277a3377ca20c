"""The strict sliding one-second quota window, pure and over HTTP with an injected clock."""

from __future__ import annotations

import aiohttp
from hypothesis import given
from hypothesis import strategies as st

from poller.simulator import SimulatorConfig, running_simulator
from poller.simulator.quota import SlidingWindow
from tests.simulator_support import APPLY, RESULT, FakeClock, call, query


def test_capacity_plus_one_in_one_second_rejects_exactly_one() -> None:
    window = SlidingWindow(3)
    admitted = [window.try_admit(t) for t in (0.0, 0.1, 0.2, 0.3)]
    assert admitted == [True, True, True, False]
    assert window.max_in_window == 3


def test_the_window_slides_and_is_half_open() -> None:
    window = SlidingWindow(2)
    assert window.try_admit(0.0)
    assert window.try_admit(0.5)
    assert not window.try_admit(0.999)  # 0.0 is still inside (t - 1, t]
    assert window.try_admit(1.0)  # 0.0 has just left the window
    assert not window.try_admit(1.2)
    assert window.try_admit(1.5)
    assert window.in_window(1.5) == 2


def test_rejections_do_not_count_as_admissions() -> None:
    window = SlidingWindow(1)
    assert window.try_admit(0.0)
    for i in range(1, 10):
        assert not window.try_admit(i / 10)  # none of these extend the window
    assert window.try_admit(1.0)


@given(st.lists(st.floats(min_value=0.0, max_value=0.05), max_size=80), st.integers(1, 8))
def test_no_one_second_window_ever_holds_more_than_capacity(
    gaps: list[float], capacity: int
) -> None:
    window = SlidingWindow(capacity)
    now, admitted = 0.0, []
    for gap in gaps:
        now += gap
        if window.try_admit(now):
            admitted.append(now)
    # Brute force over every window ending at an admission: the max is exact and bounded.
    brute = max((sum(1 for a in admitted if t - 1.0 < a <= t) for t in admitted), default=0)
    assert brute <= capacity
    assert window.max_in_window == brute


def test_a_fractional_rate_rounds_down() -> None:
    assert SimulatorConfig(rate=5.9).capacity == 5
    assert SimulatorConfig(rate=20).capacity == 20


async def test_rate_plus_one_requests_in_one_second_over_http(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(rate=5, any_token=True)
    async with running_simulator(config, clock=clock) as sim:
        codes = []
        for _ in range(6):
            reply = await query(session, sim.endpoint, "any-token", timestamp=clock.now)
            codes.append(reply.error_code)
            clock.advance(0.1)
        assert codes.count("RequestLimitExceeded") == 1
        assert codes[-1] == "RequestLimitExceeded"
        clock.advance(0.5)  # now 1.1 s after the first: it and the second have left the window
        again = await query(session, sim.endpoint, "any-token", timestamp=clock.now)
        assert again.error_code is None
        stats = sim.stats()
        assert stats["max_in_window"] == 5
        assert stats["throttled"] == 1
        assert stats["by_outcome"]["throttled"] == 1


async def test_each_action_has_its_own_window(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(SimulatorConfig(rate=2, any_token=True), clock=clock) as sim:
        for _ in range(2):
            assert (
                await call(session, sim.endpoint, APPLY, {}, timestamp=clock.now)
            ).error_code is None
        assert (await query(session, sim.endpoint, "t", timestamp=clock.now)).error_code is None
        third = await call(session, sim.endpoint, APPLY, {}, timestamp=clock.now)
        assert third.error_code == "RequestLimitExceeded"
        assert sim.stats()["max_in_window_by_action"] == {APPLY: 2, RESULT: 1}


async def test_requests_refused_before_the_count_spend_no_quota(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(SimulatorConfig(rate=1, any_token=True), clock=clock) as sim:
        bad = await call(
            session,
            sim.endpoint,
            RESULT,
            {"SdkToken": "t"},
            timestamp=clock.now,
            secret_key="wrong",
        )
        assert bad.error_code == "AuthFailure.SignatureFailure"
        good = await query(session, sim.endpoint, "t", timestamp=clock.now)
        assert good.error_code is None
        assert sim.stats()["signature_failures"] == 1


async def test_stats_endpoint_and_reset(session: aiohttp.ClientSession, clock: FakeClock) -> None:
    async with running_simulator(SimulatorConfig(rate=3, any_token=True), clock=clock) as sim:
        for _ in range(4):
            await query(session, sim.endpoint, "t", timestamp=clock.now)
        async with session.get(sim.endpoint + "/__stats") as resp:
            stats = await resp.json()
        assert stats == sim.stats()
        assert stats["requests"] == 4
        assert stats["by_action"] == {RESULT: 4}
        assert stats["throttled"] == 1
        assert stats["max_in_window"] == 3
        assert stats["max_in_flight"] >= 1
        async with session.post(sim.endpoint + "/__reset_stats") as resp:
            assert resp.status == 200
        after = sim.stats()
        assert (after["requests"], after["throttled"], after["by_action"]) == (0, 0, {})


async def test_unknown_action_names_share_one_counter(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(SimulatorConfig(), clock=clock) as sim:
        for action in ("Foo", "Bar", ""):
            await call(session, sim.endpoint, action, {}, timestamp=clock.now)
        stats = sim.stats()
        assert stats["by_action"] == {"<unknown>": 2, "<missing>": 1}
        assert stats["by_outcome"] == {"bad_request": 3}
