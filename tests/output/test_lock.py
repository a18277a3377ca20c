"""The output lock (poller/output/lock.py): one run per output file, released even by a crash."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from poller.output.lock import LockedError, OutputLock
from poller.output.resume import ResumeError
from tests.output.support import write

# --- OutputLock --------------------------------------------------------------------------------


def test_lock_file_is_0600_holds_the_pid_and_stays_after_release(out: Path) -> None:
    with OutputLock(str(out)) as lock:
        assert lock.held
        lock_file = Path(f"{out}.lock")
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
        assert lock_file.read_text() == f"{os.getpid()}\n"
        assert "held=True" in repr(lock)
    assert not lock.held
    assert lock_file.exists()  # deleting it on exit would race with a second run


def test_a_second_lock_in_the_same_process_conflicts(out: Path) -> None:
    # flock belongs to the open file description: a second open() conflicts even here.
    with OutputLock(str(out)):
        with pytest.raises(LockedError) as info:
            OutputLock(str(out)).acquire()
        assert str(info.value) == (
            f"another poller run (pid {os.getpid()}) is writing {out}; "
            "wait for it to finish or choose another --output."
        )
    with OutputLock(str(out)) as again:  # released on exit
        assert again.held


def test_a_symlinked_spelling_shares_the_lock(tmp_path: Path, out: Path) -> None:
    alias = tmp_path / "alias.jsonl"
    write(out)
    alias.symlink_to(out)
    with OutputLock(str(out)), pytest.raises(LockedError, match=r"is writing .*alias\.jsonl;"):
        OutputLock(str(alias)).acquire()


def test_acquiring_twice_is_a_programming_error(out: Path) -> None:
    lock = OutputLock(str(out))
    with lock, pytest.raises(RuntimeError, match="already held"):
        lock.acquire()


def test_a_lock_that_cannot_be_created_is_a_resume_error(tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "out.jsonl"
    with pytest.raises(ResumeError, match="cannot create the lock file") as info:
        OutputLock(str(out)).acquire()
    assert not isinstance(info.value, LockedError)


HOLDER = """
import sys
from poller.output.lock import OutputLock
lock = OutputLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.readline()
"""


def test_a_lock_held_by_another_process_names_its_pid_and_dies_with_it(out: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(LockedError, match=rf"another poller run \(pid {holder.pid}\) is"):
            OutputLock(str(out)).acquire()
        holder.send_signal(signal.SIGKILL)  # a crash: no clean release
        holder.wait(timeout=10)
    with OutputLock(str(out)) as lock:  # the kernel dropped the dead holder's lock
        assert lock.held
        assert Path(f"{out}.lock").read_text() == f"{os.getpid()}\n"
