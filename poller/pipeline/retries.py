"""When a token's failed attempt gets another, and how long it waits first (SPEC §5).

The engine's retry loop is a plain `while` over these two decisions, not a tenacity
`AsyncRetrying` per token. Most tokens settle on their first attempt, and building an
`AsyncRetrying` for each cost about a tenth of the CPU per token (py-spy ~8%, docs/benchmarks.md:
tenacity inspects the wrapped function on every call); the earlier way around it ran the first
attempt bare and replayed its failure into a fresh `AsyncRetrying`, which hid the loop. The
rules themselves are a few lines each, so they are written out here, where tests call them
directly: the bounds, the run-wide budget and tenacity's `wait_random_exponential` formula.
"""

from __future__ import annotations

import random
from enum import Enum

from poller.api.outcomes import Retry, Throttled
from poller.config.settings import Settings
from poller.pipeline.pacing import RetryBudget

# 2**62 * any sane base is far above any cap; a bigger power would overflow the float.
_MAX_DOUBLINGS = 62


class GiveUp(Enum):
    """Why a token gets no further attempt."""

    ATTEMPTS = "attempts"  # max_attempts failures, or max_throttled_attempts throttles
    BUDGET = "budget"  # the run's retry budget is spent: too many failures at once


class RetryPolicy:
    """The bounds of one token's attempts and the backoff between them.

    Throttles are not failures (issue 9, item 5): a throttled attempt took a slot and slowed the
    pace, but nothing failed, so it counts against its own, larger bound
    (`max_throttled_attempts`), never against `max_attempts` or the run-wide retry budget. Any
    other failure counts against `max_attempts`, then the budget, which is charged only for a
    retry that will really happen."""

    __slots__ = ("_backoff_base", "_backoff_max", "_max_attempts", "_max_throttled", "budget")

    def __init__(self, settings: Settings, budget: RetryBudget) -> None:
        self.budget = budget
        self._max_attempts = settings.max_attempts
        self._max_throttled = settings.max_throttled_attempts
        self._backoff_base = settings.backoff_base
        self._backoff_max = settings.backoff_max

    def give_up(self, fault: Retry, *, attempts: int, throttled: int) -> GiveUp | None:
        """None to try again after `fault`; else why not. `attempts` made so far, `throttled`
        of them answered with a throttle. Spends from the budget when it says try again."""
        if isinstance(fault, Throttled):
            return GiveUp.ATTEMPTS if throttled >= self._max_throttled else None
        if attempts - throttled >= self._max_attempts:
            return GiveUp.ATTEMPTS
        return None if self.budget.try_spend() else GiveUp.BUDGET

    def backoff(self, fault: Retry, *, attempts: int) -> float:
        """Seconds to wait before the next attempt, after `attempts` attempts.

        After a throttle: uniform(0, base). The pacer has already slowed the whole run down;
        this token only needs to go to the back of the line, not sit out a growing penalty.
        After a failure: full jitter (AWS's "Full Jitter", tenacity's `wait_random_exponential`),
        uniform(0, min(cap, base * 2**(attempts - 1))). tenacity's `wait_exponential_jitter`
        adds jitter on top of the full delay, which keeps the retries of many tokens failing
        together in lockstep; full jitter spreads them."""
        if isinstance(fault, Throttled):
            return random.uniform(0, self._backoff_base)
        doublings = min(max(attempts - 1, 0), _MAX_DOUBLINGS)
        return random.uniform(0, min(self._backoff_max, self._backoff_base * 2**doublings))

    def __repr__(self) -> str:
        return (
            f"<RetryPolicy max_attempts={self._max_attempts} "
            f"max_throttled={self._max_throttled} {self.budget!r}>"
        )
