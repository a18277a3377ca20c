"""Where the shared schedule lives, and under which key: pure, so it is tested without Redis.

A Redis URL may carry a password (`redis://:secret@host/0`). It is needed to connect and must
never be shown: every message names the server by `RedisAddress.shown`, the URL without it,
and `repr` shows nothing else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

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
    # Every form a secret of the URL can take in a message (the password as written and
    # decoded, a `?password=` value): what a scrubber replaces.
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return f"RedisAddress({self.shown!r})"

    def __str__(self) -> str:
        return self.shown


def parse_address(url: str, *, setting: str = "shared_quota") -> RedisAddress:
    """Check a `redis://`, `rediss://` (TLS) or `unix://` URL; `ConfigError` names what is
    wrong in one sentence, without the password."""
    url = url.strip()
    shown, password, secrets = _redact(url)
    userinfo = url.partition("://")[2].rpartition("@")[0]
    if any(c in userinfo for c in "/?#"):
        # urlsplit (and redis-py) would cut the password there and read part of it as the
        # host; refuse rather than misread it.
        raise ConfigError(
            f"{setting} {shown!r}: the password must be percent-encoded "
            "(/ as %2F, ? as %3F, # as %23)."
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        raise ConfigError(
            f"{setting} must be a Redis URL like redis://HOST:6379/0, not {shown!r}."
        ) from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"{setting} must be a redis://, rediss:// (TLS) or unix:// URL, not {shown!r}."
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{setting} {shown!r} names no host.")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{setting} {shown!r}: the port must be between 1 and 65535.")
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(f"{setting} {shown!r} names no socket path.")
    if parts.scheme != "unix" and parts.path not in ("", "/"):
        db = parts.path.lstrip("/")
        if not db.isdigit():
            raise ConfigError(
                f"{setting} {shown!r}: the path must be a database number (redis://HOST:6379/0)."
            )
    return RedisAddress(url=url, shown=shown, password=password, secrets=secrets)


def _redact(url: str) -> tuple[str, str, tuple[str, ...]]:
    """(the URL without password, query or fragment; the password; every secret's forms).

    Done on the raw text, not on urlsplit's reading, which a password holding "/" or "#"
    fools into showing it whole."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>", "", ()
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        hostpart = rest
    # The query may hold ?password=...: it is never shown (nor is the fragment).
    hostpart, _, query = hostpart.partition("?")
    hostpart = hostpart.partition("#")[0]
    query = query.partition("#")[0]
    user, colon, raw_password = userinfo.partition(":")
    shown = f"{scheme}://{user + '@' if user else ''}{hostpart}"
    secrets = [raw_password, unquote(raw_password)] if colon and raw_password else []
    for name, value in parse_qsl(query, keep_blank_values=False):
        if "password" in name.lower():
            secrets += [value, quote(value, safe="")]
    return shown, unquote(raw_password) if colon else "", tuple(s for s in secrets if s)


def schedule_key(secret_id: str, action: str) -> str:
    """One schedule per account and action: a hash of the SecretId, never the SecretId itself
    (anyone who can read Redis's keys must not learn it)."""
    digest = hashlib.sha256(f"{secret_id}\0{action}".encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}{digest}"
