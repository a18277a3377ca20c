"""Mint tokens through signed ApplySdkVerificationToken calls, for demos and end-to-end tests.

Paced evenly (slot k is due at t0 + k / rate, never a burst) so it stays inside the quota window;
a `RequestLimitExceeded` that network jitter can still cause is waited out and retried a few
times, any other API error stops minting with `MintError`.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import aiohttp

from poller.api.signing import sign

from .config import ACTION_APPLY, API_VERSION, SERVICE

_THROTTLE_RETRIES = 5


class MintError(RuntimeError):
    """ApplySdkVerificationToken answered with an API error (or something that is not JSON)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"ApplySdkVerificationToken failed: {code}: {message}")
        self.code = code
        self.message = message


async def mint_tokens(
    session: aiohttp.ClientSession,
    endpoint: str,
    secret_id: str,
    secret_key: str,
    count: int,
    *,
    extra: str | None = None,
    rate: float = 20.0,
    region: str = "ap-singapore",
) -> list[str]:
    """Mint `count` tokens, one request every 1 / `rate` seconds; return them in order."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    host = urlsplit(endpoint).netloc
    payload = json.dumps({"Extra": extra} if extra is not None else {}).encode("utf-8")
    loop = asyncio.get_running_loop()
    start = loop.time()
    slot = 0
    tokens: list[str] = []
    while len(tokens) < count:
        for attempt in range(_THROTTLE_RETRIES + 1):
            delay = start + slot / rate - loop.time()
            slot += 1
            if delay > 0:
                await asyncio.sleep(delay)
            reply = await _apply(session, endpoint, host, payload, secret_id, secret_key, region)
            error = reply.get("Error")
            if not isinstance(error, dict):
                token = reply.get("SdkToken")
                if not isinstance(token, str) or not token:
                    raise MintError("MissingSdkToken", f"no SdkToken in {reply!r}")
                tokens.append(token)
                break
            code, message = str(error.get("Code")), str(error.get("Message"))
            if code != "RequestLimitExceeded" or attempt == _THROTTLE_RETRIES:
                raise MintError(code, message)
    return tokens


async def _apply(
    session: aiohttp.ClientSession,
    endpoint: str,
    host: str,
    payload: bytes,
    secret_id: str,
    secret_key: str,
    region: str,
) -> dict[str, object]:
    timestamp = int(time.time())
    signature = sign(
        secret_id=secret_id,
        secret_key=secret_key,
        service=SERVICE,
        host=host,
        timestamp=timestamp,
        payload=payload,
    )
    headers = {
        "Authorization": signature.authorization,
        "Content-Type": "application/json",
        "Host": host,
        "X-TC-Action": ACTION_APPLY,
        "X-TC-Version": API_VERSION,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Region": region,
    }
    async with session.post(endpoint.rstrip("/") + "/", data=payload, headers=headers) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise MintError(f"HTTP{resp.status}", text[:200])
    try:
        document = json.loads(text)
        reply = document["Response"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise MintError("BadResponse", f"not a FaceID response: {text[:200]!r}") from exc
    if not isinstance(reply, dict):
        raise MintError("BadResponse", f"not a FaceID response: {text[:200]!r}")
    return reply
