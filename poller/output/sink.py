"""Where result lines go: the `Sink` protocol, and the JSON-lines file that implements it.

The engine never writes a line itself: it hands each one, encoded (one JSON object and a
newline, `records.encode_record`), to a `LineWriter`, whose thread passes whatever has piled up
to the sink in one `write_lines` call. A sink is therefore written from that one thread only,
and closed by whoever opened it once the run is over (the command, `run_batch`).

A line is written only once a token's outcome is settled for this run, flushed at once, so
whatever a crash leaves behind is a prefix of complete lines plus at most one torn line.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any, Final, Protocol

from poller.errors import PollerError
from poller.output.records import encode_record

__all__ = ["WRITE_PIECE", "JsonlSink", "OutputFileError", "Sink"]


class OutputFileError(PollerError):
    """The output cannot be opened or prepared (before any request is made); the message is
    one sentence naming the path. A failure *during* the run is an `OutputError` instead."""


class Sink(Protocol):
    """What a run needs of the place its lines go.

    `write_lines` gets `count` complete lines (UTF-8 JSON, each ending in a newline) in one
    bytes object, from the writer thread; `lines_written` says how many of them are out so far
    (read from the loop while a write may still be blocked, so a failed or stalled output can be
    accounted for line by line); `sync` makes what is written durable (a no-op where that means
    nothing); `close` is called once, after the run, by whoever opened the sink."""

    @property
    def lines_written(self) -> int: ...

    def write_lines(self, data: bytes, count: int) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...


# The most one write hands the output at once: a pipe's buffer. Lines are counted as written
# piece by piece, so a reader that stalls for good leaves at most one piece uncertain.
WRITE_PIECE: Final = 64 << 10


class JsonlSink:
    """The `Sink` of `poller run`: appends lines to a file created 0600 (the lines hold
    personal data), or to stdout for the path "-"."""

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
