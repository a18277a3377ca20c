"""Triage (poller/input/triage.py): the verdict on each input item before any request.

Duplicate, already final, invalid, expired (too old), or query: the same decision for the dry
run's plan (tests/input/test_plan.py) and the real run.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from poller.input.entries import BadEntry, TokenEntry
from poller.input.triage import Triage, Verdict

NOW = 1_000_000.0
HOUR = 3600.0


def _triage(
    *,
    max_token_age: float = 72 * HOUR,
    final: Container[str] = (),
    expired_before: Callable[[str], bool] | None = None,
) -> Triage:
    return Triage(
        max_token_age=max_token_age,
        clock=lambda: NOW,
        already_final=final.__contains__,
        expired_before=expired_before,
    )


def test_a_token_is_queried_once_and_its_repeats_are_duplicates() -> None:
    triage = _triage()
    assert triage(TokenEntry("a", 1)) is Verdict.QUERY
    assert triage(TokenEntry("b", 2)) is Verdict.QUERY
    assert triage(TokenEntry("a", 3)) is Verdict.DUPLICATE
    assert triage(TokenEntry("a", 4, NOW - 100 * HOUR)) is Verdict.DUPLICATE  # whatever it says


def test_a_token_final_in_the_output_is_skipped_and_its_repeats_are_duplicates() -> None:
    triage = _triage(final={"done"})
    assert triage(TokenEntry("done", 1)) is Verdict.ALREADY_FINAL
    assert triage(TokenEntry("done", 2)) is Verdict.DUPLICATE
    assert triage(TokenEntry("todo", 3)) is Verdict.QUERY


def test_a_bad_entry_is_invalid_and_its_token_counts_as_seen() -> None:
    triage = _triage()
    assert triage(BadEntry("x\x01", 1, "line 1: token contains a control character")) is (
        Verdict.INVALID
    )
    assert triage(BadEntry("x\x01", 2, "line 2: token contains a control character")) is (
        Verdict.DUPLICATE
    )


def test_a_bad_entry_already_final_in_the_output_is_skipped() -> None:
    # A run that wrote its final line before the input went bad: that line stands.
    triage = _triage(final={"t"})
    assert triage(BadEntry("t", 1, "line 1: issued_at is not a time")) is Verdict.ALREADY_FINAL


def test_tokenless_bad_lines_are_reported_on_every_run() -> None:
    triage = Triage(max_token_age=0, clock=lambda: 0.0, already_final=lambda t: t == "")
    assert triage(BadEntry("", 3, "line 3: not JSON")) is Verdict.INVALID
    assert triage(BadEntry("", 4, "line 4: no token")) is Verdict.INVALID


def test_a_token_issued_over_max_token_age_ago_is_expired() -> None:
    triage = _triage(max_token_age=72 * HOUR)
    assert triage(TokenEntry("old", 1, NOW - 72 * HOUR - 1)) is Verdict.EXPIRED
    assert triage(TokenEntry("edge", 2, NOW - 72 * HOUR)) is Verdict.QUERY  # not *over*
    assert triage(TokenEntry("new", 3, NOW - 60.0)) is Verdict.QUERY
    assert triage(TokenEntry("unknown", 4, None)) is Verdict.QUERY  # no issued_at: ask


def test_max_token_age_0_turns_the_age_check_off() -> None:
    triage = _triage(max_token_age=0)
    assert triage(TokenEntry("ancient", 1, 0.0)) is Verdict.QUERY
    assert triage.age(0.0) is None


def test_age_is_given_only_past_the_window() -> None:
    triage = _triage(max_token_age=HOUR)
    assert triage.age(NOW - 2 * HOUR) == 2 * HOUR
    assert triage.age(NOW - HOUR / 2) is None
    assert triage.age(None) is None


def test_an_expired_line_from_an_earlier_run_stands_while_the_input_says_so() -> None:
    wrote_expired = {"old", "fixed"}.__contains__
    triage = _triage(max_token_age=HOUR, expired_before=wrote_expired)
    assert triage(TokenEntry("old", 1, NOW - 2 * HOUR)) is Verdict.ALREADY_FINAL
    # Its issued_at was corrected since: the token is asked, not blocked for good.
    assert triage(TokenEntry("fixed", 2, NOW - 60.0)) is Verdict.QUERY
    assert triage(TokenEntry("other", 3, NOW - 2 * HOUR)) is Verdict.EXPIRED


# -- --skip-final-in: what earlier runs settled (SPEC §9) ---------------------------------------


def test_a_token_final_in_an_earlier_run_is_skipped_apart_from_the_outputs_own() -> None:
    triage = Triage(
        max_token_age=72 * HOUR,
        clock=lambda: NOW,
        already_final={"both", "tonight"}.__contains__,
        final_earlier={"both", "earlier"}.__contains__,
    )
    assert triage(TokenEntry("earlier", 1)) is Verdict.FINAL_EARLIER
    assert triage(TokenEntry("earlier", 2)) is Verdict.DUPLICATE
    assert triage(TokenEntry("both", 3)) is Verdict.ALREADY_FINAL  # tonight's line counts first
    assert triage(TokenEntry("tonight", 4)) is Verdict.ALREADY_FINAL
    assert triage(TokenEntry("new", 5)) is Verdict.QUERY

    # Settled earlier, then the export went bad: the earlier answer stands, as in resume.
    bad = Triage(max_token_age=0, clock=lambda: NOW, final_earlier={"t"}.__contains__)
    assert bad(BadEntry("t", 1, "line 1: issued_at is not a time")) is Verdict.FINAL_EARLIER
    assert bad(BadEntry("u", 2, "line 2: issued_at is not a time")) is Verdict.INVALID


def test_an_earlier_local_expiry_counts_only_while_the_input_still_says_too_old() -> None:
    triage = Triage(
        max_token_age=72 * HOUR,
        clock=lambda: NOW,
        expired_earlier={"old", "fixed"}.__contains__,
    )
    assert triage(TokenEntry("old", 1, NOW - 80 * HOUR)) is Verdict.FINAL_EARLIER
    # A corrected issued_at (or no issued_at): asked, not blocked by the old local verdict.
    assert triage(TokenEntry("fixed", 2, NOW - HOUR)) is Verdict.QUERY
    assert triage(TokenEntry("other", 3, NOW - 80 * HOUR)) is Verdict.EXPIRED
