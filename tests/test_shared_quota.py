"""Several pollers, one account quota, one schedule in Redis (issue 12, SPEC §7).

The real `poller run` processes against the in-process simulator, which enforces a strict 20/s
window with latency and logs every arrival, and a real redis-server the tests start. Every test
holds each output line against what the simulator decided for its token.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from poller.quota.shared import SharedQuota
from poller.simulator import (
    DEMO_SECRET_ID,
    RunningSimulator,
    SimulatorConfig,
    running_simulator,
)
from tests.e2e import DEMO_ENV, records, start_poller
from tests.redis_server import RedisServer, free_port
from tests.simulator_support import query

PACED = 20 * 0.95  # the default pace under the 20/s quota


def strict(**kw: Any) -> SimulatorConfig:
    """A strict 20/s window, 40 ms of latency, no pending tokens (one request per token)."""
    return SimulatorConfig(
        rate=20.0, latency_ms=40.0, pending_share=0.0, request_log_size=10_000, **kw
    )


def write_tokens(path: Path, tokens: list[str]) -> str:
    path.write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return str(path)


def assert_lines_match_the_simulator(sim: RunningSimulator, out: Path, tokens: list[str]) -> None:
    """Every token exactly one line, final, saying what the simulator decided."""
    lines = records(out)
    assert sorted(line["token"] for line in lines) == sorted(tokens)
    for line in lines:
        decided = sim.decision(line["token"])
        assert line["status"] == decided.status, line["token"]
        assert line["final"] is True
        assert line["response"]["Result"] == decided.result


def arrivals(sim: RunningSimulator) -> list[float]:
    return [e.arrived for e in sim.request_log() if e.action == "GetSdkVerificationResult"]


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    _, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


async def lines_written(path: Path, n: int) -> None:
    """Until the run has written `n` lines: the moment a test acts on (bounded by a timeout)."""
    async with asyncio.timeout(60):
        while count_lines(path) < n:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def count_lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def run_args(sim: RunningSimulator, tokens: str, output: Path, *extra: str) -> list[str]:
    return [
        "run", "--tokens", tokens, "--output", str(output), "--endpoint", sim.endpoint, *extra,
    ]  # fmt: skip


async def test_three_runs_on_one_key_share_the_quota_without_a_throttle(
    tmp_path: Path, redis_url: str
) -> None:
    async with running_simulator(strict(seed=12)) as sim:
        batches = [sim.mint(50) for _ in range(3)]
        procs = [
            await start_poller(
                *run_args(
                    sim,
                    write_tokens(tmp_path / f"tokens-{n}.txt", batch),
                    tmp_path / f"out-{n}.jsonl",
                    "--shared-quota",
                    redis_url,
                ),
            )
            for n, batch in enumerate(batches)
        ]
        finished = await asyncio.gather(*(finish(p) for p in procs))
        stats = sim.stats()
        seen = arrivals(sim)
    for status, err in finished:
        assert status == 0, err
        assert err.count("one schedule shared through redis://127.0.0.1") == 1  # said once
    for n, batch in enumerate(batches):
        assert_lines_match_the_simulator(sim, tmp_path / f"out-{n}.jsonl", batch)
    assert stats["throttled"] == 0
    assert stats["max_in_window"] <= 20
    assert len(seen) == 150  # one request per token: nothing retried, nothing lost
    # Together they used the paced rate, not a third of it each (nor three times it).
    rate = (len(seen) - 1) / (seen[-1] - seen[0])
    assert rate >= 0.9 * PACED, rate


async def test_redis_lost_mid_run_stops_with_exit_4_and_the_rerun_completes(
    tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    async with running_simulator(strict(seed=13)) as sim:
        tokens = sim.mint(120)
        path = write_tokens(tmp_path / "tokens.txt", tokens)
        out = tmp_path / "out.jsonl"
        args = run_args(sim, path, out, "--shared-quota", redis_url, "--shared-quota-timeout", "1s")
        proc = await start_poller(*args)
        assert proc.stderr is not None
        # Kill Redis once the run is under way (its lines are being written).
        await lines_written(out, 10)
        redis_server.kill()
        killed_at_requests = len(arrivals(sim))
        status, err = await finish(proc)
        sent_before_rerun = len(arrivals(sim))
        assert status == 4, err
        assert "shared quota's Redis at redis://127.0.0.1" in err
        assert "unreachable" in err
        assert err.count("Traceback") == 0
        # Nothing left without a slot: at most the requests already booked (one per process)
        # and those on the wire went out after the kill.
        assert sent_before_rerun - killed_at_requests <= 2
        first = records(out)
        assert len({line["token"] for line in first}) == len(first)  # no token twice
        assert len(first) == sent_before_rerun  # every request that went out has its line
        # Redis back: the rerun resumes and completes.
        redis_server.start()
        rerun = await start_poller(*args)
        status, err = await finish(rerun)
        stats = sim.stats()
    assert status == 0, err
    assert_lines_match_the_simulator(sim, out, tokens)
    assert stats["throttled"] == 0
    assert stats["max_in_window"] <= 20


async def test_redis_back_within_the_timeout_brings_no_burst(
    tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    async with running_simulator(strict(seed=14)) as sim:
        tokens = sim.mint(80)
        out = tmp_path / "out.jsonl"
        args = run_args(
            sim,
            write_tokens(tmp_path / "tokens.txt", tokens),
            out,
            "--shared-quota",
            redis_url,
            "--shared-quota-timeout",
            "30s",
        )
        proc = await start_poller(*args)
        await lines_written(out, 10)
        redis_server.kill()
        sent_at_kill = len(arrivals(sim))
        await asyncio.sleep(1.0)  # the outage the run must sit out (this is the scenario)
        sent_during_outage = len(arrivals(sim)) - sent_at_kill
        redis_server.start()
        status, err = await finish(proc)
        stats = sim.stats()
        seen = arrivals(sim)
    assert status == 0, err
    assert "is back after" in err
    assert sent_during_outage <= 2  # a booked slot and a request on the wire, no more
    assert_lines_match_the_simulator(sim, out, tokens)
    assert stats["throttled"] == 0
    assert stats["max_in_window"] <= 20
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert min(gaps) >= 0.75 / PACED - 0.01  # the guard's spacing, give or take the network leg


async def test_redis_unreachable_at_start_is_exit_2_in_one_sentence(tmp_path: Path) -> None:
    async with running_simulator(strict()) as sim:
        tokens = sim.mint(5)
        out = tmp_path / "out.jsonl"
        url = f"redis://:pass-word-hidden@127.0.0.1:{free_port()}/0"
        proc = await start_poller(
            *run_args(sim, write_tokens(tmp_path / "t.txt", tokens), out, "--shared-quota", url)
        )
        status, err = await finish(proc)
        sent = sim.stats()["requests"]
    assert status == 2
    assert sent == 0
    assert "pass-word-hidden" not in err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("poller: error:")]
    assert len(errors) == 1
    assert "cannot be reached" in errors[0]
    assert f"redis://127.0.0.1:{url.rsplit(':', 1)[1]}" in errors[0]


async def test_a_password_never_shows_even_at_vv(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with RedisServer(
        tmp_path_factory.mktemp("redis-pw"), password="pw-should-stay-hidden"
    ) as server:
        async with running_simulator(strict()) as sim:
            tokens = sim.mint(10)
            out = tmp_path / "out.jsonl"
            metrics = tmp_path / "metrics.prom"
            proc = await start_poller(
                *run_args(sim, write_tokens(tmp_path / "t.txt", tokens), out),
                "--shared-quota",
                server.url,
                "--metrics-file",
                str(metrics),
                "-vv",
            )
            status, err = await finish(proc)
    assert status == 0, err
    assert "one schedule shared through redis://127.0.0.1" in err
    for text in (err, out.read_text(), metrics.read_text()):
        assert "pw-should-stay-hidden" not in text


async def _live_backend(
    sim: RunningSimulator, url: str, tokens: list[str], sent: list[float], stop: asyncio.Event
) -> None:
    """The app backend's live calls, taking their slots from the same key as the poller."""
    async with (
        SharedQuota(url, 20.0, secret_id=DEMO_SECRET_ID) as quota,
        aiohttp.ClientSession() as session,
    ):
        for token in itertools.cycle(tokens):
            if stop.is_set():
                return
            await quota.acquire()
            sent.append(asyncio.get_running_loop().time())
            reply = await query(session, sim.endpoint, token, timestamp=time.time())
            assert reply.error_code is None


