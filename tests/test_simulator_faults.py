"""Each fault kind as a client sees it, and the latency model of SPEC §5."""

from __future__ import annotations

import asyncio
import json
import random
import statistics

import aiohttp
import pytest

from poller.simulator import SimulatorConfig, running_simulator
from poller.simulator.faults import FaultPlan
from tests.simulator_support import FakeClock, apply, call, query


def _faulty(kind: str, **overrides: float) -> SimulatorConfig:
    return SimulatorConfig(
        fault_rate=1.0,
        faults=(kind,),
        pending_share=0.0,
        **overrides,  # type: ignore[arg-type]
    )


async def test_internal_is_an_api_error_with_http_200(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(_faulty("internal"), clock=clock) as sim:
        token = await apply(session, sim.endpoint, timestamp=clock.now)  # Apply is never faulted
        reply = await query(session, sim.endpoint, token, timestamp=clock.now)
        assert (reply.status, reply.content_type) == (200, "application/json")
        assert reply.error_code == "InternalError"
        assert sim.stats()["by_outcome"]["fault:internal"] == 1


@pytest.mark.parametrize(("kind", "status"), [("html502", 502), ("503", 503)])
async def test_gateway_errors_are_html_with_their_status(
    session: aiohttp.ClientSession, clock: FakeClock, kind: str, status: int
) -> None:
    async with running_simulator(_faulty(kind), clock=clock) as sim:
        token = await apply(session, sim.endpoint, timestamp=clock.now)
        reply = await query(session, sim.endpoint, token, timestamp=clock.now)
        assert reply.status == status
        assert reply.content_type.startswith("text/html")
        assert reply.text.startswith("<html>")
        assert str(status) in reply.text


async def test_truncated_is_200_json_that_does_not_parse(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(_faulty("truncated"), clock=clock) as sim:
        token = await apply(session, sim.endpoint, timestamp=clock.now)
        reply = await query(session, sim.endpoint, token, timestamp=clock.now)
        assert (reply.status, reply.content_type) == (200, "application/json")
        assert reply.text.startswith('{"Response": {')
        with pytest.raises(json.JSONDecodeError):
            json.loads(reply.text)


async def test_reset_drops_the_connection_without_a_response(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(_faulty("reset"), clock=clock) as sim:
        token = await apply(session, sim.endpoint, timestamp=clock.now)
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await query(session, sim.endpoint, token, timestamp=clock.now)
        stats = sim.stats()
        assert stats["by_outcome"]["fault:reset"] == 1
        assert stats["max_in_window"] == 1  # a faulted request still spent quota


async def test_stall_outlasts_the_client_timeout(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(_faulty("stall", stall_seconds=0.5), clock=clock) as sim:
        token = await apply(session, sim.endpoint, timestamp=clock.now)
        with pytest.raises(TimeoutError):
            await call(
                session,
                sim.endpoint,
                "GetSdkVerificationResult",
                {"SdkToken": token},
                timestamp=clock.now,
                client_timeout_s=0.1,
            )
        assert sim.stats()["by_outcome"]["fault:stall"] == 1


async def test_the_fault_rate_is_a_seeded_share(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(rate=10_000, any_token=True, fault_rate=0.3, faults=("internal",))
    async with running_simulator(config, clock=clock) as sim:
        codes = [
            (await query(session, sim.endpoint, f"t{i}", timestamp=clock.now)).error_code
            for i in range(200)
        ]
    faulted = codes.count("InternalError")
    assert 40 <= faulted <= 80
    assert set(codes) <= {None, "InternalError"}


def test_the_same_seed_picks_the_same_faults() -> None:
    config = SimulatorConfig(fault_rate=0.5)
    first = FaultPlan(config, random.Random(1))
    second = FaultPlan(config, random.Random(1))
    picks = [first.pick() for _ in range(100)]
    assert picks == [second.pick() for _ in range(100)]
    assert set(picks) - {None} == set(config.faults)


def test_the_pre_count_leg_is_bounded_and_the_rest_is_heavy_tailed() -> None:
    plan = FaultPlan(SimulatorConfig(latency_ms=100), random.Random(2))
    pre = [plan.pre_count_delay() for _ in range(2000)]
    post = [plan.post_count_delay() for _ in range(2000)]
    assert 0.0375 <= min(pre) < max(pre) <= 0.0625  # 50 ms +-25%
    assert 0.045 < statistics.median(post) < 0.055
    assert max(post) > 0.15  # a tail well past three times the median


def test_pre_jitter_can_be_set_explicitly() -> None:
    plan = FaultPlan(SimulatorConfig(latency_ms=100, pre_jitter_ms=20), random.Random(3))
    pre = [plan.pre_count_delay() for _ in range(2000)]
    assert 0.030 <= min(pre) < 0.032
    assert 0.068 < max(pre) <= 0.070


def test_no_latency_means_no_delay() -> None:
    plan = FaultPlan(SimulatorConfig(), random.Random(4))
    assert (plan.pre_count_delay(), plan.post_count_delay(), plan.pick()) == (0.0, 0.0, None)


async def test_latency_is_served_and_overlapping_requests_count_in_flight(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(any_token=True, latency_ms=200, pre_jitter_ms=0)
    async with running_simulator(config, clock=clock) as sim:
        replies = await asyncio.gather(
            *(query(session, sim.endpoint, f"t{i}", timestamp=clock.now) for i in range(5))
        )
        assert [reply.error_code for reply in replies] == [None] * 5
        stats = sim.stats()
        # The pre-count leg alone (100 ms) keeps all five in the server at once.
        assert stats["max_in_flight"] == 5
        assert stats["in_flight"] == 0
        assert stats["max_in_window"] == 5
