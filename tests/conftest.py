"""Fixtures shared across test modules."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import SECRET_ID, SECRET_KEY
from tests.simulator_support import FakeClock


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test, created inside the test's loop (never at import)."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    """Wall-clock seconds that move only when the test says so."""
    return FakeClock()


@pytest.fixture
def user_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A user's shell: credentials in TENCENTCLOUD_*, no FACEID_POLLER_* settings, and a HOME
    with no ~/.tencentcloud profile. Returns the test's tmp_path."""
    for name in list(os.environ):
        if name.startswith(("TENCENTCLOUD_", "FACEID_POLLER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path
