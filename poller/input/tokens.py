"""The front door of token input: which reader, and `read_tokens` to run it (SPEC §3).

The work happens beside this module, one job each: `lines` turns bytes into bounded lines,
`plain_text`, `csv_records` and `json_lines` turn lines into entries, `entries` and `issued_at`
decide what a token and its date are worth. Here the input is opened, its format chosen (by
flag, extension, or a sniff of a pipe's first line) and handed to its reader. The entry types
are re-exported so callers need only this module.

When errors surface: ``read_tokens`` is a generator, so nothing is opened until the first
``next()``. Every open or format problem raises ``InputError`` from that first ``next()``, before
any item is yielded; only an operating-system read error part-way through (a failing disk, a
dropped network mount) can raise ``InputError`` after items were yielded.
"""

from __future__ import annotations

import csv
import os
import re
import sys
from collections.abc import Iterator
from typing import BinaryIO

from poller.config.settings import INPUT_FORMATS, InputFormat
from poller.input.csv_records import TOKEN_NAMES, read_csv
from poller.input.entries import (
    BAD_TOKEN_CHARS,
    MAX_TOKEN_LENGTH,
    BadEntry,
    InputError,
    InputItem,
    TokenEntry,
    check_token,
)
from poller.input.issued_at import parse_issued_at
from poller.input.json_lines import read_jsonl
from poller.input.lines import (
    is_regular,
    is_regular_file,
    lines_after,
    open_token_file,
    read_head,
)
from poller.input.plain_text import read_text

__all__ = [
    "BAD_TOKEN_CHARS",
    "MAX_TOKEN_LENGTH",
    "BadEntry",
    "InputError",
    "InputFormat",
    "InputItem",
    "TokenEntry",
    "check_token",
    "detect_format",
    "estimate_entries",
    "is_regular_file",
    "parse_issued_at",
    "read_tokens",
]


def detect_format(path: str, explicit: InputFormat | None) -> InputFormat:
    """Pick the reader: an explicit choice wins, else the file extension, else plain text.

    Standard input ("-") has no extension and is reported as text here; ``read_tokens`` refines
    that by looking at the first line of stdin (see ``_sniff``).
    """
    if explicit is not None:
        if explicit not in INPUT_FORMATS:
            raise InputError(
                f"unknown token format {explicit!r}; use one of: {', '.join(INPUT_FORMATS)}"
            )
        return explicit
    if path == "-":
        return "text"
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        return "csv"
    if ext in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "text"


def read_tokens(
    path: str, fmt: InputFormat | None = None, *, stdin: BinaryIO | None = None
) -> Iterator[InputItem]:
    """Yield every token of the input, in order, as TokenEntry or BadEntry.

    ``path`` "-" reads ``stdin`` (default ``sys.stdin.buffer``), which is never closed here. A
    path that is not a regular file (a FIFO, /dev/stdin, /dev/fd/N from ``<(...)``) is opened
    once and read like "-": its format is sniffed unless ``fmt`` or the extension names one. The
    input streams: one physical line is in memory at a time, bounded by ``MAX_LINE_BYTES``.
    Duplicates are yielded every time: de-duplication belongs to the engine. Raises
    ``InputError`` from the first ``next()``, before any item, for every open or format problem.
    """
    if path == "-":
        stream = stdin
        if stream is None:
            if sys.stdin is None:  # pythonw, or a daemon started with stdin closed
                raise InputError("there is no standard input to read tokens from; pass a file")
            stream = sys.stdin.buffer
        yield from _read_stream(stream, "standard input", fmt, sniff=fmt is None)
        return
    chosen = detect_format(path, fmt)
    with open_token_file(path) as handle:
        if is_regular(handle):
            yield from _read_stream(handle, repr(path), chosen, sniff=False)
        else:
            # A pipe, FIFO or terminal (/dev/stdin, /dev/fd/63 from `<(...)`) is read exactly
            # like "-": streamed, its format sniffed unless given or named by an extension.
            sniff = fmt is None and detect_format(path, None) == "text"
            yield from _read_stream(handle, repr(path), chosen, sniff=sniff)


def _read_stream(
    stream: BinaryIO, name: str, fmt: InputFormat | None, *, sniff: bool
) -> Iterator[InputItem]:
    head = read_head(stream, name, first_line=sniff)
    chosen: InputFormat = _sniff(head) if sniff else detect_format("-", fmt)
    lines = lines_after(head, stream, name)
    if chosen == "text":
        yield from read_text(lines)
    elif chosen == "csv":
        yield from read_csv(lines, name)
    else:
        yield from read_jsonl(lines)


def _sniff(head: bytes) -> InputFormat:
    """Guess the format of stdin from its first non-blank line; anything unclear is text.

    Reliable because the signals cannot be tokens in practice: a line starting with "{" is a JSON
    object, and a first line naming a SdkToken/token column is a CSV header.
    """
    text = head.decode("utf-8", "replace").lstrip("\ufeff")
    first = next((line.strip() for line in text.split("\n") if line.strip()), "")
    if first.startswith("{"):
        return "jsonl"
    try:
        cells = next(csv.reader([first]), [])
    except csv.Error:
        return "text"
    if any(cell.strip().lower() in TOKEN_NAMES for cell in cells):
        return "csv"
    return "text"


_ENTRY_LINE = re.compile(rb"^[ \t\xef\xbb\xbf]*[^\s#]", re.MULTILINE)


def estimate_entries(path: str, fmt: InputFormat | None = None) -> int | None:
    """About how many entries a file holds (lines that are not blank or comments, less a CSV
    header), for a progress bar's total and ETA; None for stdin, anything that is not a regular
    file, or anything unreadable.

    It opens the path a second time, next to the run's own reader: harmless for a regular file,
    but a pipe or FIFO would hand it tokens the run then never sees (issue 9), and opening a FIFO
    could block. So it never opens anything but a regular file.

    A fast byte scan, not a parse: a quoted CSV field spanning lines counts twice."""
    if not is_regular_file(path):
        return None
    count = 0
    try:
        with open(path, "rb") as fh:
            tail = b""
            while chunk := fh.read(1 << 20):
                data = tail + chunk
                cut = data.rfind(b"\n") + 1
                count += len(_ENTRY_LINE.findall(data, 0, cut))
                tail = data[cut:]
            count += len(_ENTRY_LINE.findall(tail))
    except OSError:
        return None
    if detect_format(path, fmt) == "csv" and count:
        count -= 1
    return count
