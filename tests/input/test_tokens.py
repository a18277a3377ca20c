"""Token input readers (poller/tokens.py): formats, validation, hostile input, streaming."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import sys
import threading
import tracemalloc
import types
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from poller.input import tokens
from poller.input.tokens import (
    BAD_TOKEN_CHARS,
    MAX_TOKEN_LENGTH,
    BadEntry,
    Format,
    InputError,
    InputItem,
    TokenEntry,
    check_token,
    detect_format,
    estimate_entries,
    is_regular_file,
    parse_issued_at,
    read_tokens,
)

UUID = "D2B55F0C-FB5D-4FB6-8765-3E931EBBFC79"
ODD = "C736CEB2-03D89-014A10-B17B-B2DC535CA53B"  # SPEC §1.5: a real token that is not a UUID
T2024 = 1704067200.0  # 2024-01-01T00:00:00Z


def from_stdin(data: bytes, fmt: Format | None = None) -> list[InputItem]:
    return list(read_tokens("-", fmt, stdin=io.BytesIO(data)))


def from_file(tmp_path: Path, name: str, data: bytes, fmt: Format | None = None) -> list[InputItem]:
    path = tmp_path / name
    path.write_bytes(data)
    return list(read_tokens(str(path), fmt))


def ok(token: str, line: int, issued_at: float | None = None) -> TokenEntry:
    return TokenEntry(token, line, issued_at)


def lines_of(items: list[InputItem]) -> list[tuple[str, int]]:
    """(kind, line) pairs: the shape of a result without the exact wording of reasons."""
    return [("ok" if isinstance(i, TokenEntry) else "bad", i.line) for i in items]


# --- check_token -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (UUID, None),
        (ODD, None),
        ("  padded\t", None),  # surrounding whitespace is trimmed first
        ("x" * MAX_TOKEN_LENGTH, None),
        ("ünïcödé-токен", None),
        ("", "token is empty"),
        (" \t\u3000 ", "token is empty"),
        ("x" * (MAX_TOKEN_LENGTH + 1), "token is longer than 256 characters (it has 257)"),
        ("ab\x00cd", "token contains a control character (U+0000 at position 3)"),
        ("ab\tcd", "token contains a control character (U+0009 at position 3)"),
        ("ab\x7fcd", "token contains a control character (U+007F at position 3)"),
        ("ab\x85cd", "token contains a control character (U+0085 at position 3)"),
        ("a\ud800", "token contains a lone surrogate (U+D800 at position 2)"),
    ],
)
def test_check_token(raw: str, reason: str | None) -> None:
    assert check_token(raw) == reason


def test_control_pattern_is_exactly_unicode_category_cc() -> None:
    """The fast regex must agree with unicodedata on every code point of the BMP and beyond."""
    for code in itertools.chain(range(0x3000), range(0xFFF0, 0x10010)):
        char = chr(code)
        is_cc = unicodedata.category(char) == "Cc"
        assert (tokens._CONTROL.search(char) is not None) == is_cc, hex(code)


def test_trim_set_is_python_whitespace_plus_bom() -> None:
    spaces = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert set(tokens._TRIM) == spaces | {"\ufeff"}


# --- detect_format -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "explicit", "expected"),
    [
        ("tokens.txt", None, "text"),
        ("tokens", None, "text"),
        ("tokens.CSV", None, "csv"),
        ("dir.csv/tokens.jsonl", None, "jsonl"),
        ("a.ndjson", None, "jsonl"),
        ("a.json", None, "jsonl"),
        ("a.tsv", None, "text"),
        ("-", None, "text"),
        ("tokens.csv", "text", "text"),
        ("tokens.txt", "jsonl", "jsonl"),
        ("-", "csv", "csv"),
    ],
)
def test_detect_format(path: str, explicit: Format | None, expected: Format) -> None:
    assert detect_format(path, explicit) == expected


def test_detect_format_refuses_unknown_explicit_format() -> None:
    with pytest.raises(InputError, match="unknown token format 'xml'; use one of: text, csv"):
        detect_format("a.txt", "xml")  # type: ignore[arg-type]


# --- plain text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", []),
        (b"\n\n  \n", []),
        (b"a\nb\n", [ok("a", 1), ok("b", 2)]),
        (b"a\nb", [ok("a", 1), ok("b", 2)]),  # no final newline
        (
            b"# header\n\n  a  \n   # indented comment\nb#not-a-comment\n",
            [ok("a", 3), ok("b#not-a-comment", 5)],
        ),
        (b"a\r\n\r\nb\r\n", [ok("a", 1), ok("b", 3)]),
        (b"a\nA\na\n", [ok("a", 1), ok("A", 2), ok("a", 3)]),  # duplicates are the engine's job
        (f"{ODD}\n".encode(), [ok(ODD, 1)]),
    ],
)
def test_text(data: bytes, expected: list[InputItem]) -> None:
    assert from_stdin(data, "text") == expected


def test_text_bad_lines_are_reported_and_the_run_goes_on() -> None:
    items = from_stdin(b"good\nin\tside\n" + b"y" * 300 + b"\nalso-good\n", "text")
    assert items == [
        ok("good", 1),
        BadEntry(
            "in\tside", 2, "line 2: token contains a control character (U+0009 at position 3)"
        ),
        BadEntry("y" * 300, 3, "line 3: token is longer than 256 characters (it has 300)"),
        ok("also-good", 4),
    ]


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


def bad1(reason: str, token: str = "") -> BadEntry:
    return BadEntry(token, 1, f"line 1: {reason}")


# --- JSON Lines --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"SdkToken": "a"}', ok("a", 1)),
        (b'{"token": " a ", "other": [1, 2]}', ok("a", 1)),
        (b'{"token": "b", "SdkToken": "a"}', ok("a", 1)),  # SdkToken preferred
        (b'{"SdkToken": "a", "issued_at": "2024-01-01T00:00:00Z"}', ok("a", 1, T2024)),
        (b'{"SdkToken": "a", "issued_at": 1704067200}', ok("a", 1, T2024)),
        (b'{"SdkToken": "a", "issued_at": "1704067200"}', ok("a", 1, T2024)),
        (b'{"SdkToken": "a", "issued_at": null}', ok("a", 1)),
        (b'{"SdkToken": "\\u00e9t\\u00e9"}', ok("été", 1)),
        (b"[1, 2]", bad1("expected a JSON object, got an array")),
        (b'"a"', bad1("expected a JSON object, got a string")),
        (b"null", bad1("expected a JSON object, got null")),
        (
            b"{",
            bad1("not valid JSON (Expecting property name enclosed in double quotes at column 2)"),
        ),
        (b'{"a": 1} x', bad1("not valid JSON (Extra data at column 10)")),
        (b"{}", bad1('no "SdkToken" or "token" field')),
        (b'{"sdktoken": "a"}', bad1('no "SdkToken" or "token" field')),
        (b'{"SdkToken": 12}', bad1('"SdkToken" must be a string, got a number', "12")),
        (b'{"token": null}', bad1('"token" must be a string, got null')),
        (b'{"token": ["a"]}', bad1('"token" must be a string, got an array')),
        (b'{"token": ""}', bad1("token is empty")),
        (
            b'{"token": "a\\u0000b"}',
            bad1("token contains a control character (U+0000 at position 2)", "a\x00b"),
        ),
        (
            b'{"token": "a\\ud800"}',
            bad1("token contains a lone surrogate (U+D800 at position 2)", "a?"),
        ),
        (
            b'{"token": "a", "issued_at": "yesterday"}',
            bad1("issued_at 'yesterday' is not RFC 3339 or Unix seconds", "a"),
        ),
        (
            b'{"token": "a", "issued_at": NaN}',
            bad1("issued_at nan is out of range for Unix seconds", "a"),
        ),
        (
            b'{"token": "a", "issued_at": true}',
            bad1("issued_at True is not RFC 3339 or Unix seconds", "a"),
        ),
        (b"[" * 100_000, bad1("not valid JSON (nested too deeply)")),
    ],
)
def test_jsonl_line(line: bytes, expected: InputItem) -> None:
    assert from_stdin(line + b"\n", "jsonl") == [expected]


def test_jsonl_numbers_lines_and_skips_blank_ones() -> None:
    data = b'{"token": "a"}\r\n\r\n   \n{"token": "b"}\nbroken\n{"token": "c"}'
    items = from_stdin(data, "jsonl")
    assert lines_of(items) == [("ok", 1), ("ok", 4), ("bad", 5), ("ok", 6)]


def test_jsonl_huge_integer_is_a_bad_line_not_a_crash() -> None:
    items = from_stdin(b'{"token": "a", "issued_at": ' + b"9" * 5000 + b"}\n", "jsonl")
    assert len(items) == 1
    assert isinstance(items[0], BadEntry)
    assert items[0].reason.startswith("line 1: not valid JSON")


# --- every format from files, and the stdin sniff -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("t.txt", b"a\nb\n"),
        ("t", b"a\nb\n"),
        ("t.csv", b"SdkToken\na\nb\n"),
        ("t.jsonl", b'{"SdkToken": "a"}\n{"SdkToken": "b"}\n'),
        ("t.ndjson", b'{"SdkToken": "a"}\n{"SdkToken": "b"}\n'),
        ("t.json", b'{"SdkToken": "a"}\n{"SdkToken": "b"}\n'),
    ],
)
def test_files_by_extension(tmp_path: Path, name: str, data: bytes) -> None:
    assert [i.token for i in from_file(tmp_path, name, data)] == ["a", "b"]


@pytest.mark.parametrize(
    ("data", "expected_format"),
    [
        (b"a\nb\n", "text"),
        (b"# comment\na\n", "text"),
        (b"", "text"),
        (b'\n{"SdkToken": "a"}\n', "jsonl"),
        (b"\xef\xbb\xbfSdkToken,issued_at\na,\n", "csv"),
        (b"token\na\n", "csv"),
        (b'"id","Token"\n1,a\n', "csv"),
        (b"tokens,other\na,b\n", "text"),
    ],
)
def test_stdin_format_is_sniffed_from_the_first_line(
    data: bytes, expected_format: Format, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real_text, real_csv, real_jsonl = tokens._read_text, tokens._read_csv, tokens._read_jsonl

    def spy(
        kind: str, real: Callable[..., Iterator[InputItem]]
    ) -> Callable[..., Iterator[InputItem]]:
        def wrapper(*args: object) -> Iterator[InputItem]:
            seen.append(kind)
            return real(*args)

        return wrapper

    monkeypatch.setattr(tokens, "_read_text", spy("text", real_text))
    monkeypatch.setattr(tokens, "_read_csv", spy("csv", real_csv))
    monkeypatch.setattr(tokens, "_read_jsonl", spy("jsonl", real_jsonl))
    from_stdin(data)
    assert seen == [expected_format]


def test_explicit_format_beats_the_stdin_sniff() -> None:
    assert from_stdin(b"token\na\n", "text") == [ok("token", 1), ok("a", 2)]


def test_stdin_defaults_to_sys_stdin_buffer_and_is_not_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = io.TextIOWrapper(io.BytesIO(b"a\nb\n"))
    monkeypatch.setattr(sys, "stdin", fake)
    assert list(read_tokens("-")) == [ok("a", 1), ok("b", 2)]
    assert not fake.buffer.closed


def test_missing_stdin_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(InputError, match="no standard input"):
        list(read_tokens("-"))


# --- hostile input -----------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024
OK_BAD_OK = [("ok", 1), ("bad", 2), ("ok", 3)]
BAD_OK = [("bad", 1), ("ok", 2)]
HOSTILE_BYTES: list[tuple[str, Format, bytes, list[tuple[str, int]]]] = [
    ("empty text", "text", b"", []),
    ("empty csv", "csv", b"", []),
    ("empty jsonl", "jsonl", b"", []),
    ("bom text", "text", b"\xef\xbb\xbfa\nb\n", [("ok", 1), ("ok", 2)]),
    ("bom csv header", "csv", b"\xef\xbb\xbfSdkToken\na\n", [("ok", 2)]),
    ("bom jsonl", "jsonl", b'\xef\xbb\xbf{"token": "a"}\n', [("ok", 1)]),
    ("bom mid-file (cat a b)", "text", b"a\n\xef\xbb\xbfb\n", [("ok", 1), ("ok", 2)]),
    ("crlf text", "text", b"a\r\n\r\nb\r\n", [("ok", 1), ("ok", 3)]),
    ("crlf csv", "csv", b"token\r\na\r\n\r\nb\r\n", [("ok", 2), ("ok", 4)]),
    ("crlf jsonl", "jsonl", b'{"token": "a"}\r\n{"token": "b"}\r\n', [("ok", 1), ("ok", 2)]),
    ("bad utf-8 text", "text", b"a\nb\xff\xfec\nd\n", [("ok", 1), ("bad", 2), ("ok", 3)]),
    ("bad utf-8 comment", "text", b"# caf\xe9\na\n", [("ok", 2)]),
    ("bad utf-8 csv", "csv", b"token,x\na,1\nb\xff,2\nc,3\n", [("ok", 2), ("bad", 3), ("ok", 4)]),
    (
        "bad utf-8 in csv continuation line",
        "csv",
        b'token,x\na,"1\n\xff"\nc,3\n',
        [("bad", 2), ("ok", 4)],
    ),
    ("bad utf-8 jsonl", "jsonl", b'{"token": "a\xff"}\n{"token": "b"}\n', [("bad", 1), ("ok", 2)]),
    ("nul text", "text", b"a\nx\x00y\nb\n", [("ok", 1), ("bad", 2), ("ok", 3)]),
    ("nul csv", "csv", b"token\nx\x00y\nb\n", [("bad", 2), ("ok", 3)]),
    ("nul jsonl", "jsonl", b'{"token": "x\x00y"}\n{"token": "b"}\n', [("bad", 1), ("ok", 2)]),
    ("lone cr in csv", "csv", b"token\na\rb\nc\n", [("bad", 2), ("ok", 3)]),
    ("10 MB text line", "text", b"a\n" + b"x" * TEN_MB + b"\nb\n", OK_BAD_OK),
    ("10 MB comment", "text", b"#" + b"x" * TEN_MB + b"\nb\n", [("ok", 2)]),
    ("10 MB csv line", "csv", b"token\n" + b"x" * TEN_MB + b"\nb\n", [("bad", 2), ("ok", 3)]),
    ("10 MB jsonl line", "jsonl", b"{" + b" " * TEN_MB + b'}\n{"token": "b"}\n', BAD_OK),
    ("10 MB line no newline", "text", b"x" * TEN_MB, [("bad", 1)]),
    ("line at the byte limit", "text", b"x" * tokens.MAX_LINE_BYTES + b"\nb\n", BAD_OK),
    ("line just under it", "text", b"x" * (tokens.MAX_LINE_BYTES - 1) + b"\nb\n", BAD_OK),
    ("a few nuls are not binary", "text", b"a\x00\x00\x00\n", [("bad", 1)]),
]


@pytest.mark.parametrize(
    ("fmt", "data", "expected"),
    [pytest.param(fmt, data, exp, id=name) for name, fmt, data, exp in HOSTILE_BYTES],
)
def test_hostile_bytes(fmt: Format, data: bytes, expected: list[tuple[str, int]]) -> None:
    items = from_stdin(data, fmt)
    assert lines_of(items) == expected
    for item in items:
        if isinstance(item, BadEntry):
            assert item.reason.startswith(f"line {item.line}: ")
            assert len(item.token) <= BAD_TOKEN_CHARS + 1


def test_ten_megabyte_line_is_clipped_in_the_bad_entry() -> None:
    items = from_stdin(b"x" * TEN_MB + b"\n", "text")
    assert items == [
        BadEntry(
            "x" * BAD_TOKEN_CHARS + "…",
            1,
            "line 1: token is longer than 256 characters "
            "(the line is over 1048576 bytes; the rest of it was skipped)",
        )
    ]


def test_ten_megabyte_line_is_never_held_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as out:
        out.write(b"first\n")
        for _ in range(10):
            out.write(b"x" * (1024 * 1024))
        out.write(b"\nlast\n")
    tracemalloc.start()
    try:
        items = list(read_tokens(str(path)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines_of(items) == [("ok", 1), ("bad", 2), ("ok", 3)]
    assert peak < 1.5 * 1024 * 1024, peak  # at most the 1 MiB line bound plus change, not 10 MB


BINARY_MESSAGE = "looks like a binary file"
HOSTILE_WHOLE: list[tuple[str, bytes, str]] = [
    ("random bytes", bytes((i * 7919 + 13) % 256 for i in range(20000)), BINARY_MESSAGE),
    ("nul-heavy", b"tok\x00\x00\x00\x00\x00\x00\n" * 100, BINARY_MESSAGE),
    ("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, BINARY_MESSAGE),
    ("utf-16 le", "\ufefftoken\na\n".encode("utf-16-le"), "is UTF-16 text; save it as UTF-8"),
    ("utf-16 be", "\ufefftoken\na\n".encode("utf-16-be"), "is UTF-16 text; save it as UTF-8"),
    ("utf-16 without bom", "abcdefgh\nijklmnop\n".encode("utf-16-le"), BINARY_MESSAGE),
]


@pytest.mark.parametrize("fmt", ["text", "csv", "jsonl"])
@pytest.mark.parametrize(
    ("data", "message"), [pytest.param(d, m, id=n) for n, d, m in HOSTILE_WHOLE]
)
def test_binary_input_is_an_input_error(
    tmp_path: Path, fmt: Format, data: bytes, message: str
) -> None:
    with pytest.raises(InputError, match=message) as info:
        from_file(tmp_path, "tokens.bin", data, fmt)
    assert "tokens.bin" in str(info.value)
    with pytest.raises(InputError, match=message):
        from_stdin(data, fmt)


def test_compressed_file_gets_a_hint(tmp_path: Path) -> None:
    import gzip

    with pytest.raises(InputError, match=r"binary file.*decompress it first"):
        from_file(tmp_path, "tokens.txt.gz", gzip.compress(os.urandom(4000)))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=r"token file '.*nope\.txt' does not exist; check the path"
    ):
        list(read_tokens(str(tmp_path / "nope.txt")))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory, not a token file"):
        list(read_tokens(str(tmp_path)))


def test_nul_in_path_is_an_input_error() -> None:
    with pytest.raises(InputError, match="cannot open token file"):
        list(read_tokens("a\x00b.txt"))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file regardless"
)
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(b"a\n")
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied; check its permissions"):
        list(read_tokens(str(path)))


def test_permission_denied_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same mapping, forced, so it is exercised even where tests run as root."""

    def denied(*_args: object, **_kwargs: object) -> io.BytesIO:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tokens, "open", denied, raising=False)
    with pytest.raises(InputError, match=r"cannot read token file 'x\.txt': permission denied"):
        list(read_tokens("x.txt"))


