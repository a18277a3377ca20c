"""The real poller against the embedded simulator on 127.0.0.1: faults, quota, exactness."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from poller.config.credentials import Credentials
from poller.input.tokens import read_tokens
from poller.job import run_job
from poller.output.sink import JsonlSink
from poller.simulator import (
    DEMO_SECRET_ID,
    DEMO_SECRET_KEY,
    RunningSimulator,
    SimulatorConfig,
    mint_tokens,
    running_simulator,
)
from poller.simulator.app import SIMULATOR_KEY
from poller.simulator.outcomes import FAILURES
from tests.helpers import make_settings
from tests.simulator_support import without_link_queries

DEMO = Credentials(DEMO_SECRET_ID, DEMO_SECRET_KEY)
SIM_RATE = 200.0


async def _mint(sim: RunningSimulator, n: int) -> list[str]:
    async with aiohttp.ClientSession() as session:
        return await mint_tokens(
            session, sim.endpoint, DEMO_SECRET_ID, DEMO_SECRET_KEY, n, rate=SIM_RATE
        )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _check_against_the_simulator(
    sim: RunningSimulator, line: dict[str, Any], started: float, finished: float
) -> None:
    """Every field of a line is what the simulator decided for its token (pending off).

    The simulator draws each minted token's fate (`TokenPlan`) and renders every answer from
    it, so the expected line is built from that decision, not from the poller's output. Only
    three fields are not the simulator's to decide: `request_id` (a fresh id per request: it
    must be the id of the answer kept), `attempts` (faults are drawn per request; their sum is
    checked against the simulator's count by the callers) and `checked_at` (within the run).
    The media links are signed per answer, so their query strings are left out of the match."""
    simulator = sim.app[SIMULATOR_KEY]
    plan = simulator.store.plan(line["token"])
    assert plan is not None, f"the simulator never minted {line['token']!r}"
    now = simulator.token_now()
    assert not plan.is_pending(now)
    request_id = line["request_id"]
    assert uuid.UUID(request_id).version == 4
    response = simulator.render(plan, now, request_id)
    passed = plan.result == "0"
    expected = {
        "token": plan.token,
        "status": "passed" if passed else "failed",
        "final": True,
        "result": plan.result,
        "description": "Success" if passed else FAILURES[plan.result][0],
        "charge_count": sum(1 for c in response["CompareResults"] if c["IsNeedCharge"]),
        "request_id": request_id,
        "error": None,
        "attempts": line["attempts"],
        "checked_at": line["checked_at"],
        "response": response,
    }
    # The media links were signed when the line's answer was (SPEC §8): compare what they name.
    assert {**line, "response": without_link_queries(line["response"])} == {
        **expected,
        "response": without_link_queries(response),
    }
    assert line["attempts"] >= 1
    checked = datetime.fromisoformat(line["checked_at"].replace("Z", "+00:00")).timestamp()
    assert math.floor(started) <= checked <= finished


@pytest.fixture
async def faulty_sim() -> AsyncIterator[RunningSimulator]:
    config = SimulatorConfig(
        rate=SIM_RATE,
        seed=11,
        pending_share=0.0,
        fault_rate=0.15,
        stall_seconds=1.0,
        latency_ms=4,
    )
    async with running_simulator(config) as sim:
        yield sim


async def test_every_token_gets_one_correct_line_under_faults(
    tmp_path: Path, faulty_sim: RunningSimulator
) -> None:
    tokens = await _mint(faulty_sim, 150)
    tokens_file = tmp_path / "tokens.txt"
    # Duplicates and an invalid line ride along: one line each, never sent twice.
    tokens_file.write_text("\n".join([*tokens, tokens[0], "bad\x01token"]) + "\n")
    out = tmp_path / "out.jsonl"
    settings = make_settings(
        endpoint=faulty_sim.endpoint,
        credentials=DEMO,
        rate=SIM_RATE,
        timeout=0.3,  # below stall_seconds: a stall is a timeout, then a retry
        max_attempts=8,
        concurrency=16,
    )
    before = faulty_sim.stats()["by_action"].get("GetSdkVerificationResult", 0)
    sink = JsonlSink(str(out))
    started = time.time()
    engine = await run_job(settings, read_tokens(str(tokens_file)), sink)
    finished = time.time()
    sink.close()

    lines = _lines(out)
    by_token = {line["token"]: line for line in lines}
    assert len(lines) == len(by_token) == 151
    assert set(by_token) == {*tokens, "bad\x01token"}
    bad = by_token["bad\x01token"]
    assert (bad["status"], bad["attempts"], bad["response"]) == ("invalid_token", 0, None)
    assert bad["final"] is False  # decided by the input (SPEC §2)
    assert bad["error"]["code"] == "InvalidInput"
    for token in tokens:
        _check_against_the_simulator(faulty_sim, by_token[token], started, finished)
    # Both outcomes occurred, so the comparison covered passes and failures.
    assert {by_token[t]["status"] for t in tokens} == {"passed", "failed"}
    stats = faulty_sim.stats()
    assert stats["signature_failures"] == 0
    assert stats["max_in_window"] <= SIM_RATE
    assert stats["throttled"] == 0
    sent = stats["by_action"]["GetSdkVerificationResult"] - before
    assert sent == engine.stats.requests == sum(line["attempts"] for line in lines)
    assert engine.stats.retries > 0  # the faults really happened and were retried
    assert engine.stats.duplicates == 1
    assert engine.stats.exit_status() == 1  # the bad line's `invalid_token` is not final


async def test_a_stricter_server_quota_slows_the_poller_down(tmp_path: Path) -> None:
    """The account's real quota is lower than configured: throttles lower the pacing rate."""
    async with running_simulator(SimulatorConfig(rate=40, seed=3, pending_share=0.0)) as sim:
        async with aiohttp.ClientSession() as session:
            tokens = await mint_tokens(
                session, sim.endpoint, DEMO_SECRET_ID, DEMO_SECRET_KEY, 80, rate=40
            )
        tokens_file = tmp_path / "tokens.txt"
        tokens_file.write_text("\n".join(tokens) + "\n")
        out = tmp_path / "out.jsonl"
        settings = make_settings(
            endpoint=sim.endpoint, credentials=DEMO, rate=120.0, concurrency=16, max_attempts=10
        )
        sink = JsonlSink(str(out))
        started = time.time()
        engine = await run_job(settings, read_tokens(str(tokens_file)), sink)
        finished = time.time()
        sink.close()
        stats = sim.stats()
        assert stats["throttled"] > 0
        assert engine.pacer.slowdowns >= 1
        assert engine.pacer.rate < settings.pacing_rate
        lines = _lines(out)
        assert sorted(line["token"] for line in lines) == sorted(tokens)
        for line in lines:
            _check_against_the_simulator(sim, line, started, finished)
    # Throttled requests count as attempts too: the server saw exactly what the lines say.
    assert stats["by_action"]["GetSdkVerificationResult"] == sum(r["attempts"] for r in lines)


async def test_cli_subprocess_against_the_simulator(tmp_path: Path) -> None:
    async with running_simulator(SimulatorConfig(rate=SIM_RATE, pending_share=0.0)) as sim:
        tokens = await _mint(sim, 30)
        tokens_file = tmp_path / "tokens.csv"
        tokens_file.write_text("SdkToken,issued_at\n" + "".join(f"{t},\n" for t in tokens))
        out = tmp_path / "out.jsonl"
        env = {
            **os.environ,
            "TENCENTCLOUD_SECRET_ID": DEMO_SECRET_ID,
            "TENCENTCLOUD_SECRET_KEY": DEMO_SECRET_KEY,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "poller",
            "run",
            "--tokens",
            str(tokens_file),
            "--output",
            str(out),
            "--endpoint",
            sim.endpoint,
            "--rate",
            str(SIM_RATE),
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        started = time.time()
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
        finished = time.time()
        text = stderr.decode()
        assert proc.returncode == 0, text
        lines = _lines(out)
        assert sorted(line["token"] for line in lines) == sorted(tokens)
        for line in lines:
            _check_against_the_simulator(sim, line, started, finished)
        sent = sim.stats()["by_action"]["GetSdkVerificationResult"]
    assert sent == sum(line["attempts"] for line in lines)
    assert "summary: 30 tokens" in text
    assert DEMO_SECRET_KEY not in text
    assert os.stat(out).st_mode & 0o777 == 0o600
