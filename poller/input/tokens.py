"""Token input readers: plain text, CSV and JSON Lines (SPEC §1 token rules, §3 input formats).

Pure parsing, no asyncio. Everything streams: bytes are read one physical line at a time, and no
line is held beyond ``MAX_LINE_BYTES``, so a million-line file or a 10 MB line costs O(1) memory.
Input is opened in binary and decoded here, line by line, so one bad line (invalid UTF-8, a NUL, a
broken JSON object) becomes a ``BadEntry`` for that line instead of killing the run; only problems
with the input as a whole (missing, unreadable, binary, a CSV without a token column) raise
``InputError``.

When errors surface: ``read_tokens`` is a generator, so nothing is opened until the first
``next()``. Every open or format problem raises ``InputError`` from that first ``next()``, before
any item is yielded; only an operating-system read error part-way through (a failing disk, a
dropped network mount) can raise ``InputError`` after items were yielded.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
import stat
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, Literal, NamedTuple

from poller.errors import PollerError

__all__ = [
    "MAX_TOKEN_LENGTH",
    "BadEntry",
    "Format",
    "InputError",
    "InputItem",
    "TokenEntry",
    "check_token",
    "detect_format",
    "estimate_entries",
    "is_regular_file",
    "parse_issued_at",
    "read_tokens",
]

Format = Literal["text", "csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("text", "csv", "jsonl")

# SPEC §1: reject empty, over-long (> 256 chars) or control-character tokens locally.
MAX_TOKEN_LENGTH = 256
# No valid line is anywhere near this long (a token is <= 256 chars); the bound exists so a hostile
# multi-megabyte line is skipped in bounded chunks instead of being held whole in memory.
MAX_LINE_BYTES = 1 << 20
# A BadEntry carries at most this much of the offending text, so a 10 MB line never becomes a
# 10 MB output record.
BAD_TOKEN_CHARS = 300
# Lines are read in pieces of this size; almost every line fits in one.
_PIECE = 64 * 1024
# Enough bytes to show BAD_TOKEN_CHARS characters even if each is a 4-byte UTF-8 sequence.
_PREVIEW_BYTES = 4 * BAD_TOKEN_CHARS + 4
# How much of the input start is inspected to tell text from binary (and, on stdin, the format).
_SNIFF_BYTES = 8192
# Unix seconds of 9999-12-31T23:59:59Z: the last second a datetime can represent.
_MAX_UNIX_SECONDS = 253402300799.0

# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; a regex is ~20x faster than
# calling unicodedata.category per character on a million tokens. Lone surrogates (category Cs)
# are rejected too: only JSON "\ud800" escapes can produce them, and they cannot be encoded as
# UTF-8, so such a token could never be sent (or even written to the output file).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Exactly the characters str.isspace() accepts (a test pins this), plus U+FEFF: a byte-order mark
# in the middle of the input is what `cat a.txt b.txt` leaves when b.txt starts with one.
_TRIM = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
_UNIX_STRING = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
_TOKEN_NAMES = ("sdktoken", "token")
_BOM = b"\xef\xbb\xbf"


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


class _Line(NamedTuple):
    number: int
    data: bytes | bytearray  # without the line ending; only a preview when too_long
    too_long: bool


class _BadValue(ValueError):
    """A field value that cannot be used; the message is the reason without the line prefix."""


def _trim(text: str) -> str:
    return text.strip(_TRIM)


def check_token(raw: str) -> str | None:
    """Return why ``raw`` (trimmed first) cannot be sent as an SdkToken, or None if it can.

    Tokens are opaque (SPEC §1.5 shows non-UUID shapes), so only what would break the request or
    the output is refused: emptiness, more than 256 characters, control characters (category Cc,
    which includes NUL, TAB and DEL) and lone surrogates (unencodable).
    """
    token = _trim(raw)
    if not token:
        return "token is empty"
    if len(token) > MAX_TOKEN_LENGTH:
        return f"token is longer than {MAX_TOKEN_LENGTH} characters (it has {len(token)})"
    bad = _CONTROL.search(token)
    if bad is not None:
        code = ord(bad.group())
        return f"token contains a control character (U+{code:04X} at position {bad.start() + 1})"
    bad = _SURROGATE.search(token)
    if bad is not None:
        code = ord(bad.group())
        return f"token contains a lone surrogate (U+{code:04X} at position {bad.start() + 1})"
    return None


def detect_format(path: str, explicit: Format | None) -> Format:
    """Pick the reader: an explicit choice wins, else the file extension, else plain text.

    Standard input ("-") has no extension and is reported as text here; ``read_tokens`` refines
    that by looking at the first line of stdin (see ``_sniff``).
    """
    if explicit is not None:
        if explicit not in FORMATS:
            raise InputError(f"unknown token format {explicit!r}; use one of: {', '.join(FORMATS)}")
        return explicit
    if path == "-":
        return "text"
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        return "csv"
    if ext in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "text"


def parse_issued_at(value: object) -> float | None:
    """Turn an ``issued_at`` value into Unix seconds; None when absent; ValueError says why not.

    Accepts RFC 3339 date-times with 'Z' or an offset (a space may replace 'T', as RFC 3339 §5.6
    allows), and Unix seconds as an int, a float or a numeric string. A date-time without an
    offset is refused rather than guessed: local time would shift the 72-hour window by hours.
    """
    if value is None:
        return None
    if isinstance(value, bool):  # bool is an int subclass: True must not mean 1970-01-01T00:00:01
        raise _BadValue(f"issued_at {value!r} is not RFC 3339 or Unix seconds")
    if isinstance(value, int | float):
        return _unix_seconds(float(value), value)
    if not isinstance(value, str):
        kind = _json_kind(value)
        raise _BadValue(f"issued_at must be an RFC 3339 string or Unix seconds, not {kind}")
    text = value.strip()
    if not text:
        return None
    if _UNIX_STRING.fullmatch(text):
        return _unix_seconds(float(text), value)
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise _BadValue(f"issued_at {_quote(value)} is not RFC 3339 or Unix seconds")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset is None:
        raise _BadValue(
            f"issued_at {_quote(value)} has no UTC offset; add 'Z' or an offset such as '+08:00'"
        )
    leap = 1.0 if second == "60" else 0.0  # RFC 3339 allows a leap second; datetime does not
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second) - int(leap),
            tzinfo=UTC,
        )  # fmt: skip
        if offset not in ("Z", "z"):
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            shift = timedelta(hours=hours, minutes=minutes)
            moment = moment - shift if offset[0] == "+" else moment + shift
        seconds = moment.timestamp()
    except (ValueError, OverflowError):
        raise _BadValue(f"issued_at {_quote(value)} is not a valid date and time") from None
    return seconds + leap + (float("0." + fraction) if fraction else 0.0)


def _unix_seconds(seconds: float, original: object) -> float:
    if not math.isfinite(seconds) or not 0 <= seconds <= _MAX_UNIX_SECONDS:
        hint = " (milliseconds? give seconds)" if 1e12 <= seconds < 1e15 else ""
        raise _BadValue(f"issued_at {_quote(original)} is out of range for Unix seconds{hint}")
    return seconds


def read_tokens(
    path: str, fmt: Format | None = None, *, stdin: BinaryIO | None = None
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
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the `with` below, inside the generator
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
    with handle:
        if _is_regular(handle):
            yield from _read_stream(handle, repr(path), chosen, sniff=False)
        else:
            # A pipe, FIFO or terminal (/dev/stdin, /dev/fd/63 from `<(...)`) is read exactly
            # like "-": streamed, its format sniffed unless given or named by an extension.
            sniff = fmt is None and detect_format(path, None) == "text"
            yield from _read_stream(handle, repr(path), chosen, sniff=sniff)


def _is_regular(handle: BinaryIO) -> bool:
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


def _read_stream(
    stream: BinaryIO, name: str, fmt: Format | None, *, sniff: bool
) -> Iterator[InputItem]:
    # read1 returns what is available (at most one raw read): a slow producer piping tokens into
    # stdin is not held up until 8 KiB have arrived; for a regular file it returns the full window.
    read_head = getattr(stream, "read1", None)
    read = read_head if callable(read_head) else stream.read
    try:
        head = read(_SNIFF_BYTES)
        if not isinstance(head, bytes):  # a text-mode stream passed by mistake
            raise InputError(f"{name} must be opened in binary mode")
        # The format is sniffed from the first non-blank line, so read until it is whole: a
        # pipe may deliver a blank line, or half a CSV header, in its first chunk.
        while sniff and head and len(head) < _SNIFF_BYTES and not _holds_first_line(head):
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
    chosen: Format = _sniff(head) if sniff else detect_format("-", fmt)
    lines = _physical_lines(_chained_readline(head, stream, name))
    if chosen == "text":
        yield from _read_text(lines)
    elif chosen == "csv":
        yield from _read_csv(lines, name)
    else:
        yield from _read_jsonl(lines)


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
    controls = len(_CONTROL.findall(decoded)) - sum(decoded.count(c) for c in "\t\n\r\x0c\x0b")
    suspicious = undecodable + controls
    if (nul >= 4 and nul * 10 >= len(head)) or (
        suspicious >= 8 and suspicious * 10 >= len(head) * 3
    ):
        return (
            "looks like a binary file, not UTF-8 text; "
            "give a text, CSV or JSON Lines file of tokens"
        )
    return None


_FIRST_LINE = re.compile(rb"\S[^\n]*\n")


def _holds_first_line(head: bytes) -> bool:
    """Whether `head` holds a whole non-blank line (what `_sniff` looks at)."""
    return _FIRST_LINE.search(head.removeprefix(b"\xef\xbb\xbf")) is not None


def _sniff(head: bytes) -> Format:
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
    if any(cell.strip().lower() in _TOKEN_NAMES for cell in cells):
        return "csv"
    return "text"


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


def _physical_lines(readline: Callable[[int], bytes]) -> Iterator[_Line]:
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
            yield _Line(number, bytes(data[:_PREVIEW_BYTES]), True)
            continue
        ending = 2 if data.endswith(b"\r\n") else 1 if data.endswith(b"\n") else 0
        if ending and isinstance(data, bytearray):
            del data[-ending:]  # in place: a near-limit line is not copied again
        elif ending:
            data = data[:-ending]
        yield _Line(number, data, False)


def _decode(data: bytes | bytearray) -> tuple[str, str | None]:
    """Decode one line; on invalid UTF-8 return the lossy text and the reason (no line prefix)."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        return (
            data.decode("utf-8", "replace"),
            f"not valid UTF-8 (byte 0x{byte:02x} at byte {exc.start + 1} of the line)",
        )