async def test_max_share_leaves_room_for_a_live_backend_on_the_same_key(
    tmp_path: Path, redis_url: str
) -> None:
    async with running_simulator(strict(seed=15)) as sim:
        tokens = sim.mint(60)
        live_tokens = sim.mint(5)
        out = tmp_path / "out.jsonl"
        proc = await start_poller(
            *run_args(sim, write_tokens(tmp_path / "t.txt", tokens), out),
            "--shared-quota",
            redis_url,
            "--max-share",
            "0.5",
        )
        live: list[float] = []
        stop = asyncio.Event()
        backend = asyncio.create_task(_live_backend(sim, redis_url, live_tokens, live, stop))
        status, err = await finish(proc)
        stop.set()
        await backend
        stats = sim.stats()
        log = sim.request_log()
    ours = set(tokens)
    poller_arrivals = [e.arrived for e in log if e.token in ours]
    first, last = poller_arrivals[0], poller_arrivals[-1]
    live_arrivals = [e.arrived for e in log if e.token not in ours and first <= e.arrived <= last]
    assert status == 0, err
    assert_lines_match_the_simulator(sim, out, tokens)
    assert stats["throttled"] == 0
    assert stats["max_in_window"] <= 20  # together, never over the window
    assert live  # the backend did take slots
    # While the poller ran, each got about half of the paced rate: the poller no more than its
    # share, the backend the rest.
    span = last - first
    poller_rate = (len(poller_arrivals) - 1) / span
    live_rate = len(live_arrivals) / span
    # The poller took about its half and no more; the backend got the rest.
    print(f"poller {poller_rate:.2f}/s, live backend {live_rate:.2f}/s")
    assert 0.40 * PACED <= poller_rate <= 0.5 * PACED * 1.02, poller_rate
    assert live_rate >= 0.40 * PACED, live_rate
    assert poller_rate + live_rate <= PACED * 1.02


