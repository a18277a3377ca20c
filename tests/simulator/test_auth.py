"""The simulator's gateway checks: TC3 signature, action, version, region, paths, body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from multidict import CIMultiDict

from poller.api.signing import sign
from poller.simulator import DEMO_SECRET_ID, DEMO_SECRET_KEY, SimulatorConfig, running_simulator
from poller.simulator.auth import verify
from poller.simulator.config import REGIONS
from tests.simulator_support import APPLY, RESULT, T0, FakeClock, Reply, apply, call, query

HOST = "127.0.0.1:8080"
BODY = b'{"SdkToken": "D2B55F0C-FB5D-4FB6-8765-3E931EBBFC79"}'
CREDENTIALS = {DEMO_SECRET_ID: DEMO_SECRET_KEY}


def _headers(
    *, secret_key: str = DEMO_SECRET_KEY, secret_id: str = DEMO_SECRET_ID, ts: int = int(T0)
) -> CIMultiDict[str]:
    sig = sign(
        secret_id=secret_id,
        secret_key=secret_key,
        service="faceid",
        host=HOST,
        timestamp=ts,
        payload=BODY,
    )
    return CIMultiDict(
        {
            "Authorization": sig.authorization,
            "Host": HOST,
            "Content-Type": "application/json",
            "X-TC-Timestamp": str(ts),
        }
    )


def _code(headers: CIMultiDict[str], body: bytes = BODY, now: float = T0) -> str | None:
    error = verify(headers=headers, body=body, now=now, credentials=CREDENTIALS)
    return None if error is None else error.code


def test_a_correct_signature_passes() -> None:
    assert _code(_headers()) is None


def test_a_wrong_key_is_a_signature_failure() -> None:
    assert _code(_headers(secret_key="not-the-key")) == "AuthFailure.SignatureFailure"


def test_an_unknown_secret_id_is_not_found() -> None:
    assert _code(_headers(secret_id="AKIDunknown")) == "AuthFailure.SecretIdNotFound"


def test_a_changed_body_or_host_breaks_the_signature() -> None:
    assert _code(_headers(), body=BODY.replace(b"D2", b"D3")) == "AuthFailure.SignatureFailure"
    moved = _headers()
    moved["Host"] = "127.0.0.1:8081"
    assert _code(moved) == "AuthFailure.SignatureFailure"


@pytest.mark.parametrize(
    ("skew", "expected"),
    [
        (-301, "AuthFailure.SignatureExpire"),
        (-300, None),
        (300, None),
        (301, "AuthFailure.SignatureExpire"),
    ],
)
def test_timestamps_beyond_five_minutes_expire(skew: int, expected: str | None) -> None:
    assert _code(_headers(ts=int(T0) + skew)) == expected


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer abc",
        "TC3-HMAC-SHA256 Credential=AKID/2026-01-01/faceid/tc3_request, Signature=00",
        "TC3-HMAC-SHA256 Credential=AKID/2026-01-01/faceid/tc3_request, "
        "SignedHeaders=content-type;host;x-tc-action, Signature=00",
    ],
)
def test_a_missing_or_malformed_authorization_is_invalid(authorization: str) -> None:
    headers = _headers()
    headers["Authorization"] = authorization
    assert _code(headers) == "AuthFailure.InvalidAuthorization"


def test_a_scope_with_another_service_fails() -> None:
    headers = _headers()
    headers["Authorization"] = headers["Authorization"].replace("/faceid/", "/cvm/")
    assert _code(headers) == "AuthFailure.SignatureFailure"


@pytest.fixture
async def endpoint(clock: FakeClock) -> AsyncIterator[str]:
    async with running_simulator(SimulatorConfig(pending_share=0.0), clock=clock) as sim:
        yield sim.endpoint


@pytest.mark.parametrize("path", ["/", "/?"])
async def test_both_paths_answer_with_exact_json_content_type(
    session: aiohttp.ClientSession, endpoint: str, path: str
) -> None:
    token = await apply(session, endpoint, timestamp=T0)
    reply = await call(session, endpoint, RESULT, {"SdkToken": token}, timestamp=T0, path=path)
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert reply.error_code is None
    assert reply.response["Result"] not in ("", "-999")


async def test_api_errors_are_http_200_json(session: aiohttp.ClientSession, endpoint: str) -> None:
    reply = await call(session, endpoint, RESULT, {"SdkToken": "x"}, timestamp=T0, secret_key="k")
    assert (reply.status, reply.content_type) == (200, "application/json")
    assert reply.error_code == "AuthFailure.SignatureFailure"
    assert reply.response["Error"]["Message"]
    assert len(reply.response["RequestId"]) == 36


async def test_signature_expiry_follows_the_injected_clock(
    session: aiohttp.ClientSession, endpoint: str, clock: FakeClock
) -> None:
    token = await apply(session, endpoint, timestamp=T0)
    clock.advance(301)  # the caller's clock is now five minutes and a second behind
    late = await query(session, endpoint, token, timestamp=T0)
    early = await query(session, endpoint, token, timestamp=clock.now + 600)
    fresh = await query(session, endpoint, token, timestamp=clock.now)
    assert late.error_code == "AuthFailure.SignatureExpire"
    assert early.error_code == "AuthFailure.SignatureExpire"
    assert fresh.error_code is None


async def test_wrong_key_and_unknown_id_over_http(
    session: aiohttp.ClientSession, endpoint: str
) -> None:
    wrong = await call(session, endpoint, APPLY, {}, timestamp=T0, secret_key="wrong")
    unknown = await call(session, endpoint, APPLY, {}, timestamp=T0, secret_id="AKIDnobody")
    broken = await call(session, endpoint, APPLY, {}, timestamp=T0, authorization="TC3 nonsense")
    assert wrong.error_code == "AuthFailure.SignatureFailure"
    assert unknown.error_code == "AuthFailure.SecretIdNotFound"
    assert broken.error_code == "AuthFailure.InvalidAuthorization"


@pytest.mark.parametrize(
    ("action", "version", "region", "expected"),
    [
        ("DescribeInstances", "2018-03-01", "ap-singapore", "InvalidAction"),
        ("", "2018-03-01", "ap-singapore", "MissingParameter"),
        (RESULT, "2017-03-12", "ap-singapore", "NoSuchVersion"),
        (RESULT, None, "ap-singapore", "MissingParameter"),
        (RESULT, "2018-03-01", "eu-frankfurt", "UnsupportedRegion"),
        (RESULT, "2018-03-01", None, "MissingParameter"),
    ],
)
async def test_action_version_and_region_are_checked(
    session: aiohttp.ClientSession,
    endpoint: str,
    action: str,
    version: str | None,
    region: str | None,
    expected: str,
) -> None:
    reply = await call(
        session, endpoint, action, {"SdkToken": "t"}, timestamp=T0, version=version, region=region
    )
    assert reply.error_code == expected


@pytest.mark.parametrize("region", sorted(REGIONS))
async def test_every_documented_region_is_served(
    session: aiohttp.ClientSession, endpoint: str, region: str
) -> None:
    reply = await call(session, endpoint, APPLY, {}, timestamp=T0, region=region)
    assert reply.error_code is None


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"not json", "InvalidParameter"),
        (b"[1, 2]", "InvalidParameter"),
        (b"{}", "InvalidParameter"),
        (b'{"SdkToken": ""}', "InvalidParameterValue"),
        (b'{"SdkToken": 42}', "InvalidParameterValue"),
        (b'{"SdkToken": "' + b"A" * 257 + b'"}', "InvalidParameterValue.BizTokenIllegal"),
    ],
)
async def test_bad_bodies_and_tokens_are_parameter_errors(
    session: aiohttp.ClientSession, endpoint: str, payload: bytes, expected: str
) -> None:
    reply: Reply = await call(session, endpoint, RESULT, payload, timestamp=T0)
    assert reply.error_code == expected
