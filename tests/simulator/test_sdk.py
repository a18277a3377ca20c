"""The simulator against Tencent's own code: the official SDK's clients, models and signer.

If the official client can mint, query and parse every field (its models warn about fields they
do not know, and warnings are errors here), then the simulator speaks the real wire format; and
if its signer and ours agree byte for byte, the simulator's signature check is the real one.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from tencentcloud.common import abstract_client, credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.common.sign import Sign
from tencentcloud.faceid.v20180301 import faceid_client, faceid_client_async, models

from poller.api.signing import sign
from poller.simulator import DEMO_SECRET_ID, DEMO_SECRET_KEY, SimulatorConfig, running_simulator
from tests.simulator_support import FakeClock, query


def _client(port: int, secret_key: str = DEMO_SECRET_KEY, *, host: str | None = None) -> Any:
    endpoint = host or f"127.0.0.1:{port}"
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=endpoint, protocol="http"))
    cred = credential.Credential(DEMO_SECRET_ID, secret_key)
    return faceid_client.FaceidClient(cred, "ap-singapore", profile)


def _sdk_round_trip(port: int, apply_params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Blocking: mint and query through the official sync client (run it in a thread)."""
    client = _client(port)
    apply_request = models.ApplySdkVerificationTokenRequest()
    apply_request.from_json_string(json.dumps(apply_params))
    token: str = client.ApplySdkVerificationToken(apply_request).SdkToken
    result_request = models.GetSdkVerificationResultRequest()
    result_request.SdkToken = token
    response = client.GetSdkVerificationResult(result_request)
    parsed: dict[str, Any] = json.loads(response.to_json_string())
    return token, parsed


_TYPE_RE = re.compile(r":type (\w+): (.+)")
_SCALARS: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
}


def _field_types(model: type) -> dict[str, str]:
    return dict(_TYPE_RE.findall(vars(model)["__init__"].__doc__ or ""))


def _check_types(model: type, raw: dict[str, Any], where: str) -> None:
    """Every field we send is one the SDK model declares, with the declared type."""
    declared = _field_types(model)
    for name, value in raw.items():
        assert name in declared, f"{where}.{name} is not a field of {model.__name__}"
        kind = declared[name].strip()
        if value is None:
            continue
        nested = re.search(r"models\.(\w+)`", kind)
        if kind.startswith("list"):
            assert isinstance(value, list), f"{where}.{name} should be a list"
            item_kind = kind.removeprefix("list of ").strip()
            for i, item in enumerate(value):
                _check_value(item_kind, item, f"{where}.{name}[{i}]")
        elif nested:
            _check_types(getattr(models, nested[1]), value, f"{where}.{name}")
        else:
            _check_value(kind, value, f"{where}.{name}")


def _check_value(kind: str, value: Any, where: str) -> None:
    if kind in _SCALARS:
        assert isinstance(value, _SCALARS[kind]), f"{where} should be {kind}, got {value!r}"
        assert kind == "bool" or not isinstance(value, bool), f"{where} is a bool, not {kind}"
    else:  # a model name
        _check_types(getattr(models, kind), value, where)


def _assert_kept(raw: Any, parsed: Any, where: str = "Response") -> None:
    """The SDK kept every key and value we sent; keys it adds itself are null."""
    if isinstance(raw, dict):
        assert isinstance(parsed, dict), where
        for key, value in raw.items():
            assert key in parsed, f"the SDK dropped {where}.{key}"
            _assert_kept(value, parsed[key], f"{where}.{key}")
        for key in parsed.keys() - raw.keys():
            assert parsed[key] is None, f"{where}.{key} appeared from nowhere"
    elif isinstance(raw, list):
        assert isinstance(parsed, list), where
        assert len(raw) == len(parsed), where
        for i, (a, b) in enumerate(zip(raw, parsed, strict=True)):
            _assert_kept(a, b, f"{where}[{i}]")
    else:
        assert raw == parsed, f"{where}: sent {raw!r}, the SDK parsed {parsed!r}"


APPLY_CASES = [
    {"Extra": "sdk-1"},
    {"IdCardType": "ML", "SdkVersion": "PLUS", "RetryLimit": 3},
    {"IdCardType": "IndonesiaIDCard", "CheckMode": 2, "SdkVersion": "ENHANCED"},
    {"IdCardType": "ThailandIDCard", "SecurityLevel": "4"},
    {"IdCardType": "SingaporeIDCard", "Extra": "客户 42"},
    {"IdCardType": "PhilippinesVoteID", "RetryLimit": 1},
    {"IdCardType": "MLIDPassport"},
    {"IdCardType": "JapanIDCard"},
    {"CheckMode": 3, "SdkVersion": "PRO"},
]


