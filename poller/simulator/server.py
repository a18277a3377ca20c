"""Run the simulator on a loopback port: the async context manager tests and benchmarks use."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .app import SIMULATOR_KEY, make_app
from .config import SimulatorConfig


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """A listening simulator: where it is, and its live counters."""

    port: int
    endpoint: str
    app: web.Application

    def stats(self) -> dict[str, Any]:
        """The same document as `GET /__stats`, read in-process (no HTTP round trip)."""
        simulator = self.app[SIMULATOR_KEY]
        return simulator.stats.snapshot(simulator.quota, simulator.store)


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
        yield RunningSimulator(port=port, endpoint=f"http://{host}:{port}", app=app)
    finally:
        await runner.cleanup()
