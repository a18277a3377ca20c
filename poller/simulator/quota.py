"""A strict sliding one-second window per action, the way a demanding server counts a quota.

A token bucket would forgive a burst after an idle second (SPEC §5 measured 39 in one second
through `AsyncLimiter(20, 1)`); this window does not: at any instant, the admitted requests of the
last second never exceed the capacity. Rejected requests are not admitted, so they do not count.
"""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Admits at most `capacity` requests in any half-open window (t - width, t]."""

    __slots__ = ("_admitted", "capacity", "max_in_window", "width")

    def __init__(self, capacity: int, width: float = 1.0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.width = width
        # Only the last `width` seconds of admissions are kept: memory stays bounded by capacity.
        self._admitted: deque[float] = deque()
        # Every 1 s window with the most admissions ends at an admission, and each admission
        # is checked against its own window, so this running max is exact.
        self.max_in_window = 0

    def _expire(self, now: float) -> None:
        horizon = now - self.width
        while self._admitted and self._admitted[0] <= horizon:
            self._admitted.popleft()

    def try_admit(self, now: float) -> bool:
        """Count one arrival at `now`; False means it is over quota (RequestLimitExceeded)."""
        self._expire(now)
        if len(self._admitted) >= self.capacity:
            return False
        self._admitted.append(now)
        self.max_in_window = max(self.max_in_window, len(self._admitted))
        return True

    def in_window(self, now: float) -> int:
        self._expire(now)
        return len(self._admitted)

    def reset_stats(self) -> None:
        self.max_in_window = len(self._admitted)

    def __repr__(self) -> str:
        return (
            f"<SlidingWindow capacity={self.capacity} width={self.width}s "
            f"held={len(self._admitted)} max_in_window={self.max_in_window}>"
        )


class Quota:
    """One window per action: the real quota is per API, not per account-wide request."""

    __slots__ = ("_capacity", "_windows")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._windows: dict[str, SlidingWindow] = {}

    def window(self, action: str) -> SlidingWindow:
        window = self._windows.get(action)
        if window is None:
            window = self._windows[action] = SlidingWindow(self._capacity)
        return window

    def try_admit(self, action: str, now: float) -> bool:
        return self.window(action).try_admit(now)

    def max_in_window(self, action: str) -> int:
        window = self._windows.get(action)
        return 0 if window is None else window.max_in_window

    def reset_stats(self) -> None:
        for window in self._windows.values():
            window.reset_stats()

    def __repr__(self) -> str:
        return f"<Quota capacity={self._capacity} windows={self._windows!r}>"
