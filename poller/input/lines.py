"""Bytes in, numbered lines out: opening the input, telling text from binary, bounded lines.

Input is opened in binary and split here, one physical line at a time, so that one bad line
(invalid UTF-8, a NUL, a 10 MB run of bytes) becomes one bad entry in the format reader instead
of killing the run, and so that no line is held beyond ``MAX_LINE_BYTES``: a million-line file
or a 10 MB line costs O(1) memory. Only problems with the input as a whole (missing,
unreadable, binary) raise ``InputError`` here.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

from poller.input.entries import BAD_TOKEN_CHARS, CONTROL, InputError

__all__ = [
    "MAX_LINE_BYTES",
    "Line",
    "decode",
    "is_regular",
    "is_regular_file",
    "lines_after",
    "open_token_file",
    "read_head",
]

# No valid line is anywhere near this long (a token is <= 256 chars); the bound exists so a hostile
# multi-megabyte line is skipped in bounded chunks instead of being held whole in memory.
MAX_LINE_BYTES = 1 << 20
# Lines are read in pieces of this size; almost every line fits in one.
_PIECE = 64 * 1024
# Enough bytes to show BAD_TOKEN_CHARS characters even if each is a 4-byte UTF-8 sequence.
_PREVIEW_BYTES = 4 * BAD_TOKEN_CHARS + 4
# How much of the input start is inspected to tell text from binary (and, on stdin, the format).
_SNIFF_BYTES = 8192
_BOM = b"\xef\xbb\xbf"
_FIRST_LINE = re.compile(rb"\S[^\n]*\n")


class Line(NamedTuple):
    number: int
    data: bytes | bytearray  # without the line ending; only a preview when too_long
    too_long: bool


def open_token_file(path: str) -> BinaryIO:
    """Open ``path`` for binary reading; every failure is an InputError that says what to do."""
    try:
        return open(path, "rb")  # the caller closes it (read_tokens, in a `with`)
    except FileNotFoundError:
        raise InputError(f"token file {path!r} does not exist; check the path") from None
    except IsADirectoryError:
        raise InputError(
            f"{path!r} is a directory, not a token file; pass a file path (or - for stdin)"
        ) from None
    except PermissionError:
        raise InputError(
            f"cannot read token file {path!r}: permission denied; check its permissions"
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"cannot open token file {path!r}: {reason}") from None


def is_regular(handle: BinaryIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def is_regular_file(path: str) -> bool:
    """True only for a path naming a regular file (symlinks followed): the only kind of input
    that can be read twice. A pipe, FIFO, /dev/stdin, /dev/fd/N or a terminal is consumed by
    whoever reads it, so a second reader would steal tokens from the run."""
    if path == "-":
        return False
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return False


def read_head(stream: BinaryIO, name: str, *, first_line: bool) -> bytes:
    """The first bytes of the input, checked to be text; with ``first_line``, read on until
    the first non-blank line is whole (or 8 KiB arrived), so its format can be sniffed."""
    # read1 returns what is available (at most one raw read): a slow producer piping tokens into
    # stdin is not held up until 8 KiB have arrived; for a regular file it returns the full window.
    read1 = getattr(stream, "read1", None)
    read = read1 if callable(read1) else stream.read
    try:
        head = read(_SNIFF_BYTES)
        if not isinstance(head, bytes):  # a text-mode stream passed by mistake
            raise InputError(f"{name} must be opened in binary mode")
        # The format is sniffed from the first non-blank line, so read until it is whole: a
        # pipe may deliver a blank line, or half a CSV header, in its first chunk.
        while first_line and head and len(head) < _SNIFF_BYTES and not _holds_first_line(head):
            more = read(_SNIFF_BYTES - len(head))
            if not more:
                break
            head += more
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    problem = _binary_problem(head)
    if problem is not None:
        hint = "; decompress it first" if name.rstrip("'\"").endswith((".gz", ".zip")) else ""
        raise InputError(f"{name} {problem}{hint}")
    return head


def lines_after(head: bytes, stream: BinaryIO, name: str) -> Iterator[Line]:
    """The physical lines of ``head`` followed by the rest of ``stream``."""
    return _physical_lines(_chained_readline(head, stream, name))


def _binary_problem(head: bytes) -> str | None:
    """Why the start of the input is not token text, or None. Cheap: one 8 KiB window.

    Thresholds are loose on purpose: a stray NUL or one Latin-1 line must stay a per-line
    BadEntry, while UTF-16 (every other byte NUL), images, archives and random bytes are refused.
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "is UTF-16 text; save it as UTF-8"
    if not head:
        return None
    nul = head.count(0)
    decoded = codecs.getincrementaldecoder("utf-8")("replace").decode(head, final=False)
    undecodable = decoded.count("\ufffd")
    controls = len(CONTROL.findall(decoded)) - sum(decoded.count(c) for c in "\t\n\r\x0c\x0b")
    suspicious = undecodable + controls
    if (nul >= 4 and nul * 10 >= len(head)) or (
        suspicious >= 8 and suspicious * 10 >= len(head) * 3
    ):
        return (
            "looks like a binary file, not UTF-8 text; "
            "give a text, CSV or JSON Lines file of tokens"
        )
    return None


