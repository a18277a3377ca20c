"""Where the shared schedule lives, and under which key: pure, so it is tested without Redis.

A Redis URL may carry a password (`redis://:secret@host/0`). It is needed to connect and must
never be shown: every message names the server by `RedisAddress.shown`, the URL without it,
and `repr` shows nothing else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from poller.config.errors import ConfigError

SCHEMES = ("redis", "rediss", "unix")
#: Keys of the shared schedule start with this, so they are easy to find (and to leave alone).
KEY_PREFIX = "faceid-poller:quota:"


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """A checked Redis URL; `shown` is safe to print, `url` is not."""

    url: str = field(repr=False)
    shown: str
    password: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"RedisAddress({self.shown!r})"

    def __str__(self) -> str:
        return self.shown


def parse_address(url: str, *, setting: str = "shared_quota") -> RedisAddress:
    """Check a `redis://`, `rediss://` (TLS) or `unix://` URL; `ConfigError` names what is
    wrong in one sentence, without the password."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        shown = _without_password(url)
        raise ConfigError(
            f"{setting} must be a Redis URL like redis://HOST:6379/0, not {shown!r}."
        ) from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"{setting} must be a redis://, rediss:// (TLS) or unix:// URL, not "
            f"{_without_password(url)!r}."
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{setting} {_without_password(url)!r} names no host.")
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(f"{setting} {_without_password(url)!r} names no socket path.")
    if parts.scheme != "unix" and parts.path not in ("", "/"):
        db = parts.path.lstrip("/")
        if not db.isdigit():
            raise ConfigError(
                f"{setting} {_without_password(url)!r}: the path must be a database number "
                "(redis://HOST:6379/0)."
            )
    del port
    return RedisAddress(
        url=url.strip(),
        shown=_without_password(url.strip()),
        password=unquote(parts.password or ""),
    )


def _without_password(url: str) -> str:
    """The URL with any password left out (user names stay: they are not secret)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return "<an unreadable URL>"
    if "@" not in netloc:
        return url
    userinfo, _, hostport = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    shown = f"{user}@{hostport}" if user else hostport
    return parts._replace(netloc=shown).geturl()


def schedule_key(secret_id: str, action: str) -> str:
    """One schedule per account and action: a hash of the SecretId, never the SecretId itself
    (anyone who can read Redis's keys must not learn it)."""
    digest = hashlib.sha256(f"{secret_id}\0{action}".encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}{digest}"
