"""The GCRA script (poller/quota/gcra.lua) against a real redis-server (SPEC §7).

No test here waits for a slot: reservations return at once (the wait is the caller's to sleep),
so a backlog of hundreds of slots is booked in milliseconds and their spacing read off the
replies. The schedule is Redis's: each reply carries Redis's TIME, and slot = that + wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import random
import subprocess
import sys
import time
from typing import Any

import pytest
import redis

from poller.quota.pace import PaceRule, PaceState
from poller.quota.shared import (
    RESET_GAP,
    Reservation,
    SharedQuota,
)

RULE = PaceRule()
SLOWDOWN_FACTOR = RULE.factor
MIN_PACE = RULE.floor
RATE = 20.0
MARGIN = 0.05
INTERVAL = 1 / (RATE * (1 - MARGIN))  # 1/19 s
US = 1e-6


ACCOUNT = "AKIDtestaccount0001"


def quota(url: str, secret_id: str = ACCOUNT, **kw: Any) -> SharedQuota:
    return SharedQuota(url, RATE, margin=MARGIN, secret_id=secret_id, **kw)


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
    # A new schedule starts RESET_GAP ahead (it cannot tell new from lost: see the reset test).
    assert slots[0] == pytest.approx(booked[0][0] + RESET_GAP, abs=2 * US)


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
    # A minute idle (another caller, who knows nothing of q's slots): the next slot is "now",
    # the one after a full interval later.
    async with quota(redis_url) as later:
        a, b = await later.reserve(), await later.reserve()
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
    async with quota(redis_url, rule=PaceRule(cooldown=0.0, hold=100.0)) as q:
        await q.reserve()
        for _ in range(20):
            q.throttled()
            r = await q.reserve()
    assert r.pace == pytest.approx(MIN_PACE)
    assert q.slowdowns == 20


async def test_recovery_is_shared_and_by_time(redis_url: str) -> None:
    """A throttle heard by A; B, who heard nothing, sees the pace held, then climbing back on
    Redis's clock (a short rule, so the test waits a fraction of a second)."""
    rule = PaceRule(hold=0.2, ramp=0.4)
    async with quota(redis_url, rule=rule) as a, quota(redis_url, rule=rule) as b:
        await a.reserve()
        a.throttled()
        lowered = await a.reserve()
        held = await b.reserve()
        await asyncio.sleep(rule.hold + rule.ramp / 2 - (held.redis_time - lowered.redis_time))
        climbing = await b.reserve()
        await asyncio.sleep(rule.ramp)
        back = await a.reserve()
    assert held.pace == pytest.approx(0.7)
    elapsed = climbing.redis_time - lowered.redis_time
    expected = 0.7 + 0.3 * (elapsed - rule.hold) / rule.ramp
    assert climbing.pace == pytest.approx(expected, abs=1e-6)
    assert 0.7 < climbing.pace < 1.0
    assert back.pace == 1.0


async def test_accounts_get_separate_schedules_keyed_by_a_hash(redis_url: str) -> None:
    secret_id = "AKIDsecretidthatmustnotshow"
    async with quota(redis_url, secret_id) as a, quota(redis_url, "AKIDanother") as b:
        for _ in range(5):
            await a.reserve()
        other = await b.reserve()
        server = redis.Redis.from_url(redis_url)
        keys = [k.decode() if isinstance(k, bytes) else str(k) for k in server.keys("*")]
        ttl = server.pttl(a.key)
    assert other.wait == pytest.approx(RESET_GAP, abs=2 * US)  # a's backlog is not b's
    assert a.key != b.key
    assert len(keys) == 2
    assert not any(secret_id in k for k in keys)
    # Kept a while past the last slot, never for ever.
    assert 86_390_000 < ttl <= 86_400_000 + RESET_GAP * 1000 + 5 * INTERVAL * 1000 + 1000


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
        before = await q.reserve()
        redis_server.kill()
        r = await q.reserve(sleep=sleep_then_restart)
        after = await q.reserve()
    assert restarted  # it did wait for Redis
    # A restarted Redis is empty: the schedule starts again past the reset gap (slots booked
    # from the lost one may still be ahead) and past this caller's own last slot.
    assert slot(r) >= r.redis_time + RESET_GAP - 2 * US
    assert slot(r) >= slot(before) + INTERVAL - 2 * US
    assert slot(after) - slot(r) == pytest.approx(INTERVAL, abs=2 * US)


