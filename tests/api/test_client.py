"""The API call (poller/api/client.py): request shape and signing, transport faults, outcomes."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL as YURL

from poller.api.client import ACTION, VERSION, FaceIdClient, encode_body
from poller.api.outcomes import Settled, Status, Throttled, Transient
from poller.api.reply import ApiError, TransportFault
from poller.config.credentials import Credentials
from poller.config.settings import Settings
from tests.helpers import SECRET_ID, SECRET_KEY, URL, api_error, make_settings, ok
from tests.sdk_signer import sdk_authorization

TOKEN = "D2B55F0C-FB5D-4FB6-8765-3E931EBBFC79"
SESSION_TOKEN = "zzSESSIONtokenNEVERsigned"
NOW = 1551113065.75


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


# -- FaceIdClient with aioresponses --------------------------------------------------------------


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


def sent(m: aioresponses, url: str = URL) -> list[dict[str, Any]]:
    """The keyword arguments of every recorded request, and nothing sent anywhere else."""
    assert set(m.requests) <= {("POST", YURL(url))}, m.requests
    return [call.kwargs for call in m.requests.get(("POST", YURL(url)), [])]


def check_signature(kwargs: dict[str, Any], settings: Settings, timestamp: int) -> None:
    """The request is signed as Tencent's official SDK signs these exact bytes, at `timestamp`
    (an expectation computed without `poller.api.signing`)."""
    assert settings.credentials is not None
    headers = kwargs["headers"]
    assert headers["X-TC-Timestamp"] == str(timestamp)
    expected = sdk_authorization(
        secret_id=settings.credentials.secret_id,
        secret_key=settings.credentials.secret_key,
        host=settings.host,
        timestamp=timestamp,
        payload=kwargs["data"],
        content_type="application/json",
    )
    assert headers["Authorization"] == expected


VECTORS_FILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tc3_vectors.json"
if not VECTORS_FILE.exists():  # a checkout outside the workplace keeps a copy beside the tests
    VECTORS_FILE = Path(__file__).parents[1] / "data" / "tc3_vectors.json"
SPEC_ID, SPEC_KEY = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
SPEC_BODY = b'{"SdkToken": "D2B55F0C-FB5D-4FB6-8765-3E931EBBFC79"}'


@pytest.mark.parametrize(
    ("host", "signature"),
    [
        (
            "faceid.intl.tencentcloudapi.com",
            "70dee8f0b7446d118300399b2dcbec6e76afde5a735309b5e6e5c020d3b2d7ee",
        ),
        ("127.0.0.1:8080", "24a34962aa0aaf4c48545b5e870711dbfad28eb0bfbed947999465249be94990"),
    ],
)
def test_the_reference_signer_gives_the_spec_faceid_vectors(host: str, signature: str) -> None:
    """check_signature's expectation is pinned to SPEC §1.1, not to our own signer."""
    authorization = sdk_authorization(
        secret_id=SPEC_ID, secret_key=SPEC_KEY, host=host, timestamp=1551113065, payload=SPEC_BODY
    )
    assert authorization == (
        f"TC3-HMAC-SHA256 Credential={SPEC_ID}/2019-02-25/faceid/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )


def _vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]
    return vectors


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: str(v["name"]))
def test_the_reference_signer_gives_the_shared_vectors(vector: dict[str, Any]) -> None:
    inputs = vector["inputs"]
    authorization = sdk_authorization(
        secret_id=inputs["secret_id"],
        secret_key=inputs["secret_key"],
        host=inputs["host"],
        timestamp=inputs["timestamp"],
        payload=base64.b64decode(inputs["payload_b64"]),
        content_type=inputs["content_type"],
        service=inputs["service"],
    )
    assert authorization == vector["expected"]["authorization"]