class _FailingStream(io.RawIOBase):
    """Serves some good lines, then fails like a dying disk."""

    def __init__(self, good: bytes) -> None:
        self._good = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._good:
            raise OSError(5, "Input/output error")
        n = min(len(buffer), len(self._good))
        buffer[:n] = self._good[:n]
        self._good = self._good[n:]
        return n


def test_read_error_mid_stream_is_an_input_error() -> None:
    stream = io.BufferedReader(_FailingStream(b"".join(b"tok-%d\n" % i for i in range(5000))))
    got: list[InputItem] = []
    with pytest.raises(InputError, match="error while reading standard input: Input/output error"):
        got.extend(read_tokens("-", "text", stdin=stream))
    assert len(got) > 0


# --- errors are raised lazily but before any item -----------------------------------------------


def test_nothing_happens_until_the_first_next(tmp_path: Path) -> None:
    gen = read_tokens(str(tmp_path / "missing.txt"))  # no error yet: it is a generator
    with pytest.raises(InputError):
        next(gen)


def test_csv_header_error_comes_before_any_item() -> None:
    gen = read_tokens("-", "csv", stdin=io.BytesIO(b"a,b\n" + b"1,2\n" * 1000))
    with pytest.raises(InputError):
        next(gen)


def test_file_is_closed_when_the_reader_is_abandoned(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"a\nb\nc\n")
    gen = read_tokens(str(path))
    assert isinstance(gen, types.GeneratorType)
    assert next(gen) == ok("a", 1)
    gen.close()  # with filterwarnings=error an unclosed file would fail the suite


