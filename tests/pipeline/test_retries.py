"""`RetryPolicy`: the bounds of a token's attempts and the backoff between them (SPEC §5)."""

from __future__ import annotations

import random

import pytest
from tenacity import RetryCallState, wait_random_exponential

from poller.api.outcomes import Throttled, Transient
from poller.pipeline.pacing import RetryBudget
from poller.pipeline.retries import GiveUp, RetryPolicy
from tests.helpers import make_settings

THROTTLE = Throttled("RequestLimitExceeded", "over the limit")
FAULT = Transient("Transport.Timeout", "no answer")


def policy(budget: float = 100.0, **settings: float) -> RetryPolicy:
    return RetryPolicy(make_settings(**settings), RetryBudget(budget, 0.0))


@pytest.mark.parametrize(
    ("fault", "attempts", "throttled", "expected"),
    [
        (FAULT, 1, 0, None),
        (FAULT, 2, 0, None),
        (FAULT, 3, 0, GiveUp.ATTEMPTS),  # max_attempts 3 failures
        (FAULT, 5, 2, GiveUp.ATTEMPTS),  # 3 failures between 2 throttles
        (FAULT, 4, 2, None),  # throttles do not count against max_attempts
        (THROTTLE, 9, 9, None),
        (THROTTLE, 10, 10, GiveUp.ATTEMPTS),  # max_throttled_attempts 10
        (THROTTLE, 12, 10, GiveUp.ATTEMPTS),
    ],
)
def test_the_bounds(
    fault: Throttled | Transient, attempts: int, throttled: int, expected: GiveUp | None
) -> None:
    rules = policy(max_attempts=3, max_throttled_attempts=10)
    assert rules.give_up(fault, attempts=attempts, throttled=throttled) is expected


def test_a_retry_spends_the_budget_and_a_throttle_does_not() -> None:
    rules = policy(budget=1.0, max_attempts=10)
    assert rules.give_up(THROTTLE, attempts=1, throttled=1) is None
    assert rules.budget.level == 1.0
    assert rules.give_up(FAULT, attempts=1, throttled=0) is None
    assert rules.budget.level == 0.0
    assert rules.give_up(FAULT, attempts=2, throttled=0) is GiveUp.BUDGET
    assert rules.budget.denied == 1


def test_a_token_at_its_bound_leaves_the_budget_alone() -> None:
    rules = policy(budget=1.0, max_attempts=1)
    assert rules.give_up(FAULT, attempts=1, throttled=0) is GiveUp.ATTEMPTS
    assert (rules.budget.level, rules.budget.denied) == (1.0, 0)  # no retry, nothing charged


def test_the_backoff_is_tenacitys_full_jitter() -> None:
    rules = policy(backoff_base=0.5, backoff_max=4.0)
    tenacity_wait = wait_random_exponential(multiplier=0.5, max=4.0)
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    for attempts in range(1, 40):
        state.attempt_number = attempts
        random.seed(attempts)
        ours = rules.backoff(FAULT, attempts=attempts)
        random.seed(attempts)
        assert ours == tenacity_wait(state)


def test_after_a_throttle_a_token_only_goes_to_the_back_of_the_line() -> None:
    rules = policy(backoff_base=0.5, backoff_max=4.0)
    waits = [rules.backoff(THROTTLE, attempts=n) for n in range(1, 200)]
    assert max(waits) <= 0.5  # never the growing penalty of a failure
    assert len(set(waits)) > 1  # jittered


def test_a_huge_attempt_number_is_capped_not_an_overflow() -> None:
    rules = policy(backoff_base=0.5, backoff_max=4.0)
    assert 0 <= rules.backoff(FAULT, attempts=100_000) <= 4.0


# --- tenacity running a token's retries ----------------------------------------------------


class _Tally:
    def __init__(self) -> None:
        self.tries = 0
        self.throttled = 0
        self.budget_denied = False


async def _drive(rules: RetryPolicy, answers: list[object]) -> tuple[object, _Tally, list[float]]:
    """The engine's loop over `retrying`, with scripted outcomes and recorded sleeps."""
    tally, sleeps = _Tally(), []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    def attempt() -> object:
        tally.tries += 1
        outcome = answers.pop(0)
        tally.throttled += isinstance(outcome, Throttled)
        return outcome

    outcome = attempt()  # the bare first attempt
    async for step in rules.retrying(tally, sleep):
        if step.retry_state.attempt_number > 1:
            outcome = attempt()
        step.retry_state.set_result(outcome)
    return outcome, tally, sleeps


async def test_tenacity_retries_until_an_outcome_needs_no_retry() -> None:
    settled = object()  # anything that is not a Retry ends the loop
    outcome, tally, sleeps = await _drive(policy(), [FAULT, THROTTLE, FAULT, settled])
    assert outcome is settled
    assert tally.tries == 4
    assert tally.throttled == 1
    assert len(sleeps) == 3  # one backoff before each retry, none after the answer


async def test_tenacity_stops_at_the_bound_with_the_last_failure() -> None:
    outcome, tally, sleeps = await _drive(policy(max_attempts=3), [FAULT] * 10)
    assert outcome is FAULT
    assert tally.tries == 3  # max_attempts: no fourth request
    assert len(sleeps) == 2
    assert not tally.budget_denied


async def test_tenacity_stops_when_the_budget_refuses_and_says_so() -> None:
    outcome, tally, _ = await _drive(policy(budget=1.0), [FAULT] * 10)
    assert outcome is FAULT
    assert tally.tries == 2  # the one retry the budget paid for
    assert tally.budget_denied
