"""Logging for the "poller" logger: plain text or JSON lines, levels, and secret redaction.

Only the "poller" logger is configured (never the root logger: a library user's logging stays
theirs), with one handler that replaces any previous one, so calling `setup_logging` twice
does not print every line twice.

Secrets are redacted twice over: `SecretFilter` scrubs the record (message, arguments,
exception text, stack, string extras) before any handler formats it, and the handler scrubs
the finished line as well, so that even a bug that logs a secret inside a nested structure
cannot write it out.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from tqdm import tqdm

REDACTED = "[REDACTED]"
# Shorter values are too likely to occur by chance (a word, a number, part of a token) and
# would mangle ordinary log lines; real SecretIds and SecretKeys are 32-36 characters.
MIN_SECRET_LENGTH = 8

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)
_JSON_FIELDS = ("ts", "level", "logger", "message")
# A signed link's query string is a credential for its file (SPEC §8): whatever logs a link,
# the line keeps its scheme, host and path only.
_SIGNED_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*", re.IGNORECASE)


class SecretRegistry:
    """The strings that must never appear in a log line."""

    __slots__ = ("_pattern", "_secrets")

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> bool:
        """Register `value`; returns False (and ignores it) when it is too short to redact."""
        if len(value) < MIN_SECRET_LENGTH:
            return False
        if value not in self._secrets:
            self._secrets.add(value)
            # Longest first, so a secret that contains another is replaced whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)))
        return True

    def redact(self, text: str) -> str:
        if "://" in text:
            text = _SIGNED_QUERY.sub(rf"\1?{REDACTED}", text)
        if self._pattern is None:
            return text
        return self._pattern.sub(REDACTED, text)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __len__(self) -> int:
        return len(self._secrets)

    def __repr__(self) -> str:
        return f"<SecretRegistry {len(self._secrets)} secrets>"  # the count, never the values


_registry = SecretRegistry()


def register_secret(value: str) -> bool:
    """Redact `value` from every log line from now on (values under 8 characters are ignored;
    the return value says whether it was registered)."""
    return _registry.add(value)


class SecretFilter(logging.Filter):
    """Replaces registered secrets in a record before it is formatted; never drops a record.

    Without a registry of its own it uses the one `register_secret` fills, looked up at each
    record, so secrets registered after logging was set up are redacted too."""

    def __init__(self, registry: SecretRegistry | None = None) -> None:
        super().__init__()
        self._registry = registry

    @property
    def registry(self) -> SecretRegistry:
        return self._registry if self._registry is not None else _registry

    def filter(self, record: logging.LogRecord) -> bool:
        registry = self.registry
        if not registry:
            return True
        redact = registry.redact
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - bad %-args: the handler reports it, redacted too
            record.msg = redact(str(record.msg))
            if isinstance(record.args, tuple):
                record.args = tuple(redact(repr(arg)) for arg in record.args)
        else:
            # Fold the arguments in: a secret inside an argument's repr is caught as well.
            record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (RFC 3339, UTC), level, logger, message, then extras.

    An extra named like a base field is kept under that name plus "_" rather than lost."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES:
                entry[f"{key}_" if key in _JSON_FIELDS else key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # default=str: an extra that JSON cannot encode is logged as its str(), not an error.
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler[TextIO]):
    """A stream handler that redacts the finished line and steps around a progress bar."""

    def __init__(self, stream: TextIO, secret_filter: SecretFilter) -> None:
        super().__init__(stream)
        self._secret_filter = secret_filter
        self.addFilter(secret_filter)

    def format(self, record: logging.LogRecord) -> str:
        return self._secret_filter.registry.redact(super().format(record))

    def emit(self, record: logging.LogRecord) -> None:
        # A live tqdm bar on the same terminal: clear it, write the line, redraw it below.
        # Only when a bar exists: the check is free, tqdm's lock is not.
        if getattr(tqdm, "_instances", None):
            with tqdm.external_write_mode(file=self.stream):
                super().emit(record)
        else:
            super().emit(record)


LogFormat = Literal["text", "json"]


def setup_logging(
    verbose: int,
    quiet: bool,
    fmt: LogFormat = "text",
    stream: TextIO | None = None,
) -> None:
    """Configure the "poller" logger for a run.

    Levels: `quiet` → WARNING (and wins over -v); default and `-v` → INFO; `-vv` → DEBUG.
    Text lines read `poller: <message>`; JSON lines are described in `JsonFormatter`."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    # sys.stderr looked up now, not at import: a redirected or captured stderr is honoured.
    handler = _Handler(stream or sys.stderr, SecretFilter())
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("poller: %(message)s")
    )
    logger = logging.getLogger("poller")
    for old in logger.handlers[:]:
        logger.removeHandler(old)
        if isinstance(old, _Handler):
            old.close()  # ours: release it (closing a StreamHandler never closes its stream)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
