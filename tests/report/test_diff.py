"""The per-token diff of two runs."""

from __future__ import annotations

from poller.report import (
    Diff,
    Entry,
    TokenResult,
    diff,
    load,
)
from tests.report.support import NEWER, NEWER_ORDER, OLDER, S


def test_diff_counts(changes: Diff) -> None:
    assert changes.older_source == "older.jsonl"
    assert changes.older_tokens == 6
    assert changes.newer_tokens == 13
    assert changes.in_both == 5
    assert changes.unchanged == 2  # p1, n1
    assert changes.older_lines.unreadable == 1
    assert changes.older_lines.unreadable_lines == (7,)


def test_diff_transitions_and_code_changes(changes: Diff) -> None:
    assert list(changes.transitions.items()) == [
        ((S.PENDING, S.PASSED), 1),
        ((S.ERROR, S.PASSED), 1),
    ]
    assert changes.code_changes == {(S.FAILED, "2015", "1002"): 1}
    assert [(c.token, c.old.code, c.new.code) for c in changes.changed] == [
        ("p2", "-999", "0"),
        ("f2", "2015", "1002"),
        ("p3", "InternalError", "0"),
    ]
    # Every token in both files is counted exactly once.
    counted = (
        changes.unchanged + sum(changes.transitions.values()) + sum(changes.code_changes.values())
    )
    assert counted == changes.in_both


def test_diff_new_and_dropped_tokens(changes: Diff) -> None:
    assert [t for t, _ in changes.only_in_newer] == [
        t for t in NEWER_ORDER if t not in {"p1", "p2", "p3", "f2", "n1"}
    ]
    d1 = Entry(S.PASSED, True, "0", 1, None, response=True)  # its line has a response
    assert changes.only_in_older == (TokenResult("d1", d1),)


def test_diff_takes_lines_as_well_as_indexes() -> None:
    assert diff(OLDER, NEWER).changed == diff(load(OLDER), load(NEWER)).changed
