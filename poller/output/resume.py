"""Resuming into an existing output file (SPEC §4); `poller.output.lock` keeps one run per file.

A re-run with the same ``--output`` skips tokens whose last line is final and appends the rest.
`load_resume_state` reads the file once, in binary chunks, and keeps only a 64-bit key per final
token. A line cut off by a crash (the file does not end with a newline) is set aside into
``<output>.torn`` and cut from the output, so new lines start after a newline; complete lines
are never rewritten.

Use both together, lock first, so nobody appends while the torn tail is being cut::

    with OutputLock(path):
        state = load_resume_state(path)
        ...  # open JsonlSink(path), skip tokens where state.is_final(token)
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Final

from poller.errors import PollerError
from poller.input.keys import token_key
from poller.input.keyset import KeySet
from poller.output.fileio import cannot, write_all
from poller.output.records import LOCAL_EXPIRY_CODE

__all__ = [
    "ResumeError",
    "ResumeState",
    "load_resume_state",
    "read_results",
]

# 4 MiB reads: large enough that the per-chunk overhead vanishes, small enough to stay lean.
CHUNK: Final = 4 << 20
# A real line is a few KB (the Response holds URLs, never media). A "line" longer than this is
# counted unreadable without being held in memory or parsed.
MAX_LINE: Final = 64 << 20
# How many unreadable line numbers to keep for the message; the count is always exact.
UNREADABLE_KEPT: Final = 10

# The head of a line as `records.encode_record` writes it: keys in the fixed order of
# `records.KEYS`, compact separators. The token is one complete JSON string (escapes allowed,
# raw control characters not, as in json.loads). The string pattern is the "unrolled loop"
# form: a plain character-class run between escapes is one fast step for the regex engine
# (~0.6 us a line here, against ~2 us for the textbook alternation). Anchored at the start of
# the line, so a `"final":true` inside `response` can never match. The `true` group is set
# only when the line is final.
_HEAD: Final = re.compile(
    rb'\{"token":"(?P<token>[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*)"'
    rb',"status":"(?P<status>[a-z_]+)","final":(?:(?P<true>true)|false),'
)
# A record head again after the first one means the line is not one record: most likely a torn
# line that a run without resume support appended to, so the head describes a record that was
# never written whole. Such lines take the exact path (json.loads refuses them). Inside a JSON
# string every quote is escaped, so this byte string can only be a real object start.
# What the fast path does not check: that the middle of the line is valid JSON, and duplicate
# top-level keys (json.loads keeps the last). No JSON encoder writes either, and a crash can only
# tear the end of a line, which the head, the closing brace and this check cover.
_SECOND_HEAD: Final = b'{"token":"'


_TOO_OLD: Final = b'"code":"' + LOCAL_EXPIRY_CODE.encode() + b'"'


def _expired_locally(obj: dict[str, Any]) -> bool:
    error = obj.get("error")
    return (
        obj.get("status") == "expired"
        and isinstance(error, dict)
        and error.get("code") == LOCAL_EXPIRY_CODE
    )


class ResumeError(PollerError):
    """The output file (or its lock) cannot be used to resume; the message names the path."""


@dataclass(slots=True)
class ResumeState:
    """What an existing output file says. `final`/`not_final`/`unreadable` count lines;
    ``len(final_keys)`` counts distinct tokens whose last line is final."""

    # Compact sets (~9 bytes a token, poller/input/keyset.py): 5 million lines stay in bounds.
    final_keys: KeySet = field(default_factory=KeySet, repr=False)
    # Tokens whose last line is `expired` decided locally from `issued_at` (TokenTooOld): final
    # only while the input still says so, so a corrected export or max_token_age is asked.
    expired_local_keys: KeySet = field(default_factory=KeySet, repr=False)
    lines: int = 0  # complete lines read
    final: int = 0
    not_final: int = 0
    unreadable: int = 0  # complete lines that are not a valid record
    unreadable_lines: list[int] = field(default_factory=list)  # the first UNREADABLE_KEPT
    torn_bytes: int = 0  # size of the torn last line (no trailing newline), 0 if none
    torn_saved_to: str | None = None
    fast_lines: int = 0  # lines read by the fast path (the rest went through json.loads)

    def is_final(self, token: str) -> bool:
        return token_key(token) in self.final_keys

    def was_expired_locally(self, token: str) -> bool:
        return token_key(token) in self.expired_local_keys

    def summary(self) -> str:
        """One line for the run log."""
        where = ""
        if self.unreadable_lines:
            more = ", ..." if self.unreadable > len(self.unreadable_lines) else ""
            where = f" (line{'s' if self.unreadable > 1 else ''} "
            where += f"{', '.join(map(str, self.unreadable_lines))}{more})"
        text = (
            f"{self.lines} lines read: {self.final} final, {self.not_final} not final, "
            f"{self.unreadable} unreadable{where}; tokens already final: {len(self.final_keys)}"
        )
        if self.torn_bytes:
            done = f"set aside to {self.torn_saved_to}" if self.torn_saved_to else "left in place"
            text += f"; torn last line of {self.torn_bytes} bytes {done}"
        return text


class _Scanner:
    """Splits the file into lines and classifies each one into a ResumeState.

    By default the last line of a token decides (resume: a later `pending` line undoes an
    earlier final one). `sticky` keeps every token that has a final line anywhere, across
    every file scanned into the same state: the earlier-runs index (SPEC §9, "a token final in
    any earlier results file"), where a later `pending` cannot undo a settled answer."""

    __slots__ = ("state", "sticky")

    def __init__(self, state: ResumeState | None = None, *, sticky: bool = False) -> None:
        self.state = state if state is not None else ResumeState()
        self.sticky = sticky

    def scan(self, fd: int) -> tuple[int, int]:
        """Reads fd to EOF; returns (offset just past the last complete line, bytes read)."""
        consumed = 0  # bytes read so far
        done = 0  # offset just past the last complete line
        parts: list[bytes] = []  # the start of a line that spans chunks
        parts_len = 0
        oversized = False  # the current line passed MAX_LINE: skip to its newline
        while data := os.read(fd, CHUNK):
            consumed += len(data)
            first = data.find(b"\n")
            if first < 0:
                if not oversized:
                    parts.append(data)
                    parts_len += len(data)
                    if parts_len > MAX_LINE:
                        oversized, parts, parts_len = True, [], 0
                continue
            last = data.rfind(b"\n")
            if oversized:
                self.state.lines += 1
                self._unreadable(self.state.lines)
                oversized = False
                start = first + 1
            elif parts:
                parts.append(data[: first + 1])
                line = b"".join(parts)
                self._lines(line, 0, len(line) - 1)
                start = first + 1
            else:
                start = 0
            if start <= last:
                self._lines(data, start, last)
            parts_len = len(data) - last - 1
            parts = [data[last + 1 :]] if parts_len else []
            done = consumed - parts_len
        return done, consumed

    def _lines(self, buf: bytes, pos: int, end: int) -> None:
        """Every line in buf[pos : end + 1]; buf[end] is a newline.

        The hot loop (~3 us a line here; a million lines must take seconds): everything it
        touches is a local, and a plain ASCII token is hashed as raw bytes, never decoded.
        """
        st = self.state
        keys = st.final_keys
        local = st.expired_local_keys
        # Whether `local` may hold keys, kept here: `if local` on a KeySet is a Python call.
        any_local = bool(local)
        add = keys.add_new
        sticky = self.sticky
        match = _HEAD.match
        find = buf.find
        second_head = _SECOND_HEAD
        stop = end + 1
        lineno = st.lines
        final = not_final = 0
        while pos < stop:
            nl = find(b"\n", pos, stop)
            lineno += 1
            m = match(buf, pos, nl)
            if m is None or not buf.endswith(b"}", pos, nl) or find(second_head, m.end(), nl) >= 0:
                self._slow(buf[pos:nl], lineno)
                any_local = bool(local)  # the exact path may have added to it
                pos = nl + 1
                continue
            raw = m["token"]  # the token string's bytes, between the quotes
            if b"\\" in raw or not raw.isascii():
                key = self._token_key(raw)
                if key is None:  # not UTF-8: json.loads will refuse the line as well
                    self._slow(buf[pos:nl], lineno)
                    any_local = bool(local)
                    pos = nl + 1
                    continue
            else:
                key = hash(raw)  # == token_key(raw.decode()): ASCII is its own UTF-8
            if m["true"] is None:
                not_final += 1
                if not sticky:
                    keys.discard(key)
                    if any_local:
                        local.discard(key)
            elif m["status"] == b"expired" and find(_TOO_OLD, m.end(), nl) >= 0:
                final += 1
                local.add(key)  # rare: expired lines are checked for their code only
                any_local = True
                if not sticky:
                    keys.discard(key)
            else:
                final += 1
                add(key)
                if any_local and not sticky:
                    local.discard(key)
            pos = nl + 1
        st.fast_lines += final + not_final
        st.final += final
        st.not_final += not_final
        st.lines = lineno

    @staticmethod
    def _token_key(raw: bytes) -> int | None:
        """token_key of a JSON string's inner bytes with escapes or non-ASCII; None if the
        bytes are not UTF-8. json.loads decodes bytes with 'surrogatepass', as token_key
        encodes, so a lone `\\ud800` escape or its raw 3-byte form both round-trip."""
        try:
            token: str = json.loads(b'"' + raw + b'"')
        except ValueError:  # UnicodeDecodeError; the pattern has already checked the escapes
            return None
        return token_key(token)

    def _slow(self, line: bytes, lineno: int) -> None:
        """The exact path for line number `lineno`: a whole-line json.loads."""
        st = self.state
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: `[[[[...` nested too deep
            obj = None
        token = obj.get("token") if isinstance(obj, dict) else None
        final = obj.get("final") if isinstance(obj, dict) else None
        if not isinstance(token, str) or not isinstance(final, bool):
            self._unreadable(lineno)
            return
        key = token_key(token)
        if final and _expired_locally(obj):
            st.final += 1
            if not self.sticky:
                st.final_keys.discard(key)
            st.expired_local_keys.add(key)
        elif final:
            st.final += 1
            st.final_keys.add(key)
            if not self.sticky:
                st.expired_local_keys.discard(key)
        else:
            st.not_final += 1
            if not self.sticky:
                st.final_keys.discard(key)
                st.expired_local_keys.discard(key)

    def _unreadable(self, lineno: int) -> None:
        st = self.state
        st.unreadable += 1
        if len(st.unreadable_lines) < UNREADABLE_KEPT:
            st.unreadable_lines.append(lineno)


def load_resume_state(path: str, *, set_aside: bool = True) -> ResumeState:
    """Reads what an earlier run wrote to `path`. Call it while holding `OutputLock(path)`.

    A missing file gives an empty state; so does a FIFO or device (``/dev/null``): there is
    nothing to read back. A directory or a file that cannot be read raises `ResumeError`.
    A torn last line is not counted (its token will be queried again). With `set_aside` its bytes
    are appended to ``<path>.torn`` (see `_set_aside`) and `path` is cut back to its last
    newline; with ``set_aside=False`` (a dry run) nothing on disk changes.
    """
    state = ResumeState()
    done, size = _scan_file(path, _Scanner(state), "the output file", strict=False)
    state.torn_bytes = size - done
    if state.torn_bytes and set_aside:
        state.torn_saved_to = _set_aside(path, done, size)
    return state


def read_results(path: str, state: ResumeState, *, what: str) -> int:
    """Adds what the results file `path` holds to `state`, never taking a final token out
    (the "sticky" reading of the earlier-runs index); returns the bytes of a torn last line,
    which is neither counted nor touched. A missing, unreadable or non-regular file raises
    `ResumeError` naming `what` and the path."""
    done, size = _scan_file(path, _Scanner(state, sticky=True), what, strict=True)
    return size - done


def _scan_file(path: str, scanner: _Scanner, what: str, *, strict: bool) -> tuple[int, int]:
    """Scans `path` with `scanner`; (offset past the last complete line, bytes read). A
    missing file or one that is not regular (a FIFO, /dev/null): (0, 0), or when `strict` a
    `ResumeError`."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        if not strict:
            return 0, 0
        raise ResumeError(cannot(f"read {what} {path}", exc)) from None
    except OSError as exc:
        raise ResumeError(cannot(f"read {what} {path}", exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ResumeError(f"cannot read {what} {path}: it is a directory.")
        if not stat.S_ISREG(mode):
            if strict:
                raise ResumeError(f"cannot read {what} {path}: it is not a regular file.")
            return 0, 0
        try:
            return scanner.scan(fd)
        except OSError as exc:
            raise ResumeError(cannot(f"read {what} {path}", exc)) from None
    finally:
        os.close(fd)


def _set_aside(path: str, done: int, size: int) -> str:
    """Appends the torn tail path[done:size] to ``<path>.torn``, then cuts path to `done`.

    Each entry in the side file is two lines: a ``#`` header (when, from where, how many bytes)
    and the torn bytes exactly as they were (they hold no newline: they follow the last one).
    The side file is written and synced before the output is cut, so a crash in between leaves
    the bytes in both places, never in neither.
    """
    side = path + ".torn"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise ResumeError(cannot(f"set aside the torn last line of {path}", exc)) from None
    try:
        if os.fstat(fd).st_size != size:
            raise ResumeError(
                f"{path} changed while it was being read; is another program writing it?"
            )
        tail = _pread_all(fd, done, size - done)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        header = f"# {when} torn last line, {len(tail)} bytes from offset {done}:\n"
        try:
            side_fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                write_all(side_fd, header.encode() + tail + b"\n")
                os.fsync(side_fd)
            finally:
                os.close(side_fd)
        except OSError as exc:
            raise ResumeError(
                cannot(f"write the torn last line of {path} to {side}", exc)
            ) from None
        os.ftruncate(fd, done)
        os.fsync(fd)
    except OSError as exc:
        raise ResumeError(cannot(f"cut the torn last line from {path}", exc)) from None
    finally:
        os.close(fd)
    return side


def _pread_all(fd: int, offset: int, size: int) -> bytes:
    parts = []
    while size > 0:
        data = os.pread(fd, min(size, CHUNK), offset)
        if not data:
            break
        parts.append(data)
        offset += len(data)
        size -= len(data)
    return b"".join(parts)
