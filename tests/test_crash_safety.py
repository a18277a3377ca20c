"""Killed and stopped runs lose nothing: the real `poller run` process against the simulator.

These tests wait for the subprocess by watching its output file grow (bounded polls of a
condition), never for a fixed amount of time.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from pathlib import Path

from poller.simulator import RunningSimulator, SimulatorConfig, running_simulator
from tests.e2e import mint, records, start_poller

CONCURRENCY = 8


async def _start(
    sim: RunningSimulator, tokens: Path, out: Path, rate: float
) -> asyncio.subprocess.Process:
    return await start_poller(
        "run",
        "--tokens",
        str(tokens),
        "--output",
        str(out),
        "--endpoint",
        sim.endpoint,
        "--rate",
        str(rate),
        "--concurrency",
        str(CONCURRENCY),
        "--max-pending-wait",
        "0",
        stdout=asyncio.subprocess.DEVNULL,
    )


def _count_lines(out: Path) -> int:
    try:
        return out.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


async def _wait_for_lines(out: Path, n: int, proc: asyncio.subprocess.Process) -> None:
    for _ in range(2000):  # bounded: 2000 polls of 5 ms
        if _count_lines(out) >= n or proc.returncode is not None:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{out} never reached {n} lines")


async def test_sigkill_at_random_points_loses_and_repeats_nothing(tmp_path: Path) -> None:
    rate = 400.0
    config = SimulatorConfig(rate=rate, latency_ms=20, pending_share=0.0, seed=21)
    rng = random.Random(99)
    async with running_simulator(config) as sim:
        tokens = await mint(sim, 150, rate, lanes=10)
        tokens_file = tmp_path / "tokens.txt"
        tokens_file.write_text("\n".join(tokens) + "\n")
        out = tmp_path / "out.jsonl"
        kills = 0
        for _round in range(8):
            proc = await _start(sim, tokens_file, out, rate)
            if kills < 3:
                await _wait_for_lines(out, _count_lines(out) + rng.randint(5, 30), proc)
                if proc.returncode is None:
                    proc.kill()
                    kills += 1
                await proc.wait()
                continue
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
            assert proc.returncode == 0, stderr.decode()
            break
        queried = sim.stats()["queries_by_token_count"]

    assert kills == 3
    lines = records(out)
    finals = Counter(r["token"] for r in lines if r["final"])
    assert set(finals) == set(tokens)  # zero lost
    assert max(finals.values()) == 1  # zero duplicate final lines
    # Only a token in flight when the process died can have been asked twice.
    asked_again = sum(n for times, n in queried.items() if int(times) > 1)
    assert asked_again <= kills * CONCURRENCY
    assert queried.get("0", 0) == 0


async def test_sigterm_finishes_in_flight_requests_and_the_rerun_finishes_the_rest(
    tmp_path: Path,
) -> None:
    rate = 50.0
    config = SimulatorConfig(rate=rate, latency_ms=150, pending_share=0.0, seed=5)
    async with running_simulator(config) as sim:
        tokens = await mint(sim, 100, 45.0, lanes=20)
        tokens_file = tmp_path / "tokens.txt"
        tokens_file.write_text("\n".join(tokens) + "\n")
        out = tmp_path / "out.jsonl"
        before = sim.stats()["by_action"].get("GetSdkVerificationResult", 0)

        proc = await _start(sim, tokens_file, out, rate)
        await _wait_for_lines(out, 10, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
        text = stderr.decode()
        assert proc.returncode == 143, text
        assert "SIGTERM" in text
        assert "summary:" in text
        first = records(out)
        assert 10 <= len(first) < 100
        sent = sim.stats()["by_action"]["GetSdkVerificationResult"] - before
        # Every request that went out came back and was written: in-flight tokens finished.
        assert sent == sum(r["attempts"] for r in first)

        proc = await _start(sim, tokens_file, out, rate)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, stderr.decode()

    lines = records(out)
    assert len(lines) == 100
    assert {r["token"] for r in lines} == set(tokens)
