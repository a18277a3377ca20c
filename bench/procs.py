"""Processes the benchmark starts: the simulator, the poller and the comparison clients.

Every measured program runs in a process of its own, reaped with `os.wait4` so its CPU time and
peak RSS are that one process's own (the simulator, a sibling, is never counted in them).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.model import Section
from poller.simulator import DEMO_SECRET_ID, DEMO_SECRET_KEY
from poller.simulator.process import simulator_process

PYTHON = sys.executable
# Loopback only: a proxy from the environment must never sit between a client and the simulator.
_DROPPED_ENV = re.compile(r"^(FACEID_POLLER_|TENCENTCLOUD_|(HTTPS?|ALL|NO)_PROXY$)", re.IGNORECASE)


def child_env() -> dict[str, str]:
    """The environment of every measured process: no stray settings, the demo credentials."""
    env = {k: v for k, v in os.environ.items() if not _DROPPED_ENV.match(k)}
    env["TENCENTCLOUD_SECRET_ID"] = DEMO_SECRET_ID
    env["TENCENTCLOUD_SECRET_KEY"] = DEMO_SECRET_KEY
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@dataclass(frozen=True, slots=True)
class ChildResult:
    """One finished process: exit status, times, peak memory and what it printed."""

    argv: tuple[str, ...]
    returncode: int
    started_at: float  # wall clock (time.time) just before the process was launched
    wall: float
    cpu_user: float
    cpu_sys: float
    maxrss_mb: float  # ru_maxrss of this process alone (Linux reports KiB)
    stdout: str
    stderr: str

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys


def run_child(
    argv: Sequence[str],
    *,
    terminate_after: float | None = None,
    timeout: float = 300.0,
    cwd: Path | None = None,
) -> ChildResult:
    """Run `argv` to the end and measure it; SIGTERM it after `terminate_after` s if given."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started_at = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(  # noqa: S603 - fixed argv: our own CLI and modules
            list(argv), stdout=out, stderr=err, env=child_env(), cwd=cwd
        )
        timers = [threading.Timer(timeout, _signal, (proc.pid, signal.SIGKILL))]
        if terminate_after is not None:
            timers.append(threading.Timer(terminate_after, _signal, (proc.pid, signal.SIGTERM)))
        for timer in timers:
            timer.start()
        try:
            # wait4, not Popen.wait: the rusage it returns is this child's alone.
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            for timer in timers:
                timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: keep Popen from waiting
        out.seek(0)
        err.seek(0)
        return ChildResult(
            argv=tuple(argv),
            returncode=proc.returncode,
            started_at=started_at,
            wall=wall,
            cpu_user=usage.ru_utime,
            cpu_sys=usage.ru_stime,
            maxrss_mb=usage.ru_maxrss / 1024.0,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone: nothing to stop
        os.kill(pid, signum)


class SimulatorDied(RuntimeError):
    """The simulator process went away mid-measurement (on a shared machine, something else may
    stop it): the measurement is void and worth one more try."""


@dataclass(slots=True)
class Simulator:
    """A `poller simulate` process on 127.0.0.1; stats are read over HTTP."""

    argv: tuple[str, ...]
    port: int
    proc: subprocess.Popen[bytes] = field(repr=False)
    stderr: Path = field(repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.endpoint + "/__stats", timeout=10) as resp:  # noqa: S310
                data: dict[str, Any] = json.loads(resp.read())
        except OSError as exc:
            if self.proc.poll() is not None:
                raise SimulatorDied(f"/__stats failed ({exc}); {self.state()}") from None
            raise RuntimeError(
                f"the simulator did not answer /__stats: {exc}; {self.state()}"
            ) from None
        return data

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise SimulatorDied(self.state())

    def state(self) -> str:
        status = self.proc.poll()
        alive = "still running" if status is None else f"exited with status {status}"
        return f"simulator {alive}, its stderr: {self.stderr.read_text(errors='replace')[-2000:]!r}"

    def reset(self) -> None:
        url = self.endpoint + "/__reset_stats"
        request = urllib.request.Request(url, method="POST")  # noqa: S310 - http://127.0.0.1
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback
            resp.read()


@contextmanager
def simulator(*flags: str) -> Iterator[Simulator]:
    """Start the simulator with `flags` on a free port; stop it (SIGTERM) on the way out.

    Pending tokens are off unless a flag turns them on: a pending token is re-checked 30 s later,
    which measures the re-check schedule, not throughput or pacing."""
    with simulator_process(
        ("--seed", "2026", "--pending-share", "0", *flags), env=child_env()
    ) as sim:
        yield Simulator(argv=sim.argv, port=sim.port, proc=sim.proc, stderr=sim.stderr)


@contextmanager
def scratch(name: str) -> Iterator[Path]:
    """A temp directory for one measurement's files, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def poller_run(tokens: Path, output: Path, endpoint: str, *flags: str) -> tuple[str, ...]:
    """argv of the real `poller run` against a loopback endpoint."""
    return (
        PYTHON, "-m", "poller", "run", "--tokens", str(tokens), "--output", str(output),
        "--endpoint", endpoint, *flags,
    )  # fmt: skip


def write_tokens(path: Path, count: int, *, seed: int = 2026) -> Path:
    """`count` distinct UUID-shaped tokens, one a line (the shape Tencent's tokens mostly have)."""
    rng = random.Random(seed)
    chunk = 50_000
    with path.open("w", encoding="ascii") as fh:
        for start in range(0, count, chunk):
            n = min(chunk, count - start)
            fh.write("".join(f"{uuid.UUID(int=rng.getrandbits(128))}\n" for _ in range(n)))
    return path


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


_SUMMARY_RE = re.compile(
    r"summary: (?P<tokens>\d+) tokens in (?P<elapsed>[\d.]+) s.*?"
    r"requests (?P<requests>\d+) \(retries (?P<retries>\d+), throttled (?P<throttled>\d+), "
    r"slowdowns (?P<slowdowns>\d+)(?:, below target pace (?P<below>[\d.]+) s)?\)"
)


@dataclass(frozen=True, slots=True)
class PollerSummary:
    """The numbers of the poller's one summary line."""

    tokens: int
    elapsed: float
    requests: int
    retries: int
    throttled: int
    slowdowns: int
    below_target: float = 0.0  # seconds the pace spent below its target


def parse_summary(stderr: str) -> PollerSummary:
    match = _SUMMARY_RE.search(stderr)
    if match is None:
        raise RuntimeError(f"no summary line in the poller's stderr:\n{stderr[-2000:]}")
    return PollerSummary(
        tokens=int(match["tokens"]),
        elapsed=float(match["elapsed"]),
        requests=int(match["requests"]),
        retries=int(match["retries"]),
        throttled=int(match["throttled"]),
        slowdowns=int(match["slowdowns"]),
        below_target=float(match["below"] or 0.0),
    )


_TEMP_DIR = re.compile(
    re.escape(tempfile.gettempdir()) + r"/(?:bench-[a-z]+|poller-sim)-[A-Za-z0-9_]+"
)


_LOOPBACK_PORT = re.compile(r"(127\.0\.0\.1):\d+")


def add_run(
    section: Section, title: str, simulator_argv: Sequence[str], child_argv: Sequence[str]
) -> None:
    """List one case's commands under the section: a title, the simulator, the measured run."""
    section.commands += [f"# {title}", shown(simulator_argv), shown(child_argv)]


def shown(argv: Sequence[str]) -> str:
    """A command as a reader would type it: `python` for this interpreter, $TMP for temp dirs,
    PORT for the simulator's port (a fresh one every run)."""
    return " ".join(
        _LOOPBACK_PORT.sub(r"\1:PORT", _TEMP_DIR.sub("$TMP", "python" if arg == PYTHON else arg))
        for arg in argv
    )


def check_exit(result: ChildResult, expected: int | tuple[int, ...] = 0) -> None:
    wanted = (expected,) if isinstance(expected, int) else expected
    if result.returncode not in wanted:
        raise RuntimeError(
            f"{shown(result.argv)} exited {result.returncode} (wanted {wanted}):\n"
            f"{result.stderr[-3000:]}"
        )
