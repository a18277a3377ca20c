"""Shared helpers of the input tests: read bytes through the front door, and short forms."""

from __future__ import annotations

import io
from pathlib import Path

from poller.config.settings import InputFormat
from poller.input.entries import BadEntry, InputItem, TokenEntry
from poller.input.tokens import read_tokens

UUID = "D2B55F0C-FB5D-4FB6-8765-3E931EBBFC79"
ODD = "C736CEB2-03D89-014A10-B17B-B2DC535CA53B"  # SPEC §1.5: a real token that is not a UUID
T2024 = 1704067200.0  # 2024-01-01T00:00:00Z


def from_stdin(data: bytes, fmt: InputFormat | None = None) -> list[InputItem]:
    return list(read_tokens("-", fmt, stdin=io.BytesIO(data)))


def from_file(
    tmp_path: Path, name: str, data: bytes, fmt: InputFormat | None = None
) -> list[InputItem]:
    path = tmp_path / name
    path.write_bytes(data)
    return list(read_tokens(str(path), fmt))


def ok(token: str, line: int, issued_at: float | None = None) -> TokenEntry:
    return TokenEntry(token, line, issued_at)


def lines_of(items: list[InputItem]) -> list[tuple[str, int]]:
    """(kind, line) pairs: the shape of a result without the exact wording of reasons."""
    return [("ok" if isinstance(i, TokenEntry) else "bad", i.line) for i in items]


def bad1(reason: str, token: str = "") -> BadEntry:
    return BadEntry(token, 1, f"line 1: {reason}")