def _bad(token: str, line: int, reason: str) -> BadEntry:
    if len(token) > BAD_TOKEN_CHARS:
        token = token[:BAD_TOKEN_CHARS] + "…"
    return BadEntry(_encodable(token), line, _encodable(reason))


def _encodable(text: str) -> str:
    # Lone surrogates (from JSON escapes) would make the output writer's UTF-8 encode fail.
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def _quote(value: object) -> str:
    shown = repr(value)  # escapes control characters and surrogates, quotes strings
    return shown if len(shown) <= 60 else shown[:60] + "…"


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _entry(token_text: str, line: int, issued_at: object) -> InputItem:
    """Validate one token and its issued_at into a TokenEntry, or explain why not."""
    token = _trim(token_text)
    reason = check_token(token)
    if reason is not None:
        return _bad(token, line, f"line {line}: {reason}")
    try:
        seconds = parse_issued_at(issued_at)
    except ValueError as exc:
        return _bad(token, line, f"line {line}: {exc}")
    return TokenEntry(token, line, seconds)


def _read_text(lines: Iterator[_Line]) -> Iterator[InputItem]:
    """One token per line; blank lines and '#' comments are skipped."""
    for number, data, too_long in lines:
        text, problem = _decode(data)
        stripped = _trim(text)
        if stripped.startswith("#") or (not stripped and not too_long):
            continue  # an over-long comment is still a comment
        if too_long:
            yield _bad(
                stripped,
                number,
                f"line {number}: token is longer than {MAX_TOKEN_LENGTH} characters "
                f"(the line is over {MAX_LINE_BYTES} bytes; the rest of it was skipped)",
            )
        elif problem is not None:
            yield _bad(stripped, number, f"line {number}: {problem}")
        else:
            yield _entry(stripped, number, None)


