"""issued_at values (poller/input/issued_at.py): RFC 3339 and Unix seconds, and refusals."""

from __future__ import annotations

import pytest

from poller.input.issued_at import parse_issued_at
from tests.input.support import T2024

# --- issued_at ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("2024-01-01T00:00:00Z", T2024),
        ("2024-01-01t00:00:00z", T2024),
        ("2024-01-01 00:00:00Z", T2024),  # RFC 3339 §5.6 lets a space replace T
        ("2024-01-01T08:00:00+08:00", T2024),
        ("2023-12-31T19:30:00-04:30", T2024),
        ("2024-01-01T00:00:00-00:00", T2024),
        ("2024-01-01T00:00:00.250Z", T2024 + 0.25),
        ("2016-12-31T23:59:60Z", 1483228800.0),  # leap second
        (1704067200, T2024),
        (1704067200.5, T2024 + 0.5),
        ("1704067200", T2024),
        (" 1704067200.5 ", T2024 + 0.5),
        (0, 0.0),
    ],
)
def test_parse_issued_at(value: object, expected: float | None) -> None:
    assert parse_issued_at(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "issued_at 'yesterday' is not RFC 3339 or Unix seconds"),
        ("2024-01-01", "not RFC 3339"),
        ("2024-01-01T00:00:00", "has no UTC offset; add 'Z'"),
        ("2024-02-30T00:00:00Z", "is not a valid date and time"),
        ("2024-01-01T25:00:00Z", "is not a valid date and time"),
        ("2024-01-01T00:00:00+24:00", "is not a valid date and time"),
        ("0000-01-01T00:00:00+01:00", "is not a valid date and time"),
        ("-5", "not RFC 3339"),
        ("1e9", "not RFC 3339"),
        ("nan", "not RFC 3339"),
        ("1_000", "not RFC 3339"),
        ("١٧٠٤٠٦٧٢٠٠", "not RFC 3339"),  # Arabic-Indic digits: float() would accept them
        (-1, "out of range"),
        (float("nan"), "out of range"),
        (float("inf"), "out of range"),
        (1704067200000, "out of range for Unix seconds (milliseconds? give seconds)"),
        (True, "issued_at True is not RFC 3339 or Unix seconds"),
        ([1], "must be an RFC 3339 string or Unix seconds, not an array"),
        ({"a": 1}, "not an object"),
        ("x" * 1000, "…"),  # the value is shown clipped
    ],
)
def test_parse_issued_at_refuses(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match="issued_at") as info:
        parse_issued_at(value)
    assert reason in str(info.value)
    assert len(str(info.value)) < 200
