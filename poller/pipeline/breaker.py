"""The circuit breaker of SPEC §2: a systemic failure costs tens of requests, not a whole file.

When Tencent starts answering every token with a code the table does not know, or the service
is down so that every token ends in faults that outlasted its retries, each token still looks
like a per-token problem; only the run of identical outcomes shows it is not. The breaker
counts identical non-success outcomes in a row; any other outcome resets the count.
"""

from __future__ import annotations


class Breaker:
    """`record(outcome)` returns True when `threshold` identical outcomes came in a row."""

    __slots__ = ("_last", "streak", "threshold")

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold  # 0 turns the breaker off
        self._last: str | None = None
        self.streak = 0

    def record(self, outcome: str | None) -> bool:
        """`outcome` names a non-success (an unlisted code, "retries exhausted"); None resets."""
        if outcome is None:
            self._last, self.streak = None, 0
            return False
        if outcome == self._last:
            self.streak += 1
        else:
            self._last, self.streak = outcome, 1
        return self.threshold > 0 and self.streak >= self.threshold

    def __repr__(self) -> str:
        return f"<Breaker streak={self.streak}/{self.threshold} outcome={self._last!r}>"
