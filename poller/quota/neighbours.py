"""Other runs on this machine that spend the same account quota, noticed without Redis.

The 20/s quota belongs to the account (SPEC §7), so two `poller run` processes with one SecretId
that each pace at the full rate go over it together and both get throttled. Redis's shared
schedule fixes that; without it a run can at least say so, once, at start::

    with RunRegistry(secret_id, output, max_share) as neighbours:
        if (warning := competition_warning(neighbours, max_share)) is not None:
            log.warning(warning)
        ...  # the run

Detection is best effort and never refuses or fails a run: when the registry directory cannot be
trusted, or the platform has no `flock` (Windows), it finds nobody.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from types import TracebackType

try:
    import fcntl
except ImportError:  # Windows: no flock, so no way to tell a live run from a crashed one
    fcntl = None  # type: ignore[assignment]

__all__ = ["Neighbour", "RunRegistry", "competition_warning"]

log = logging.getLogger("poller")

# A file name carries this much of sha256(SecretId): enough that two accounts never collide on
# one machine, and the SecretId itself never lands on disk.
_HASH_CHARS = 16
# A registration is a few hundred bytes; anything longer was not written by a run.
_MAX_READ = 64 * 1024
# A share may be computed (1/3 each) and land a hair above its ideal: a billionth of the quota
# over is rounding, not competition.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Neighbour:
    """Another live run with the same credentials, as it registered itself."""

    pid: int
    output: str  # its --output as it gave it (relative paths are relative to its directory)
    max_share: float  # its --max-share: 1.0 is the whole quota


class RunRegistry:
    """This run's entry in a per-user directory of runs, and a look at the other entries.

    Each run owns one small JSON file (pid, output, max_share, started) named after a hash of its
    SecretId, and holds an exclusive `flock` on it for its lifetime. The kernel drops the lock
    when the run exits or is killed, so a file anyone can lock belongs to a dead run and is
    removed; a file nobody can lock is a live run. A pid alone could not tell that apart: pids are
    reused, and a SIGKILLed run never cleans up.

    Entering registers first, then scans, so of two runs that start together at least the later
    scanner sees the other, and both do when both have registered before either scans. A file is
    written and locked under a hidden name and only then renamed into place, so a scan never
    mistakes a run that is still registering for a dead one.

    The directory is ``$XDG_RUNTIME_DIR/faceid-poller`` when that is usable, else
    ``<tempdir>/faceid-poller-<uid>``; it is created 0700. One that is a symlink, owned by someone
    else or writable by group or world is not trusted (anyone could plant or hide runs there):
    detection is then off, logged at debug, and entering returns no neighbours.
    """

    __slots__ = ("_dir_fd", "_fd", "_name", "_prefix", "directory", "max_share", "output")

    def __init__(
        self,
        secret_id: str,
        output: str,
        max_share: float = 1.0,
        *,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        if not (0.0 < max_share <= 1.0):
            raise ValueError(
                f"max_share must be a fraction of the quota in (0, 1], got {max_share!r}; "
                "use 1.0 for the whole quota"
            )
        self.output = output
        self.max_share = float(max_share)
        self.directory = os.fspath(directory) if directory is not None else None
        # Only the hash is kept: the SecretId must not reach a file name, a repr or a traceback.
        self._prefix = hashlib.sha256(secret_id.encode("utf-8")).hexdigest()[:_HASH_CHARS] + "."
        self._dir_fd: int | None = None
        self._fd: int | None = None
        self._name: str | None = None

    @property
    def path(self) -> str | None:
        """This run's registration file while registered; None when detection is off."""
        if self._name is None or self.directory is None:
            return None
        return os.path.join(self.directory, self._name)

    def register(self) -> None:
        """Write and lock this run's file; on any trouble stay unregistered (detection off)."""
        if self._dir_fd is not None:
            raise RuntimeError(f"{self!r} is already registered")
        if fcntl is None:
            log.debug("no flock on this platform: other runs with these credentials go unnoticed")
            return
        if self.directory is None:
            try:
                self.directory = _default_directory()
            except OSError as exc:  # gettempdir() finds no writable temporary directory
                log.debug("run detection off: no directory for it: %s", exc)
                return
        dir_fd = _open_trusted_directory(self.directory)
        if dir_fd is None:
            return
        try:
            fd, name = self._write_locked_file(dir_fd)
        except OSError as exc:
            os.close(dir_fd)
            log.debug("cannot register this run in %s: %s", self.directory, exc)
            return
        self._dir_fd, self._fd, self._name = dir_fd, fd, name

    def scan(self) -> list[Neighbour]:
        """The other live runs with the same credentials now, by pid; dead runs' files removed."""
        if self._dir_fd is None or fcntl is None:
            return []
        try:
            names = os.listdir(self._dir_fd)
        except OSError as exc:
            log.debug("cannot list %s: %s", self.directory, exc)
            return []
        found = [
            neighbour
            for name in sorted(names)
            if name.startswith(self._prefix) and name != self._name
            if (neighbour := _inspect(self._dir_fd, name)) is not None
        ]
        return sorted(found, key=lambda n: n.pid)

    def unregister(self) -> None:
        """Remove the file before dropping the lock, so nobody sees it unlocked while it exists."""
        dir_fd, fd, name = self._dir_fd, self._fd, self._name
        self._dir_fd = self._fd = self._name = None
        if name is not None and dir_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock
        if dir_fd is not None:
            os.close(dir_fd)

    @property
    def registered(self) -> bool:
        return self._name is not None

    def __enter__(self) -> list[Neighbour]:
        self.register()
        return self.scan()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unregister()

    def __repr__(self) -> str:
        return (
            f"<RunRegistry output={self.output!r} max_share={self.max_share} "
            f"registered={self.registered}>"
        )

    def _write_locked_file(self, dir_fd: int) -> tuple[int, str]:
        assert fcntl is not None  # register() checked
        token = secrets.token_hex(8)  # pids are reused (and repeat across containers)
        hidden = f".registering-{token}"
        name = f"{self._prefix}{os.getpid()}.{token}.json"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(hidden, flags, 0o600, dir_fd=dir_fd)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask; the content names the user's files
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            record = {
                "pid": os.getpid(),
                "output": self.output,
                "max_share": self.max_share,
                "started": time.time(),
            }
            _write_all(fd, json.dumps(record).encode("utf-8"))
            os.rename(hidden, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(hidden, dir_fd=dir_fd)
            os.close(fd)
            raise
        return fd, name


def competition_warning(neighbours: list[Neighbour], own_share: float) -> str | None:
    """One line telling a run that it competes for the quota and how to stop; None if it does not.

    Runs whose --max-share values add up to at most the whole quota have split it already, so they
    are left in peace. Output paths are printed with control characters escaped: a file name with a
    newline must not break the line apart.
    """
    if not neighbours:
        return None
    total = math.fsum([own_share, *(n.max_share for n in neighbours)])  # exact, then rounded once
    if total <= 1.0 + _EPSILON:
        return None
    runs = "; ".join(f"pid {n.pid}, output {_printable(n.output)}" for n in neighbours)
    if len(neighbours) == 1:
        who = f"another poller run with the same credentials is running on this machine ({runs})"
        rivals = "the two"
    else:
        who = (
            f"{len(neighbours)} other poller runs with the same credentials are running on this "
            f"machine ({runs})"
        )
        rivals = f"the {len(neighbours) + 1} runs"
    shares = ""
    if own_share != 1.0 or any(n.max_share != 1.0 for n in neighbours):
        # Already split, only too generously: say by how much, or "--max-share" reads as no help.
        shares = f" (their --max-share values add up to {total:g})"
    # Rounded down, so that the suggested shares never add up to more than the quota.
    each = math.floor(100 / (len(neighbours) + 1)) / 100
    return (
        f"{who}: {rivals} compete for one account quota{shares} and will be throttled; "
        "share it with --shared-quota redis://HOST (one schedule for every run) "
        f"or split it with --max-share (e.g. {each:g} each)"
    )


def _default_directory() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and _usable_runtime_dir(runtime):
        return os.path.join(runtime, "faceid-poller")
    return os.path.join(tempfile.gettempdir(), f"faceid-poller-{os.getuid()}")


def _usable_runtime_dir(path: str) -> bool:
    """The XDG spec's promise (absolute, ours, a directory we can write), checked, not assumed."""
    if not os.path.isabs(path):
        return False
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and os.access(path, os.W_OK | os.X_OK)
    )


