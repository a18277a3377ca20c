"""Outcomes: the seeded mix, the SPEC §1.3 body, minting round trips, pending, expiry."""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from poller.simulator import (
    DEMO_SECRET_ID,
    DEMO_SECRET_KEY,
    SimulatorConfig,
    mint_tokens,
    running_simulator,
)
from poller.simulator.mint import MintError
from poller.simulator.outcomes import (
    FAILURES,
    ApplyParams,
    ParamError,
    TokenPlan,
    draw_plan,
    new_token,
    parse_apply_params,
    plan_for_any_token,
    render_result,
)
from tests.simulator_support import T0, FakeClock, apply, query, without_link_queries

SPEC_CODES = {"1001", "1002", "1004", "1005", "1201", "2004"} | {
    "2012", "2013", "2014", "2015", "2016", "2017"
}  # fmt: skip
DAY = 24 * 3600.0


def _plans(n: int, config: SimulatorConfig) -> list[TokenPlan]:
    rng = random.Random(config.seed)
    params = ApplyParams()
    return [draw_plan(rng, config, token=f"t{i}", params=params, issued_at=T0) for i in range(n)]


def test_the_failure_table_is_exactly_spec_1_4() -> None:
    assert set(FAILURES) == SPEC_CODES


def test_the_default_mix_is_mostly_passes_with_some_pending() -> None:
    plans = _plans(5000, SimulatorConfig())
    passed = sum(p.result == "0" for p in plans) / len(plans)
    pending = sum(p.pending_seconds > 0 for p in plans) / len(plans)
    assert 0.77 < passed < 0.83
    assert 0.035 < pending < 0.065
    failures = Counter(p.result for p in plans if p.result != "0")
    assert set(failures) == SPEC_CODES  # every code shows up in a big enough sample


def test_the_same_seed_draws_the_same_plans() -> None:
    assert _plans(50, SimulatorConfig(seed=7)) == _plans(50, SimulatorConfig(seed=7))
    assert _plans(50, SimulatorConfig(seed=7)) != _plans(50, SimulatorConfig(seed=8))


def test_result_mirrors_the_last_compare_result_and_charges_compares() -> None:
    for plan in _plans(300, SimulatorConfig(pending_share=0.0)):
        body = render_result(plan, token_now=T0, request_id="r")
        assert body["Result"] == body["CompareResults"][-1]["ErrorCode"]
        assert body["ChargeCount"] == sum(c["IsNeedCharge"] for c in body["CompareResults"])
        assert isinstance(body["CompareResults"][-1]["Sim"], float)
        assert len(body["CardVerifyResults"]) == 1


def test_rendering_is_stable_except_for_the_request_id_and_fresh_links() -> None:
    plan = _plans(1, SimulatorConfig(pending_share=0.0))[0]
    first = render_result(plan, token_now=T0, request_id="a")
    second = render_result(plan, token_now=T0 + 60, request_id="b")
    assert first.pop("RequestId") != second.pop("RequestId")
    # Each answer signs its media links afresh (SPEC §8): same files, new expiry and signature.
    first_url = first["CompareResults"][0]["BestFrame"]["Url"]
    assert first_url != second["CompareResults"][0]["BestFrame"]["Url"]
    assert f"expires={int(T0) + 600}&" in first_url
    assert without_link_queries(first) == without_link_queries(second)
    same_moment = render_result(plan, token_now=T0, request_id="c")
    same_moment.pop("RequestId")
    assert same_moment == first  # at one moment, byte for byte