async def test_a_password_protected_redis(tmp_path_factory: pytest.TempPathFactory) -> None:
    from poller.quota.shared import SharedQuotaUnavailable
    from tests.redis_server import RedisServer

    with RedisServer(
        tmp_path_factory.mktemp("redis-auth"), password="hunter2-very-secret"
    ) as server:
        async with quota(server.url) as q:
            assert (await q.reserve()).wait <= RESET_GAP
        wrong = server.url.replace("hunter2-very-secret", "not-the-password")
        with pytest.raises(SharedQuotaUnavailable) as caught:
            async with quota(wrong):
                pass
        assert "not-the-password" not in str(caught.value)
        assert "hunter2" not in str(caught.value)


# -- found in review: a lost schedule, Redis errors that pass, concurrency, timing ----------------


async def test_a_lost_schedule_restarts_past_the_slots_booked_from_it(redis_url: str) -> None:
    """FLUSHALL (or a restart without persistence) while callers hold slots booked ahead: the
    new schedule starts past the gap, and remembers the lowered pace its caller last saw."""
    server = redis.Redis.from_url(redis_url)
    async with quota(redis_url) as a, quota(redis_url) as b:
        await a.reserve()
        a.throttled()
        await a.reserve()  # pace 0.7
        held = [await b.reserve() for _ in range(3)]  # b holds slots up to ~0.3 s ahead
        server.flushall()
        fresh = await a.reserve()
    assert fresh.pace == pytest.approx(0.7)  # the lowered pace survives the loss
    assert slot(fresh) >= fresh.redis_time + RESET_GAP / 0.7 - 2 * US
    assert slot(fresh) > max(slot(r) for r in held)


async def test_the_strictest_quota_on_a_key_wins_and_is_said(
    redis_url: str, poller_log: object
) -> None:
    async with (
        SharedQuota(redis_url, 20.0, margin=MARGIN, secret_id=ACCOUNT) as slow,
        SharedQuota(redis_url, 40.0, margin=MARGIN, secret_id=ACCOUNT) as fast,
    ):
        await slow.reserve()
        first, second = await fast.reserve(), await fast.reserve()
    assert slot(second) - slot(first) == pytest.approx(INTERVAL, abs=2 * US)
    assert fast.interval == pytest.approx(INTERVAL, abs=1e-6)
    messages = poller_log.messages  # type: ignore[attr-defined]
    assert any("paces at 19.00 req/s, slower than this one's 38.00" in m for m in messages)


async def test_concurrent_bookings_report_a_throttle_once(redis_url: str) -> None:
    async with quota(redis_url) as q:
        await q.reserve()
        q.throttled()
        got = await asyncio.gather(*(q.reserve() for _ in range(10)))
    assert sum(r.lowered for r in got) == 1  # carried by one booking, not lost, not doubled
    assert q.slowdowns == 1
    assert not q._throttled


async def test_report_classifies_tencents_codes() -> None:
    q = quota("redis://127.0.0.1:6379/0")
    for code in ("RequestLimitExceeded", "RequestLimitExceeded.UinLimitExceeded",
                 "FailedOperation.RequestLimitExceeded"):  # fmt: skip
        q._throttled = False
        q.report(code)
        assert q._throttled, code
    q._throttled = False
    others: tuple[str | None, ...] = (
        "",
        None,
        "InternalError",
        "InvalidParameterValue.BizTokenExpired",
    )
    for other in others:
        q.report(other)
    assert not q._throttled


def test_misuse_is_one_sentence() -> None:
    from poller.errors import PollerError

    with pytest.raises(PollerError, match="finite rate"):
        SharedQuota("redis://127.0.0.1/0", float("inf"), secret_id=ACCOUNT)

    async def twice() -> None:
        q = quota("redis://127.0.0.1/0")
        with pytest.raises(PollerError, match="not open"):
            await q.reserve()

    asyncio.run(twice())


async def test_open_twice_is_refused(redis_url: str) -> None:
    from poller.errors import PollerError

    async with quota(redis_url) as q:
        with pytest.raises(PollerError, match="open already"):
            await q.open()


