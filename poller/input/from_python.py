"""Tokens handed over from Python (`poll`, `run_batch`) rather than read from an export."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator

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
    "line" is its position, from 1. A collection stays a collection (checked as it is read),
    which the engine reads without a thread; any other iterable is read on its reader thread."""
    if isinstance(tokens, str | bytes):
        raise InputError("tokens should be an iterable of token strings, not one string.")
    if isinstance(tokens, Collection):
        # Types are checked up front (cheap: ~50 ms a million), so a wrong value deep in the
        # list is an error before any request, not a run that stops half-way.
        for n, token in enumerate(tokens, 1):
            if not isinstance(token, str | TokenEntry | BadEntry):
                raise InputError(f"token {n} is not a string but {_a(type(token).__name__)}.")
        return _Checked(tokens)
    return (_as_item(token, n) for n, token in enumerate(tokens, 1))


class _Checked(Collection[InputItem]):
    """A collection of tokens, each checked as it is taken: the engine reads a collection
    without a thread, and a million tokens start being asked before all are checked."""

    __slots__ = ("_tokens",)

    def __init__(self, tokens: Collection[str | InputItem]) -> None:
        self._tokens = tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def __iter__(self) -> Iterator[InputItem]:
        return (_as_item(token, n) for n, token in enumerate(self._tokens, 1))

    def __contains__(self, item: object) -> bool:
        return any(item == entry for entry in self)


def _as_item(token: object, n: int) -> InputItem:
    if isinstance(token, TokenEntry | BadEntry):
        return token
    if not isinstance(token, str):
        raise InputError(f"token {n} is not a string but {_a(type(token).__name__)}.")
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


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
