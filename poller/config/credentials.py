"""Where the API keys come from: environment, config file, or the SDK's profile (SPEC §3).

Kept apart from the other settings because these values are secrets: no message, warning or
repr built here ever shows a key or a token, only where the pair was found.
"""

from __future__ import annotations

import configparser
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poller.config.errors import ConfigError

__all__ = ["CREDENTIAL_KEYS", "Credentials", "resolve_credentials"]

#: The config-file keys that hold credentials rather than settings.
CREDENTIAL_KEYS = ("secret_id", "secret_key", "session_token")


@dataclass(frozen=True, slots=True)
class Credentials:
    secret_id: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    source: str = "environment"

    def __repr__(self) -> str:  # the key and token never reach a log, even via repr()
        return f"Credentials(secret_id={self.secret_id!r}, secret_key=***, source={self.source!r})"


def _warn_if_exposed(path: str, warnings: list[str]) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.append(
            f"{path} holds a secret key and can be read by other users; run: chmod 600 {path}"
        )


def _profile_credentials(home: Path, warnings: list[str]) -> Credentials | None:
    """The official SDK's profile file, `~/.tencentcloud/credentials`, section [default]."""
    path = home / ".tencentcloud" / "credentials"
    if not path.is_file():
        return None
    # No interpolation: a "%" in a secret key is data, not a reference to another option.
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError):
        raise ConfigError(f"credentials file {path} is not a valid INI file.") from None
    if not parser.has_section("default"):
        return None
    sec = parser["default"]
    sid, skey = sec.get("secret_id", "").strip(), sec.get("secret_key", "").strip()
    if not (sid and skey):
        return None
    _warn_if_exposed(str(path), warnings)
    return Credentials(sid, skey, sec.get("token", "").strip() or None, source=str(path))


def resolve_credentials(
    env: Mapping[str, str],
    file_values: Mapping[str, Any],
    config_path: str | None,
    home: Path,
    warnings: list[str],
) -> Credentials | None:
    """First found wins: environment, then the config file, then the SDK profile (SPEC §3)."""
    for key in CREDENTIAL_KEYS:
        if key in file_values and not isinstance(file_values[key], str):
            # The value itself is never shown: it may be a secret.
            raise ConfigError(f"config file {config_path}: {key} must be a string.")
    fid, fkey = file_values.get("secret_id", ""), file_values.get("secret_key", "")
    # A readable file holding a secret is a leak whichever credentials win this run.
    if config_path and (fkey or file_values.get("session_token")):
        _warn_if_exposed(config_path, warnings)
    sid, skey = env.get("TENCENTCLOUD_SECRET_ID", ""), env.get("TENCENTCLOUD_SECRET_KEY", "")
    if sid and skey:
        return Credentials(sid, skey, env.get("TENCENTCLOUD_TOKEN") or None, source="environment")
    if fid or fkey:
        if not (fid and fkey):
            raise ConfigError(
                f"config file {config_path} must set both secret_id and secret_key as strings."
            )
        token = file_values.get("session_token") or None
        return Credentials(fid, fkey, token, source=str(config_path))
    return _profile_credentials(home, warnings)
