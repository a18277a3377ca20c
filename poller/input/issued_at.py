"""An ``issued_at`` value (RFC 3339 or Unix seconds, SPEC §3) read as Unix seconds, or why not.

Pure: no I/O. Every format's reader hands its raw value here, so the three formats accept and
refuse exactly the same values, with the same reasons.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

__all__ = ["json_kind", "parse_issued_at"]

# Unix seconds of 9999-12-31T23:59:59Z: the last second a datetime can represent.
_MAX_UNIX_SECONDS = 253402300799.0

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
_UNIX_STRING = re.compile(r"\d+(?:\.\d+)?", re.ASCII)


class _BadValue(ValueError):
    """A field value that cannot be used; the message is the reason without the line prefix."""


def parse_issued_at(value: object) -> float | None:
    """Turn an ``issued_at`` value into Unix seconds; None when absent; ValueError says why not.

    Accepts RFC 3339 date-times with 'Z' or an offset (a space may replace 'T', as RFC 3339 §5.6
    allows), and Unix seconds as an int, a float or a numeric string. A date-time without an
    offset is refused rather than guessed: local time would shift the 72-hour window by hours.
    """
    if value is None:
        return None
    if isinstance(value, bool):  # bool is an int subclass: True must not mean 1970-01-01T00:00:01
        raise _BadValue(f"issued_at {value!r} is not RFC 3339 or Unix seconds")
    if isinstance(value, int | float):
        return _unix_seconds(float(value), value)
    if not isinstance(value, str):
        kind = json_kind(value)
        raise _BadValue(f"issued_at must be an RFC 3339 string or Unix seconds, not {kind}")
    text = value.strip()
    if not text:
        return None
    if _UNIX_STRING.fullmatch(text):
        return _unix_seconds(float(text), value)
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise _BadValue(f"issued_at {_quote(value)} is not RFC 3339 or Unix seconds")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset is None:
        raise _BadValue(
            f"issued_at {_quote(value)} has no UTC offset; add 'Z' or an offset such as '+08:00'"
        )
    leap = 1.0 if second == "60" else 0.0  # RFC 3339 allows a leap second; datetime does not
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second) - int(leap),
            tzinfo=UTC,
        )  # fmt: skip
        if offset not in ("Z", "z"):
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            shift = timedelta(hours=hours, minutes=minutes)
            moment = moment - shift if offset[0] == "+" else moment + shift
        seconds = moment.timestamp()
    except (ValueError, OverflowError):
        raise _BadValue(f"issued_at {_quote(value)} is not a valid date and time") from None
    return seconds + leap + (float("0." + fraction) if fraction else 0.0)


def _unix_seconds(seconds: float, original: object) -> float:
    if not math.isfinite(seconds) or not 0 <= seconds <= _MAX_UNIX_SECONDS:
        hint = " (milliseconds? give seconds)" if 1e12 <= seconds < 1e15 else ""
        raise _BadValue(f"issued_at {_quote(original)} is out of range for Unix seconds{hint}")
    return seconds


def _quote(value: object) -> str:
    shown = repr(value)  # escapes control characters and surrogates, quotes strings
    return shown if len(shown) <= 60 else shown[:60] + "…"


def json_kind(value: object) -> str:
    """What JSON calls the type of ``value`` ("a number", "an array"), for a reason's wording."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
