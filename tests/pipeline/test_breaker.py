"""The circuit breaker (poller/pipeline/breaker.py): identical non-successes in a row trip it.

What the engine does when it trips (stop the run, exit 3, one sentence) is
tests/test_unknown_codes_and_breaker.py.
"""

from __future__ import annotations

import pytest

from poller.pipeline.breaker import Breaker


@pytest.mark.parametrize("threshold", [1, 3, 50])
def test_breaker_counts_identical_outcomes_in_a_row(threshold: int) -> None:
    breaker = Breaker(threshold)
    trips = [breaker.record("X") for _ in range(threshold)]
    assert trips == [False] * (threshold - 1) + [True]
    breaker.record(None)
    assert breaker.streak == 0
    assert not breaker.record("X") or threshold == 1


def test_a_different_outcome_starts_a_new_streak_of_one() -> None:
    breaker = Breaker(3)
    assert not breaker.record("A")
    assert not breaker.record("A")
    assert not breaker.record("B")  # would have been the third in a row of A
    assert breaker.streak == 1
    assert not breaker.record("B")
    assert breaker.record("B")


def test_it_stays_tripped_while_the_same_outcome_keeps_coming() -> None:
    breaker = Breaker(2)
    assert [breaker.record("X") for _ in range(4)] == [False, True, True, True]
    assert breaker.streak == 4


def test_a_success_resets_the_streak() -> None:
    breaker = Breaker(3)
    breaker.record("X")
    breaker.record("X")
    assert not breaker.record(None)
    assert not breaker.record("X")  # one after the reset, not three in a row
    assert not breaker.record("X")
    assert breaker.record("X")


def test_threshold_0_never_trips() -> None:
    breaker = Breaker(0)
    assert not any(breaker.record("X") for _ in range(1000))
    assert breaker.streak == 1000  # still counted, for the record


def test_the_repr_shows_the_streak_and_the_outcome() -> None:
    breaker = Breaker(5)
    breaker.record("FailedOperation.New")
    breaker.record("FailedOperation.New")
    assert repr(breaker) == "<Breaker streak=2/5 outcome='FailedOperation.New'>"
