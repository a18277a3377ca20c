"""Plain text input: one token per line, blank lines and ``#`` comments skipped (SPEC §3)."""

from __future__ import annotations

from collections.abc import Iterator

from poller.input.entries import MAX_TOKEN_LENGTH, InputItem, bad, trim, validated
from poller.input.lines import MAX_LINE_BYTES, Line, decode

__all__ = ["read_text"]


def read_text(lines: Iterator[Line]) -> Iterator[InputItem]:
    """One token per line; blank lines and '#' comments are skipped."""
    for number, data, too_long in lines:
        text, problem = decode(data)
        stripped = trim(text)
        if stripped.startswith("#") or (not stripped and not too_long):
            continue  # an over-long comment is still a comment
        if too_long:
            yield bad(
                stripped,
                number,
                f"line {number}: token is longer than {MAX_TOKEN_LENGTH} characters "
                f"(the line is over {MAX_LINE_BYTES} bytes; the rest of it was skipped)",
            )
        elif problem is not None:
            yield bad(stripped, number, f"line {number}: {problem}")
        else:
            yield validated(stripped, number, None)