def _read_jsonl(lines: Iterator[_Line]) -> Iterator[InputItem]:
    """One JSON object per non-blank line, with a string "SdkToken" (preferred) or "token"."""
    for number, data, too_long in lines:
        if too_long:
            reason = f"line {number}: line is longer than {MAX_LINE_BYTES} bytes; it was skipped"
            yield _bad("", number, reason)
            continue
        text, problem = _decode(data)
        if not _trim(text):
            continue
        try:
            obj: object = json.loads(text)
        except RecursionError:
            yield _bad("", number, f"line {number}: not valid JSON (nested too deeply)")
            continue
        except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
            detail = (
                f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else exc
            )
            yield _bad("", number, f"line {number}: not valid JSON ({detail})")
            continue
        if not isinstance(obj, dict):
            yield _bad("", number, f"line {number}: expected a JSON object, got {_json_kind(obj)}")
            continue
        key = "SdkToken" if "SdkToken" in obj else "token" if "token" in obj else None
        if key is None:
            yield _bad("", number, f'line {number}: no "SdkToken" or "token" field')
            continue
        raw = obj[key]
        if not isinstance(raw, str):
            shown = json.dumps(raw) if isinstance(raw, int | float) else ""
            reason = f'line {number}: "{key}" must be a string, got {_json_kind(raw)}'
            yield _bad(shown, number, reason)
            continue
        if problem is not None:
            yield _bad(_trim(raw), number, f"line {number}: {problem}")
            continue
        yield _entry(raw, number, obj.get("issued_at"))


