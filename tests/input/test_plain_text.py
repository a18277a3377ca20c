"""Plain text input (poller/input/plain_text.py): one token per line, comments skipped."""

from __future__ import annotations

import pytest

from poller.input.entries import (
    BadEntry,
    InputItem,
)
from tests.input.support import ODD, from_stdin, ok

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
