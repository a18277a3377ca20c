"""Reading result lines: what a line keeps, what is unreadable, the index (token -> last entry)."""

from __future__ import annotations

from poller.report import (
    Entry,
    load,
    summarize,
)
from tests.report.support import NEWER, S, line


def test_fixture_line_numbers_are_what_the_comments_say() -> None:
    assert len(NEWER) == 23
    assert NEWER[5] == b"\n"
    assert not NEWER[-1].endswith(b"\n")


def test_index_applies_last_line_wins_even_after_a_final_line() -> None:
    # Two outputs joined with cat: a final line followed by another line for the same token.
    joined = [line("a", S.FAILED, result="2015", charge=1), line("a", S.PASSED, result="0")]
    index = load(joined)
    assert index.entries["a"].status is S.PASSED
    assert index.lines.superseded == 1
    exact = summarize(index)
    assert exact.tokens == 1
    assert exact.by_status[S.PASSED] == 1
    assert exact.by_status[S.FAILED] == 0


def test_hostile_lines_are_unreadable_not_a_crash() -> None:
    lines = [
        b"[" * 100_000 + b"\n",  # deep nesting: RecursionError inside json
        b"\xff\xfe{}\n",  # not UTF-8
        b'{"token": "a", "status": ["passed"]}\n',  # unhashable status
        b'{"token": "", "status": "passed"}\n',  # empty token
        b"null\n",
    ]
    report = summarize(lines)
    assert report.tokens == 0
    assert report.lines.unreadable == 5
    assert report.lines.unreadable_lines == (1, 2, 3, 4, 5)


def test_odd_field_values_are_read_leniently() -> None:
    lines = [
        b'{"token": "a", "status": "error", "error": {"code": ["x"]}, "charge_count": true}\n',
        b'{"token": "b", "status": "failed", "result": 2015, "charge_count": 3}\n',
        b'{"token": "c", "status": "pending"}\n',  # no `final`: pending is not final
        b'{"token": "d", "status": "error", "error": "boom"}\n',  # no `final`: error is final
    ]
    entries = load(lines).entries
    assert entries["a"] == Entry(S.ERROR, True, None, 0, None)
    assert entries["b"] == Entry(S.FAILED, True, "2015", 3, None)
    assert entries["c"] == Entry(S.PENDING, False, None, 0, None)
    assert entries["d"] == Entry(S.ERROR, True, None, 0, None)
    assert summarize(lines).error_codes == {"(none)": 2}


def test_identical_entries_are_one_shared_tuple() -> None:
    entries = load([line(f"t{i}", S.PASSED, result="0", charge=1) for i in range(3)]).entries
    assert entries["t0"] is entries["t1"] is entries["t2"]