def _read_csv(lines: Iterator[_Line], name: str) -> Iterator[InputItem]:
    """CSV with a header naming a SdkToken/token column and optionally issued_at.

    The csv module parses records (quoted fields may span lines); we feed it one physical line at
    a time and keep the lines of the record being read, so each record's first line is known.
    Per-line problems found while feeding (invalid UTF-8, over-long lines) are remembered by line
    number and turn the record that contains them into a BadEntry.

    A stray quote opens a field that swallows the lines after it: up to csv's field limit (128
    KiB), or silently to the end of the file. Either way the record is reported as bad on its
    first line, and the lines it swallowed are read again as records of their own: one broken
    row never takes the tokens below it along (issue 9: every token accounted for).
    """
    flags: dict[int, str] = {}
    source = iter(lines)
    replay: deque[tuple[int, str]] = deque()  # swallowed lines to read again, in order
    record: list[tuple[int, str]] = []  # the lines of the record being read

    def feed() -> Iterator[str]:
        while True:
            if replay:
                number, text = replay.popleft()
            else:
                try:
                    number, data, too_long = next(source)
                except StopIteration:
                    return
                if too_long:
                    flags[number] = (
                        f"the line is longer than {MAX_LINE_BYTES} bytes and was skipped"
                    )
                    text = "\n"  # keep line numbers aligned; the record is reported as bad
                else:
                    decoded, problem = _decode(data)
                    if problem is not None:
                        flags[number] = problem
                    text = decoded + "\n"
            record.append((number, text))
            yield text

    def take_flags(start: int, end: int) -> str | None:
        found = None
        for number in range(start, end + 1):
            problem = flags.pop(number, None)
            if problem is not None and found is None:
                found = problem if number == start else f"{problem} (on line {number})"
        return found

    def next_record(reader: Any) -> tuple[list[str] | None, str | None, int, int]:
        """(row, error, first line, last line) of the next record; row None at the end."""
        record.clear()
        try:
            row = next(reader)
        except StopIteration:
            return None, None, 0, 0
        except csv.Error as exc:
            return [], str(exc), record[0][0] if record else 0, record[-1][0] if record else 0
        return row, None, record[0][0], record[-1][0]

    reader = csv.reader(feed())
    header: list[str] | None = None
    while header is None:
        row, error, start, end = next_record(reader)
        if row is None:
            return  # empty input, or blank lines only: nothing to poll
        if error is not None:
            raise InputError(
                f"the CSV header of {name} (line {start}) cannot be parsed: {error}"
            ) from None
        problem = take_flags(start, end)
        if problem is not None and "longer than" in problem:
            raise InputError(f"the CSV header of {name} (line {start}) is unusable: {problem}")
        if end > start and any(cell.strip() for cell in row):
            # Column names never span lines: a stray quote would take the rows below along.
            raise InputError(
                f"the CSV header of {name} runs over lines {start}-{end}: a quote in it is not "
                "closed on its own line"
            )
        if any(cell.strip() for cell in row):
            header = row

    names = [_trim(cell).lower() for cell in header]
    token_col = next((i for i, n in enumerate(names) if n in _TOKEN_NAMES), None)
    issued_col = next((i for i, n in enumerate(names) if n == "issued_at"), None)
    if token_col is None:
        shown = ", ".join(_trim(cell) for cell in header)
        # The message must stay one line: show control characters (a quoted newline) escaped.
        shown = _CONTROL.sub(lambda m: repr(m.group())[1:-1], shown)
        shown = shown if len(shown) <= 200 else shown[:200] + "…"
        hint = ""
        if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
            hint = "; it looks semicolon- or tab-separated, but only comma-separated CSV is read"
        raise InputError(
            f"{name} has no SdkToken or token column (header: {shown}); name the token column "
            f"SdkToken or token in the first line{hint}"
        )

    width = len(header)
    while True:
        row, error, start, end = next_record(reader)
        if row is None:
            return
        if error is None and end > start:
            error = _stray_quote(record, row, token_col)
        if error is not None:
            swallowed = record[1:]
            take_flags(start, start)
            span = f" (swallowing lines {start + 1}-{end}, read again)" if swallowed else ""
            cell = _first_line_cell(record, token_col)
            yield _bad(cell, start, f"line {start}: CSV record cannot be parsed{span}: {error}")
            # Read the swallowed lines again as records of their own, with a fresh parser (the
            # old one is mid-field). Bounded: at most csv's field limit of text.
            replay.extendleft(reversed(swallowed))
            reader = csv.reader(feed())
            continue
        problem = take_flags(start, end)
        if problem is None and not any(cell.strip() for cell in row):
            continue  # a blank line, or an all-empty row such as spreadsheets append
        cell = _trim(row[token_col]) if token_col < len(row) else ""
        if problem is not None:
            yield _bad(cell, start, f"line {start}: {problem}")
        elif len(row) != width:
            # A differing field count means a missing or extra separator: the token column may
            # hold the wrong value, so the record is refused rather than guessed at.
            yield _bad(
                cell,
                start,
                f"line {start}: row has {len(row)} field{'' if len(row) == 1 else 's'} "
                f"but the header has {width}",
            )
        else:
            issued = row[issued_col] if issued_col is not None else None
            yield _entry(cell, start, issued)


