"""One API call: sign, send, and return what the answer means for the token (one outcome).

The I/O only: parsing the body is poller/api/reply.py and deciding what it means is
poller/api/outcomes.py, both pure. Every call is signed anew: a retry is a new request with a
fresh timestamp, so a slow retry never trips the 5-minute skew check (SPEC §1.1).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import aiohttp

from poller.api.outcomes import Outcome, outcome_of
from poller.api.reply import Reply, TransportFault, parse_reply
from poller.api.signing import sign
from poller.config.credentials import Credentials
from poller.config.settings import Settings

SERVICE = "faceid"
VERSION = "2018-03-01"
ACTION = "GetSdkVerificationResult"
CONTENT_TYPE = "application/json"  # exactly what is signed (SPEC §1)


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

    __slots__ = ("_clock", "_settings", "_timeout", "_url", "pending_codes", "session")

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
        self.pending_codes = settings.pending_codes  # what `query` reads as "not finished"
        self._url = settings.endpoint.rstrip("/") + "/"
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout)
        self._clock = clock

    async def query(self, token: str) -> Outcome:
        """One request for `token`, and what its answer means (`outcome_of`): the one call the
        engine makes per attempt."""
        exchange: Reply | TransportFault
        try:
            exchange = await self.get_result(token)
        except TransportFault as fault:
            exchange = fault
        return outcome_of(exchange, self.pending_codes)

    async def get_result(self, token: str) -> Reply:
        """One signed request; its parsed answer, or a `TransportFault` for anything else."""
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
