"""The simulator in a process of its own: start it on a free port, wait for the port, stop it.

Used where the simulator's CPU must stay out of the client's figures, or where the client is a
separate program anyway: `make run` and the benchmarks.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class SimulatorProcess:
    argv: tuple[str, ...]
    port: int
    proc: subprocess.Popen[bytes] = field(repr=False)
    stderr: Path = field(repr=False)  # the process's stderr, for a post-mortem

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def simulator_process(
    flags: Sequence[str], *, env: Mapping[str, str] | None = None
) -> Iterator[SimulatorProcess]:
    """`poller simulate --port 0 FLAGS` until the block exits (SIGTERM, then SIGKILL)."""
    workdir = Path(tempfile.mkdtemp(prefix="poller-sim-"))
    port_file, stderr = workdir / "port", workdir / "stderr"
    argv = (sys.executable, "-m", "poller", "simulate", "--port", "0", "--port-file",
            str(port_file), *flags)  # fmt: skip
    with stderr.open("wb") as err:
        proc = subprocess.Popen(  # noqa: S603 - our own CLI
            argv, stdout=subprocess.DEVNULL, stderr=err, env=None if env is None else dict(env)
        )
    try:
        port = _wait_for_port(proc, port_file, stderr)
        yield SimulatorProcess(argv=argv, port=port, proc=proc, stderr=stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_port(proc: subprocess.Popen[bytes], port_file: Path, stderr: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the simulator exited with status {proc.returncode}: "
                f"{stderr.read_text(errors='replace')[-500:]}"
            )
        if port_file.exists():
            return int(port_file.read_text().strip())
        time.sleep(0.02)
    raise RuntimeError(f"the simulator did not start within {START_TIMEOUT:g} s")