def _first_line_cell(record: list[tuple[int, str]], token_col: int) -> str:
    """The token cell of a broken record's first line read on its own ("" if unreadable), so
    its bad-record line names the token."""
    try:
        first = next(csv.reader([record[0][1]]), []) if record else []
    except csv.Error:
        return ""
    return _trim(first[token_col]).strip() if token_col < len(first) else ""


def _stray_quote(record: list[tuple[int, str]], row: list[str], token_col: int) -> str | None:
    """Why a record that runs over several lines is a stray quote, or None if it reads as a
    proper multi-line quoted field (RFC 4180 allows those, in a note or address column).

    A token never holds a line break; and a field that is proper CSV closes its quote cleanly
    (csv's strict mode): a quote opened by mistake ends at the end of the file, or at the next
    stray quote with text glued after it."""
    cell = row[token_col] if token_col < len(row) else ""
    if "\n" in cell or "\r" in cell:
        return "a quote in the token column runs over several lines (a stray quote?)"
    try:
        for _ in csv.reader(io.StringIO("".join(text for _, text in record)), strict=True):
            pass
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return "a quoted field is never closed"
        return f"a quoted field runs over several lines and does not end cleanly ({exc})"
    return None


_ENTRY_LINE = re.compile(rb"^[ \t\xef\xbb\xbf]*[^\s#]", re.MULTILINE)


def estimate_entries(path: str, fmt: Format | None = None) -> int | None:
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
