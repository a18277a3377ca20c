"""Cells and tables shared by `poller report` and `poller reconcile` (poller/output/tables.py)."""

from __future__ import annotations

import pytest

from poller.output.tables import align, clean, markdown_table, spreadsheet_safe


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-1+cmd", "'-1+cmd"),
        ("-999->0", "'-999->0"),
        ("-999", "-999"),
        ("-", "-"),
        ("-\u0661", "'-\u0661"),  # an Arabic-Indic digit is no ASCII number
        ("0", "0"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_spreadsheet_safe(cell: str, shown: str) -> None:
    assert spreadsheet_safe(cell) == shown


def test_clean_escapes_what_a_terminal_would_run() -> None:
    assert clean("tok-1") == "tok-1"
    assert clean("a\x1b[31mb\nc") == "a\\x1b[31mb\\nc"


def test_align_pads_columns_and_right_aligns_numbers() -> None:
    rows = [("passed", "7"), ("invalid_token", "1,024")]
    assert align(rows, frozenset({1})) == ["  passed             7", "  invalid_token  1,024"]
    assert align([]) == ["  none"]


def test_markdown_table_marks_right_aligned_columns() -> None:
    assert markdown_table(("code", "n"), [("0", "3")], frozenset({1})) == [
        "| code | n |",
        "| --- | ---: |",
        "| 0 | 3 |",
    ]
    assert markdown_table(("code", "n"), []) == ["_none_"]