@pytest.mark.parametrize("apply_params", APPLY_CASES)
async def test_the_sync_sdk_parses_every_field_we_send(
    session: aiohttp.ClientSession, apply_params: dict[str, Any]
) -> None:
    # Frozen near the real time: the SDK signs with time.time(), and a frozen clock makes the
    # fake media links identical between the SDK's query and ours.
    clock = FakeClock(time.time())
    config = SimulatorConfig(pending_share=0.0, pass_share=0.5, seed=len(json.dumps(apply_params)))
    async with running_simulator(config, clock=clock) as sim:
        token, parsed = await asyncio.to_thread(_sdk_round_trip, sim.port, apply_params)
        raw = (await query(session, sim.endpoint, token, timestamp=clock.now)).response
    assert parsed["Extra"] == apply_params.get("Extra", "")
    assert parsed["Result"] == raw["Result"]
    raw.pop("RequestId")
    parsed.pop("RequestId")
    _assert_kept(raw, parsed)
    _check_types(models.GetSdkVerificationResultResponse, raw, "Response")


async def test_the_sdk_parses_a_pending_result() -> None:
    config = SimulatorConfig(pending_share=1.0, pending_seconds=60)
    async with running_simulator(config) as sim:
        _, parsed = await asyncio.to_thread(_sdk_round_trip, sim.port, {})
    assert parsed["Result"] == "-999"
    assert (parsed["CardVerifyResults"], parsed["CompareResults"]) == ([], [])


def _expect_sdk_error(port: int, secret_key: str, token: str) -> str:
    request = models.GetSdkVerificationResultRequest()
    request.SdkToken = token
    with pytest.raises(TencentCloudSDKException) as caught:
        _client(port, secret_key).GetSdkVerificationResult(request)
    code: str = caught.value.get_code()
    return code


async def test_a_wrong_secret_key_is_a_signature_failure_for_the_sdk() -> None:
    async with running_simulator(SimulatorConfig()) as sim:
        code = await asyncio.to_thread(_expect_sdk_error, sim.port, "wrong-key", "t")
    assert code == "AuthFailure.SignatureFailure"


async def test_the_sdk_sees_an_unknown_token_as_illegal() -> None:
    async with running_simulator(SimulatorConfig()) as sim:
        code = await asyncio.to_thread(_expect_sdk_error, sim.port, DEMO_SECRET_KEY, "nope")
    assert code == "InvalidParameterValue.BizTokenIllegal"


async def test_the_async_sdk_client_posting_to_slash_query() -> None:
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http"))
    async with running_simulator(SimulatorConfig(pending_share=0.0)) as sim:
        profile.httpProfile.endpoint = f"127.0.0.1:{sim.port}"
        cred = credential.Credential(DEMO_SECRET_ID, DEMO_SECRET_KEY)
        async with faceid_client_async.FaceidClient(cred, "ap-singapore", profile) as client:
            apply_request = models.ApplySdkVerificationTokenRequest()
            apply_request.Extra = "async"
            token = (await client.ApplySdkVerificationToken(apply_request)).SdkToken
            result_request = models.GetSdkVerificationResultRequest()
            result_request.SdkToken = token
            response = await client.GetSdkVerificationResult(result_request)
    assert response.Extra == "async"
    assert response.Result
    assert response.Result == response.CompareResults[-1].ErrorCode


@pytest.mark.parametrize(
    ("host", "timestamp", "token"),
    [
        ("faceid.intl.tencentcloudapi.com", 1551113065, "D2B55F0C-FB5D-4FB6-8765-3E931EBBFC79"),
        ("127.0.0.1:8080", 1767225599, "C736CEB2-03D89-014A10-B17B-B2DC535CA53B"),  # 23:59:59
        ("127.0.0.1:8080", 1767225600, "令牌-non-ascii"),  # midnight UTC
    ],
)
def test_our_signer_and_the_sdks_produce_the_same_authorization(
    monkeypatch: pytest.MonkeyPatch, host: str, timestamp: int, token: str
) -> None:
    # Freeze the SDK's clock where it reads it, without touching the global time module.
    monkeypatch.setattr(abstract_client, "time", SimpleNamespace(time=lambda: float(timestamp)))
    client = _client(0, host=host)
    request = RequestInternal(host, "POST", "/", header={})
    client._build_req_with_tc3_signature("GetSdkVerificationResult", {"SdkToken": token}, request)
    ours = sign(
        secret_id=DEMO_SECRET_ID,
        secret_key=DEMO_SECRET_KEY,
        service="faceid",
        host=host,
        timestamp=timestamp,
        payload=request.data.encode("utf-8"),
    )
    assert request.header["Host"] == host
    assert request.header["Authorization"] == ours.authorization
    assert request.header["X-TC-Timestamp"] == str(timestamp)
    assert (
        Sign.sign_tc3(DEMO_SECRET_KEY, ours.credential_scope[:10], "faceid", ours.string_to_sign)
        == ours.signature
    )