# --- streaming ---------------------------------------------------------------------------------


class _EndlessTokens(io.RawIOBase):
    """An input that never ends: only a streaming reader can yield anything from it."""

    def __init__(self) -> None:
        self.served = 0
        self._pending = b""
        self._counter = itertools.count()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while len(self._pending) < len(buffer):
            self._pending += b"token-%08d\n" % next(self._counter)
        n = len(buffer)
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.served += n
        return n


@pytest.mark.parametrize("fmt", [None, "text"])
def test_reader_streams_from_an_endless_input(fmt: Format | None) -> None:
    source = _EndlessTokens()
    stream = io.BufferedReader(source)
    first = list(itertools.islice(read_tokens("-", fmt, stdin=stream), 1000))
    assert [i.token for i in first[:2]] == ["token-00000000", "token-00000001"]
    assert first[-1] == ok("token-00000999", 1000)
    assert source.served < 64 * 1024  # read ahead only by a buffer or two


@pytest.mark.parametrize(
    ("fmt", "header", "line"),
    [
        ("text", b"", b"%08d-FB5D-4FB6-8765-3E931EBBFC79\n"),
        ("csv", b"SdkToken,issued_at\n", b"%08d-FB5D-4FB6-8765-3E931EBBFC79,1704067200\n"),
        ("jsonl", b"", b'{"SdkToken": "%08d-FB5D-4FB6-8765-3E931EBBFC79"}\n'),
    ],
)
def test_memory_stays_flat_on_a_large_file(
    tmp_path: Path, fmt: Format, header: bytes, line: bytes
) -> None:
    count = 60_000 if fmt == "text" else 20_000  # tracemalloc makes every allocation slow
    path = tmp_path / "big"
    with path.open("wb") as out:
        out.write(header)
        out.writelines(line % i for i in range(count))
    size = path.stat().st_size
    seen = 0
    last = 0
    tracemalloc.start()
    try:
        for item in read_tokens(str(path), fmt):
            assert isinstance(item, TokenEntry)
            assert item.line > last
            last = item.line
            seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 512 * 1024, f"peak {peak} bytes for a {size}-byte file"


