"""The join: the category rule, the latest line per token, duplicates, charges per day."""

from __future__ import annotations

from pathlib import Path

import pytest

from poller.api.outcomes import Status
from poller.reconcile._join import ALERTING, Category, Mismatch, categorize, join
from poller.reconcile._records import OurRecord
from poller.reconcile._results import TheirLine

S = Status
C = Category


@pytest.mark.parametrize(
    ("ours", "theirs", "final", "category"),
    [
        (S.PASSED, S.PASSED, True, C.AGREE),
        (S.FAILED, S.FAILED, True, C.AGREE),
        (S.PASSED, S.FAILED, True, C.PASSED_NOT_PASSED),
        (S.PASSED, S.EXPIRED, True, C.PASSED_NOT_PASSED),
        (S.PASSED, S.INVALID_TOKEN, True, C.PASSED_NOT_PASSED),
        (S.FAILED, S.PASSED, True, C.DISAGREE),
        (S.PENDING, S.FAILED, True, C.DISAGREE),
        (S.FAILED, S.EXPIRED, True, C.DISAGREE),
        (S.PASSED, S.PENDING, False, C.NOT_FINAL),
        (S.PASSED, S.ERROR, False, C.NOT_FINAL),
        (S.PASSED, S.ERROR, True, C.NOT_FINAL),  # an error is never a verdict
        (None, S.PENDING, False, C.NOT_FINAL),
        (None, S.PASSED, True, C.MISSING_IN_OURS),
        (S.PASSED, None, False, C.MISSING_IN_RESULTS),
    ],
)
def test_categorize(
    ours: Status | None, theirs: Status | None, final: bool, category: Category
) -> None:
    assert categorize(ours, theirs, final) is category


@pytest.mark.parametrize("theirs", [S.EXPIRED, S.INVALID_TOKEN, S.PASSED])
def test_a_line_decided_without_asking_is_never_a_verdict(theirs: Status) -> None:
    for final in (True, False):
        assert categorize(S.PASSED, theirs, final, asked=False) is C.NOT_FINAL
        assert categorize(None, theirs, final, asked=False) is C.NOT_FINAL


def test_the_dangerous_category_comes_first_and_alerts() -> None:
    assert next(iter(Category)) is C.PASSED_NOT_PASSED
    assert {C.PASSED_NOT_PASSED, C.DISAGREE, C.MISSING_IN_OURS, C.MISSING_IN_RESULTS} == ALERTING


def their(token: str, at: str, file: int, line: int, status: Status, charge: int = 1) -> TheirLine:
    key = at[:19] + ".000000"
    return TheirLine(token, key, file, line, status, status is not S.PENDING, None, at, charge)


def test_latest_line_wins_by_checked_at_then_file_then_line(tmp_path: Path) -> None:
    t1, t2 = "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"
    results = [
        their("by-time", t2, 0, 1, S.PASSED),
        their("by-time", t1, 1, 1, S.FAILED),  # a later file, but older
        their("by-file", t1, 0, 2, S.FAILED),
        their("by-file", t1, 1, 2, S.PASSED),  # same instant: the later file wins
        their("by-line", t1, 1, 3, S.FAILED),
        their("by-line", t1, 1, 4, S.PASSED),  # same instant and file: the later line wins
    ]
    records = [
        OurRecord(t, S.PASSED, "ok", n) for n, t in enumerate(("by-time", "by-file", "by-line"), 2)
    ]
    tally = join(records, results, str(tmp_path))
    assert tally.counts[C.AGREE] == 3
    assert tally.superseded == 3
    assert tally.result_tokens == 3
    assert tally.charges_by_day == {"2026-11-01": 2, "2026-11-02": 1}


def test_an_api_line_beats_a_local_line_whatever_their_times(tmp_path: Path) -> None:
    t1, t2, t3 = "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"
    results = [
        their("a", t1, 0, 1, S.PASSED),
        their("a", t2, 1, 1, S.EXPIRED)._replace(asked=False),  # later, but local: loses
        their("b", t2, 0, 2, S.EXPIRED)._replace(asked=False),  # only local lines:
        their("b", t3, 1, 2, S.INVALID_TOKEN)._replace(asked=False),  # the latest of them
    ]
    records = [OurRecord("a", S.PASSED, "ok", 2), OurRecord("b", S.PASSED, "ok", 3)]
    got: list[Mismatch] = []
    tally = join(records, results, str(tmp_path), on_mismatch=got.append)
    assert tally.counts[C.AGREE] == 1
    assert [(m.token, m.category, m.theirs, m.checked_at) for m in got] == [
        ("b", C.NOT_FINAL, S.INVALID_TOKEN, t3)
    ]
    assert tally.superseded == 2


def test_the_last_record_per_token_counts(tmp_path: Path) -> None:
    records = [OurRecord("a", S.FAILED, "no", 2), OurRecord("a", S.PASSED, "yes", 3)]
    got: list[Mismatch] = []
    tally = join(
        records,
        [their("a", "2026-11-01T00:00:00Z", 0, 1, S.FAILED)],
        str(tmp_path),
        on_mismatch=got.append,
    )
    assert (tally.records, tally.duplicate_records) == (1, 1)
    assert [(m.category, m.ours_word, m.ours_line) for m in got] == [
        (C.PASSED_NOT_PASSED, "yes", 3)
    ]


def test_mismatches_arrive_in_token_order_and_samples_are_bounded(tmp_path: Path) -> None:
    tokens = [f"t{n:03d}" for n in range(50)]
    records = [OurRecord(t, S.PASSED, "ok", n) for n, t in enumerate(reversed(tokens), 2)]
    got: list[Mismatch] = []
    tally = join(records, [], str(tmp_path), on_mismatch=got.append, sample=5)
    assert [m.token for m in got] == tokens
    assert tally.counts[C.MISSING_IN_RESULTS] == 50
    assert [m.token for m in tally.samples[C.MISSING_IN_RESULTS]] == tokens[:5]
    assert tally.charges_by_day == {}


def test_nothing_on_either_side(tmp_path: Path) -> None:
    tally = join([], [], str(tmp_path))
    assert sum(tally.counts.values()) == 0


def test_tokens_sort_the_same_in_sqlite_and_python(tmp_path: Path) -> None:
    # The merge compares str; SQLite sorts UTF-8 bytes: both must be code-point order.
    tokens = ["b", "a", "é", "Z", "\U0001f600", "\uff5a", "a-1", "a_1"]
    records = [OurRecord(t, S.PASSED, "ok", n) for n, t in enumerate(tokens, 2)]
    results = [
        their(t, "2026-11-01T00:00:00Z", 0, n, S.PASSED) for n, t in enumerate(reversed(tokens), 1)
    ]
    tally = join(records, results, str(tmp_path))
    assert tally.counts[C.AGREE] == len(tokens)
