"""CSV input (poller/input/csv_records.py): the header, multi-line records, stray quotes."""

from __future__ import annotations

from pathlib import Path

import pytest

from poller.input.entries import (
    BadEntry,
    InputError,
    InputItem,
)
from tests.input.support import T2024, from_file, from_stdin, lines_of, ok

# --- CSV ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"SdkToken\na\nb\n", [ok("a", 2), ok("b", 3)]),
        (b"token\na\n", [ok("a", 2)]),
        (b"name, SDKTOKEN ,x\nn,a,x\n", [ok("a", 2)]),
        (b"id,Token\n1,  a  \n", [ok("a", 2)]),
        (b"token,SdkToken\nfirst,second\n", [ok("first", 2)]),  # the first matching column wins
        (b'SdkToken,note\n"a","has, comma"\n', [ok("a", 2)]),
        (b"SdkToken\n", []),  # header only
        (b"\n\nSdkToken\n\na\n,\n", [ok("a", 5)]),  # blank lines and all-empty rows skipped
        (b"SdkToken,issued_at\na,\nb,2024-01-01T00:00:00Z\n", [ok("a", 2), ok("b", 3, T2024)]),
        (b"SdkToken,ISSUED_AT\na,1704067200\n", [ok("a", 2, T2024)]),
        (b"issued_at,token\n1704067200.5,a\n", [ok("a", 2, T2024 + 0.5)]),
    ],
)
def test_csv(data: bytes, expected: list[InputItem]) -> None:
    assert from_stdin(data, "csv") == expected


def test_csv_bad_rows() -> None:
    data = (
        b"SdkToken,issued_at\n"
        b",2024-01-01T00:00:00Z\n"  # 2: empty token
        b"short\n"  # 3: too few fields
        b"a,1,extra\n"  # 4: too many fields
        b"b,yesterday\n"  # 5: bad issued_at
        b"c,1704067200\n"  # 6: fine
    )
    assert from_stdin(data, "csv") == [
        BadEntry("", 2, "line 2: token is empty"),
        BadEntry("short", 3, "line 3: row has 1 field but the header has 2"),
        BadEntry("a", 4, "line 4: row has 3 fields but the header has 2"),
        BadEntry("b", 5, "line 5: issued_at 'yesterday' is not RFC 3339 or Unix seconds"),
        ok("c", 6, T2024),
    ]


def test_csv_multiline_records_keep_physical_line_numbers() -> None:
    data = (
        b"SdkToken,note\r\n"
        b'a,"two\r\nlines"\r\n'  # record on lines 2-3
        b'b,"three\nphysical\nlines"\n'  # lines 4-6
        b"c,plain\n"  # line 7
        b'"d\ne",x\n'  # lines 8-9: newline inside the token itself: a stray quote
        b"f,x\n"  # line 10
    )
    items = from_stdin(data, "csv")
    # A token never spans lines: line 8 is reported, and line 9 is read again on its own.
    assert lines_of(items) == [
        ("ok", 2),
        ("ok", 4),
        ("ok", 7),
        ("bad", 8),
        ("ok", 9),
        ("ok", 10),
    ]
    assert [i.token for i in items] == ["a", "b", "c", "d", 'e"', "f"]


def test_csv_without_token_column_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        from_file(tmp_path, "t.csv", b"id,name,when\n1,2,3\n")
    message = str(info.value)
    assert "t.csv" in message
    assert "has no SdkToken or token column (header: id, name, when)" in message


def test_csv_header_with_quoted_newline_gives_a_one_line_error() -> None:
    with pytest.raises(InputError) as info:
        from_stdin(b'"id\nx",name\n1,2\n', "csv")
    assert "header of standard input runs over lines 1-2" in str(info.value)
    assert "\n" not in str(info.value)


def test_csv_header_whose_quote_swallows_rows_is_refused_not_silently_shortened() -> None:
    rows = b"".join(b"csvtok-%04d,,n%d\n" % (i, i) for i in range(9))
    with pytest.raises(InputError, match="runs over lines 1-10"):
        from_stdin(
            b'SdkToken,issued_at,"note\n' + rows[:-1] + b'csvtok-0008,,n8"\nlast,,x\n', "csv"
        )


def test_csv_two_stray_quotes_do_not_swallow_the_rows_between_them() -> None:
    rows = [b"csvtok-%04d,,x\n" % i for i in range(20)]
    rows[3] = b'csvtok-0003,,"oops\n'
    rows[10] = b'csvtok-0010,,"again\n'
    items = from_stdin(b"SdkToken,issued_at,note\n" + b"".join(rows), "csv")
    bad = [i for i in items if isinstance(i, BadEntry)]
    assert [(b.line, b.token) for b in bad] == [(5, "csvtok-0003"), (12, "csvtok-0010")]
    good = [i.token for i in items if not isinstance(i, BadEntry)]
    assert good == [f"csvtok-{i:04d}" for i in range(20) if i not in (3, 10)]


def test_csv_semicolon_header_gets_a_hint() -> None:
    with pytest.raises(InputError, match="semicolon- or tab-separated"):
        from_stdin(b"SdkToken;issued_at\na;1\n", "csv")


def test_csv_runaway_quote_is_one_bad_record_and_the_swallowed_lines_are_read_again() -> None:
    """A stray quote swallows lines up to csv's field limit; they are read again, none lost."""
    filler = b"".join(b"%d-token-padding-padding-padding-padding\n" % i for i in range(4000))
    data = b'SdkToken\n"broken\n' + filler + b"after\n"
    items = from_stdin(data, "csv")
    first = items[0]
    assert isinstance(first, BadEntry)
    assert first.line == 2
    assert "CSV record cannot be parsed (swallowing lines 3-" in first.reason
    assert "field larger than field limit" in first.reason
    assert items[1:] == [
        *(ok(f"{i}-token-padding-padding-padding-padding", i + 3) for i in range(4000)),
        ok("after", 4003),
    ]


def test_csv_quote_never_closed_does_not_swallow_the_rest_of_the_file() -> None:
    """Before: csv returned the whole rest of the file as one field, silently (exit 0)."""
    rows = b"".join(b"q%d,,x\n" % i for i in range(2, 40))
    items = from_stdin(b'SdkToken,issued_at,name\nq1,,"Brien\n' + rows, "csv")
    first = items[0]
    assert isinstance(first, BadEntry)
    assert (first.line, first.token) == (2, "q1")
    assert "a quoted field is never closed" in first.reason
    assert items[1:] == [ok(f"q{i}", i + 1) for i in range(2, 40)]


def test_csv_legit_multiline_field_at_the_end_of_the_file_stays_one_record() -> None:
    items = from_stdin(b'SdkToken,note\na,"two\nlines"\n', "csv")
    assert items == [ok("a", 2)]
