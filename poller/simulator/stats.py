"""Counters a test or a benchmark reads back from `GET /__stats` to judge the client."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .config import ACTION_RESULT
from .quota import Quota
from .state import TokenStore


class Stats:
    """Running totals; `snapshot()` is the `/__stats` JSON document."""

    __slots__ = (
        "by_action",
        "by_outcome",
        "first_request_at",
        "in_flight",
        "injected_throttles",
        "last_request_at",
        "max_in_flight",
        "requests",
        "signature_failures",
        "throttled",
        "tokens_minted",
    )

    def __init__(self) -> None:
        self.by_action: Counter[str] = Counter()
        self.by_outcome: Counter[str] = Counter()
        self.in_flight = 0
        self.requests = 0
        self.throttled = 0
        self.injected_throttles = 0  # of `throttled`: answered by throttle_share, not the window
        self.signature_failures = 0
        self.max_in_flight = 0
        self.tokens_minted = 0
        # Simulator-clock seconds of the first and the latest API request since the last reset:
        # a benchmark reads start-up time and the span a run used the quota over from them.
        self.first_request_at: float | None = None
        self.last_request_at: float | None = None

    def enter(self, now: float) -> None:
        if self.first_request_at is None:
            self.first_request_at = now
        self.last_request_at = now
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def snapshot(self, quota: Quota, store: TokenStore) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_action": dict(self.by_action),
            "by_outcome": dict(self.by_outcome),
            "throttled": self.throttled,
            "injected_throttles": self.injected_throttles,
            "signature_failures": self.signature_failures,
            # The number the poller's end-to-end tests hold against the quota.
            "max_in_window": quota.max_in_window(ACTION_RESULT),
            "max_in_window_by_action": {
                action: quota.max_in_window(action) for action in sorted(self.by_action)
            },
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "tokens_minted": self.tokens_minted,
            "first_request_at": self.first_request_at,
            "last_request_at": self.last_request_at,
            "tokens_stored": len(store),
            "queries_by_token_count": store.queries_by_token_count(),
        }

    def reset(self) -> None:
        """Zero the counters (in-flight requests stay in flight)."""
        self.requests = 0
        self.by_action.clear()
        self.by_outcome.clear()
        self.throttled = 0
        self.injected_throttles = 0
        self.signature_failures = 0
        self.max_in_flight = self.in_flight
        self.tokens_minted = 0
        self.first_request_at = None
        self.last_request_at = None