def test_token_strings_vary_in_shape() -> None:
    rng = random.Random(1)
    tokens = [new_token(rng) for _ in range(200)]
    uuid_upper = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")
    official = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{5}-[0-9A-F]{6}-[0-9A-F]{4}-[0-9A-F]{12}$")
    assert any(uuid_upper.match(t) for t in tokens)
    assert any(official.match(t) for t in tokens)
    assert any(t != t.upper() for t in tokens)
    assert len(set(tokens)) == len(tokens)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"CheckMode": 4}, "CheckMode"),
        ({"RetryLimit": 0}, "RetryLimit"),
        ({"RetryLimit": True}, "RetryLimit"),
        ({"SdkVersion": "ULTRA"}, "SdkVersion"),
        ({"Extra": 5}, "Extra"),
    ],
)
def test_bad_apply_parameters_are_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamError, match=message) as caught:
        parse_apply_params(params)
    assert caught.value.code == "InvalidParameterValue"


def test_unknown_apply_parameters_are_ignored() -> None:
    parsed = parse_apply_params({"SecurityLevel": 4, "ActionList": "blink", "RetryLimit": 2})
    assert parsed == ApplyParams(retry_limit=2)


def test_any_token_plans_are_a_pure_function_of_seed_and_token() -> None:
    config = SimulatorConfig(seed=3)
    first = plan_for_any_token("tok-1", config, issued_at=T0)
    assert first == plan_for_any_token("tok-1", config, issued_at=T0)
    results = {plan_for_any_token(f"tok-{i}", config, issued_at=T0).result for i in range(100)}
    assert "0" in results
    assert len(results) > 2


# A generous quota: these tests mint many tokens while the injected clock stands still.
FAST = SimulatorConfig(rate=10_000, pending_share=0.0)


