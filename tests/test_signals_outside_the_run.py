"""SIGTERM before the run's own handling starts (a scheduler stopping a job that waits on its
input, or loads a big resume file): one sentence and 143, not a silent kill (found in review)."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
from pathlib import Path

from tests.e2e import start_poller


async def test_sigterm_while_waiting_for_the_input_is_143_in_one_sentence(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "tokens.fifo"
    os.mkfifo(fifo)
    proc = await start_poller(
        "run",
        "--tokens",
        str(fifo),
        "--output",
        str(tmp_path / "out.jsonl"),
        "--endpoint",
        "http://127.0.0.1:9",
    )
    writer = -1
    try:
        # A non-blocking open for writing succeeds once the poller has the FIFO open for
        # reading: from then on it waits for its first token, before any run has started.
        for _ in range(1000):  # at most 20 s for the interpreter to start
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # anything but "no reader yet" is a real error
                    raise
                await asyncio.sleep(0.02)
        assert writer >= 0, "the poller never opened its input"
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if writer >= 0:
            os.close(writer)
    assert proc.returncode == 143, err
    assert err.decode().strip() == (
        "poller: interrupted; lines already written are kept and the next run resumes."
    )
    assert out == b""