def _holds_first_line(head: bytes) -> bool:
    """Whether `head` holds a whole non-blank line (what the format sniff looks at)."""
    return _FIRST_LINE.search(head.removeprefix(b"\xef\xbb\xbf")) is not None


def _chained_readline(head: bytes, stream: BinaryIO, name: str) -> Callable[[int], bytes]:
    """A readline(limit) over the already-read head followed by the rest of the stream."""
    position = 0

    def readline(limit: int) -> bytes:
        nonlocal position
        part = b""
        if position < len(head):
            end = head.find(b"\n", position, position + limit)
            stop = min(len(head), position + limit) if end < 0 else end + 1
            part = head[position:stop]
            position = stop
            if part.endswith(b"\n") or len(part) == limit:
                return part
        try:
            return part + stream.readline(limit - len(part))
        except OSError as exc:
            raise InputError(f"error while reading {name}: {exc.strerror or exc}") from None

    return readline


def _physical_lines(readline: Callable[[int], bytes]) -> Iterator[Line]:
    """Split into lines on LF (CRLF too), each at most MAX_LINE_BYTES; strip a leading BOM.

    Lines are read in _PIECE-sized reads: a normal line takes one read, a long one is gathered
    in a bytearray that never grows past MAX_LINE_BYTES. Past that bound only a short preview is
    kept and the rest of the line is read and dropped piece by piece, so memory stays bounded
    whatever the line length.
    """
    number = 0
    while True:
        chunk = readline(_PIECE)
        if not chunk:
            return
        number += 1
        data: bytes | bytearray = chunk
        too_long = False
        if len(chunk) == _PIECE and not chunk.endswith(b"\n"):
            gathered = bytearray(chunk)
            while True:
                more = readline(_PIECE)
                if not more:
                    break
                if len(gathered) + len(more) > MAX_LINE_BYTES:
                    too_long = True
                    del gathered[_PREVIEW_BYTES:]
                    while more and not more.endswith(b"\n"):
                        more = readline(_PIECE)
                    break
                gathered += more
                if more.endswith(b"\n"):
                    break
            data = gathered
        if number == 1 and data.startswith(_BOM):
            data = data[len(_BOM) :]
        if too_long:
            yield Line(number, bytes(data[:_PREVIEW_BYTES]), True)
            continue
        ending = 2 if data.endswith(b"\r\n") else 1 if data.endswith(b"\n") else 0
        if ending and isinstance(data, bytearray):
            del data[-ending:]  # in place: a near-limit line is not copied again
        elif ending:
            data = data[:-ending]
        yield Line(number, data, False)


def decode(data: bytes | bytearray) -> tuple[str, str | None]:
    """Decode one line; on invalid UTF-8 return the lossy text and the reason (no line prefix)."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        return (
            data.decode("utf-8", "replace"),
            f"not valid UTF-8 (byte 0x{byte:02x} at byte {exc.start + 1} of the line)",
        )