async def test_two_runs_without_redis_are_told_they_compete(tmp_path: Path) -> None:
    async with running_simulator(SimulatorConfig(rate=200.0, pending_share=0.0)) as sim:
        slow_tokens, quick_tokens = sim.mint(400), sim.mint(5)
        first_out = tmp_path / "first.jsonl"
        env = {**DEMO_ENV, "XDG_RUNTIME_DIR": str(tmp_path)}
        # A long run that takes half the quota.
        first = await start_poller(
            *run_args(sim, write_tokens(tmp_path / "a.txt", slow_tokens), first_out),
            "--max-share",
            "0.5",
            env=env,
        )
        # It registered before its first request: wait for its first line.
        await lines_written(first_out, 1)
        quick = write_tokens(tmp_path / "b.txt", quick_tokens)
        # A second run that wants the whole quota competes with it, and is told (not refused).
        second = await start_poller(*run_args(sim, quick, tmp_path / "b.jsonl"), env=env)
        status, err = await finish(second)
        # A third one that takes the other half is left in peace.
        third = await start_poller(
            *run_args(sim, quick, tmp_path / "c.jsonl"), "--max-share", "0.5", env=env
        )
        third_status, third_err = await finish(third)
        first.terminate()
        await finish(first)
    assert status == 0, err
    warnings = [line for line in err.splitlines() if "compete" in line]
    assert len(warnings) == 1
    assert f"pid {first.pid}" in warnings[0]
    assert "first.jsonl" in warnings[0]
    assert "--shared-quota" in warnings[0]
    assert "--max-share" in warnings[0]
    assert DEMO_SECRET_ID not in err
    assert third_status == 0, third_err
    assert "compete" not in third_err


async def test_the_dry_run_checks_the_shared_quota_as_the_run_would(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with RedisServer(tmp_path_factory.mktemp("redis-plan"), password="plan-pw-hidden") as server:
        tokens = write_tokens(tmp_path / "t.txt", ["a", "b", "c"])
        out = tmp_path / "out.jsonl"
        base = ["run", "--tokens", tokens, "--output", str(out), "--dry-run", "--max-share", "0.5"]
        proc = await start_poller(*base, "--shared-quota", server.url)
        out_text, err_bytes = await asyncio.wait_for(proc.communicate(), timeout=60)
        plan, err = out_text.decode(), err_bytes.decode()
        assert proc.returncode == 0, err
        assert f"shared quota: redis://127.0.0.1:{server.port}/0 answers" in plan
        assert "pacing 9.50 req/s" in plan  # this run's share of the paced quota
        assert "plan-pw-hidden" not in plan + err
        server.kill()
        proc = await start_poller(*base, "--shared-quota", server.url)
        status, err = await finish(proc)
    assert status == 2
    assert "cannot be reached" in err
    assert "plan-pw-hidden" not in err
    assert not out.exists()


# -- found in review ----------------------------------------------------------------------------


async def test_three_runs_survive_a_lost_schedule_without_a_burst(
    tmp_path: Path, redis_url: str
) -> None:
    """FLUSHALL mid-run (as a Redis restart without persistence): the slots the runs had booked
    from the lost schedule are still ahead, and the new schedule must start after them."""
    import redis

    async with running_simulator(strict(seed=16)) as sim:
        batches = [sim.mint(40) for _ in range(3)]
        outs = [tmp_path / f"out-{n}.jsonl" for n in range(3)]
        procs = [
            await start_poller(
                *run_args(
                    sim,
                    write_tokens(tmp_path / f"tokens-{n}.txt", batch),
                    outs[n],
                    "--shared-quota",
                    redis_url,
                ),
            )
            for n, batch in enumerate(batches)
        ]
        await lines_written(outs[0], 8)
        server = redis.Redis.from_url(redis_url)
        server.flushall()
        await lines_written(outs[1], 20)
        server.flushall()
        server.close()
        finished = await asyncio.gather(*(finish(p) for p in procs))
        stats = sim.stats()
    for status, err in finished:
        assert status == 0, err
    for out, batch in zip(outs, batches, strict=True):
        assert_lines_match_the_simulator(sim, out, batch)
    assert stats["throttled"] == 0
    assert stats["max_in_window"] <= 20


async def test_fresh_force_leaves_the_output_alone_when_redis_is_unreachable(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.jsonl"
    kept = '{"token":"a","status":"passed","final":true,"attempts":1}\n'
    out.write_text(kept)
    proc = await start_poller(
        "run", "--tokens", write_tokens(tmp_path / "t.txt", ["a", "b"]), "--output", str(out),
        "--endpoint", "http://127.0.0.1:9", "--fresh", "--force",
        "--shared-quota", f"redis://127.0.0.1:{free_port()}/0",
    )  # fmt: skip
    status, err = await finish(proc)
    assert status == 2, err
    assert "cannot be reached" in err
    assert out.read_text() == kept