async def test_a_read_only_replica_is_refused_at_start_and_waited_out_mid_run(
    redis_server: object, redis_url: str
) -> None:
    from poller.quota.shared import SharedQuotaLost, SharedQuotaUnavailable
    from tests.redis_server import RedisServer, free_port

    assert isinstance(redis_server, RedisServer)
    admin = redis.Redis.from_url(redis_url)
    try:
        admin.replicaof("127.0.0.1", free_port())  # a replica of nobody: read-only
        with pytest.raises(SharedQuotaUnavailable, match="read-only replica"):
            async with quota(redis_url):
                pass
        admin.replicaof("NO", "ONE")
        async with quota(redis_url, timeout=0.5) as q:
            await q.reserve()
            admin.replicaof("127.0.0.1", free_port())  # a failover under way
            with pytest.raises(SharedQuotaLost, match="read-only replica"):
                await q.reserve()  # waited out to the timeout, not given up at once

            # Still down: a caller that goes on fails at once (the outage's timeout is spent).
            with pytest.raises(SharedQuotaLost):
                await q.reserve()
            admin.replicaof("NO", "ONE")  # the failover ends
            assert await q.reserve()  # a slot again, and the outage is over

            async def promote_then_sleep(delay: float) -> None:
                admin.replicaof("NO", "ONE")
                await asyncio.sleep(0)

            admin.replicaof("127.0.0.1", free_port())  # a new outage: a whole timeout again
            assert await q.reserve(sleep=promote_then_sleep)
    finally:
        admin.replicaof("NO", "ONE")
        admin.close()


async def test_a_user_who_may_not_run_scripts_is_refused_at_start(redis_url: str) -> None:
    from poller.quota.shared import SharedQuotaUnavailable

    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(
        "limited", enabled=True, passwords=["+limited-pass-123"], keys=["*"],
        commands=["+ping", "+client", "+hello", "+auth", "+select"],
    )  # fmt: skip
    try:
        url = redis_url.replace("redis://", "redis://limited:limited-pass-123@")
        with pytest.raises(SharedQuotaUnavailable) as caught:
            async with quota(url):
                pass
        assert "permissions to run the 'evalsha' command" in str(caught.value)
        assert "limited-pass-123" not in str(caught.value)
    finally:
        admin.acl_deluser("limited")
        admin.close()


async def test_a_hung_redis_is_given_up_on_within_the_timeout(
    redis_server: object, redis_url: str
) -> None:
    import signal

    from poller.quota.shared import SharedQuotaLost
    from tests.redis_server import RedisServer

    assert isinstance(redis_server, RedisServer)
    async with quota(redis_url, timeout=1.0) as q:
        await q.reserve()
        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)  # accepts, never answers
        try:
            started = asyncio.get_running_loop().time()
            with pytest.raises(SharedQuotaLost) as caught:
                await q.reserve()
            took = asyncio.get_running_loop().time() - started
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
    assert 1.0 <= took < 1.5  # the timeout, counted from the call that hung
    assert "unreachable for 1." in str(caught.value)


