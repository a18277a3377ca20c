"""JSON Lines input (poller/input/json_lines.py): one object per line, each line on its own."""

from __future__ import annotations

import pytest

from poller.input.entries import (
    BadEntry,
    InputItem,
)
from tests.input.support import T2024, bad1, from_stdin, lines_of, ok

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
