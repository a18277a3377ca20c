"""A real redis-server for the shared-quota tests, started on a free loopback port.

Ours rather than pytest-redis's: the tests need to kill the server mid-run and bring it back on
the same port (issue 12, "Redis killed mid-run"), which is three lines here. The binary comes
from the OS packages (`make test` installs it, scripts/ensure-redis-server); when it is missing
the test *fails* with one sentence saying how to get it: the Redis tests never skip silently.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def redis_server_binary() -> str:
    found = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        pytest.fail(
            "redis-server is not installed: run `make test` (it installs Debian's package when "
            "it can) or `apt-get install -y redis-server`, or set REDIS_SERVER to its path",
            pytrace=False,
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; `kill()` and `start()` again keep its port and password."""

    def __init__(self, directory: Path, *, password: str = "") -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.port = free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_until_serving()

    def _wait_until_serving(self) -> None:
        # Polls the port the server itself opens (it says nothing on stdout at this log level):
        # a bounded poll of a real condition, not a sleep standing in for one.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    reply = conn.recv(64)
                if reply.startswith((b"+PONG", b"-NOAUTH")):
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"redis-server did not start on port {self.port} within 10 s")

    def __enter__(self) -> RedisServer:
        """A server of the test's own (a password, say), stopped when the block ends."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def flush(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password or None)
        try:
            client.flushall()
        finally:
            client.close()


class DelayProxy:
    """A loopback TCP proxy that delays every chunk by `delay` seconds each way: a Redis on
    another continent, for the test that the pace survives a long round trip."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer),
                self._pipe(up_reader, writer),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            up_writer.close()
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                # Delivered `delay` later, in order, without holding up the reading.
                loop.call_later(self.delay, writer.write, data)
        finally:
            loop.call_later(self.delay, writer.close)