# -- input that can be read only once (issue 9: piped input lost tokens) -------------------------


def _feed_fifo(path: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(path, "wb") as fifo:  # waits for the reader, as a real producer would
            fifo.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return writer


def test_estimate_entries_counts_a_regular_file(tmp_path: Path) -> None:
    text = tmp_path / "tokens.txt"
    text.write_bytes(b"# export\n" + UUID.encode() + b"\n\n  \n" + ODD.encode() + b"\n")
    assert estimate_entries(str(text)) == 2
    table = tmp_path / "tokens.csv"
    table.write_bytes(b"SdkToken,issued_at\n" + UUID.encode() + b",1704067200\n")
    assert estimate_entries(str(table)) == 1  # the header is not an entry


def test_estimate_entries_never_opens_a_fifo(tmp_path: Path) -> None:
    # Opening a FIFO for reading blocks until a writer comes, and once one has, every byte the
    # counter reads is a token the run never sees. So the counter must not open it at all.
    fifo = tmp_path / "tokens"
    os.mkfifo(fifo)
    result: list[int | None] = []
    counter = threading.Thread(target=lambda: result.append(estimate_entries(str(fifo))))
    counter.daemon = True
    counter.start()
    counter.join(timeout=5)
    if counter.is_alive():  # blocked in open(): let it go before failing
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not counter.is_alive(), "estimate_entries opened the FIFO"
    assert result == [None]


def test_estimate_entries_is_none_for_stdin_and_devices(tmp_path: Path) -> None:
    assert estimate_entries("-") is None
    assert estimate_entries(os.devnull) is None
    assert estimate_entries(str(tmp_path)) is None
    assert estimate_entries(str(tmp_path / "missing.txt")) is None


def test_is_regular_file(tmp_path: Path) -> None:
    regular = tmp_path / "tokens.txt"
    regular.write_text(UUID + "\n")
    link = tmp_path / "link.txt"
    link.symlink_to(regular)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert is_regular_file(str(regular))
    assert is_regular_file(str(link))  # the file it names decides
    for other in ("-", str(fifo), os.devnull, str(tmp_path), str(tmp_path / "no"), "a\0b"):
        assert not is_regular_file(other), other


@pytest.mark.parametrize(
    "data",
    [
        b"SdkToken,issued_at\n" + UUID.encode() + b",1704067200\n" + ODD.encode() + b",\n",
        b'{"SdkToken": "' + UUID.encode() + b'", "issued_at": 1704067200}\n',
        b"# tokens\n" + UUID.encode() + b"\n",
    ],
    ids=["csv", "jsonl", "text"],
)
def test_a_fifo_is_read_exactly_like_stdin(tmp_path: Path, data: bytes) -> None:
    # `--tokens <(psql ...)` names /dev/fd/63: no extension, so the format is sniffed from the
    # content exactly as on "-", instead of every CSV row becoming one "token".
    fifo = tmp_path / "tokens"
    os.mkfifo(fifo)
    writer = _feed_fifo(fifo, data)
    items = list(read_tokens(str(fifo)))
    writer.join(timeout=5)
    assert items == from_stdin(data)
    assert items[0] == ok(UUID, items[0].line, T2024 if b"1704067200" in data else None)


def test_a_fifo_with_an_explicit_format_is_not_sniffed(tmp_path: Path) -> None:
    data = b"SdkToken\n" + UUID.encode() + b"\n"
    fifo = tmp_path / "tokens"
    os.mkfifo(fifo)
    writer = _feed_fifo(fifo, data)
    items = list(read_tokens(str(fifo), "text"))
    writer.join(timeout=5)
    assert [i.token for i in items] == ["SdkToken", UUID]


class _Chunked(io.RawIOBase):
    """A pipe that delivers its bytes in the given chunks, one per read (like a slow export)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._chunks:
            return 0
        chunk = self._chunks.pop(0)
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize(
    ("chunks", "tokens"),
    [
        # A blank first chunk, then JSON Lines: sniffed as JSON Lines, not sent as raw text.
        ([b"\n", b'{"token": "js-1"}\n{"token": "js-2"}\n'], ["js-1", "js-2"]),
        # Half a CSV header in the first chunk: the header is not queried as a token.
        ([b"SdkTo", b"ken\nct-1\nct-2\n"], ["ct-1", "ct-2"]),
        ([b"  \r\n", b"\n", b"SdkToken,issued_at\n", b"a-1,\n"], ["a-1"]),
        # Plain text stays text, however it trickles in.
        ([b"tok", b"en-1\n", b"token-2\n"], ["token-1", "token-2"]),
    ],
)
def test_a_pipe_is_sniffed_from_its_first_whole_line(
    chunks: list[bytes], tokens: list[str]
) -> None:
    stream = io.BufferedReader(_Chunked(chunks), buffer_size=8192)
    items = list(read_tokens("-", stdin=stream))
    assert [item.token for item in items] == tokens
    assert all(isinstance(item, TokenEntry) for item in items)
