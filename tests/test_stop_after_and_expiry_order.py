"""Issue 11 item 2, end to end against the simulator: `--stop-after` ends the run at its
deadline with whole lines and exit 1, the rerun finishes the rest; `--order expiry` asks the
oldest first. Also the Python path (`run_batch` with `stop_after`)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any

from poller.config.credentials import Credentials
from poller.config.settings import Settings
from poller.input.tokens import TokenEntry
from poller.job import run_batch
from poller.simulator import DEMO_SECRET_ID, DEMO_SECRET_KEY, SimulatorConfig, running_simulator
from tests.conftest import PollerLog
from tests.model_support import ENV, POLLER, RESULT_ACTION

HOUR = 3600.0


def _lines(path: Path) -> list[dict[str, Any]]:
    # json.loads fails on a torn line: every line must be whole.
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def _poller(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *POLLER, *argv, env=ENV, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


async def test_stop_after_ends_at_the_deadline_with_whole_lines_and_the_rerun_finishes(
    tmp_path: Path,
) -> None:
    # 150 tokens at 20/s need ~8 s; the deadline comes after 2.
    config = SimulatorConfig(rate=20, pending_share=0.0, latency_ms=20, request_log_size=10_000)
    async with running_simulator(config) as sim:
        tokens = sim.mint(150)
        path = tmp_path / "tokens.txt"
        path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
        out = tmp_path / "out.jsonl"
        argv = ["run", "--tokens", str(path), "--output", str(out), "--endpoint", sim.endpoint]
        started = time.monotonic()
        code, err = await _poller(*argv, "--stop-after", "2s", "--grace-period", "2")
        ended = time.monotonic()
        first_run = [r for r in sim.request_log() if r.action == RESULT_ACTION]
        first = _lines(out)

        assert code == 1, err
        # The run began before its first request, so its deadline is at most 2 s after that
        # request: nothing arrived later, and the process ended soon after (grace included).
        assert first_run, err
        deadline_bound = first_run[0].arrived + 2.0
        assert [r.arrived for r in first_run if r.arrived > deadline_bound] == []
        assert ended - started < 2.0 + 4.0
        assert 0 < len(first) < len(tokens)
        assert sum(line["attempts"] for line in first) == len(first_run)
        assert "--stop-after 2s reached" in err
        not_reached = len(tokens) - len(first)
        assert f"stopped by the deadline (--stop-after); not reached {not_reached}" in err

        code, err = await _poller(*argv)
        assert code == 0, err
        both = [r for r in sim.request_log() if r.action == RESULT_ACTION]
        lines = _lines(out)
    # Every token has exactly one final line across the two runs; the server saw exactly the
    # attempts the lines add up to.
    assert sorted(line["token"] for line in lines if line["final"]) == sorted(tokens)
    assert len(lines) == len(tokens)
    assert sum(line["attempts"] for line in lines) == len(both)


async def test_order_expiry_asks_the_oldest_issued_at_first(tmp_path: Path) -> None:
    config = SimulatorConfig(rate=200, pending_share=0.0, request_log_size=10_000)
    async with running_simulator(config) as sim:
        tokens = sim.mint(40)
        rng = random.Random(11)
        now = time.time()
        issued = {token: now - rng.uniform(1, 70) * HOUR for token in tokens}
        undated = tokens[::7]  # no issued_at: asked last, in input order
        path = tmp_path / "tokens.csv"
        rows = ["SdkToken,issued_at"]
        rows += [f"{t},{'' if t in undated else int(issued[t])}" for t in tokens]
        rows.append(f"{tokens[3]},{int(now - 71.5 * HOUR)}")  # a duplicate: reported once
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        out = tmp_path / "out.jsonl"
        code, err = await _poller(
            "run", "--tokens", str(path), "--output", str(out), "--endpoint", sim.endpoint,
            "--order", "expiry", "--concurrency", "1", "--rate", "200",
        )  # fmt: skip
        asked = [r.token for r in sim.request_log() if r.action == RESULT_ACTION]
    assert code == 0, err
    dated = sorted((t for t in tokens if t not in undated), key=lambda t: int(issued[t]))
    assert asked == dated + undated
    assert sorted(line["token"] for line in _lines(out)) == sorted(tokens)
    assert "expiry order: 40 tokens to query, oldest issued_at first" in err


async def test_run_batch_with_stop_after_behaves_as_the_command(
    tmp_path: Path, poller_log: PollerLog
) -> None:
    config = SimulatorConfig(rate=20, pending_share=0.0, request_log_size=10_000)
    async with running_simulator(config) as sim:
        now = time.time()
        # Dated tokens: the run logs its deadline line at the start (a list is read again).
        tokens = [TokenEntry(t, n, now - n * 60.0) for n, t in enumerate(sim.mint(100), 1)]
        settings = Settings(
            endpoint=sim.endpoint,
            stop_after=1.0,
            grace_period=2.0,
            credentials=Credentials(DEMO_SECRET_ID, DEMO_SECRET_KEY),
        )
        out = tmp_path / "out.jsonl"
        summary = await asyncio.to_thread(run_batch, tokens, out, settings)
        first = _lines(out)
        assert summary.exit_status == 1
        assert summary.stats.stopped_by == "deadline"
        assert summary.stats.not_reached == len(tokens) - len(first) > 0
        assert summary.stats.not_reached_exact  # a list is read to its end
        requests = [r for r in sim.request_log() if r.action == RESULT_ACTION]
        assert sum(line["attempts"] for line in first) == len(requests)
        assert any(m.startswith("deadlines: 100 tokens to query take") for m in poller_log.messages)
        # The rerun, without a deadline, finishes the rest.
        again = await asyncio.to_thread(
            run_batch, tokens, out, dataclasses.replace(settings, stop_after=0.0)
        )
    assert again.exit_status == 0
    assert again.skipped_final == len(first)
    assert sorted(line["token"] for line in _lines(out)) == sorted(t.token for t in tokens)
