"""Fixtures shared across test modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import SECRET_ID, SECRET_KEY


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
