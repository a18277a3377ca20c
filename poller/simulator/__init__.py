"""An embedded FaceID simulator (aiohttp.web) for tests, demos and benchmarks.

It signs and verifies with `poller.api.signing` and imports nothing else from the poller, so the
poller's tests exercise the client against an independent server rather than against itself.
"""

from __future__ import annotations

from .app import Decision, make_app
from .config import DEMO_SECRET_ID, DEMO_SECRET_KEY, SimulatorConfig
from .mint import MintError, mint_tokens
from .requestlog import LoggedRequest
from .server import RunningSimulator, running_simulator

__all__ = [
    "DEMO_SECRET_ID",
    "DEMO_SECRET_KEY",
    "Decision",
    "LoggedRequest",
    "MintError",
    "RunningSimulator",
    "SimulatorConfig",
    "make_app",
    "mint_tokens",
    "running_simulator",
]
