"""Result lines (SPEC §4): building them (pure) and writing them (the JSON-lines sink).

A line is written only once a token's outcome is settled for this run, flushed at once, so
whatever a crash leaves behind is a prefix of complete lines plus at most one torn line.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, Any, Final

import orjson

from poller.config.settings import Detail


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    PENDING = "pending"
    EXPIRED = "expired"
    INVALID_TOKEN = "invalid_token"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str


# The error code of an `expired` line decided locally from `issued_at` (no request was made).
# Such a line is final only while the input still says the token is too old (poller/resume.py).
LOCAL_EXPIRY_CODE: Final = "TokenTooOld"

KEYS: Final = (
    "token",
    "status",
    "final",
    "result",
    "description",
    "charge_count",
    "request_id",
    "error",
    "attempts",
    "checked_at",
    "response",
)


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _str_or_none(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _int_or_none(value: object) -> int | None:
    # bool is an int subclass; a `true` ChargeCount is a malformed reply, not a charge of 1.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def build_record(
    *,
    token: str,
    status: Status,
    final: bool,
    attempts: int,
    checked_at: float,
    response: Mapping[str, Any] | None = None,
    error: ErrorInfo | None = None,
    request_id: str | None = None,
    detail: Detail = Detail.FULL,
) -> dict[str, Any]:
    """One output line as a dict; `response` is kept unchanged for passed/failed/pending only."""
    keep_response = response is not None and status in (
        Status.PASSED,
        Status.FAILED,
        Status.PENDING,
    )
    resp: Mapping[str, Any] = response or {}
    return {
        "token": token,
        "status": status.value,
        "final": final,
        "result": _str_or_none(resp.get("Result")),
        "description": _str_or_none(resp.get("Description")),
        "charge_count": _int_or_none(resp.get("ChargeCount")),
        "request_id": request_id if request_id is not None else _str_or_none(resp.get("RequestId")),
        "error": None if error is None else {"code": error.code, "message": error.message},
        "attempts": attempts,
        "checked_at": rfc3339(checked_at),
        "response": dict(resp) if keep_response and detail is Detail.FULL else None,
    }


def encode_record(record: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON plus newline: one line, whatever the response holds.

    orjson writes it (a tenth of json.dumps' CPU, the largest single cost of a line in the
    benchmarks): compact, keys in order, non-ASCII as UTF-8. It refuses what has no strict
    UTF-8 form, a lone surrogate ("\\ud800" in the API's JSON parses to one), and integers
    beyond 64 bits; json.dumps then writes the line with \\u escapes: still one valid line,
    and it decodes back to the very same strings."""
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return json.dumps(record, separators=(",", ":")).encode("ascii") + b"\n"


# The most one write hands the output at once: a pipe's buffer. Lines are counted as written
# piece by piece, so a reader that stalls for good leaves at most one piece uncertain.
WRITE_PIECE: Final = 64 << 10


class JsonlSink:
    """Appends lines to a file created 0600 (the lines hold personal data), or to stdout."""

    __slots__ = (
        "_clock",
        "_fh",
        "_last_sync",
        "_owns",
        "_writing",
        "fsync_interval",
        "lines_written",
        "path",
    )

    def __init__(
        self,
        path: str,
        *,
        fsync_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.lines_written = 0
        # Every line is flushed to the OS at once (a killed process loses nothing); fsync, which
        # guards against a power cut, runs at most this often and at close.
        self.fsync_interval = fsync_interval
        self._clock = clock
        self._last_sync = clock()
        self._writing = False
        if path == "-":
            if sys.stdout is None:  # started with stdout closed (`>&-`)
                raise OSError(errno.EBADF, "standard output is closed")
            self._fh: IO[bytes] = sys.stdout.buffer
            self._owns = False
        else:
            # O_APPEND: a resumed run adds after what is there and never rewrites a line.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._fh = os.fdopen(fd, "ab", buffering=0)
            # fsync is for regular files; /dev/null, a FIFO or a pipe reject it (EINVAL).
            self._owns = stat.S_ISREG(os.fstat(fd).st_mode)
            if _ends_mid_line(path, fd):
                # A crash left a torn last line: end it, or the first new line would be glued
                # to it and lost with it when the file is read back.
                self._fh.write(b"\n")

    def write(self, record: Mapping[str, Any]) -> None:
        self.write_lines(encode_record(record), 1)

    def write_lines(self, data: bytes, count: int) -> None:
        """Write `count` encoded lines at once (the writer thread hands over what piled up).

        In pieces of at most WRITE_PIECE bytes cut at line ends, each counted in
        `lines_written` once it is out: when the output fails or its reader stalls for good,
        the count says which lines got through (to within one piece for a stalled pipe)."""
        self._writing = True
        try:
            start, size = 0, len(data)
            while start < size:
                end = size
                if size - start > WRITE_PIECE:
                    end = data.rfind(b"\n", start, start + WRITE_PIECE) + 1
                    if end <= start:  # one line longer than a piece: it goes whole
                        end = data.find(b"\n", start + WRITE_PIECE) + 1 or size
                self._write_all(data, start, end)
                self.lines_written += data.count(b"\n", start, end)
                start = end
        finally:
            self._writing = False
        if self._owns and self._clock() - self._last_sync >= self.fsync_interval:
            self.sync()

    def _write_all(self, data: bytes, start: int, end: int) -> None:
        # An unbuffered file may take only part of the bytes (a signal mid-write, a disk that
        # just filled): write the rest, or the next lines would be glued to a torn one.
        piece = data if start == 0 and end == len(data) else data[start:end]
        view = memoryview(piece)
        done = 0
        try:
            while done < len(view):
                written = self._fh.write(view[done:] if done else piece)
                if not written:  # a blocking file never takes nothing; do not spin on it
                    raise OSError(errno.EIO, "the output accepted no bytes")
                done += written
            self._fh.flush()
        except OSError:
            self.lines_written += data.count(b"\n", start, start + done)  # those got out
            raise

    def sync(self) -> None:
        if self._owns:
            os.fsync(self._fh.fileno())
            self._last_sync = self._clock()

    def close(self) -> None:
        if self._writing:
            # The writer thread is stuck in a write to a reader that stopped reading (a hard
            # stop gave up on it): flushing here would wait for that reader forever too.
            return
        if self._owns:
            self.sync()
        if self.path == "-":
            try:
                self._fh.flush()
            except BrokenPipeError:
                # `poller run ... | head`: the reader is gone. Point stdout at /dev/null so
                # the interpreter's own flush at exit does not print a traceback too.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        else:
            self._fh.close()

    def __repr__(self) -> str:
        return f"<JsonlSink path={self.path!r} lines_written={self.lines_written}>"


def _ends_mid_line(path: str, fd: int) -> bool:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(info.st_size - 1)
            return fh.read(1) != b"\n"
    except OSError:  # write-only file: cannot look, so leave it as it is
        return False


def status_for_result(response: Mapping[str, Any], pending_codes: tuple[str, ...]) -> Status:
    """`"0"` passed; a pending code or an empty/missing Result means the user has not finished
    (SPEC §1.4: no "not finished" code is documented, so the set is configurable)."""
    result = response.get("Result")
    if result is None or result == "":
        return Status.PENDING
    code = result if isinstance(result, str) else json.dumps(result)
    if code == "0":
        return Status.PASSED
    if code in pending_codes:
        return Status.PENDING
    return Status.FAILED
