"""Helpers shared by the simulator tests: a fake clock and a hand-signed API call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from poller.api.signing import sign
from poller.simulator import DEMO_SECRET_ID, DEMO_SECRET_KEY

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a fixed, round "now" for injected clocks
RESULT = "GetSdkVerificationResult"
APPLY = "ApplySdkVerificationToken"


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    text: str

    @property
    def response(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.text)
        response: dict[str, Any] = document["Response"]
        return response

    @property
    def error_code(self) -> str | None:
        error = self.response.get("Error")
        return None if error is None else str(error["Code"])


async def call(
    session: aiohttp.ClientSession,
    endpoint: str,
    action: str,
    payload: dict[str, Any] | bytes,
    *,
    timestamp: float,
    secret_id: str = DEMO_SECRET_ID,
    secret_key: str = DEMO_SECRET_KEY,
    region: str | None = "ap-singapore",
    version: str | None = "2018-03-01",
    path: str = "/",
    authorization: str | None = None,
    client_timeout_s: float = 30.0,
) -> Reply:
    """One signed API call, every header under the test's control."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    host = urlsplit(endpoint).netloc
    ts = int(timestamp)
    signature = sign(
        secret_id=secret_id,
        secret_key=secret_key,
        service="faceid",
        host=host,
        timestamp=ts,
        payload=body,
    )
    headers = {
        "Authorization": signature.authorization if authorization is None else authorization,
        "Content-Type": "application/json",
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Timestamp": str(ts),
    }
    if region is not None:
        headers["X-TC-Region"] = region
    if version is not None:
        headers["X-TC-Version"] = version
    client_timeout = aiohttp.ClientTimeout(total=client_timeout_s)
    async with session.post(
        endpoint + path, data=body, headers=headers, timeout=client_timeout
    ) as resp:
        text = await resp.text()
        return Reply(resp.status, resp.headers.get("Content-Type", ""), text)


async def query(
    session: aiohttp.ClientSession, endpoint: str, token: str, *, timestamp: float
) -> Reply:
    return await call(session, endpoint, RESULT, {"SdkToken": token}, timestamp=timestamp)


async def apply(
    session: aiohttp.ClientSession, endpoint: str, *, timestamp: float, **params: Any
) -> str:
    reply = await call(session, endpoint, APPLY, params, timestamp=timestamp)
    token: str = reply.response["SdkToken"]
    return token


def without_link_queries(response: dict[str, Any]) -> dict[str, Any]:
    """`response` with every FileInfo Url cut before its query: each answer signs its links
    afresh (expiry and signature change, SPEC §8), while the file they name stays the same."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Url", "MD5", "Size"}:
                return {**value, "Url": urlunsplit(urlsplit(value["Url"])._replace(query=""))}
            return {key: strip(item) for key, item in value.items()}
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value

    stripped: dict[str, Any] = strip(response)
    return stripped
