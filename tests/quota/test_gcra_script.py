"""The GCRA script (poller/quota/gcra.lua) against a real redis-server (SPEC §7).

No test here waits for a slot: reservations return at once (the wait is the caller's to sleep),
so a backlog of hundreds of slots is booked in milliseconds and their spacing read off the
replies. The schedule is Redis's: each reply carries Redis's TIME, and slot = that + wait.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time

import pytest
import redis

from poller.quota.shared import (
    MIN_PACE,
    SLOWDOWN_FACTOR,
    Reservation,
    SharedQuota,
)

RATE = 20.0
MARGIN = 0.05
INTERVAL = 1 / (RATE * (1 - MARGIN))  # 1/19 s
US = 1e-6


ACCOUNT = "AKIDtestaccount0001"


def quota(url: str, secret_id: str = ACCOUNT, **kw: float) -> SharedQuota:
    return SharedQuota(url, RATE, margin=MARGIN, secret_id=secret_id, **kw)  # type: ignore[arg-type]


def slot(r: Reservation) -> float:
    return r.redis_time + r.wait


HAMMER = """
import asyncio, json, sys
from poller.quota.shared import SharedQuota

async def main(url, n):
    async with SharedQuota(url, 20.0, secret_id="AKIDtestaccount0001") as quota:
        print("ready", flush=True)
        sys.stdin.readline()  # every process starts booking at the same moment
        for _ in range(n):
            r = await quota.reserve()
            print(json.dumps([r.redis_time, r.wait]), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_processes_hammering_one_key_get_slots_spaced_by_the_interval_in_booking_order(
    redis_url: str,
) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, redis_url, "60"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in processes:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
    for p in processes:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    booked: list[tuple[float, float, int]] = []
    for n, p in enumerate(processes):
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        booked += [(*json.loads(line), n) for line in out.splitlines()]
    assert len(booked) == 240
    # Booking order is the order Redis ran the script in: its TIME at each run.
    booked.sort()
    slots = [t + w for t, w, _ in booked]
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    # Never closer than the interval (to the microsecond the script rounds to), and, as every
    # booking came while the schedule was ahead of Redis's clock, exactly the interval.
    assert min(gaps) >= INTERVAL - 2 * US
    assert max(gaps) <= INTERVAL + 2 * US
    # The processes did interleave: the schedule was shared, not handed out per process.
    assert len({n for _, _, n in booked[:40]}) > 1
    assert slots[0] == pytest.approx(booked[0][0], abs=2 * US)  # the first slot is "now"


async def test_the_schedule_follows_redis_clock_not_the_callers(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = redis.Redis.from_url(redis_url)
    try:
        async with quota(redis_url) as q:
            # Book a slot 3 s ahead on Redis's clock by hand: the next caller must wait for it.
            seconds, micros = server.time()
            redis_now = seconds + micros * US
            server.hset(q.key, mapping={"tat": f"{(redis_now + 3.0) * 1e6:.0f}"})
            # This caller's own clock is an hour fast: it must not matter.
            real_time = time.time
            monkeypatch.setattr(time, "time", lambda: real_time() + 3600.0)
            r = await q.reserve()
            after_s, after_us = server.time()
        assert redis_now <= r.redis_time <= after_s + after_us * US
        assert slot(r) == pytest.approx(redis_now + 3.0, abs=2 * US)
        assert 2.9 < r.wait <= 3.0
    finally:
        server.close()


async def test_an_idle_schedule_saves_up_no_burst(redis_url: str) -> None:
    async with quota(redis_url) as q:
        first = await q.reserve()
        redis.Redis.from_url(redis_url).hset(q.key, "tat", f"{(first.redis_time - 60) * 1e6:.0f}")
        # A minute idle: the next slot is "now", the one after a full interval later.
        a, b = await q.reserve(), await q.reserve()
    assert a.wait == 0.0
    assert slot(b) - slot(a) == pytest.approx(INTERVAL, abs=2 * US)


async def test_a_throttle_heard_by_one_caller_slows_every_caller(redis_url: str) -> None:
    async with quota(redis_url) as a, quota(redis_url) as b:
        await a.reserve()
        a.throttled()
        lowered = await a.reserve()
        assert lowered.lowered
        assert lowered.pace == pytest.approx(SLOWDOWN_FACTOR)
        first, second = await b.reserve(), await b.reserve()
        # B heard nothing itself, yet its slots are spaced at the lowered pace.
        assert b.pace == pytest.approx(SLOWDOWN_FACTOR)
        assert slot(second) - slot(first) == pytest.approx(INTERVAL / SLOWDOWN_FACTOR, abs=3 * US)
        # Within the cooldown a second report (the same throttle seen by another request in
        # flight) lowers nothing more, whoever sends it.
        b.throttled()
        again = await b.reserve()
        assert not again.lowered
        assert again.pace == pytest.approx(SLOWDOWN_FACTOR)
        assert (a.slowdowns, b.slowdowns) == (1, 0)


async def test_the_pace_never_falls_below_the_floor(redis_url: str) -> None:
    async with quota(redis_url) as q:
        server = redis.Redis.from_url(redis_url)
        await q.reserve()
        for _ in range(20):
            server.hset(q.key, "slowed", "0")  # as if the cooldown had passed
            q.throttled()
            r = await q.reserve()
        assert r.pace == pytest.approx(MIN_PACE)


async def test_recovery_is_shared_and_waits_for_the_hold(redis_url: str) -> None:
    server = redis.Redis.from_url(redis_url)
    async with quota(redis_url) as a, quota(redis_url) as b:
        await a.reserve()
        a.throttled()
        await a.reserve()  # pace 0.7, lowered just now
        for _ in range(10):
            b.answered()
        held = await b.reserve()
        assert held.pace == pytest.approx(0.7)  # within the hold: answers do not raise it yet
        # Past the hold (set back on Redis's clock), B's answers raise the pace for A too.
        seconds, micros = server.time()
        server.hset(a.key, "slowed", f"{(seconds - 6) * 1e6 + micros:.0f}")
        for _ in range(10):
            b.answered()
        await b.reserve()
        seen_by_a = await a.reserve()
    assert seen_by_a.pace == pytest.approx(0.7 + 10 / 1000)


async def test_accounts_get_separate_schedules_keyed_by_a_hash(redis_url: str) -> None:
    secret_id = "AKIDsecretidthatmustnotshow"
    async with quota(redis_url, secret_id) as a, quota(redis_url, "AKIDanother") as b:
        for _ in range(5):
            await a.reserve()
        other = await b.reserve()
        server = redis.Redis.from_url(redis_url)
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in server.keys("*")]
        ttl = server.pttl(a.key)
    assert other.wait == 0.0  # a's backlog is not b's
    assert a.key != b.key
    assert len(keys) == 2
    assert not any(secret_id in k for k in keys)
    # Kept a while past the last slot, never for ever.
    assert 590_000 < ttl <= 600_000 + 5 * INTERVAL * 1000 + 1000


async def test_unreachable_at_start_is_one_sentence_without_the_password() -> None:
    from poller.quota.shared import SharedQuotaUnavailable
    from tests.redis_server import free_port

    url = f"redis://:hunter2-very-secret@127.0.0.1:{free_port()}/0"
    with pytest.raises(SharedQuotaUnavailable) as caught:
        async with quota(url):
            pass
    message = str(caught.value)
    assert "hunter2" not in message
    assert f"redis://127.0.0.1:{url.rsplit(':', 1)[1]}" in message
    assert "\n" not in message
    assert message.endswith(".")


def test_repr_shows_no_password() -> None:
    q = quota("redis://:hunter2-very-secret@127.0.0.1:6379/0")
    assert "hunter2" not in repr(q)
    assert "hunter2" not in repr(q.address)
    assert "127.0.0.1:6379" in repr(q)


async def test_lost_redis_is_waited_for_then_given_up_on(
    redis_server: object, redis_url: str
) -> None:
    from poller.quota.shared import SharedQuotaLost
    from tests.redis_server import RedisServer

    assert isinstance(redis_server, RedisServer)
    async with quota(redis_url, timeout=0.3) as q:
        await q.reserve()
        redis_server.kill()
        started = asyncio.get_running_loop().time()
        with pytest.raises(SharedQuotaLost) as caught:
            await q.reserve()
        waited = asyncio.get_running_loop().time() - started
    assert 0.3 <= waited < 2.0
    assert "unreachable" in str(caught.value)


async def test_redis_back_within_the_timeout_resumes_the_schedule(
    redis_server: object, redis_url: str
) -> None:
    from tests.redis_server import RedisServer

    assert isinstance(redis_server, RedisServer)
    restarted: list[float] = []

    async def sleep_then_restart(delay: float) -> None:
        # The quota's reconnect backoff sleeps through this: the first one brings Redis back.
        if not restarted:
            redis_server.start()
            restarted.append(delay)
        await asyncio.sleep(0)

    async with quota(redis_url, timeout=30) as q:
        await q.reserve()
        redis_server.kill()
        r = await q.reserve(sleep=sleep_then_restart)
        after = await q.reserve()
    assert restarted  # it did wait for Redis
    # A restarted Redis is empty: the schedule starts afresh, one slot now, the next spaced.
    assert r.wait == 0.0
    assert slot(after) - slot(r) == pytest.approx(INTERVAL, abs=2 * US)


async def test_a_password_protected_redis(tmp_path_factory: pytest.TempPathFactory) -> None:
    from poller.quota.shared import SharedQuotaUnavailable
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis-auth"), password="hunter2-very-secret")
    server.start()
    try:
        async with quota(server.url) as q:
            assert (await q.reserve()).wait == 0.0
        wrong = server.url.replace("hunter2-very-secret", "not-the-password")
        with pytest.raises(SharedQuotaUnavailable) as caught:
            async with quota(wrong):
                pass
        assert "not-the-password" not in str(caught.value)
        assert "hunter2" not in str(caught.value)
    finally:
        server.kill()
