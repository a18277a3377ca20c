"""Run the simulator on a loopback port: the async context manager tests and benchmarks use."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .app import SIMULATOR_KEY, Decision, make_app
from .config import SimulatorConfig
from .requestlog import LoggedRequest


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """A listening simulator: where it is, and its live counters."""

    port: int
    endpoint: str
    app: web.Application

    def stats(self) -> dict[str, Any]:
        """The same document as `GET /__stats`, read in-process (no HTTP round trip)."""
        return self.app[SIMULATOR_KEY].snapshot()

    def media_log(self) -> list[tuple[str, str]]:
        """Every media request since start (or the last stats reset) in arrival order, as
        (path without the query, outcome): outcome is "ok", "bad_sign", "expired", "not_found"
        or "fault:<kind>". The same list as `GET /__media_log`."""
        return list(self.app[SIMULATOR_KEY].media.log)

    def media_files(self, token: str) -> list[tuple[str, str, int]]:
        """(field, MD5, size) of every file a settled answer for `token` links to, e.g.
        ("CompareResults[0].BestFrame", "9e10...", 123456); [] for a token with no answer.
        What the simulator decided, for holding an archive against without parsing answers."""
        simulator = self.app[SIMULATOR_KEY]
        plan = simulator.plan_of(token)
        if plan is None:
            return []
        return [(f.field, f.md5, f.size) for f in simulator.media.files(plan)]

    def media_link(self, path: str) -> str:
        """A freshly signed link to `path` ("/media/<folder>/<name>"), whether or not a file is
        there: how a test reaches the 404 of a validly signed link."""
        simulator = self.app[SIMULATOR_KEY]
        return simulator.media.signer.url(path, simulator.token_now())

    def request_log(self) -> list[LoggedRequest]:
        """The kept arrivals, oldest first (`request_log_size` > 0; else a ValueError)."""
        log = self.app[SIMULATOR_KEY].request_log
        if log is None:
            raise ValueError("the request log is off: set SimulatorConfig.request_log_size")
        return log.entries()

    def mint(self, n: int) -> list[str]:
        """Mint `n` tokens in-process: no HTTP, no quota spent (tests that need them fast)."""
        simulator = self.app[SIMULATOR_KEY]
        return [simulator.mint_local() for _ in range(n)]

    def decision(self, token: str) -> Decision:
        """What the simulator answers for `token` once settled; not counted as a query."""
        return self.app[SIMULATOR_KEY].decision(token)


@asynccontextmanager
async def running_simulator(
    config: SimulatorConfig, *, clock: Callable[[], float] | None = None
) -> AsyncIterator[RunningSimulator]:
    """Serve `config` on its host and port (0 = a free port) until the block exits."""
    app = make_app(config, clock=clock or time.time)
    # shutdown_timeout bounds how long a stalled request can hold up the exit.
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=config.shutdown_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = int(runner.addresses[0][1])
        host = config.host if ":" not in config.host else f"[{config.host}]"
        endpoint = f"http://{host}:{port}"
        app[SIMULATOR_KEY].media.signer.base = endpoint  # links point back at this server
        yield RunningSimulator(port=port, endpoint=endpoint, app=app)
    finally:
        await runner.cleanup()
