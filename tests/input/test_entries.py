"""What a token line is worth (poller/input/entries.py): the SPEC §1 token checks."""

from __future__ import annotations

import itertools
import sys
import unicodedata

import pytest

from poller.input import entries
from poller.input.entries import (
    MAX_TOKEN_LENGTH,
    check_token,
)
from tests.input.support import ODD, UUID

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
        assert (entries.CONTROL.search(char) is not None) == is_cc, hex(code)


def test_trim_set_is_python_whitespace_plus_bom() -> None:
    spaces = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert set(entries._TRIM) == spaces | {"\ufeff"}
