"""The engine paced by the shared schedule (poller/pipeline/shared_pacing.py), on a real Redis.

A scripted client stands in for Tencent; the schedule is real (the tests start redis-server), so
these run on the wall clock at a high rate, where a slot is a few milliseconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from poller.api.reply import TransportFault
from poller.config.credentials import Credentials
from poller.config.settings import Settings
from poller.input.tokens import TokenEntry
from poller.output.sink import JsonlSink
from poller.pipeline.engine import Engine
from poller.pipeline.pacing import Pacer
from poller.pipeline.shared_pacing import SharedPacer
from poller.pipeline.stopping import StopLatch
from poller.quota.shared import Reservation, SharedQuota, Sleep, open_shared_quota
from tests.fake_api import FakeClient, FakeStep, Slow
from tests.helpers import SECRET_ID, SECRET_KEY, api_error, make_settings, ok
from tests.redis_server import RedisServer

RATE = 400.0  # 380/s paced: a slot every 2.6 ms


def entries(tokens: list[str]) -> list[TokenEntry]:
    return [TokenEntry(t, n, None) for n, t in enumerate(tokens, 1)]


def settings_for(url: str, **kw: object) -> Settings:
    values: dict[str, object] = {"rate": RATE, "concurrency": 8} | kw
    return make_settings(shared_quota=url, credentials=Credentials(SECRET_ID, SECRET_KEY), **values)


async def run_engine(
    tmp_path: Path, settings: Settings, client: FakeClient, tokens: list[str]
) -> tuple[Engine, list[dict[str, Any]]]:
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out))
    async with open_shared_quota(settings) as quota:
        engine = Engine(settings, client, sink, shared_quota=quota)
        await engine.run(entries(tokens))
    sink.close()
    return engine, [json.loads(line) for line in out.read_text().splitlines()]


async def test_every_attempt_takes_a_shared_slot(tmp_path: Path, redis_url: str) -> None:
    tokens = [f"tok-{n}" for n in range(60)]
    throttle = api_error("RequestLimitExceeded", "too many")
    scripts: dict[str, list[FakeStep]]
    scripts = {t: [TransportFault("Transport.HTTP503", "HTTP 503"), ok()] for t in tokens[:10]}
    scripts |= {t: [throttle, ok()] for t in tokens[10:15]}
    client = FakeClient(scripts, default=ok())
    engine, lines = await run_engine(tmp_path, settings_for(redis_url), client, tokens)
    assert isinstance(engine.pacer, SharedPacer)
    assert sorted(line["token"] for line in lines) == sorted(tokens)
    assert client.calls == engine.stats.requests == sum(line["attempts"] for line in lines)
    # One booking per request that left, in the shared schedule.
    quota = engine.pacer._quota
    # (A slot missed through the machine's own jitter is booked again, never sent late.)
    assert quota.reservations == client.calls + engine.pacer.rebooked
    # The throttles lowered the shared pace (reported with the next booking, once a second).
    assert engine.pacer.slowdowns == 1
    assert engine.pacer.rate == pytest.approx(RATE * 0.95 * 0.7, rel=1e-3)  # µs spacing
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(client.sent)]
    assert min(gaps) >= 0.75 / (RATE * 0.95) - 0.001


async def test_max_share_caps_this_runs_own_pace(tmp_path: Path, redis_url: str) -> None:
    settings = settings_for(redis_url, max_share=0.25)
    client = FakeClient({}, default=ok())
    tokens = [f"tok-{n}" for n in range(40)]
    engine, lines = await run_engine(tmp_path, settings, client, tokens)
    assert len(lines) == 40
    assert engine.pacer.target_rate == pytest.approx(RATE * 0.95 * 0.25)
    span = client.sent[-1][0] - client.sent[0][0]
    assert (len(client.sent) - 1) / span <= RATE * 0.95 * 0.25 * 1.05


async def test_redis_lost_for_good_stops_the_run_as_a_local_failure(
    tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    settings = settings_for(redis_url, shared_quota_timeout=0.3, rate=50.0, concurrency=2)
    tokens = [f"tok-{n}" for n in range(200)]
    killed: list[int] = []

    class KillsRedis(FakeClient):
        async def get_result(self, token: str):  # type: ignore[no-untyped-def]
            if self.calls == 20 and not killed:
                redis_server.kill()
                killed.append(self.calls)
            return await super().get_result(token)

    client = KillsRedis({}, default=Slow(0.01, ok()))
    engine, lines = await run_engine(tmp_path, settings, client, tokens)
    stats = engine.stats
    assert stats.exit_status() == 4
    assert stats.local_error is not None
    assert "unreachable" in stats.local_error
    # After the kill at most the slot already booked (one per process) went out.
    assert client.calls <= 21 + 1
    # Every request that went out has its line, each token once; the rest were not reached.
    assert len(lines) == client.calls == stats.requests
    assert len({line["token"] for line in lines}) == len(lines)


async def test_a_stop_while_waiting_for_a_shared_slot_sends_nothing_more(
    tmp_path: Path, redis_url: str
) -> None:
    settings = settings_for(redis_url, rate=20.0, concurrency=4)
    client = FakeClient({}, default=ok())
    tokens = [f"tok-{n}" for n in range(100)]
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out))
    async with SharedQuota(redis_url, 20.0, secret_id=SECRET_ID) as other:
        # Another poller booked a second of slots ahead: this run waits in the schedule.
        for _ in range(19):
            await other.reserve()
        async with open_shared_quota(settings) as quota:
            engine = Engine(settings, client, sink, shared_quota=quota)
            run = asyncio.create_task(engine.run(entries(tokens)))
            await asyncio.sleep(0.2)  # the run is asleep in the schedule (the moment to stop)
            engine.stop("SIGINT")
            await run
    sink.close()
    assert client.calls == 0
    assert engine.stats.stopped_by == "SIGINT"
    assert out.read_text() == ""


def test_the_guard_holds_even_when_the_schedule_goes_wrong() -> None:
    """A schedule gone wrong (its time set back by some other tool, say) says "now" to every
    booking, and this run's own pace is far above the shared one: this process's sends still
    stay 3/4 of the shared interval apart. (On the real clock: aiolimiter's own waits do not
    run on the tests' virtual-time loop.)"""

    class BrokenSchedule(SharedQuota):
        async def reserve(self, sleep: Sleep = asyncio.sleep) -> Reservation:
            self.reservations += 1
            now = time.monotonic()
            return Reservation(wait=0.0, pace=1.0, lowered=False, redis_time=now, due=now)

    stamps: list[float] = []

    async def main() -> None:
        stop = StopLatch()
        quota = BrokenSchedule("redis://127.0.0.1:1/0", 20.0, secret_id=SECRET_ID)
        pacer = SharedPacer(quota, Pacer(1000.0, stop=stop), stop=stop, on_lost=lambda _: None)

        async def worker() -> None:
            for _ in range(5):
                await pacer.acquire()
                stamps.append(asyncio.get_running_loop().time())

        await asyncio.gather(*(worker() for _ in range(4)))

    asyncio.run(main())
    assert len(stamps) == 20
    gaps = [b - a for a, b in itertools.pairwise(sorted(stamps))]
    assert min(gaps) >= 0.75 / 19.0 - 0.001


# -- found in review: a distant Redis, --max-share over short spans ------------------------------


async def test_a_distant_redis_does_not_cut_the_pace(
    tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    """50 ms each way to Redis, a slot every 53 ms: one booking at a time would halve the pace;
    a few bookings ahead keep it."""
    from tests.redis_server import DelayProxy

    async with DelayProxy(redis_server.port, 0.05) as proxy:
        settings = settings_for(f"redis://127.0.0.1:{proxy.port}/0", rate=20.0, concurrency=8)
        client = FakeClient({}, default=ok())
        tokens = [f"tok-{n}" for n in range(60)]
        _, lines = await run_engine(tmp_path, settings, client, tokens)
    assert len(lines) == 60
    stamps = [t for t, _ in client.sent]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert rate >= 0.9 * 19.0, rate
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.75 / 19.0 - 0.002


async def test_max_share_is_a_cap_over_short_spans_too(tmp_path: Path, redis_url: str) -> None:
    """Another poller holds the schedule for a second; when it frees, this run (max_share 0.3)
    must not spend the slots it waited for in a rush."""
    settings = settings_for(redis_url, rate=20.0, concurrency=8, max_share=0.3)
    client = FakeClient({}, default=ok())
    tokens = [f"tok-{n}" for n in range(14)]
    async with SharedQuota(redis_url, 20.0, secret_id=SECRET_ID) as other:
        for _ in range(19):
            await other.reserve()
        _, lines = await run_engine(tmp_path, settings, client, tokens)
    assert len(lines) == 14
    stamps = [t for t, _ in client.sent]
    # At most its share in any second, give or take the one request that follows a wait at
    # once (as after any pause of the local pacer); not the schedule's full pace.
    cap = math.ceil(0.3 * 19.0) + 1
    for start in stamps:
        in_window = sum(1 for t in stamps if start <= t < start + 1.0)
        assert in_window <= cap, (in_window, cap)
