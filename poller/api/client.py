"""One API call: sign, send, and turn whatever comes back into a reply or a transport fault.

Pure parsing (`parse_reply`) is split from the aiohttp call so hostile bodies are tested
without a network. Every call is signed anew: a retry is a new request with a fresh
timestamp, so a slow retry never trips the 5-minute skew check (SPEC §1.1).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from poller.api.signing import sign
from poller.config.credentials import Credentials
from poller.config.settings import Settings

SERVICE = "faceid"
VERSION = "2018-03-01"
ACTION = "GetSdkVerificationResult"
CONTENT_TYPE = "application/json"  # exactly what is signed (SPEC §1)
# Real replies nest about 6 levels (Response > CardVerifyResults > [] > NormalCardInfo > ...).
# json.loads accepts nearly 1000 levels, but a reply that deep cannot be written back out
# (orjson writes at most 254 levels, json.dumps ~990; the output line adds one).
MAX_DEPTH = 100


@dataclass(frozen=True, slots=True)
class ApiError:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A well-formed answer: the `Response` object, and its `Error` when it is an API error."""

    response: dict[str, Any]
    error: ApiError | None

    @property
    def request_id(self) -> str | None:
        rid = self.response.get("RequestId")
        return rid if isinstance(rid, str) else None


class TransportFault(Exception):
    """Anything that is not a well-formed API answer; always worth another attempt."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def parse_reply(status: int, body: bytes) -> Reply:
    """Look for `Response.Error` whatever the Content-Type says (SPEC §1.2); else a fault."""
    if status != 200:
        snippet = body[:80].decode("utf-8", "replace").strip().replace("\n", " ")
        raise TransportFault(f"Transport.HTTP{status}", f"HTTP {status}: {snippet!r}")
    data = _loads(body)
    # Nesting n levels takes n opening brackets, so a body with at most MAX_DEPTH of them (a
    # real reply has ~22) needs no walk: counting bytes in C spares the walk's 4% of a run's
    # CPU (py-spy, `make bench`).
    if _opening_brackets(body) > MAX_DEPTH and _deeper_than(data, MAX_DEPTH):
        raise TransportFault("Transport.BadBody", f"the JSON body nests over {MAX_DEPTH} levels")
    response = data.get("Response") if isinstance(data, dict) else None
    if not isinstance(response, dict):
        raise TransportFault("Transport.BadBody", "the JSON body has no Response object")
    error = response.get("Error")
    if error is None:
        return Reply(response, None)
    if not isinstance(error, dict):
        raise TransportFault("Transport.BadBody", "Response.Error is not an object")
    code, message = error.get("Code"), error.get("Message")
    if not isinstance(code, str) or not code:
        raise TransportFault("Transport.BadBody", "Response.Error has no Code")
    return Reply(response, ApiError(code, message if isinstance(message, str) else ""))


def _loads(body: bytes) -> Any:
    """The parsed body, or a `Transport.BadBody` fault.

    The standard library, not orjson: it keeps integers beyond 64 bits exact (orjson turns them
    into floats, and the `response` of a line is the API's, unchanged: SPEC §4) and reads a
    UTF-8 BOM and lone surrogates such as "\\ud800", which orjson refuses. NaN, Infinity and a
    number too large for a float (`1e400`) are refused: none could be written back as JSON."""
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        # RecursionError: a deeply nested body must end as a fault, never as a crash.
        raise TransportFault(
            "Transport.BadBody", f"the body is not complete JSON ({len(body)} bytes)"
        ) from None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists/objects nest more than `limit` levels, counted one level at a time.

    Only containers go on to the next level, and the walk never goes past `limit` levels
    whatever the body holds."""
    depth = 0
    level = [value] if isinstance(value, (dict, list)) else []
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, (dict, list))
        ]
    return False


def _opening_brackets(body: bytes) -> int:
    return body.count(b"[") + body.count(b"{")


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON: accepting them would put non-JSON into the output lines.
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # `1e400`: no JSON form, a line would hold Infinity or null
        raise ValueError(f"{text} is too large for a float")
    return value


def build_headers(
    settings: Settings, credentials: Credentials, payload: bytes, timestamp: int
) -> dict[str, str]:
    signature = sign(
        secret_id=credentials.secret_id,
        secret_key=credentials.secret_key,
        service=SERVICE,
        host=settings.host,
        timestamp=timestamp,
        payload=payload,
        content_type=CONTENT_TYPE,
    )
    headers = {
        "Content-Type": CONTENT_TYPE,
        "Host": settings.host,
        "X-TC-Action": ACTION,
        "X-TC-Version": VERSION,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Region": settings.region,
        "Authorization": signature.authorization,
    }
    if credentials.session_token:
        headers["X-TC-Token"] = credentials.session_token  # sent, never signed
    if settings.language:
        headers["X-TC-Language"] = settings.language
    return headers


def encode_body(token: str) -> bytes:
    return json.dumps({"SdkToken": token}, separators=(",", ":")).encode("utf-8")


class FaceIdClient:
    """GetSdkVerificationResult over a shared aiohttp session."""

    __slots__ = ("_clock", "_settings", "_timeout", "_url", "session")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.credentials is None:
            raise ValueError("settings carry no credentials")
        self.session = session
        self._settings = settings
        self._url = settings.endpoint.rstrip("/") + "/"
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout)
        self._clock = clock

    async def get_result(self, token: str) -> Reply:
        settings = self._settings
        assert settings.credentials is not None  # checked in __init__
        payload = encode_body(token)
        headers = build_headers(settings, settings.credentials, payload, int(self._clock()))
        try:
            # No redirects: a 3xx is a transport fault (SPEC §1.2), and following one would
            # send X-TC-Token to whatever host the Location names.
            async with self.session.post(
                self._url,
                data=payload,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                body = await _read_capped(resp, settings.max_response_bytes)
                return parse_reply(resp.status, body)
        except TimeoutError:
            raise TransportFault(
                "Transport.Timeout", f"no answer within {settings.timeout:g} s"
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise TransportFault("Transport.Truncated", _describe(exc)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportFault("Transport.Connection", _describe(exc)) from None

    def __repr__(self) -> str:
        return f"<FaceIdClient url={self._url!r}>"


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """Read at most `cap` bytes: a hostile or broken server must not exhaust memory."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await resp.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            raise TransportFault("Transport.TooLarge", f"the body is over {cap} bytes")
        chunks.append(chunk)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
