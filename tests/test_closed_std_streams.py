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


def _poller_run(tmp_path: Path, tokens: str, rest: str) -> str:
    """The shell command `poller run --tokens FILE REST`, FILE holding `tokens`."""
    path = tmp_path / "t.txt"
    path.write_text(tokens)
    return f"{shlex.quote(sys.executable)} -m poller run --tokens {shlex.quote(str(path))} {rest}"


async def test_closed_stdout_with_output_dash_is_one_sentence_exit_2(tmp_path: Path) -> None:
    code, _, err = await _bash(
        _poller_run(tmp_path, "a1\n", "--output - --endpoint http://127.0.0.1:9 >&-")
    )
    assert code == 2
    assert err.decode().strip() == (
        "poller: error: cannot open output -: standard output is closed."
    )


async def test_closed_stderr_keeps_stdout_pure_json_lines(tmp_path: Path) -> None:
    async with running_simulator(
        SimulatorConfig(any_token=True, rate=200.0, pending_share=0.0)
    ) as sim:
        code, out, _ = await _bash(
            _poller_run(
                tmp_path, "a1\na2\n", f"--output - --endpoint {sim.endpoint} --rate 200 2>&-"
            )
        )
    assert code == 0
    lines = out.decode().splitlines()
    assert sorted(json.loads(line)["token"] for line in lines) == ["a1", "a2"]


async def test_closed_stdout_with_dry_run_is_one_sentence_exit_2(tmp_path: Path) -> None:
    code, _, err = await _bash(
        _poller_run(tmp_path, "a1\n", "--dry-run --endpoint http://127.0.0.1:9 >&-")
    )
    assert code == 2
    assert err.decode().strip() == (
        "poller: error: standard output is closed, so the plan cannot be shown."
    )
