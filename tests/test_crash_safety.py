"""Killed and stopped runs lose nothing: the real `poller run` process against the simulator.

These tests wait for the subprocess by watching its output file grow, or for the marker the
tearing poller leaves half-way through a line (bounded polls of a condition), never for a fixed
amount of time.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import sys
from collections import Counter
from pathlib import Path

from poller.simulator import RunningSimulator, SimulatorConfig, running_simulator
from tests.e2e import DEMO_ENV, mint, records, start_poller

TEARING_POLLER = Path(__file__).with_name("tearing_poller.py")

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


async def _start_tearing(
    sim: RunningSimulator, tokens: Path, out: Path, tear_at_line: int, marker: Path
) -> asyncio.subprocess.Process:
    """The real `poller run`, which tears its `tear_at_line`-th line and then waits to be killed
    (tests/tearing_poller.py): the SIGKILL comes with half a line on disk, every time."""
    env = {
        **DEMO_ENV,
        "TEAR_OUTPUT": str(out),
        "TEAR_AT_LINE": str(tear_at_line),
        "TEAR_MARKER": str(marker),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, str(TEARING_POLLER), "run", "--tokens", str(tokens), "--output", str(out),
        "--endpoint", sim.endpoint, "--rate", "400", "--concurrency", str(CONCURRENCY),
        "--max-pending-wait", "0",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _wait_for_file(path: Path, proc: asyncio.subprocess.Process) -> None:
    for _ in range(4000):  # bounded: 4000 polls of 5 ms
        if _exists(path):
            return
        if proc.returncode is not None:
            _, err = await proc.communicate()
            raise AssertionError(f"exited {proc.returncode} before tearing: {err.decode()}")
        await asyncio.sleep(0.005)
    raise AssertionError(f"{path} never appeared")


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _exists(path: Path) -> bool:
    return path.exists()


def _split_torn(data: bytes) -> tuple[list[dict[str, object]], bytes]:
    """(complete records, torn tail): every line but the last parses; the last is cut short."""
    *whole, tail = data.split(b"\n")
    return [json.loads(line) for line in whole], tail


async def test_sigkill_in_the_middle_of_a_line_write(tmp_path: Path) -> None:
    """SIGKILL while a line is being written: one torn last line at most, set aside by the
    rerun into OUTPUT.torn, and every token still ends with exactly one final line."""
    config = SimulatorConfig(rate=400, latency_ms=5, pending_share=0.0, seed=33)
    rng = random.Random(1234)
    async with running_simulator(config) as sim:
        tokens = await mint(sim, 60, 400.0, lanes=10)
        tokens_file = tmp_path / "tokens.txt"
        tokens_file.write_text("\n".join(tokens) + "\n")
        out = tmp_path / "out.jsonl"
        side = Path(str(out) + ".torn")
        tails: list[bytes] = []
        complete = 0  # complete lines in the output so far
        for kill in range(3):
            tear_at = rng.randint(2, 12)
            marker = tmp_path / f"torn-{kill}"
            proc = await _start_tearing(sim, tokens_file, out, tear_at, marker)
            try:
                await _wait_for_file(marker, proc)
                proc.kill()  # SIGKILL, half-way through writing a line
                await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert proc.returncode == -signal.SIGKILL
            lines, tail = _split_torn(_read(out))
            # The previous torn tail was set aside and cut; this run appended whole lines, then
            # half of one: at most one torn line, and only at the end.
            assert len(lines) == complete + tear_at - 1
            assert tail.startswith(b'{"token":"')
            assert not tail.endswith(b"}")
            assert b"\n" not in tail
            tails.append(tail)
            complete = len(lines)
            if kill:
                assert _read(side).endswith(tails[-2] + b"\n")

        proc = await start_poller(
            "run", "--tokens", str(tokens_file), "--output", str(out), "--endpoint",
            sim.endpoint, "--rate", "400", "--concurrency", str(CONCURRENCY),
            "--max-pending-wait", "0", stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
        text = stderr.decode()
        assert proc.returncode == 0, text
        assert f"torn last line of {len(tails[-1])} bytes set aside to {side}" in text
        queried = sim.stats()["queries_by_token_count"]

    assert _read(out).endswith(b"\n")
    lines = records(out)  # every line parses: no torn bytes were glued to a new line
    finals = Counter(r["token"] for r in lines if r["final"])
    assert set(finals) == set(tokens)
    assert max(finals.values()) == 1  # exactly one final line per token
    assert queried.get("0", 0) == 0
    # OUTPUT.torn holds each torn tail, byte for byte, after a header saying how many bytes.
    entries = re.findall(
        rb"# \S+ torn last line, (\d+) bytes from offset \d+:\n(.*)\n", _read(side)
    )
    assert [tail for _, tail in entries] == tails
    assert [int(n) for n, _ in entries] == [len(t) for t in tails]
