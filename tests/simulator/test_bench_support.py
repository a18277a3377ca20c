"""What the benchmark reads from the simulator: request timestamps in /__stats, and --no-auth."""

from __future__ import annotations

import json

import aiohttp

from poller.simulator import SimulatorConfig, running_simulator
from tests.simulator_support import RESULT, FakeClock, call, query

UNSIGNED_HEADERS = {
    "Content-Type": "application/json",
    "X-TC-Action": RESULT,
    "X-TC-Version": "2018-03-01",
    "X-TC-Region": "ap-singapore",
}


async def test_stats_carry_the_first_and_latest_request_times(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(SimulatorConfig(any_token=True), clock=clock) as sim:
        assert (sim.stats()["first_request_at"], sim.stats()["last_request_at"]) == (None, None)
        start = clock.now
        await query(session, sim.endpoint, "a", timestamp=clock.now)
        clock.advance(2.5)
        # A refused request still arrived: start-up is about when the client first spoke.
        await call(session, sim.endpoint, RESULT, {"SdkToken": "b"}, timestamp=0)
        stats = sim.stats()
        assert (stats["first_request_at"], stats["last_request_at"]) == (start, start + 2.5)
        async with session.post(sim.endpoint + "/__reset_stats") as resp:
            reset = await resp.json()
        assert (reset["first_request_at"], reset["last_request_at"]) == (None, None)
        await query(session, sim.endpoint, "c", timestamp=clock.now)
        assert sim.stats()["first_request_at"] == start + 2.5


async def _post_unsigned(session: aiohttp.ClientSession, endpoint: str) -> dict[str, object]:
    body = json.dumps({"SdkToken": "unsigned"}).encode()
    async with session.post(endpoint + "/", data=body, headers=UNSIGNED_HEADERS) as resp:
        document: dict[str, dict[str, object]] = json.loads(await resp.read())
    return document["Response"]


async def test_unsigned_requests_are_refused_by_default(session: aiohttp.ClientSession) -> None:
    async with running_simulator(SimulatorConfig(any_token=True)) as sim:
        response = await _post_unsigned(session, sim.endpoint)
        assert response["Error"] == {
            "Code": "AuthFailure.InvalidAuthorization",
            "Message": "The Authorization header is missing.",
        }
        assert sim.stats()["signature_failures"] == 1


async def test_no_auth_answers_unsigned_requests_like_signed_ones(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(any_token=True, check_signatures=False, pending_share=0.0)
    async with running_simulator(config, clock=clock) as sim:
        unsigned = await _post_unsigned(session, sim.endpoint)
        signed = (await query(session, sim.endpoint, "unsigned", timestamp=clock.now)).response
        assert "Error" not in unsigned
        assert unsigned.keys() == signed.keys()
        assert {k: v for k, v in unsigned.items() if k != "RequestId"} == {
            k: v for k, v in signed.items() if k != "RequestId"
        }
        stats = sim.stats()
        assert (stats["signature_failures"], stats["throttled"]) == (0, 0)