def _open_trusted_directory(path: str) -> int | None:
    """A descriptor for the registry directory, created 0700 if missing; None if untrusted.

    Everything after this goes through the descriptor, so the directory checked is the directory
    used, even if someone swaps the path afterwards.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        log.debug("run detection off: cannot create %s: %s", path, exc)
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:  # ELOOP for a symlink, ENOTDIR for a file
        log.debug("run detection off: cannot open %s as a directory: %s", path, exc)
        return None
    info = os.fstat(fd)
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.close(fd)
        log.debug(
            "run detection off: %s is owned by uid %d with mode %o; it must be this user's "
            "(uid %d) and writable by nobody else",
            path,
            info.st_uid,
            stat.S_IMODE(info.st_mode),
            os.getuid(),
        )
        return None
    return fd


def _inspect(dir_fd: int, name: str) -> Neighbour | None:
    """The live run behind `name`; a dead run's file is removed and, like a garbled one, skipped."""
    assert fcntl is not None  # scan() checked
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None  # gone since the listing (its run ended), or not a file we can read
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # somebody holds it: its run is alive
        try:
            return _parse(os.read(fd, _MAX_READ))
        except OSError:
            return None
    except OSError:
        return None
    else:
        # Lockable: nobody holds it, so its run crashed or was killed. Names are never reused,
        # so removing this one cannot remove a newer run's file.
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        return None
    finally:
        os.close(fd)


def _parse(data: bytes) -> Neighbour | None:
    try:
        record = json.loads(data)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        return None
    if not isinstance(record, dict):
        return None
    pid, output, share = record.get("pid"), record.get("output"), record.get("max_share")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None
    if not isinstance(output, str):
        return None
    if isinstance(share, bool) or not isinstance(share, int | float):
        return None
    if not (0.0 < share <= 1.0):  # also refuses NaN
        return None
    return Neighbour(pid=pid, output=output, max_share=float(share))


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _write_all(fd: int, data: bytes) -> None:
    """`os.write` may write less than asked: go on until all is out (as poller.output.fileio)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
