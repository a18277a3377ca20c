"""Piped input loses no token (issue 9, item 1): the real `poller run` against the simulator.

The bug: the progress bar's total was counted by opening `--tokens` a second time on a thread.
For a regular file that is harmless; for a pipe the second reader steals whatever it reads, so
`--tokens <(cat tokens.txt)` or `--tokens /dev/stdin` wrote a line for only part of the input and
still exited 0. With stderr on a terminal the bar (and so the counting) started sooner and the
loss was worse, hence the pseudo-terminal cases.

Each case feeds the same kind of input through one channel and checks that every input token
has exactly one output line. The tokens are long (about 80 bytes) so the input outgrows a pipe's
64 KiB buffer: the writer is still writing when a second reader could open the path.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pty
import shlex
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from poller.simulator import RunningSimulator, SimulatorConfig, running_simulator
from tests.e2e import DEMO_ENV, records

RATE = 2000.0  # the simulator's quota; the poller paces 5% under it


def make_tokens(n: int) -> list[str]:
    return [f"piped-{i:05d}-{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(n)]


@contextmanager
def terminal_or_pipe(tty: bool) -> Iterator[tuple[int, list[bytes]]]:
    """stderr for the child: a pseudo-terminal's slave end (drained on a thread, so the bar
    can never block the child), or a pipe (-1 here: the caller asks for asyncio's PIPE)."""
    if not tty:
        yield asyncio.subprocess.PIPE, []
        return
    master, slave = pty.openpty()
    seen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the slave end has closed it
                return
            if not data:
                return
            seen.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield slave, seen
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)


def feed_fifo(path: Path, data: bytes) -> threading.Thread:
    """Write `data` into the FIFO at `path` from a thread, as an exporting process would."""

    def write() -> None:
        with open(path, "wb") as fifo:  # blocks until the poller opens the FIFO for reading
            fifo.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return writer


def release_fifo_writer(path: Path, writer: threading.Thread) -> None:
    """If the poller died before opening the FIFO, the writer still waits in open(): a reader
    that opens and closes at once lets it go (it then fails on a broken pipe, harmlessly)."""
    if writer.is_alive():
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
    writer.join(timeout=10)


def poller_args(sim: RunningSimulator, tokens: str, out: Path) -> list[str]:
    return [
        "run",
        "--tokens",
        tokens,
        "--output",
        str(out),
        "--endpoint",
        sim.endpoint,
        "--rate",
        str(RATE),
        "--max-pending-wait",
        "0",
    ]


async def run_channel(
    sim: RunningSimulator, tmp_path: Path, channel: str, data: bytes, stderr: int
) -> tuple[int, str, Path]:
    """Run `poller run` with the tokens arriving through `channel`; (exit status, stderr, out)."""
    out = tmp_path / "out.jsonl"
    stdin_data: bytes | None = None
    writer: threading.Thread | None = None
    fifo = tmp_path / "tokens.fifo"
    if channel == "fifo":
        os.mkfifo(fifo)
        writer = feed_fifo(fifo, data)
        argv = [sys.executable, "-m", "poller", *poller_args(sim, str(fifo), out)]
    elif channel in ("/dev/stdin", "-"):
        stdin_data = data
        argv = [sys.executable, "-m", "poller", *poller_args(sim, channel, out)]
    elif channel == "process-substitution":
        source = tmp_path / "tokens.txt"
        source.write_bytes(data)
        # The path the poller sees is /dev/fd/63 or so: a pipe with `cat` at the other end.
        rest = shlex.join(poller_args(sim, "TOKENS", out)).replace(
            "TOKENS", f"<(cat {shlex.quote(str(source))})"
        )
        argv = ["bash", "-c", f"{shlex.quote(sys.executable)} -m poller {rest}"]
    else:
        raise AssertionError(f"unknown channel {channel}")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=DEMO_ENV,
        stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(stdin_data), timeout=60)
    finally:
        if writer is not None:
            release_fifo_writer(fifo, writer)
    assert proc.returncode is not None
    return proc.returncode, (err or b"").decode(errors="replace"), out


CASES = [
    # (channel, stderr a terminal, tokens)
    ("fifo", True, 2000),
    ("fifo", False, 1500),
    ("/dev/stdin", True, 2000),
    ("/dev/stdin", False, 1000),
    ("-", True, 1200),
    ("process-substitution", True, 2000),
    ("process-substitution", False, 800),
]


@pytest.mark.parametrize(("channel", "tty", "n"), CASES)
async def test_every_piped_token_gets_exactly_one_line(
    tmp_path: Path, channel: str, tty: bool, n: int
) -> None:
    tokens = make_tokens(n)
    data = ("\n".join(tokens) + "\n").encode()
    assert len(data) > 64 * 1024 or n < 1500  # the big cases outgrow a pipe buffer
    config = SimulatorConfig(rate=RATE, any_token=True, pending_share=0.0, seed=9)
    async with running_simulator(config) as sim:
        with terminal_or_pipe(tty) as (stderr, terminal):
            status, err, out = await run_channel(sim, tmp_path, channel, data, stderr)
        asked = sim.stats()["by_action"].get("GetSdkVerificationResult", 0)

    shown = err if not tty else b"".join(terminal).decode(errors="replace")
    lines = records(out)
    per_token = Counter(r["token"] for r in lines)
    missing = [t for t in tokens if t not in per_token]
    assert not missing, f"{len(missing)} of {n} tokens have no line (exit {status}): {shown}"
    assert set(per_token) == set(tokens)
    assert max(per_token.values()) == 1
    assert len(lines) == n
    assert asked == sum(r["attempts"] for r in lines)
    not_final = sum(1 for r in lines if not r["final"])
    assert status == (1 if not_final else 0), shown
    if tty:
        # The terminal case really had the bar on (tqdm redraws with carriage returns).
        assert "\r" in shown, shown
        # A person at a terminal gets the summary as a table (cron's `summary:` line is below).
        assert f"\nsummary\r\n  tokens        {n} (" in shown, shown
    else:
        assert f"summary: {n} tokens in " in shown, shown
