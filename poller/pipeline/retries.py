"""Retrying a token whose attempt failed: when it gets another, how long it waits, and tenacity
running the attempts (SPEC §5).

Most tokens settle on their first attempt, which the engine makes bare: an `AsyncRetrying`
costs 25-30 us to build and enter, a tenth of the CPU per token (docs/benchmarks.md). A token
whose first attempt failed gets one (`RetryPolicy.retrying`): tenacity takes that attempt as
its attempt 1 and runs the rest, asking this policy whether to go on (`give_up`, its stop) and
how long to wait (`backoff`, its wait). The rules are written here, where tests call them
directly; a test pins the backoff to tenacity's `wait_random_exponential`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_result
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from poller.api.outcomes import Outcome, Retry, Throttled
from poller.config.settings import Settings
from poller.pipeline.pacing import RetryBudget

# 2**62 * any sane base is far above any cap; a bigger power would overflow the float.
_MAX_DOUBLINGS = 62


class GiveUp(Enum):
    """Why a token gets no further attempt."""

    ATTEMPTS = "attempts"  # max_attempts failures, or max_throttled_attempts throttles
    BUDGET = "budget"  # the run's retry budget is spent: too many failures at once


class Tally(Protocol):
    """One token's attempts, as the engine counts them."""

    tries: int  # attempts made
    throttled: int  # of them, answered with a throttle
    budget_denied: bool  # set here when the run's retry budget refused another


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

    def retrying(self, tally: Tally, sleep: Callable[[float], Awaitable[None]]) -> AsyncRetrying:
        """tenacity's loop for one token whose attempt just failed: iterate it, handing each
        attempt's outcome to `attempt.retry_state.set_result`; it ends when an outcome needs no
        retry or `give_up` says stop. `sleep` is the backoff's (the stop latch's, which ends at
        once when the run stops)."""
        return AsyncRetrying(
            retry=retry_if_result(_is_retry),
            stop=_GiveUp(self, tally),
            wait=_Backoff(self, tally),
            sleep=sleep,
            retry_error_callback=_last_outcome,  # given up: the last outcome, not a RetryError
        )

    def __repr__(self) -> str:
        return (
            f"<RetryPolicy max_attempts={self._max_attempts} "
            f"max_throttled={self._max_throttled} {self.budget!r}>"
        )


def _is_retry(outcome: Outcome) -> bool:
    return isinstance(outcome, Retry)


def _last_outcome(retry_state: RetryCallState) -> Outcome:
    assert retry_state.outcome is not None
    result: Outcome = retry_state.outcome.result()
    return result


def _failure(retry_state: RetryCallState) -> Retry:
    """The outcome that asks for a retry (tenacity consults stop and wait only then)."""
    outcome = _last_outcome(retry_state)
    assert isinstance(outcome, Retry)
    return outcome


class _GiveUp(stop_base):
    """tenacity's stop for one token: `RetryPolicy.give_up` over the engine's tally."""

    def __init__(self, policy: RetryPolicy, tally: Tally) -> None:
        self._policy = policy
        self._tally = tally

    def __call__(self, retry_state: RetryCallState) -> bool:
        tally = self._tally
        why = self._policy.give_up(
            _failure(retry_state), attempts=tally.tries, throttled=tally.throttled
        )
        tally.budget_denied = why is GiveUp.BUDGET
        return why is not None


class _Backoff(wait_base):
    """tenacity's wait for one token: `RetryPolicy.backoff` after its latest attempt."""

    def __init__(self, policy: RetryPolicy, tally: Tally) -> None:
        self._policy = policy
        self._tally = tally

    def __call__(self, retry_state: RetryCallState) -> float:
        return self._policy.backoff(_failure(retry_state), attempts=self._tally.tries)
