"""Config test fixtures: an empty home, a TOML writer, and `build_settings` bound to them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from poller.config.settings import Settings, build_settings
from tests.config.support import Build


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty home directory, so the real ~/.tencentcloud/credentials never leaks in."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[..., str]:
    def write(text: str, name: str = "config.toml", mode: int = 0o600) -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        return str(path)

    return write


@pytest.fixture
def build(home: Path) -> Build:
    def run(
        config_path: str | None = None,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        need_credentials: bool = False,
    ) -> tuple[Settings, list[str]]:
        return build_settings(
            config_path=config_path,
            flags=flags or {},
            env=env if env is not None else {},
            home=home,
            need_credentials=need_credentials,
        )

    return run
