"""What arrived when: a bounded log of API requests, for tests that judge *when* a client sent.

Counters say how many requests came; a test of stop semantics needs to know which token arrived
at which moment, on a clock it shares with the test: `time.monotonic()` (CLOCK_MONOTONIC is one
clock for every process on a Linux host, so a test can send a signal to a client process and
compare). Off unless `request_log_size` > 0; then only the last that many are kept.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class LoggedRequest:
    """One API request: when its handler started, its action, and the SdkToken it asked for.

    `token` is None for requests without one (ApplySdkVerificationToken, a malformed body);
    `answered` is when the handler returned (None while in flight, or if it was cancelled)."""

    seq: int
    arrived: float
    action: str
    token: str | None = None
    answered: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "arrived": self.arrived,
            "action": self.action,
            "token": self.token,
            "answered": self.answered,
        }


class RequestLog:
    """The last `size` arrivals, oldest first; `seq` numbers every arrival since the start."""

    __slots__ = ("_clock", "_entries", "_next")

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: deque[LoggedRequest] = deque(maxlen=size)
        self._clock = clock
        self._next = 0

    def arrive(self, action: str) -> LoggedRequest:
        entry = LoggedRequest(self._next, self._clock(), action)
        self._next += 1
        self._entries.append(entry)
        return entry

    def answer(self, entry: LoggedRequest) -> None:
        entry.answered = self._clock()

    @property
    def total(self) -> int:
        """Arrivals since the start, kept or not (`/__reset_stats` leaves the log alone)."""
        return self._next

    def entries(self) -> list[LoggedRequest]:
        return list(self._entries)

    def snapshot(self) -> dict[str, Any]:
        """The `GET /__log` document."""
        kept = [entry.as_json() for entry in self._entries]
        return {"total": self._next, "dropped": self._next - len(kept), "requests": kept}

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<RequestLog kept={len(self._entries)} total={self._next}>"


def token_of(body: bytes) -> str | None:
    """The SdkToken a request body asks for, if it is a JSON object with a string one."""
    try:
        params = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    token = params.get("SdkToken") if isinstance(params, dict) else None
    return token if isinstance(token, str) else None
