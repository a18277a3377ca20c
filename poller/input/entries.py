"""What reading tokens yields, and the checks that decide it (SPEC §1 token rules).

Every format's reader ends in `validated`: a token and its ``issued_at`` become a `TokenEntry`,
or a `BadEntry` that says why not. Deciding that in one place is what keeps the three formats
from drifting apart. `InputError` is the other outcome: the input as a whole is unusable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from poller.errors import PollerError
from poller.input.issued_at import parse_issued_at

__all__ = [
    "BAD_TOKEN_CHARS",
    "CONTROL",
    "MAX_TOKEN_LENGTH",
    "BadEntry",
    "InputError",
    "InputItem",
    "TokenEntry",
    "bad",
    "check_token",
    "trim",
    "validated",
]

# SPEC §1: reject empty, over-long (> 256 chars) or control-character tokens locally.
MAX_TOKEN_LENGTH = 256
# A BadEntry carries at most this much of the offending text, so a 10 MB line never becomes a
# 10 MB output record.
BAD_TOKEN_CHARS = 300

# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; a regex is ~20x faster than
# calling unicodedata.category per character on a million tokens. Lone surrogates (category Cs)
# are rejected too: only JSON "\ud800" escapes can produce them, and they cannot be encoded as
# UTF-8, so such a token could never be sent (or even written to the output file).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Exactly the characters str.isspace() accepts (a test pins this), plus U+FEFF: a byte-order mark
# in the middle of the input is what `cat a.txt b.txt` leaves when b.txt starts with one.
_TRIM = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One acceptable token, with where it came from so results can be traced back."""

    token: str
    line: int
    issued_at: float | None = None


@dataclass(frozen=True, slots=True)
class BadEntry:
    """One input line (or CSV record) that cannot be polled; the run reports it and goes on.

    ``token`` is clipped to ``BAD_TOKEN_CHARS`` (plus "…") and made encodable, so writing it out can
    never fail or balloon; ``reason`` is one sentence starting with ``line N:``.
    """

    token: str
    line: int
    reason: str


InputItem = TokenEntry | BadEntry


class InputError(PollerError):
    """The input as a whole is unusable; the message is one sentence, shown as-is before exit 2."""


def trim(text: str) -> str:
    return text.strip(_TRIM)


def check_token(raw: str) -> str | None:
    """Return why ``raw`` (trimmed first) cannot be sent as an SdkToken, or None if it can.

    Tokens are opaque (SPEC §1.5 shows non-UUID shapes), so only what would break the request or
    the output is refused: emptiness, more than 256 characters, control characters (category Cc,
    which includes NUL, TAB and DEL) and lone surrogates (unencodable).
    """
    token = trim(raw)
    if not token:
        return "token is empty"
    if len(token) > MAX_TOKEN_LENGTH:
        return f"token is longer than {MAX_TOKEN_LENGTH} characters (it has {len(token)})"
    found = CONTROL.search(token)
    if found is not None:
        code = ord(found.group())
        return f"token contains a control character (U+{code:04X} at position {found.start() + 1})"
    found = _SURROGATE.search(token)
    if found is not None:
        code = ord(found.group())
        return f"token contains a lone surrogate (U+{code:04X} at position {found.start() + 1})"
    return None


def bad(token: str, line: int, reason: str) -> BadEntry:
    """A BadEntry whose text is clipped and encodable, whatever the line held."""
    if len(token) > BAD_TOKEN_CHARS:
        token = token[:BAD_TOKEN_CHARS] + "…"
    return BadEntry(_encodable(token), line, _encodable(reason))


def _encodable(text: str) -> str:
    # Lone surrogates (from JSON escapes) would make the output writer's UTF-8 encode fail.
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def validated(token_text: str, line: int, issued_at: object) -> InputItem:
    """Validate one token and its issued_at into a TokenEntry, or explain why not."""
    token = trim(token_text)
    reason = check_token(token)
    if reason is not None:
        return bad(token, line, f"line {line}: {reason}")
    try:
        seconds = parse_issued_at(issued_at)
    except ValueError as exc:
        return bad(token, line, f"line {line}: {exc}")
    return TokenEntry(token, line, seconds)
