"""The engine paced by the shared schedule (poller/pipeline/shared_pacing.py), on a real Redis.

A scripted client stands in for Tencent; the schedule is real (the tests start redis-server), so
these run on the wall clock at a high rate, where a slot is a few milliseconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from poller.api.reply import TransportFault
from poller.config.credentials import Credentials
from poller.config.settings import Settings
from poller.input.tokens import TokenEntry
from poller.output.sink import JsonlSink
from poller.pipeline.engine import Engine
from poller.pipeline.shared_pacing import SharedPacer
from poller.quota.shared import SharedQuota, open_shared_quota
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
    assert quota.reservations == client.calls
    # The throttles lowered the shared pace (reported with the next booking, once a second).
    assert engine.pacer.slowdowns == 1
    assert engine.pacer.rate == pytest.approx(RATE * 0.95 * 0.7)
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


async def test_the_guard_holds_even_when_the_schedule_goes_wrong(
    tmp_path: Path, redis_url: str
) -> None:
    """Workers queue for the booking while another poller's backlog holds the schedule; then
    the key is deleted before every booking (a broken schedule), so each queued worker is told
    "now". This process's sends still stay 3/4 of an interval apart: no burst."""
    import redis

    settings = settings_for(redis_url, rate=20.0, concurrency=8)
    server = redis.Redis.from_url(redis_url)

    class DeletesTheKey(FakeClient):
        async def get_result(self, token: str):  # type: ignore[no-untyped-def]
            for key in server.keys("faceid-poller:quota:*"):
                server.delete(key)
            return await super().get_result(token)

    client = DeletesTheKey({}, default=ok())
    tokens = [f"tok-{n}" for n in range(12)]
    async with SharedQuota(redis_url, 20.0, secret_id=SECRET_ID) as other:
        for _ in range(19):  # a second of slots booked ahead by another poller
            await other.reserve()
        _, lines = await run_engine(tmp_path, settings, client, tokens)
    assert len(lines) == 12
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(client.sent)]
    assert min(gaps) >= 0.75 / 19.0 - 0.002
