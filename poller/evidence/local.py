"""The archive in a directory: write-once files by a temporary name and a hard link.

A file is written to a hidden `.NAME.part-…` beside its final name, synced, then linked to the
final name (`os.link` fails if the name exists: create-only, like an object store's conditional
put) and the temporary name removed. A SIGKILL at any moment leaves either no final file or a
whole, synced one. The archive is personal data: directories it creates are 0700 and files 0600;
an existing directory's mode is left as its owner set it (never loosened).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import socket
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from poller.evidence.store import StoreError

PART: Final = ".part-"
_HOST: Final = socket.gethostname().replace("-", "_") or "host"
CHUNK: Final = 1 << 20
# A partial file this old belongs to no download still running (a link lives 10 minutes).
STALE_PART_SECONDS: Final = 3600.0
THREAD_WRITE: Final = 1 << 18


def is_part(name: str) -> bool:
    """A temporary name of a download in progress (or one a crash cut off)."""
    return name.startswith(".") and PART in name


class _LocalUpload:
    __slots__ = ("_done", "_fd", "_final", "_tmp")

    def __init__(self, final: Path) -> None:
        self._final = final
        self._tmp = _part_name(final)
        self._fd: int | None = os.open(
            self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600
        )
        self._done = False

    async def write(self, chunk: bytes) -> None:
        # A small write to the page cache takes microseconds: in place. A large one (the
        # downloads hand over megabyte blocks) goes to a thread, off the event loop.
        assert self._fd is not None, "write after commit or discard"
        try:
            if len(chunk) >= THREAD_WRITE:
                await asyncio.to_thread(_write_all, self._fd, chunk)
            else:
                _write_all(self._fd, chunk)
        except OSError as exc:
            # The disk, not the download: no point fetching the file again.
            raise StoreError(f"cannot write in {self._final.parent}: {_why(exc)}") from None

    async def commit(self) -> bool:
        fd = self._fd
        assert fd is not None, "commit after commit or discard"
        self._fd = None
        try:
            return await asyncio.to_thread(_publish, fd, self._tmp, self._final)
        except OSError as exc:
            raise StoreError(f"cannot store {self._final}: {_why(exc)}") from None
        finally:
            self._done = True
            await self.discard()

    async def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def _part_name(final: Path) -> Path:
    """`.NAME.part-HOST-PID-RANDOM`: hidden, never a final name, and telling which process on
    which machine writes it, so a later run can tell a crash's leftover from a live download."""
    return final.with_name(f".{final.name}{PART}{_HOST}-{os.getpid()}-{secrets.token_hex(4)}")


def _why(exc: OSError) -> str:
    if exc.errno == errno.EPERM and exc.filename2 is not None:
        return "the file system refuses hard links (use one that has them, or an object store)"
    return exc.strerror or type(exc).__name__


def _abandoned(name: str, mtime: float, cutoff: float) -> bool:
    """A partial file no download is writing: its process (on this host) is gone, or it is
    older than any download can last."""
    if mtime < cutoff:
        return True
    host, _, rest = name.partition(PART)[2].partition("-")
    pid = rest.partition("-")[0]
    if host != _HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _publish(fd: int, tmp: Path, final: Path) -> bool:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    # The directory entry is made durable by the sync of the manifest's replace that follows
    # each pass (one per token, not one per file: a directory sync costs a disk round trip).
    # A power cut before it loses at most unlisted files, which a rerun fetches again.
    return True


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot sync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LocalStore:
    """DEST as a directory tree: DEST/<token>/<stored name>."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        # Absolute: the lines' `manifest` paths must mean the same wherever they are read.
        self.root = Path(os.path.abspath(Path(root).expanduser()))

    def __repr__(self) -> str:
        return f"<LocalStore {self.root}>"

    def where(self, key: str) -> str:
        return str(self.root / key)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _dir(self, path: Path) -> None:
        """Make `path` and any missing parents 0700 (existing ones keep their mode)."""
        missing: list[Path] = []
        at = path
        while not at.is_dir():
            missing.append(at)
            if at.parent == at:
                break
            at = at.parent
        for each in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(each, 0o700)

    def begin(self, key: str) -> _LocalUpload:
        final = self._path(key)
        try:
            self._dir(final.parent)
            return _LocalUpload(final)
        except OSError as exc:
            raise StoreError(f"cannot write in {final.parent}: {exc.strerror or exc}") from None

    async def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self.where(key)}: {exc.strerror or exc}") from None

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        # Never open what is not a regular file: a FIFO under a listed name would block.
        if not stat.S_ISREG(path.stat().st_mode):
            raise IsADirectoryError(errno.EINVAL, "not a regular file", str(path))
        with open(path, "rb") as fh:  # noqa: ASYNC230 - chunks are read on a thread
            while chunk := await asyncio.to_thread(fh.read, CHUNK):
                yield chunk

    async def replace(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            self._dir(path.parent)
            await asyncio.to_thread(_replace, path, data)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        base = self._path(prefix) if prefix else self.root
        found = await asyncio.to_thread(_walk, self.root, base)
        for key in found:
            yield key

    async def clean_parts(self, directory: str, now: float | None = None) -> int:
        """Remove partial files a crash left in `directory` (older than any running download)."""
        cutoff = (time.time() if now is None else now) - STALE_PART_SECONDS
        removed = 0
        try:
            entries = list(os.scandir(self._path(directory)))
        except OSError:
            return 0
        for entry in entries:
            if not is_part(entry.name):
                continue
            with contextlib.suppress(FileNotFoundError):
                if _abandoned(entry.name, entry.stat().st_mtime, cutoff):
                    os.unlink(entry.path)
                    removed += 1
        return removed

    async def check(self, *, create: bool = True) -> None:
        """The directory (or, with `create` False, its nearest existing parent) is a directory
        this process may write, on a file system with hard links (write-once rests on them)."""
        await asyncio.to_thread(self._check, create)

    def _check(self, create: bool) -> None:
        where = self.root
        try:
            if create:
                self._dir(self.root)
            while not os.path.lexists(where) and where.parent != where:
                where = where.parent
            if not where.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a directory")
            if not os.access(where, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "permission denied")
            _probe_links(where)
        except OSError as exc:
            shown = self.root if where == self.root else f"{self.root} ({where})"
            raise StoreError(
                f"the evidence directory {shown} cannot be written: {_why(exc)}"
            ) from None

    async def close(self) -> None:
        return None


def _probe_links(where: Path) -> None:
    """Create a hidden file and hard-link it (what every commit does), then remove both."""
    probe = _part_name(where / "write-check")
    linked = probe.with_name(probe.name + "-link")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        os.link(probe, linked)
        os.unlink(linked)
    finally:
        os.unlink(probe)


def _replace(path: Path, data: bytes) -> None:
    tmp = _part_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_dir(path.parent)


def _walk(root: Path, base: Path) -> list[str]:
    found: list[str] = []

    def unreadable(exc: OSError) -> None:
        # A directory that cannot be listed must not pass for an empty one (an auditor's
        # "all match" would then skip it).
        raise StoreError(f"cannot list {exc.filename}: {exc.strerror or exc}")

    for dirpath, dirnames, filenames in os.walk(base, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        for name in filenames:
            if not is_part(name):
                found.append(str(rel / name) if rel.parts else name)
    return found
