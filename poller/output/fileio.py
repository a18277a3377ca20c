"""Two small file helpers the lock and resume share: a whole write, and an error in one sentence."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes) -> None:
    """`os.write` may write less than asked (a signal, a full pipe): go on until all is out."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def cannot(what: str, exc: OSError) -> str:
    """ "cannot <what>: <the system's reason>." — the sentence a user gets, never a traceback."""
    return f"cannot {what}: {exc.strerror or exc}."
