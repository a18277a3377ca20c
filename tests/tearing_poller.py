"""`poller` with one difference: the output line TEAR_AT_LINE is torn, the way a SIGKILL in the
middle of write(2) tears it. Run as a script by tests/test_crash_safety.py.

The real command runs unchanged; only the file object it opens for writing TEAR_OUTPUT is
wrapped. When the bytes written reach the middle of this run's TEAR_AT_LINE-th line, the wrapper
writes them up to there, creates TEAR_MARKER and waits to be killed, so the test's SIGKILL
lands, every time, with half a line on disk. Line counting is over the byte stream, so it works
whether the sink writes one line per call or several.
"""

from __future__ import annotations

import builtins
import io
import os
import time
from pathlib import Path
from typing import Any

OUTPUT = os.path.realpath(os.environ["TEAR_OUTPUT"])
TEAR_AT_LINE = int(os.environ["TEAR_AT_LINE"])  # 1-based, counting this run's lines only
MARKER = Path(os.environ["TEAR_MARKER"])


class TearingFile:
    """Delegates to the real file object; tears the TEAR_AT_LINE-th line, then hangs."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._newlines = 0  # complete lines written so far by this process
        self._line_bytes = 0  # bytes of the current, unfinished line

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        start = 0
        while self._newlines < TEAR_AT_LINE - 1:  # lines before the torn one pass untouched
            end = data.find(b"\n", start)
            if end < 0:
                break
            self._newlines += 1
            start = end + 1
            self._line_bytes = 0
        if self._newlines < TEAR_AT_LINE - 1:
            return self._write_all(view)
        end = data.find(b"\n", start)
        if end < 0:  # the torn line is not complete in this call: keep counting its bytes
            self._line_bytes += len(data) - start
            return self._write_all(view)
        line_length = self._line_bytes + end + 1 - start
        cut = start + max(line_length // 2 - self._line_bytes, 1)
        self._write_all(view[:cut])
        self._raw.flush()
        MARKER.write_text(f"torn after {cut} of {len(data)} bytes\n")
        while True:  # the test's SIGKILL ends this process here
            time.sleep(60)

    def _write_all(self, view: memoryview) -> int:
        done = 0
        while done < len(view):
            done += self._raw.write(view[done:])
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __enter__(self) -> TearingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._raw.close()


def _is_output(file: object) -> bool:
    try:
        if isinstance(file, int):
            return os.path.realpath(f"/proc/self/fd/{file}") == OUTPUT
        if isinstance(file, str | bytes | os.PathLike):
            return os.path.realpath(os.fsdecode(file)) == OUTPUT
    except OSError:
        return False
    return False


_real_open = io.open


def _open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    opened = _real_open(file, mode, *args, **kwargs)
    if any(flag in mode for flag in "wax+") and _is_output(file):
        return TearingFile(opened)
    return opened


def main() -> None:
    # os.fdopen calls io.open; a plain open() is builtins.open: both lead here.
    io.open = _open
    builtins.open = _open
    from poller.cli import entry_point

    entry_point()


if __name__ == "__main__":
    main()
