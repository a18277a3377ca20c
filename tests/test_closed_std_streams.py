"""A job started with stdout or stderr closed (`>&-`, `2>&-`): one sentence, never a traceback,
and never a summary mixed into the JSON lines (found in review of issue 9)."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path

from poller.simulator import SimulatorConfig, running_simulator
from tests.e2e import DEMO_ENV


async def _bash(command: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        env=DEMO_ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_closed_stdout_with_output_dash_is_one_sentence_exit_2(tmp_path: Path) -> None:
    tokens = tmp_path / "t.txt"
    tokens.write_text("a1\n")
    poller = f"{shlex.quote(sys.executable)} -m poller"
    code, _, err = await _bash(
        f"{poller} run --tokens {shlex.quote(str(tokens))} --output - "
        "--endpoint http://127.0.0.1:9 >&-"
    )
    assert code == 2
    assert err.decode().strip() == (
        "poller: error: cannot open output -: standard output is closed."
    )


async def test_closed_stderr_keeps_stdout_pure_json_lines(tmp_path: Path) -> None:
    tokens = tmp_path / "t.txt"
    tokens.write_text("a1\na2\n")
    poller = f"{shlex.quote(sys.executable)} -m poller"
    async with running_simulator(
        SimulatorConfig(any_token=True, rate=200.0, pending_share=0.0)
    ) as sim:
        code, out, _ = await _bash(
            f"{poller} run --tokens {shlex.quote(str(tokens))} --output - "
            f"--endpoint {sim.endpoint} --rate 200 2>&-"
        )
    assert code == 0
    lines = out.decode().splitlines()
    assert sorted(json.loads(line)["token"] for line in lines) == ["a1", "a2"]


async def test_closed_stdout_with_dry_run_is_one_sentence_exit_2(tmp_path: Path) -> None:
    tokens = tmp_path / "t.txt"
    tokens.write_text("a1\n")
    poller = f"{shlex.quote(sys.executable)} -m poller"
    code, _, err = await _bash(
        f"{poller} run --tokens {shlex.quote(str(tokens))} --dry-run "
        "--endpoint http://127.0.0.1:9 >&-"
    )
    assert code == 2
    assert err.decode().strip() == (
        "poller: error: standard output is closed, so the plan cannot be shown."
    )