async def test_request_shape_and_signature(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    settings = make_settings(region="ap-bangkok")
    mocked.post(URL, payload=ok("0"))
    client = FaceIdClient(session, settings, clock=Clock())
    reply = await client.get_result(TOKEN)
    assert reply.response["Result"] == "0"
    assert reply.error is None
    (kwargs,) = sent(mocked)
    assert kwargs["data"] == b'{"SdkToken":"' + TOKEN.encode() + b'"}'
    assert json.loads(kwargs["data"]) == {"SdkToken": TOKEN}
    headers = kwargs["headers"]
    assert headers == {
        "Content-Type": "application/json",
        "Host": "faceid.intl.tencentcloudapi.com",
        "X-TC-Action": ACTION,
        "X-TC-Version": VERSION,
        "X-TC-Timestamp": "1551113065",
        "X-TC-Region": "ap-bangkok",
        "Authorization": headers["Authorization"],
    }
    assert ACTION == "GetSdkVerificationResult"
    assert VERSION == "2018-03-01"
    assert headers["Authorization"].startswith(
        f"TC3-HMAC-SHA256 Credential={SECRET_ID}/2019-02-25/faceid/tc3_request, "
        "SignedHeaders=content-type;host, Signature="
    )
    check_signature(kwargs, settings, 1551113065)
    assert kwargs["allow_redirects"] is False
    assert len(sent(mocked)) == 1


async def test_loopback_endpoint_host_has_port(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    settings = make_settings(endpoint="http://127.0.0.1:8080/")
    url = "http://127.0.0.1:8080/"
    mocked.post(url, payload=ok())
    await FaceIdClient(session, settings, clock=Clock()).get_result(TOKEN)
    (kwargs,) = sent(mocked, url)
    assert kwargs["headers"]["Host"] == "127.0.0.1:8080"
    check_signature(kwargs, settings, int(NOW))


async def test_non_ascii_token_is_signed_over_the_exact_bytes(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    settings = make_settings()
    mocked.post(URL, payload=ok())
    await FaceIdClient(session, settings, clock=Clock()).get_result("tök€n-陳")
    (kwargs,) = sent(mocked)
    assert json.loads(kwargs["data"]) == {"SdkToken": "tök€n-陳"}
    assert kwargs["data"] == encode_body("tök€n-陳")
    check_signature(kwargs, settings, int(NOW))


async def test_session_token_sent_but_not_signed(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    settings = make_settings(credentials=Credentials(SECRET_ID, SECRET_KEY, SESSION_TOKEN))
    mocked.post(URL, payload=ok())
    await FaceIdClient(session, settings, clock=Clock()).get_result(TOKEN)
    (kwargs,) = sent(mocked)
    headers = kwargs["headers"]
    assert headers["X-TC-Token"] == SESSION_TOKEN
    assert "SignedHeaders=content-type;host," in headers["Authorization"]
    check_signature(kwargs, settings, int(NOW))  # same signature as without the token


@pytest.mark.parametrize("language", ["en-US", "zh-CN"])
async def test_language_header_only_when_set(
    mocked: aioresponses, session: aiohttp.ClientSession, language: str
) -> None:
    mocked.post(URL, payload=ok(), repeat=True)
    await FaceIdClient(session, make_settings(), clock=Clock()).get_result(TOKEN)
    await FaceIdClient(session, make_settings(language=language), clock=Clock()).get_result(TOKEN)
    without, with_language = sent(mocked)
    assert "X-TC-Language" not in without["headers"]
    assert "X-TC-Token" not in without["headers"]
    assert with_language["headers"]["X-TC-Language"] == language


async def test_each_call_is_signed_with_a_fresh_timestamp(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    settings = make_settings()
    clock = Clock()
    mocked.post(URL, payload=ok(), repeat=True)
    client = FaceIdClient(session, settings, clock=clock)
    await client.get_result(TOKEN)
    clock.now += 301  # past the 5-minute skew window: a reused signature would be rejected
    await client.get_result(TOKEN)
    first, second = sent(mocked)
    assert first["headers"]["X-TC-Timestamp"] == str(int(NOW))
    assert second["headers"]["X-TC-Timestamp"] == str(int(NOW) + 301)
    assert first["headers"]["Authorization"] != second["headers"]["Authorization"]
    check_signature(first, settings, int(NOW))
    check_signature(second, settings, int(NOW) + 301)


async def test_api_error_is_a_reply_not_a_fault(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    mocked.post(
        URL,
        body=dumps(api_error("RequestLimitExceeded", "slow down")),
        content_type="application/json; charset=utf-8",
    )
    reply = await FaceIdClient(session, make_settings()).get_result(TOKEN)
    assert reply.error == ApiError("RequestLimitExceeded", "slow down")
    assert len(sent(mocked)) == 1


async def test_api_error_with_html_content_type_is_still_read(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    mocked.post(URL, body=dumps(api_error("InternalError")), content_type="text/html")
    reply = await FaceIdClient(session, make_settings()).get_result(TOKEN)
    assert reply.error == ApiError("InternalError", "message")


@pytest.mark.parametrize(
    ("status", "body"),
    [(502, "<html>Bad Gateway</html>"), (503, ""), (404, "nope"), (429, "slow")],
)
async def test_http_status_faults(
    mocked: aioresponses, session: aiohttp.ClientSession, status: int, body: str
) -> None:
    mocked.post(URL, status=status, body=body, content_type="text/html")
    client = FaceIdClient(session, make_settings())
    with pytest.raises(TransportFault) as info:
        await client.get_result(TOKEN)
    assert info.value.code == f"Transport.HTTP{status}"
    assert len(sent(mocked)) == 1


async def test_redirect_is_a_fault_and_not_followed(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    settings = make_settings(credentials=Credentials(SECRET_ID, SECRET_KEY, SESSION_TOKEN))
    mocked.post(URL, status=307, headers={"Location": "https://elsewhere.example/"})
    mocked.post("https://elsewhere.example/", payload=ok())
    with pytest.raises(TransportFault) as info:
        await FaceIdClient(session, settings).get_result(TOKEN)
    assert info.value.code == "Transport.HTTP307"
    assert list(mocked.requests) == [("POST", YURL(URL))]  # the session token stayed home


async def test_bad_body_through_the_client(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    mocked.post(URL, body=b"<html>maintenance</html>", content_type="text/html")
    with pytest.raises(TransportFault) as info:
        await FaceIdClient(session, make_settings()).get_result(TOKEN)
    assert info.value.code == "Transport.BadBody"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (TimeoutError(), "Transport.Timeout"),  # asyncio.TimeoutError is this class on 3.11+
        (aiohttp.ServerTimeoutError("read timed out"), "Transport.Timeout"),
        (aiohttp.ConnectionTimeoutError("connect timed out"), "Transport.Timeout"),
        (aiohttp.ServerDisconnectedError(), "Transport.Connection"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), "Transport.Connection"),
        (ConnectionResetError(104, "Connection reset by peer"), "Transport.Connection"),
        (ConnectionRefusedError(111, "refused"), "Transport.Connection"),
        (aiohttp.ClientConnectionError("gone"), "Transport.Connection"),
        (aiohttp.ClientPayloadError("Response payload is not completed"), "Transport.Truncated"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v,
)
async def test_transport_problems_are_mapped(
    mocked: aioresponses, session: aiohttp.ClientSession, exc: BaseException, code: str
) -> None:
    mocked.post(URL, exception=exc)
    client = FaceIdClient(session, make_settings(timeout=2.5))
    with pytest.raises(TransportFault) as info:
        await client.get_result(TOKEN)
    fault = info.value
    assert fault.code == code
    assert str(fault) == f"{code}: {fault.message}"
    assert fault.__cause__ is None  # `from None`: no chained traceback with request details
    if code == "Transport.Timeout":
        assert fault.message == "no answer within 2.5 s"
    else:
        assert fault.message.startswith(type(exc).__name__ + ": ")
    assert len(sent(mocked)) == 1


async def test_cancellation_is_not_turned_into_a_fault(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    mocked.post(URL, exception=asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await FaceIdClient(session, make_settings()).get_result(TOKEN)


async def test_body_over_the_cap_is_too_large(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    settings = make_settings(max_response_bytes=1024)
    big = dumps(ok(Extra="x" * 2000))
    mocked.post(URL, body=big)
    with pytest.raises(TransportFault) as info:
        await FaceIdClient(session, settings).get_result(TOKEN)
    assert info.value.code == "Transport.TooLarge"
    assert "1024" in info.value.message


async def test_body_exactly_at_the_cap_is_read(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    body = dumps(ok(Extra=""))
    body = body[:-2] + b" " * (1024 - len(body)) + body[-2:]
    assert len(body) == 1024
    mocked.post(URL, body=body)
    reply = await FaceIdClient(session, make_settings(max_response_bytes=1024)).get_result(TOKEN)
    assert reply.response["Result"] == "0"


async def test_scripted_server_sees_every_call(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    from tests.helpers import ScriptedServer

    server = ScriptedServer(
        {
            "a": [api_error("InternalError"), ok("0")],
            "b": [CallbackResult(status=502, body="bad gateway"), ok("2015")],
        }
    )
    mocked.post(URL, callback=server, repeat=True)
    client = FaceIdClient(session, make_settings())
    assert (await client.get_result("a")).error == ApiError("InternalError", "message")
    assert (await client.get_result("a")).response["Result"] == "0"
    with pytest.raises(TransportFault):
        await client.get_result("b")
    assert (await client.get_result("b")).response["Result"] == "2015"
    assert dict(server.calls) == {"a": 2, "b": 2}
    assert repr(client) == f"<FaceIdClient url={URL!r}>"


async def test_client_needs_credentials(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="no credentials"):
        FaceIdClient(session, replace(make_settings(), credentials=None))


# -- secrets -------------------------------------------------------------------------------------


async def test_secret_key_never_leaves_in_headers_faults_or_repr(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    settings = make_settings(credentials=Credentials(SECRET_ID, SECRET_KEY, SESSION_TOKEN))
    client = FaceIdClient(session, settings)
    mocked.post(URL, payload=ok())
    mocked.post(URL, exception=aiohttp.ClientOSError(104, "reset"))
    mocked.post(URL, status=502, body=b"bad")
    mocked.post(URL, body=b"{")
    faults: list[str] = []
    await client.get_result(TOKEN)
    for _ in range(3):
        with pytest.raises(TransportFault) as info:
            await client.get_result(TOKEN)
        faults.append(str(info.value))
        faults.append(repr(info.value))
    texts = [repr(client), repr(settings), *faults]
    for kwargs in sent(mocked):
        texts.extend(f"{k}: {v}" for k, v in kwargs["headers"].items())
        texts.append(kwargs["data"].decode())
    assert len(sent(mocked)) == 4
    for text in texts:
        assert SECRET_KEY not in text
    assert all(SESSION_TOKEN not in text for text in [repr(client), repr(settings), *faults])


# -- real sockets: a body cut short, and a body streamed over the cap -----------------------------


async def _raw_server(
    response: bytes, seen: list[bytes] | None = None
) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(head)
        writer.write(response)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_real_body_cut_short_is_truncated(session: aiohttp.ClientSession) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    server, endpoint = await _raw_server(head + b'{"Response": {"Res')
    async with server:
        client = FaceIdClient(session, make_settings(endpoint=endpoint))
        with pytest.raises(TransportFault) as info:
            await client.get_result(TOKEN)
    assert info.value.code == "Transport.Truncated"


async def test_real_streamed_body_over_the_cap_is_too_large(
    session: aiohttp.ClientSession,
) -> None:
    chunk = b"x" * 4096
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    server, endpoint = await _raw_server(head + body)
    async with server:
        client = FaceIdClient(session, make_settings(endpoint=endpoint, max_response_bytes=16_384))
        with pytest.raises(TransportFault) as info:
            await client.get_result(TOKEN)
    assert info.value.code == "Transport.TooLarge"


async def test_real_redirect_is_not_followed(session: aiohttp.ClientSession) -> None:
    seen_elsewhere: list[bytes] = []
    other, other_endpoint = await _raw_server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", seen_elsewhere
    )
    redirect = (
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: "
        + other_endpoint.replace("127.0.0.1", "localhost").encode()
        + b"/\r\nContent-Length: 0\r\n\r\n"
    )
    server, endpoint = await _raw_server(redirect)
    settings = make_settings(
        endpoint=endpoint, credentials=Credentials(SECRET_ID, SECRET_KEY, SESSION_TOKEN)
    )
    async with server, other:
        with pytest.raises(TransportFault) as info:
            await FaceIdClient(session, settings).get_result(TOKEN)
    assert info.value.code == "Transport.HTTP307"
    assert seen_elsewhere == []  # X-TC-Token was not handed to another host


# -- query: one request, one outcome ------------------------------------------------------------


async def test_query_turns_each_exchange_into_its_outcome(
    mocked: aioresponses, session: aiohttp.ClientSession
) -> None:
    mocked.post(URL, body=dumps(ok("0")), content_type="application/json")
    mocked.post(URL, body=dumps(api_error("RequestLimitExceeded", "slow down")))
    mocked.post(URL, status=502, body=b"bad gateway")
    mocked.post(URL, body=dumps(ok("-999")), content_type="application/json")
    client = FaceIdClient(session, make_settings(pending_codes=("-999",)))
    outcomes = [await client.query(TOKEN) for _ in range(4)]
    body = ok("0")["Response"]
    assert outcomes[0] == Settled(Status.PASSED, True, response=body, request_id=body["RequestId"])
    assert isinstance(outcomes[1], Throttled)
    assert isinstance(outcomes[2], Transient)  # a transport fault is an outcome, not raised
    assert outcomes[2].code == "Transport.HTTP502"
    assert isinstance(outcomes[3], Settled)
    assert outcomes[3].status is Status.PENDING  # the settings' pending codes are applied
    assert len(sent(mocked)) == 4
