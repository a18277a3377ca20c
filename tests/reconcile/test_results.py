"""Reading results files for reconciliation: the fields kept, the ordering key, what is skipped."""

from __future__ import annotations

import pytest

from poller.api.outcomes import Status
from poller.reconcile._results import ResultsReader, TheirLine, order_key
from tests.reconcile.support import DAY1, result_line

S = Status


def test_lines_as_the_sink_writes_them() -> None:
    reader = ResultsReader()
    lines = [
        result_line("a", S.PASSED, charge=2),
        b"\n",
        result_line("b", S.EXPIRED, error="InvalidParameterValue.BizTokenExpired"),
        result_line("c", S.PENDING, charge=0),
    ]
    got = list(reader.lines(lines, 3))
    at = "2025-11-29T07:06:40Z"
    key = "2025-11-29T07:06:40.000000"
    assert got == [
        TheirLine("a", key, 3, 1, S.PASSED, True, "0", at, 2),
        TheirLine("b", key, 3, 3, S.EXPIRED, True, "InvalidParameterValue.BizTokenExpired", at, 0),
        TheirLine("c", key, 3, 4, S.PENDING, False, "-999", at, 0),
    ]
    assert (reader.read, reader.unreadable) == (3, 0)
    assert DAY1  # the fixture's day is the one above


@pytest.mark.parametrize(
    "raw",
    [
        b'{"token": "torn", "sta',
        b"[1, 2]",
        b'{"token": "", "status": "passed"}',
        b'{"token": "x", "status": "maybe"}',
        b'{"token": "x", "status": ["passed"]}',
        b"\xff\xfe",
    ],
)
def test_unreadable_lines_are_skipped_and_counted_with_their_place(raw: bytes) -> None:
    reader = ResultsReader()
    assert list(reader.lines([result_line("a", S.PASSED), raw], 1)) != []
    assert (reader.read, reader.unreadable, reader.unreadable_at) == (2, 1, [(1, 2)])


def test_odd_values_are_read_leniently() -> None:
    raw = b'{"token": "x", "status": "failed", "result": 2016, "charge_count": true}'
    (line,) = ResultsReader().lines([raw], 0)
    assert (line.code, line.charge_count, line.final, line.order) == ("2016", 0, True, "")


@pytest.mark.parametrize(
    ("checked_at", "key"),
    [
        ("2026-12-01T17:02:47Z", "2026-12-01T17:02:47.000000"),
        ("2026-12-01T17:02:47.5Z", "2026-12-01T17:02:47.500000"),
        ("2026-12-02T01:02:47+08:00", "2026-12-01T17:02:47.000000"),
        ("2026-12-01T17:02:47", "2026-12-01T17:02:47.000000"),
        ("yesterday", ""),
        (None, ""),
    ],
)
def test_order_key_sorts_like_the_instant(checked_at: object, key: str) -> None:
    assert order_key(checked_at) == key


def test_order_keys_of_mixed_forms_sort_in_time_order() -> None:
    forms = ["2026-12-01T17:02:47.5Z", "2026-12-01T17:02:47Z", "2026-12-01T18:02:48+01:00"]
    assert sorted(forms, key=order_key) == [forms[1], forms[0], forms[2]]
