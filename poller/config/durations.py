"""A duration as people write it on a command line (`90m`, `4s`, `1h30m`, `2h`), in seconds.

Pure: no I/O. `--stop-after`, its TOML key `stop_after` and FACEID_POLLER_STOP_AFTER all come
through here, so the three accept and refuse exactly the same texts.
"""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
# One or more number+unit parts, largest unit first, each unit at most once: "1h30m", "4s",
# "1.5h". A bare number is seconds (a TOML `stop_after = 5400` means what it says).
_DURATION = re.compile(
    r"(?:(?P<d>\d+(?:\.\d+)?)d)?(?:(?P<h>\d+(?:\.\d+)?)h)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?",
    re.ASCII,
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?", re.ASCII)


def parse_duration(value: object) -> float:
    """Seconds in `value`: "90m", "4s", "1h30m", "2h", "1d", "0.5h", or a number of seconds.

    Raises ValueError (with the accepted forms) for anything else, a negative or a non-finite
    number included."""
    if isinstance(value, bool):
        raise ValueError(_explain(value))
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        else:
            match = _DURATION.fullmatch(text)
            if not text or match is None:
                raise ValueError(_explain(value))
            seconds = sum(float(n) * _UNITS[unit] for unit, n in match.groupdict().items() if n)
    else:
        raise ValueError(_explain(value))
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(_explain(value))
    return seconds


def _explain(value: object) -> str:
    return f"{value!r} is not a duration such as 90m, 4s, 1h30m or 2h (or seconds)"


def format_duration(seconds: float) -> str:
    """The inverse, for messages: 5400 -> "1h30m", 4 -> "4s", 90061 -> "25h01m01s"."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m" + (f"{secs:02d}s" if secs else "")
    if minutes:
        return f"{minutes}m" + (f"{secs:02d}s" if secs else "")
    return f"{secs}s"
