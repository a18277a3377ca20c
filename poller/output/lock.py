"""One run per output file: an exclusive lock held for the whole run.

Take it before reading the file to resume, so nobody appends while a torn tail is being cut::

    with OutputLock(path):
        state = load_resume_state(path)
        ...  # open JsonlSink(path), skip tokens where state.is_final(token)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from types import TracebackType

from poller.output.fileio import cannot, write_all
from poller.output.resume import ResumeError

__all__ = ["LockedError", "OutputLock"]


class LockedError(ResumeError):
    """Another process holds the output lock."""


class OutputLock:
    """An exclusive `flock` on ``<output>.lock``, held for a whole run.

    `flock`, not a pid file: the kernel drops the lock when the holder exits or dies, so a crash
    never leaves a stale lock behind. The holder's pid is written into the file only to name it
    in the message. The file is left in place on exit (deleting it would race with a second run
    that has just opened it and would then lock an unlinked file); it is safe to delete whenever
    no run is active. Locks belong to an open file description, so a second `OutputLock` on the
    same path conflicts even within one process. The lock sits next to the real file (symlinks
    resolved), so two spellings of one output share a lock.
    """

    __slots__ = ("_fd", "lock_path", "output")

    def __init__(self, output: str) -> None:
        self.output = output
        self.lock_path = os.path.realpath(output) + ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self!r} is already held")
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ResumeError(cannot(f"create the lock file {self.lock_path}", exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ResumeError(cannot(f"lock {self.lock_path}", exc)) from None
            who = f" (pid {holder})" if holder else ""
            raise LockedError(
                f"another poller run{who} is writing {self.output}; "
                "wait for it to finish or choose another --output."
            ) from None
        # The pid only decorates the message a second run shows; the lock itself is held.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            write_all(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale pid for the curious; the lock is what counts
        os.close(fd)  # closing the last descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<OutputLock {self.lock_path!r} held={self.held}>"


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