async def test_a_missing_password_is_said_plainly(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from poller.quota.shared import SharedQuotaUnavailable
    from tests.redis_server import RedisServer

    with RedisServer(tmp_path_factory.mktemp("redis-nopw"), password="needs-a-password") as server:
        with pytest.raises(SharedQuotaUnavailable, match="asks for a password"):
            async with quota(f"redis://127.0.0.1:{server.port}/0"):
                pass
        with pytest.raises(SharedQuotaUnavailable, match="refused the user name or password"):
            async with quota(f"redis://:wrong-password@127.0.0.1:{server.port}/0"):
                pass


async def test_tls_to_a_plain_port_gets_a_hint(redis_url: str) -> None:
    from poller.quota.shared import SharedQuotaUnavailable

    with pytest.raises(SharedQuotaUnavailable) as caught:
        async with quota(redis_url.replace("redis://", "rediss://"), timeout=1.0):
            pass
    assert "rediss:// speaks TLS" in str(caught.value) or "SSL" in str(caught.value)


async def test_the_script_and_the_python_rule_agree_on_the_same_events(redis_url: str) -> None:
    """gcra.lua computes the pace in Redis for shared pollers; poller/quota/pace.py for one.
    Random throttles (a short rule, so holds, climbs, doubled holds and resets all happen in
    a second or two): at every booking the script's pace is the Python rule's at Redis's time."""
    rule = PaceRule(cooldown=0.05, hold=0.05, ramp=0.1)
    rng = random.Random(7)
    state = PaceState(rule)
    async with quota(redis_url, rule=rule) as q:
        first = await q.reserve()
        t0 = first.redis_time
        for _ in range(80):
            throttle = rng.random() < 0.3
            if throttle:
                q.throttled()
            r = await q.reserve()
            now = r.redis_time - t0
            if throttle:
                assert r.lowered == state.on_throttle(now)
            # (The script keeps times in whole microseconds: agreement to 1e-5 of the pace.)
            assert r.pace == pytest.approx(state.pace_at(now), abs=1e-5), now
            await asyncio.sleep(rng.choice([0.0, 0.01, 0.03, 0.08]))
    assert state.hold > rule.hold or q.slowdowns > 3  # the sequence did exercise the rule


# -- found in review, round 2 ---------------------------------------------------------------------


async def test_a_stricter_callers_spacing_lapses_soon_after_it_stops(redis_url: str) -> None:
    async with (
        SharedQuota(redis_url, 2.0, margin=MARGIN, secret_id=ACCOUNT) as slow,
        quota(redis_url) as fast,
    ):
        slow.strict_hold = fast.strict_hold = 0.3
        await slow.reserve()
        a, b = await fast.reserve(), await fast.reserve()
        assert slot(b) - slot(a) == pytest.approx(1 / 1.9, abs=2 * US)  # the slow one's spacing
        await asyncio.sleep(0.3 + slot(b) - b.redis_time)
        c, d = await fast.reserve(), await fast.reserve()
    assert slot(d) - slot(c) == pytest.approx(INTERVAL, abs=2 * US)  # its own again
    assert fast.interval == pytest.approx(INTERVAL, abs=1e-6)


async def test_concurrent_callers_in_an_outage_all_fail_within_the_timeout(
    redis_server: object, redis_url: str
) -> None:
    from poller.quota.shared import SharedQuotaLost
    from tests.redis_server import RedisServer

    assert isinstance(redis_server, RedisServer)
    loop = asyncio.get_running_loop()
    async with quota(redis_url, timeout=0.5) as q:
        await q.reserve()
        redis_server.kill()
        started = loop.time()

        async def late_caller(delay: float) -> float:
            await asyncio.sleep(delay)
            with pytest.raises(SharedQuotaLost):
                await q.reserve()
            return loop.time() - started

        ended = await asyncio.gather(*(late_caller(0.1 * n) for n in range(6)))
    assert max(ended) < 0.5 + 0.3  # not one timeout after another


async def test_a_slot_from_a_lost_schedule_is_no_longer_current(redis_url: str) -> None:
    server = redis.Redis.from_url(redis_url)
    async with quota(redis_url) as a, quota(redis_url) as b:
        held = await a.reserve()
        assert a.is_current(held)
        server.flushall()
        await b.reserve()  # makes the new schedule
        await a.reserve()  # a learns of it
    assert not a.is_current(held)
    assert not a.still_good(held)


async def test_a_missed_slot_is_stale(redis_url: str) -> None:
    async with quota(redis_url) as q:
        r = await q.reserve()
        assert q.still_good(dataclasses.replace(r, due=time.monotonic()))
        late = time.monotonic() - (0.5 * INTERVAL + 0.005)
        assert not q.still_good(dataclasses.replace(r, due=late))


async def test_the_restart_gap_is_bounded_at_a_lowered_pace(redis_url: str) -> None:
    server = redis.Redis.from_url(redis_url)
    async with quota(redis_url, rule=PaceRule(cooldown=0.0, hold=100.0)) as q:
        await q.reserve()
        for _ in range(12):
            q.throttled()
            await q.reserve()
        assert q.pace == pytest.approx(MIN_PACE)
        server.flushall()
        q._known_tat = 0  # its own slots long past: only the gap is left to wait
        fresh = await q.reserve()
    assert fresh.wait <= 3 * RESET_GAP + 1e-6  # not 1 s / 0.05 = 20 s


def test_short_passwords_do_not_mangle_messages() -> None:
    q = quota("redis://:1@127.0.0.1:6379/0")
    assert q._scrub(OSError("Error 111 connecting to 127.0.0.1:6379")) == (
        "Error 111 connecting to 127.0.0.1:6379"
    )
    long = quota("redis://:a-long-secret-here@127.0.0.1:6379/0")
    assert "a-long-secret-here" not in long._scrub(OSError("auth a-long-secret-here failed"))


async def test_a_wait_that_long_is_said(redis_url: str, poller_log: object) -> None:
    async with quota(redis_url) as q:
        first = await q.reserve()
        far = f"{(first.redis_time + 60) * 1e6:.0f}"
        redis.Redis.from_url(redis_url).hset(q.key, "tat", far)
        r = await q.reserve()
    assert r.wait > 50
    messages = poller_log.messages  # type: ignore[attr-defined]
    assert any("next slot is" in m and "s away" in m for m in messages)
