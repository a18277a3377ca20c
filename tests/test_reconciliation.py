"""Nightly reconciliation against the simulator: pending tokens, token age, dry run, metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from poller.simulator import RunningSimulator, SimulatorConfig, running_simulator
from poller.simulator.app import SIMULATOR_KEY
from tests.e2e import mint, records, run_poller, start_poller

RESULT = "GetSdkVerificationResult"


async def _poller(sim: RunningSimulator, *args: str) -> tuple[int, str, str]:
    return await run_poller("run", "--endpoint", sim.endpoint, *args)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _queries(sim: RunningSimulator) -> int:
    return int(sim.stats()["by_action"].get(RESULT, 0))


async def _until(condition: Callable[[], bool], proc: asyncio.subprocess.Process) -> None:
    """Wait for a condition on the in-process simulator, in bounded polls (no wall-clock bet)."""
    for _ in range(4000):  # 4000 polls of 10 ms: far beyond any start-up, yet bounded
        if condition():
            return
        if proc.returncode is not None:
            raise AssertionError(f"the poller exited ({proc.returncode}) before the condition")
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never came true")


async def test_pending_tokens_are_rechecked_until_they_settle(tmp_path: Path) -> None:
    # Pending for an hour of the simulator's token clock: nothing settles until the test says
    # so, however long the poller takes to start.
    config = SimulatorConfig(rate=400, pending_share=1.0, pending_seconds=3600, seed=4)
    async with running_simulator(config) as sim:
        tokens = await mint(sim, 20)
        src = _write(tmp_path / "t.txt", "\n".join(tokens) + "\n")
        out = tmp_path / "out.jsonl"
        proc = await start_poller(
            "run", "--endpoint", sim.endpoint, "--tokens", str(src), "--output", str(out),
            "--rate", "400", "--recheck-after", "0.2", "--max-pending-wait", "600",
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            # Every token has been asked once and answered pending (-999) ...
            await _until(lambda: sim.stats()["queries_by_token_count"].get("0", 0) == 0, proc)
            assert sim.stats()["by_outcome"].get("pending", 0) >= 20
            # ... then an hour passes for the service: every user has finished.
            state = sim.app[SIMULATOR_KEY]
            state.config = dataclasses.replace(state.config, clock_offset=3601.0)
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    err = stderr.decode(errors="replace")
    assert proc.returncode == 0, err
    lines = records(out)
    assert sorted(r["token"] for r in lines) == sorted(tokens)
    assert [r for r in lines if not r["final"] or r["status"] not in ("passed", "failed")] == []
    # Pending at first, then asked again: every token, whenever the poller started.
    assert all(r["attempts"] >= 2 for r in lines)
    assert "pending re-checks 0" not in err


async def test_pending_past_the_wait_is_completed_by_the_next_run(tmp_path: Path) -> None:
    config = SimulatorConfig(rate=400, pending_share=1.0, pending_seconds=3600, seed=6)
    async with running_simulator(config) as sim:
        tokens = await mint(sim, 15)
        src = _write(tmp_path / "t.txt", "\n".join(tokens) + "\n")
        out = tmp_path / "out.jsonl"
        args = ["--tokens", str(src), "--output", str(out), "--rate", "400"]
        code, _, err = await _poller(
            sim, *args, "--recheck-after", "0.1", "--max-pending-wait", "0.25"
        )
        assert code == 1, err
        first = records(out)
        assert {r["status"] for r in first} == {"pending"}
        assert not any(r["final"] for r in first)
        assert all(r["result"] == "-999" for r in first)

        # An hour passes for the service: every user has finished by now.
        state = sim.app[SIMULATOR_KEY]
        state.config = dataclasses.replace(state.config, clock_offset=3601.0)
        before = _queries(sim)
        code, _, err = await _poller(sim, *args)
        assert code == 0, err
        assert _queries(sim) - before == 15
    last = {r["token"]: r for r in records(out)}
    assert len(records(out)) == 30
    assert all(r["final"] for r in last.values())


async def test_tokens_past_72_hours_are_expired_without_a_request(tmp_path: Path) -> None:
    async with running_simulator(SimulatorConfig(rate=400, pending_share=0.0)) as sim:
        tokens = await mint(sim, 12)
        now = time.time()
        rows = [f"{t},{now - 80 * 3600:.0f}" for t in tokens[:5]]
        rows += [f"{t},{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}" for t in tokens[5:]]
        src = _write(tmp_path / "t.csv", "SdkToken,issued_at\n" + "\n".join(rows) + "\n")
        out = tmp_path / "out.jsonl"
        before = _queries(sim)
        code, _, err = await _poller(
            sim, "--tokens", str(src), "--output", str(out), "--rate", "400"
        )
        sent = _queries(sim) - before
        queried = sim.stats()["queries_by_token_count"]
    assert code == 0, err
    assert sent == 7  # the five old tokens cost no quota
    assert queried["0"] == 5
    by_token = {r["token"]: r for r in records(out)}
    for token in tokens[:5]:
        assert by_token[token]["status"] == "expired"
        assert by_token[token]["attempts"] == 0
    assert "expired by issued_at 5" in err


async def test_dry_run_makes_no_request_and_estimates_at_the_rate(tmp_path: Path) -> None:
    async with running_simulator(SimulatorConfig(any_token=True)) as sim:
        src = _write(tmp_path / "t.txt", "".join(f"tok-{n}\n" for n in range(190)) + "tok-1\n")
        before = sim.stats()["requests"]
        code, out, err = await _poller(
            sim, "--tokens", str(src), "--output", str(tmp_path / "o.jsonl"), "--dry-run"
        )
        assert sim.stats()["requests"] == before
    assert code == 0, err
    assert "to query" in out
    # 190 tokens at 20/s less 5% = 19/s: 10 s.
    assert "estimated duration: 0m10s" in out
    assert not (tmp_path / "o.jsonl").exists()


async def test_metrics_file_matches_the_run(tmp_path: Path) -> None:
    config = SimulatorConfig(rate=400, any_token=True, fault_rate=0.1, stall_seconds=0.5, seed=2)
    async with running_simulator(config) as sim:
        src = _write(tmp_path / "t.txt", "".join(f"tok-{n}\n" for n in range(60)))
        out, metrics = tmp_path / "out.jsonl", tmp_path / "poller.prom"
        before = _queries(sim)
        code, _, err = await _poller(
            sim, "--tokens", str(src), "--output", str(out), "--rate", "400",
            "--timeout", "0.2", "--metrics-file", str(metrics), "--max-pending-wait", "0",
        )  # fmt: skip
        sent = _queries(sim) - before
    assert code in (0, 1), err
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.read_text()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    lines = records(out)
    for status in ("passed", "failed", "pending", "expired", "invalid_token", "error"):
        expected = sum(1 for r in lines if r["status"] == status)
        assert values[("faceid_poller_tokens", (("status", status),))] == expected
    assert values[("faceid_poller_requests_total", ())] == sent
    assert values[("faceid_poller_running", ())] == 0
    charges = sum(r["charge_count"] or 0 for r in lines)
    assert values[("faceid_poller_charge_count_total", ())] == charges
    assert f"charge_count total {charges}" in err
