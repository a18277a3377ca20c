"""Issue 9, item 8, through the real command: `--output -` into a reader that stops reading.

Before, every line was a blocking write on the event loop: once the pipe was full the loop froze
inside `write`, so the signal handler never ran and Ctrl-C did nothing. Now the writer thread
blocks instead, the workers wait for it (backpressure), and the loop still hears the signal:
the run stops sending at once and exits when the grace period ends.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from poller.simulator import SimulatorConfig, running_simulator
from tests.e2e import start_poller

CONCURRENCY = 8


async def test_ctrl_c_stops_a_run_whose_output_reader_stalled(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"stalled-{n:05d}\n" for n in range(4000)))
    config = SimulatorConfig(rate=2000.0, any_token=True, pending_share=0.0, seed=5)
    async with running_simulator(config) as sim:
        # stdout is never read: the pipe fills and stays full.
        proc = await start_poller(
            "run",
            "--tokens",
            str(tokens),
            "--output",
            "-",
            "--endpoint",
            sim.endpoint,
            "--rate",
            "2000",
            "--concurrency",
            str(CONCURRENCY),
            "--grace-period",
            "0.5",
        )
        try:
            # Choosing the moment only: past the pipe's 64 KiB, the buffers are filling.
            for _ in range(1500):  # at most 30 s
                if sim.stats()["requests"] >= 200:
                    break
                await asyncio.sleep(0.02)
            assert sim.stats()["requests"] >= 200, "the poller never got going"
            at_signal = sim.stats()["requests"]
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            # Read stderr only: stdout stays stalled until the process is gone. The child holds
            # stderr open until it exits, so its end of file marks the exit.
            assert proc.stderr is not None
            assert proc.stdout is not None
            err = await asyncio.wait_for(proc.stderr.read(), timeout=20)
            took = time.monotonic() - started
            # Then drain stdout: asyncio's wait() (3.11) returns only once every pipe is closed.
            data = await asyncio.wait_for(proc.stdout.read(), timeout=20)
            code = await asyncio.wait_for(proc.wait(), timeout=20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        sent = sim.stats()["requests"]
    assert code == 130, err.decode(errors="replace")
    assert took < 10  # the grace period (0.5 s), not the reader coming back
    # Nothing left after the signal but requests already on the wire.
    assert sent - at_signal <= CONCURRENCY
    assert b"Traceback" not in err
    assert b"summary:" in err
    lines = data.split(b"\n")
    # Whatever reached the pipe is whole lines, but perhaps the last (cut off by the stop).
    assert all(line.startswith(b'{"token":"stalled-') for line in lines[:-1])
