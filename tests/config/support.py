"""Shared by the config tests: fake secrets that must never show, and a settings builder type."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from poller.config.errors import ConfigError
from poller.config.settings import Settings

FAKE_ID = "AKIDfakeIDforSettingsTests"
FAKE_KEY = "zzFAKEsecretKEYmustNEVERappear42"
FAKE_TOKEN = "zzFAKEsessionTOKENmustNEVERappear42"
ENV_CREDS = {"TENCENTCLOUD_SECRET_ID": FAKE_ID, "TENCENTCLOUD_SECRET_KEY": FAKE_KEY}

Build = Callable[..., tuple[Settings, list[str]]]


def write_profile(home: Path, text: str, mode: int = 0o600) -> Path:
    folder = home / ".tencentcloud"
    folder.mkdir(exist_ok=True)
    path = folder / "credentials"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def config_error(build: Build, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        build(**kwargs)
    message = str(info.value)
    assert FAKE_KEY not in message
    assert FAKE_TOKEN not in message
    return message
