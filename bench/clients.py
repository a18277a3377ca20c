"""The comparison clients of the CPU benchmark, each run in a process of its own.

    python -m bench.clients floor|sdk-threads|sdk-async --endpoint URL --tokens PATH

Each sends one GetSdkVerificationResult per token, `--concurrency` at a time, and prints one
JSON line:
`{"ok": n, "errors": n, "seconds": loop time, "first_error": "..."}`. Only what it needs is
imported, so each process's start-up cost is its own client's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ACTION = "GetSdkVerificationResult"
VERSION = "2018-03-01"
REGION = "ap-singapore"


@dataclass(slots=True)
class Tally:
    ok: int = 0
    errors: int = 0
    first_error: str = ""

    def add(self, error: str | None) -> None:
        if error is None:
            self.ok += 1
            return
        self.errors += 1
        self.first_error = self.first_error or error


def read_tokens(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


# -- the floor: bare aiohttp, no signing, no retries, no output ------------------------------------


async def floor(endpoint: str, tokens: Sequence[str], concurrency: int) -> Tally:
    """What any aiohttp client must pay: post the body, read the answer, look at it."""
    import aiohttp

    tally = Tally()
    url = endpoint + "/"
    headers = {
        "Content-Type": "application/json",
        "X-TC-Action": ACTION,
        "X-TC-Version": VERSION,
        "X-TC-Region": REGION,
    }
    queue: Iterator[str] = iter(tokens)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for token in queue:  # one shared iterator: each token is taken once
                body = json.dumps({"SdkToken": token}).encode()
                async with session.post(url, data=body, headers=headers) as resp:
                    document = json.loads(await resp.read())
                error = document["Response"].get("Error")
                tally.add(None if error is None else str(error.get("Code")))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


# -- the official SDK ------------------------------------------------------------------------------


def _sdk_profile(endpoint: str) -> Any:
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    host = urlsplit(endpoint).netloc
    return ClientProfile(httpProfile=HttpProfile(endpoint=host, protocol="http"))


def _sdk_credential() -> Any:
    """The demo pair, from the environment the benchmark sets (importing `poller.simulator`
    for it would add aiohttp.web to this process's start-up)."""
    from tencentcloud.common import credential

    return credential.Credential(
        os.environ["TENCENTCLOUD_SECRET_ID"], os.environ["TENCENTCLOUD_SECRET_KEY"]
    )


def sdk_threads(endpoint: str, tokens: Sequence[str], concurrency: int) -> Tally:
    """The sync `FaceidClient` from a thread pool; one client per thread (its best case: each
    keeps its own connection alive, where one shared client overflows requests' pool of 10)."""
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
        TencentCloudSDKException,
    )
    from tencentcloud.faceid.v20180301 import faceid_client, models

    local = threading.local()
    lock = threading.Lock()
    tally = Tally()

    def call(token: str) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = faceid_client.FaceidClient(
                _sdk_credential(), REGION, _sdk_profile(endpoint)
            )
        request = models.GetSdkVerificationResultRequest()
        request.SdkToken = token
        error: str | None = None
        try:
            client.GetSdkVerificationResult(request)
        except TencentCloudSDKException as exc:
            error = str(exc.code)
        with lock:
            tally.add(error)

    with ThreadPoolExecutor(concurrency) as pool:
        for _ in pool.map(call, tokens):
            pass
    return tally


async def sdk_async(endpoint: str, tokens: Sequence[str], concurrency: int) -> Tally:
    """The SDK's own async client (httpx underneath; it posts to `/?`), `concurrency` at once."""
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
        TencentCloudSDKException,
    )
    from tencentcloud.faceid.v20180301 import faceid_client_async, models

    tally = Tally()
    queue: Iterator[str] = iter(tokens)
    async with faceid_client_async.FaceidClient(
        _sdk_credential(), REGION, _sdk_profile(endpoint)
    ) as client:

        async def worker() -> None:
            for token in queue:
                request = models.GetSdkVerificationResultRequest()
                request.SdkToken = token
                error: str | None = None
                try:
                    await client.GetSdkVerificationResult(request)
                except TencentCloudSDKException as exc:
                    error = str(exc.code)
                tally.add(error)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


def _run(kind: str, endpoint: str, tokens: Sequence[str], concurrency: int) -> Tally:
    runners: dict[str, Callable[[], Tally]] = {
        "floor": lambda: asyncio.run(floor(endpoint, tokens, concurrency)),
        "sdk-threads": lambda: sdk_threads(endpoint, tokens, concurrency),
        "sdk-async": lambda: asyncio.run(sdk_async(endpoint, tokens, concurrency)),
    }
    return runners[kind]()


KINDS = ("floor", "sdk-threads", "sdk-async")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--tokens", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    tokens = read_tokens(args.tokens)
    started = time.perf_counter()
    tally = _run(args.kind, args.endpoint, tokens, args.concurrency)
    seconds = time.perf_counter() - started
    report = {
        "ok": tally.ok,
        "errors": tally.errors,
        "seconds": seconds,
        "first_error": tally.first_error,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
