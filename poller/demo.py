"""`make run`: the main job, end to end, against the embedded simulator.

Starts `poller simulate` in its own process on a free port, mints demo tokens through
ApplySdkVerificationToken, runs the real `poller run` over them at the published 20/s quota,
shows the summary, the first lines and what the server saw, and stops the simulator. Every
process it starts is stopped again, whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from poller.simulator import DEMO_SECRET_ID, DEMO_SECRET_KEY, mint_tokens
from poller.simulator.process import simulator_process

TOKENS = 200
QUOTA = 20.0
OUTPUT_DIR = Path("demo-output")


def _say(text: str) -> None:
    print(f"make run: {text}", flush=True)


SIMULATOR_FLAGS = (
    "--seed", "2026", "--rate", str(QUOTA), "--latency-ms", "60",
    "--pending-share", "0.06", "--pending-seconds", "15",
    "--fault-rate", "0.03", "--stall-seconds", "4",
    "--secret-id", DEMO_SECRET_ID, "--secret-key", DEMO_SECRET_KEY,
)  # fmt: skip


async def _mint(endpoint: str) -> list[str]:
    async with aiohttp.ClientSession() as session:
        return await mint_tokens(
            session, endpoint, DEMO_SECRET_ID, DEMO_SECRET_KEY, TOKENS, extra="demo", rate=QUOTA
        )


async def _stats(endpoint: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(endpoint + "/__stats") as resp:
        data: dict[str, Any] = await resp.json()
        return data


def _show_lines(path: Path, n: int) -> None:
    with path.open(encoding="utf-8") as fh:
        for _, line in zip(range(n), fh, strict=False):
            record = json.loads(line)
            brief = {k: record[k] for k in ("token", "status", "final", "result", "attempts")}
            print("   ", json.dumps(brief), flush=True)


def main() -> int:
    OUTPUT_DIR.mkdir(exist_ok=True)
    tokens_file = OUTPUT_DIR / "tokens.txt"
    output = OUTPUT_DIR / "results.jsonl"
    output.unlink(missing_ok=True)  # the demo starts fresh; a real job would resume
    with simulator_process(SIMULATOR_FLAGS) as sim:
        endpoint = sim.endpoint
        _say(f"simulator listening on {endpoint} (quota {QUOTA:g}/s, 3% faults, 6% pending)")
        started = time.monotonic()
        tokens = asyncio.run(_mint(endpoint))
        tokens_file.write_text("\n".join(tokens) + "\n", encoding="utf-8")
        _say(f"minted {len(tokens)} tokens in {time.monotonic() - started:.1f} s -> {tokens_file}")
        cmd = [
            sys.executable,
            "-m",
            "poller",
            "run",
            "--tokens",
            str(tokens_file),
            "--output",
            str(output),
            "--endpoint",
            endpoint,
            "--rate",
            str(QUOTA),
            "--timeout",
            "2",
            "--recheck-after",
            "3",
            "--max-pending-wait",
            "40",
        ]
        _say("$ poller run " + " ".join(cmd[4:]))
        env = dict(os.environ)
        env["TENCENTCLOUD_SECRET_ID"] = DEMO_SECRET_ID
        env["TENCENTCLOUD_SECRET_KEY"] = DEMO_SECRET_KEY
        status = subprocess.run(cmd, env=env, check=False).returncode  # noqa: S603 - our own CLI
        _say(f"poller run exited with status {status}; first lines of {output}:")
        _show_lines(output, 3)
        stats = asyncio.run(_stats(endpoint))
        _say(
            "the simulator saw: "
            f"{stats['by_action'].get('GetSdkVerificationResult', 0)} result queries, "
            f"at most {stats['max_in_window']} in any 1-second window (quota {QUOTA:g}), "
            f"{stats['throttled']} throttled, {stats['signature_failures']} signature failures"
        )
        return status


if __name__ == "__main__":
    sys.exit(main())
