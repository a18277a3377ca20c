"""Tokens handed over from Python (`poll`, `run_batch`) rather than read from an export."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from poller.input.tokens import (
    BAD_TOKEN_CHARS,
    BadEntry,
    InputError,
    InputItem,
    TokenEntry,
    check_token,
)


def as_items(tokens: Iterable[str | InputItem]) -> Iterable[InputItem]:
    """Token strings (or the input stage's entries, passed through) as entries.

    A string is trimmed and checked as a file's token is (SPEC §1: empty, over 256 characters or
    holding control characters is refused locally: an `invalid_token` line, not final); its
    "line" is its position, from 1. A collection stays a list, which the engine reads without a
    thread; any other iterable is read lazily, on the engine's reader thread."""
    if isinstance(tokens, str | bytes):
        raise InputError("tokens should be an iterable of token strings, not one string.")
    if isinstance(tokens, Collection):
        return [_as_item(token, n) for n, token in enumerate(tokens, 1)]
    return (_as_item(token, n) for n, token in enumerate(tokens, 1))


def _as_item(token: object, n: int) -> InputItem:
    if isinstance(token, TokenEntry | BadEntry):
        return token
    if not isinstance(token, str):
        raise InputError(f"token {n} is a {type(token).__name__}, not a string.")
    text = _trim(token)
    reason = check_token(text)
    if reason is None:
        return TokenEntry(text, n)
    if len(text) > BAD_TOKEN_CHARS:
        text = text[:BAD_TOKEN_CHARS] + "…"
    # Lone surrogates would make the line's UTF-8 encoding fail: replace them.
    text = text.encode("utf-8", "replace").decode("utf-8")
    return BadEntry(text, n, f"token {n}: {reason}")


def _trim(text: str) -> str:
    # As the file readers do: whitespace, and byte-order marks.
    trimmed = text.strip().strip("\ufeff")
    return trimmed if trimmed == text else _trim(trimmed)
