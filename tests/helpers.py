"""Shared test helpers: settings builders, a scripted fake server, virtual time."""

from __future__ import annotations

import asyncio
import json
import selectors
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

from aioresponses import CallbackResult

from poller.config.credentials import Credentials
from poller.config.settings import Settings
from poller.pipeline.pacing import Pacer
from poller.quota.pace import PaceRule

T = TypeVar("T")

ENDPOINT = "https://faceid.intl.tencentcloudapi.com"
URL = ENDPOINT + "/"
SECRET_ID = "AKIDtestEXAMPLEid"
SECRET_KEY = "testSECRETkeyNEVERshown"


def make_settings(**overrides: Any) -> Settings:
    """Fast settings for unit tests: a high rate and millisecond backoffs, no real waiting."""
    base = Settings(
        endpoint=ENDPOINT,
        rate=10_000.0,
        concurrency=4,
        backoff_base=0.001,
        backoff_max=0.005,
        timeout=5.0,
        recheck_after=0.01,
        max_pending_wait=0.0,  # pending is reported at once unless a test asks for re-checks
        credentials=Credentials(SECRET_ID, SECRET_KEY),
    )
    return replace(base, **overrides)


def ok(result: str = "0", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Result": result,
        "Description": "success" if result == "0" else "failed",
        "ChargeCount": 1,
        "CardVerifyResults": [],
        "CompareResults": [],
        "Extra": "",
        "DeviceInfoLevel": "",
        "RequestId": "req-" + result,
    }
    body.update(fields)
    return {"Response": body}


def api_error(code: str, message: str = "message") -> dict[str, Any]:
    return {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "req-err"}}


Step = dict[str, Any] | CallbackResult | BaseException


class ScriptedServer:
    """Answers each token from its own script, in order; the last step repeats.

    Keyed by the token in the request body, so concurrent workers cannot steal each other's
    answers, and every call is recorded so a test can assert exactly what was sent.
    """

    def __init__(self, scripts: dict[str, list[Step]]) -> None:
        self.scripts = {token: deque(steps) for token, steps in scripts.items()}
        self.calls: dict[str, int] = defaultdict(int)
        self.headers: list[dict[str, str]] = []

    def __call__(self, url: Any, **kwargs: Any) -> CallbackResult:
        body = json.loads(kwargs["data"])
        token = body["SdkToken"]
        self.calls[token] += 1
        self.headers.append(dict(kwargs["headers"]))
        script = self.scripts.get(token)
        if not script:
            raise AssertionError(f"unexpected request for token {token!r}")
        step = script.popleft() if len(script) > 1 else script[0]
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, CallbackResult):
            return step
        return CallbackResult(status=200, payload=step)


class _AdvancingSelector(selectors.DefaultSelector):
    """Instead of sleeping until the next timer, jump the loop's virtual clock to it."""

    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        if timeout is not None and timeout > 0:
            self.loop.advance(timeout + self.loop.lag)
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: timers fire at once, in order, with exact timestamps.

    `lag` makes every wake-up that late, like a busy real loop, to test drift."""

    def __init__(self, lag: float = 0.0) -> None:
        self.now = 1000.0
        self.lag = lag
        selector = _AdvancingSelector()
        selector.loop = self
        super().__init__(selector=selector)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_virtual(factory: Callable[[], Awaitable[T]], lag: float = 0.0) -> T:
    loop = VirtualTimeLoop(lag)
    try:
        return loop.run_until_complete(factory())
    finally:
        loop.close()


def max_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """The most timestamps in any half-open window [t, t + window): what a strict server counts."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


async def acquire_many(pacer: Pacer, n: int, workers: int, stamps: list[float]) -> None:
    """`n` pacer slots taken by `workers` concurrent workers; each slot's loop time to `stamps`."""
    loop = asyncio.get_running_loop()
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            await pacer.acquire()
            stamps.append(loop.time())

    await asyncio.gather(*(worker() for _ in range(workers)))


def local_line(token: str, when: float, *, too_old: bool = True) -> bytes:
    """A line the poller writes without asking Tencent (attempts 0): `TokenTooOld` (final) for
    a token past its 72 h, `InvalidInput` (not final) for a bad input row."""
    from poller.api.outcomes import Status
    from poller.output.records import LOCAL_EXPIRY_CODE, ErrorInfo, build_record, encode_record

    record = build_record(
        token=token,
        status=Status.EXPIRED if too_old else Status.INVALID_TOKEN,
        final=too_old,
        attempts=0,
        checked_at=when,
        error=ErrorInfo(LOCAL_EXPIRY_CODE if too_old else "InvalidInput", "decided locally"),
    )
    return encode_record(record)


def slowed_pacer(target: float, rate: float, slowdowns: int = 1, below: float = 0.0) -> Pacer:
    """A pacer held at `rate` of its `target` since a throttle `below` seconds ago, on a clock
    that then stands still: what the progress line, the metrics and the summary show mid-run."""
    now = [0.0]
    pacer = Pacer(target, time_fn=lambda: now[0], rule=PaceRule(factor=rate / target, hold=1e6))
    pacer.on_throttle()
    now[0] = below
    pacer.slowdowns = slowdowns
    return pacer
