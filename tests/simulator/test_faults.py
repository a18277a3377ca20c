"""Each fault kind as a client sees it, and the latency model of SPEC §5."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time

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


async def test_an_unknown_code_answers_a_seeded_share_of_tokens_every_time(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(
        rate=10_000, any_token=True, pending_share=0.0, unknown_code_share=0.3, seed=5
    )
    async with running_simulator(config, clock=clock) as sim:
        tokens = [f"tok-{i}" for i in range(200)]
        first = [(await query(session, sim.endpoint, t, timestamp=clock.now)) for t in tokens]
        again = [(await query(session, sim.endpoint, t, timestamp=clock.now)) for t in tokens]
        codes = [reply.error_code for reply in first]
        assert codes == [reply.error_code for reply in again]  # the same tokens, every time
        unknown = [t for t, code in zip(tokens, codes, strict=True) if code is not None]
        assert 40 <= len(unknown) <= 80
        assert set(codes) == {None, "FailedOperation.SomethingNew"}
        replied = first[tokens.index(unknown[0])]
        assert (replied.status, replied.content_type) == (200, "application/json")
        assert replied.response["Error"]["Message"]
        assert "RequestId" in replied.response
        # The simulator says which tokens it answers so, without counting a query.
        decided = {t: sim.decision(t) for t in tokens}
        assert [t for t in tokens if decided[t].status == "unknown_code"] == unknown
        assert {decided[t].error_code for t in unknown} == {"FailedOperation.SomethingNew"}
        stats = sim.stats()
        assert stats["by_outcome"]["unknown_code"] == 2 * len(unknown)
        assert stats["requests"] == 400


async def test_the_unknown_code_is_configurable_and_off_by_default(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(
        any_token=True, pending_share=0.0, unknown_code_share=1.0, unknown_code="Weird.NewCode"
    )
    async with running_simulator(config, clock=clock) as sim:
        reply = await query(session, sim.endpoint, "t1", timestamp=clock.now)
        assert reply.error_code == "Weird.NewCode"
    async with running_simulator(SimulatorConfig(any_token=True), clock=clock) as sim:
        reply = await query(session, sim.endpoint, "t1", timestamp=clock.now)
        assert reply.error_code is None
        assert sim.decision("t1").status in ("passed", "failed")


async def test_turning_the_unknown_code_on_changes_no_other_tokens_outcome(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    plain = SimulatorConfig(rate=10_000, pending_share=0.0, seed=8)
    unknown = SimulatorConfig(rate=10_000, pending_share=0.0, seed=8, unknown_code_share=0.5)
    answers: list[dict[str, str | None]] = []
    for config in (plain, unknown):
        async with running_simulator(config, clock=clock) as sim:
            tokens = [await apply(session, sim.endpoint, timestamp=clock.now) for _ in range(30)]
            replies = [await query(session, sim.endpoint, t, timestamp=clock.now) for t in tokens]
            answers.append(
                {
                    t: r.error_code or r.response["Result"]
                    for t, r in zip(tokens, replies, strict=True)
                }
            )
    before, after = answers
    assert before.keys() == after.keys()  # the same tokens were minted
    changed = {t for t in before if before[t] != after[t]}
    assert changed == {t for t, v in after.items() if v == "FailedOperation.SomethingNew"}
    assert 0 < len(changed) < 30


async def test_a_minted_token_decision_matches_its_answers(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(pending_share=1.0, pending_seconds=5.0, seed=3)
    async with running_simulator(config, clock=clock) as sim:
        token = sim.mint(1)[0]
        decision = sim.decision(token)
        assert decision.pending_until == clock.now + 5.0
        pending = await query(session, sim.endpoint, token, timestamp=clock.now)
        assert pending.response["Result"] == "-999"
        clock.advance(5.0)
        settled = await query(session, sim.endpoint, token, timestamp=clock.now)
        assert settled.response["Result"] == decision.result
        assert decision.status == ("passed" if decision.result == "0" else "failed")
        assert sim.decision("never-minted").status == "invalid_token"
        assert sim.decision("x" * 257).error_code == "InvalidParameterValue.BizTokenIllegal"
        # Two queries counted; the decisions were not.
        assert sim.stats()["queries_by_token_count"] == {"2": 1}
        clock.advance(73 * 3600)
        assert sim.decision(token).status == "expired"


async def test_a_throttle_share_rejects_requests_before_the_window_counts_them(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(rate=10_000, any_token=True, throttle_share=0.4, seed=2)
    async with running_simulator(config, clock=clock) as sim:
        codes = [
            (await query(session, sim.endpoint, f"t{i}", timestamp=clock.now)).error_code
            for i in range(200)
        ]
        minted = await apply(session, sim.endpoint, timestamp=clock.now)  # Apply: never
        stats = sim.stats()
    throttled = codes.count("RequestLimitExceeded")
    assert 50 <= throttled <= 110
    assert set(codes) <= {None, "RequestLimitExceeded"}
    assert minted
    assert stats["throttled"] == stats["injected_throttles"] == throttled
    assert stats["by_outcome"]["throttled"] == throttled
    # Only the admitted requests were counted by the window (all in one frozen instant).
    assert stats["max_in_window"] == 200 - throttled


async def test_the_request_log_records_arrivals_on_the_monotonic_clock(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(any_token=True, request_log_size=3)
    async with running_simulator(config, clock=clock) as sim:
        started = time.monotonic()
        for i in range(4):
            await query(session, sim.endpoint, f"t{i}", timestamp=clock.now)
        await apply(session, sim.endpoint, timestamp=clock.now)
        finished = time.monotonic()
        log = sim.request_log()
        async with session.get(sim.endpoint + "/__log") as resp:
            document = await resp.json()
    # Only the last three are kept; seq numbers every arrival.
    assert [(e.seq, e.action, e.token) for e in log] == [
        (2, "GetSdkVerificationResult", "t2"),
        (3, "GetSdkVerificationResult", "t3"),
        (4, "ApplySdkVerificationToken", None),
    ]
    assert all(started <= e.arrived <= (e.answered or 0.0) <= finished for e in log)
    assert [e.arrived for e in log] == sorted(e.arrived for e in log)
    assert document["total"] == 5
    assert document["dropped"] == 2
    assert [r["token"] for r in document["requests"]] == ["t2", "t3", None]


async def test_the_request_log_is_off_by_default(session: aiohttp.ClientSession) -> None:
    async with running_simulator(SimulatorConfig(any_token=True)) as sim:
        async with session.get(sim.endpoint + "/__log") as resp:
            assert resp.status == 404
            assert "request-log-size" in (await resp.json())["error"]
        with pytest.raises(ValueError, match="request log is off"):
            sim.request_log()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"unknown_code_share": 1.5}, "unknown-code-share must be in 0..1"),
        ({"throttle_share": -0.1}, "throttle-share must be in 0..1"),
        ({"unknown_code": " "}, "unknown-code must be a non-empty code"),
        ({"request_log_size": -1}, "request-log-size must be >= 0"),
    ],
)
def test_bad_new_knob_values_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(**overrides)  # type: ignore[arg-type]