async def test_minted_tokens_round_trip_with_extra_echoed(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(time.time())  # mint_tokens signs with the real clock
    async with running_simulator(FAST, clock=clock) as sim:
        tokens = await mint_tokens(
            session, sim.endpoint, DEMO_SECRET_ID, DEMO_SECRET_KEY, 5, extra="order-42", rate=500
        )
        assert len(set(tokens)) == 5
        for token in tokens:
            reply = await query(session, sim.endpoint, token, timestamp=clock.now)
            response = reply.response
            assert response["Extra"] == "order-42"
            assert response["Result"] in SPEC_CODES | {"0"}
            assert set(response) == {
                "Result", "Description", "ChargeCount", "CardVerifyResults", "CompareResults",
                "Extra", "DeviceInfoLevel", "RequestId",
            }  # fmt: skip
        stats = sim.stats()
        assert stats["tokens_minted"] == 5
        assert stats["queries_by_token_count"] == {"1": 5}


async def test_mint_tokens_raises_a_clear_error_on_an_api_error(
    session: aiohttp.ClientSession,
) -> None:
    async with running_simulator(FAST) as sim:
        with pytest.raises(MintError, match=r"AuthFailure\.SignatureFailure") as caught:
            await mint_tokens(session, sim.endpoint, DEMO_SECRET_ID, "wrong-key", 1)
        assert caught.value.code == "AuthFailure.SignatureFailure"


async def test_check_mode_3_has_no_card_results_and_modes_1_2_have_one(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(FAST, clock=clock) as sim:
        for mode, cards in ((1, 1), (2, 1), (3, 0)):
            token = await apply(session, sim.endpoint, timestamp=clock.now, CheckMode=mode)
            response = (await query(session, sim.endpoint, token, timestamp=clock.now)).response
            assert len(response["CardVerifyResults"]) == cards
            assert response["CompareResults"]


async def test_retry_limit_bounds_the_compare_results(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(FAST, clock=clock) as sim:
        for limit in (1, 2, 5):
            counts = set()
            for _ in range(25):
                token = await apply(session, sim.endpoint, timestamp=clock.now, RetryLimit=limit)
                reply = await query(session, sim.endpoint, token, timestamp=clock.now)
                counts.add(len(reply.response["CompareResults"]))
            assert max(counts) == limit
            assert min(counts) >= 1


async def test_only_enhanced_and_plus_report_a_device_level(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(FAST, clock=clock) as sim:
        for version, allowed in (
            ("BASIC", {""}),
            ("PRO", {""}),
            ("ENHANCED", {"1", "2", "3", "4"}),
            ("PLUS", {"1", "2", "3", "4"}),
        ):
            token = await apply(session, sim.endpoint, timestamp=clock.now, SdkVersion=version)
            reply = await query(session, sim.endpoint, token, timestamp=clock.now)
            assert reply.response["DeviceInfoLevel"] in allowed


async def test_pending_then_settles_after_pending_seconds(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(pending_share=1.0, pass_share=0.0, pending_seconds=5.0)
    async with running_simulator(config, clock=clock) as sim:
        token = await apply(session, sim.endpoint, timestamp=clock.now, Extra="e")
        clock.advance(4.9)
        pending = (await query(session, sim.endpoint, token, timestamp=clock.now)).response
        assert pending["Result"] == "-999"
        assert "not finished" in pending["Description"]
        assert (pending["CardVerifyResults"], pending["CompareResults"]) == ([], [])
        assert (pending["ChargeCount"], pending["Extra"]) == (0, "e")
        clock.advance(0.1)
        settled = (await query(session, sim.endpoint, token, timestamp=clock.now)).response
        assert settled["Result"] in SPEC_CODES  # pass_share 0: it settles as a failure
        assert settled["CompareResults"][-1]["ErrorCode"] == settled["Result"]
        assert sim.stats()["by_outcome"] == {"minted": 1, "pending": 1, "failed": 1}


async def test_an_unknown_token_is_illegal(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(FAST, clock=clock) as sim:
        reply = await query(session, sim.endpoint, "C736CEB2-03D89-014A10-B17B", timestamp=T0)
        assert reply.error_code == "InvalidParameterValue.BizTokenIllegal"
        assert sim.stats()["by_outcome"] == {"invalid_token": 1}


async def test_tokens_expire_after_72_hours_of_clock(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with running_simulator(FAST, clock=clock) as sim:
        token = await apply(session, sim.endpoint, timestamp=clock.now)
        clock.advance(3 * DAY)
        assert (await query(session, sim.endpoint, token, timestamp=clock.now)).error_code is None
        clock.advance(1)
        reply = await query(session, sim.endpoint, token, timestamp=clock.now)
        assert reply.error_code == "InvalidParameterValue.BizTokenExpired"


async def test_clock_offset_ages_tokens_but_not_signatures(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(rate=100, clock_offset=3 * DAY + 1)
    async with running_simulator(config, clock=clock) as sim:
        token = await apply(session, sim.endpoint, timestamp=clock.now)  # signed at real "now"
        reply = await query(session, sim.endpoint, token, timestamp=clock.now)
        assert reply.error_code == "InvalidParameterValue.BizTokenExpired"


async def test_any_token_outcomes_are_stable_across_requests_and_restarts(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(rate=10_000, any_token=True, seed=11)
    tokens = [f"bench-{i}" for i in range(40)]
    seen: list[list[str]] = []
    for _restart in range(2):
        async with running_simulator(config, clock=clock) as sim:
            clock.advance(config.pending_seconds)  # past any pending phase
            results = []
            for token in tokens:
                first = (await query(session, sim.endpoint, token, timestamp=clock.now)).response
                again = (await query(session, sim.endpoint, token, timestamp=clock.now)).response
                first.pop("RequestId")
                again.pop("RequestId")
                assert first == again
                results.append(first["Result"])
            seen.append(results)
    assert seen[0] == seen[1]
    assert len(set(seen[0])) > 1


async def test_any_token_pending_is_timed_from_server_start(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = SimulatorConfig(any_token=True, pending_share=1.0, pending_seconds=5.0)
    async with running_simulator(config, clock=clock) as sim:
        before = await query(session, sim.endpoint, "whatever", timestamp=clock.now)
        clock.advance(5.0)
        after = await query(session, sim.endpoint, "whatever", timestamp=clock.now)
        assert before.response["Result"] == "-999"
        assert after.response["Result"] != "-999"
