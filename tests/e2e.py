"""Helpers for end-to-end tests: the real `poller` process against an in-process simulator."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from poller.simulator import DEMO_SECRET_ID, DEMO_SECRET_KEY, RunningSimulator, mint_tokens

DEMO_ENV = {
    **os.environ,
    "TENCENTCLOUD_SECRET_ID": DEMO_SECRET_ID,
    "TENCENTCLOUD_SECRET_KEY": DEMO_SECRET_KEY,
}


async def mint(sim: RunningSimulator, n: int, rate: float = 400.0, lanes: int = 1) -> list[str]:
    """Mint `n` tokens; `lanes` parallel minters (mint_tokens awaits each answer in turn)."""
    async with aiohttp.ClientSession() as session:
        batches = await asyncio.gather(
            *(
                mint_tokens(
                    session,
                    sim.endpoint,
                    DEMO_SECRET_ID,
                    DEMO_SECRET_KEY,
                    n // lanes + (1 if lane < n % lanes else 0),
                    rate=rate / lanes,
                )
                for lane in range(lanes)
            )
        )
    return [token for batch in batches for token in batch]


async def start_poller(
    *args: str, env: dict[str, str] | None = None, stdout: int | None = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "poller",
        *args,
        env=env or DEMO_ENV,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_poller(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `poller ARGS` to the end; returns (exit status, stdout, stderr)."""
    proc = await start_poller(*args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
