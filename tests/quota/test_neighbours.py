"""Runs sharing one account quota on one machine notice each other (poller/quota/neighbours.py)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from poller.quota import neighbours
from poller.quota.neighbours import Neighbour, RunRegistry, competition_warning
from tests.conftest import PollerLog
from tests.helpers import SECRET_ID

OTHER_SECRET_ID = "AKIDotherACCOUNTid"
PREFIX = hashlib.sha256(SECRET_ID.encode()).hexdigest()[:16] + "."


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """The registry directory, not yet created: the registry makes it."""
    return tmp_path / "runs"


def _files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


# --- Registration and scanning -----------------------------------------------------------------


def test_a_lone_run_has_no_neighbours_and_leaves_no_file(runs: Path) -> None:
    registry = RunRegistry(SECRET_ID, "night.jsonl", directory=runs)
    with registry as found:
        assert found == []
        assert registry.registered
        assert [p.name for p in _files(runs)] == [Path(str(registry.path)).name]
    assert not registry.registered
    assert _files(runs) == []  # a clean exit removes its file


def test_a_second_run_sees_the_first_and_a_rescan_sees_the_second(runs: Path) -> None:
    first = RunRegistry(SECRET_ID, "night.jsonl", 0.5, directory=runs)
    second = RunRegistry(SECRET_ID, "day.jsonl", directory=runs)
    with first as seen_by_first, second as seen_by_second:
        assert seen_by_first == []  # nobody had registered yet
        assert seen_by_second == [Neighbour(pid=os.getpid(), output="night.jsonl", max_share=0.5)]
        # Both registered: the first sees the second too (flock conflicts even in one process).
        assert first.scan() == [Neighbour(pid=os.getpid(), output="day.jsonl", max_share=1.0)]


def test_a_run_with_other_credentials_is_not_a_neighbour(runs: Path) -> None:
    theirs = RunRegistry(OTHER_SECRET_ID, "theirs.jsonl", directory=runs)
    with theirs, RunRegistry(SECRET_ID, "mine.jsonl", directory=runs) as found:
        assert found == []
        assert len(_files(runs)) == 2  # both registered, only the hash tells them apart


def test_a_run_that_has_exited_is_no_longer_seen(runs: Path) -> None:
    with RunRegistry(SECRET_ID, "night.jsonl", directory=runs) as found:
        assert found == []
    with RunRegistry(SECRET_ID, "day.jsonl", directory=runs) as found:
        assert found == []


HOLDER = """
import sys
from poller.quota.neighbours import RunRegistry
registry = RunRegistry(sys.argv[1], "crashed.jsonl", directory=sys.argv[2])
with registry:
    print(registry.path, flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def holder(runs: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process registered with the same credentials, and the path of its file."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, SECRET_ID, str(runs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with child:
        assert child.stdout is not None
        path = Path(child.stdout.readline().strip())  # printed once its file is in place
        try:
            yield child, path
        finally:
            child.kill()
            child.wait(timeout=10)


def test_a_live_run_in_another_process_is_seen_with_its_pid(
    holder: tuple[subprocess.Popen[str], Path], runs: Path
) -> None:
    child, _ = holder
    with RunRegistry(SECRET_ID, "night.jsonl", directory=runs) as found:
        assert found == [Neighbour(pid=child.pid, output="crashed.jsonl", max_share=1.0)]


def test_a_killed_run_is_cleaned_up_and_not_reported(
    holder: tuple[subprocess.Popen[str], Path], runs: Path
) -> None:
    child, path = holder
    assert path.parent == runs
    assert path.name.startswith(PREFIX)
    child.send_signal(signal.SIGKILL)  # a crash: no clean unregistering
    child.wait(timeout=10)
    assert path.exists()  # the dead run's file is still there...
    with RunRegistry(SECRET_ID, "night.jsonl", directory=runs) as found:
        assert found == []
        assert not path.exists()  # ...until a scan finds it unlocked and removes it


def test_the_secret_id_is_in_no_file_name_content_or_repr(runs: Path) -> None:
    registry = RunRegistry(SECRET_ID, "night.jsonl", 0.5, directory=runs)
    with registry, RunRegistry(SECRET_ID, "day.jsonl", directory=runs):
        files = _files(runs)
        assert len(files) == 2
        for path in files:
            assert path.name.startswith(PREFIX)  # a hash of the SecretId, not the SecretId
            assert SECRET_ID not in path.name
            assert SECRET_ID not in path.read_text()
        assert SECRET_ID not in repr(registry)


def test_the_file_is_0600_json_and_the_directory_0700(runs: Path) -> None:
    registry = RunRegistry(SECRET_ID, "night.jsonl", 0.25, directory=runs)
    with registry:
        path = Path(str(registry.path))
        assert stat.S_IMODE(runs.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        record = json.loads(path.read_text())
        assert set(record) == {"pid", "output", "max_share", "started"}
        assert (record["pid"], record["output"], record["max_share"]) == (
            os.getpid(),
            "night.jsonl",
            0.25,
        )


# --- An untrusted directory turns detection off, silently --------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770], ids=["world", "sticky-world", "group"])
def test_a_directory_others_can_write_is_not_used(
    runs: Path, mode: int, poller_log: PollerLog
) -> None:
    runs.mkdir()
    runs.chmod(mode)
    logging.getLogger("poller").setLevel(logging.DEBUG)  # the fixture restores it
    registry = RunRegistry(SECRET_ID, "night.jsonl", directory=runs)
    with RunRegistry(SECRET_ID, "day.jsonl", directory=runs) as first, registry as second:
        assert (first, second) == ([], [])
        assert not registry.registered
        assert registry.path is None
    assert _files(runs) == []
    assert any("run detection off" in m and str(runs) in m for m in poller_log.messages)
    assert not any(SECRET_ID in m for m in poller_log.messages)


def test_a_directory_owned_by_someone_else_is_not_used(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs.mkdir(mode=0o700)
    monkeypatch.setattr(os, "getuid", lambda: runs.stat().st_uid + 1)
    with RunRegistry(SECRET_ID, "night.jsonl", directory=runs) as found:
        assert found == []
    assert _files(runs) == []


def test_a_symlinked_directory_is_not_used(tmp_path: Path, runs: Path) -> None:
    # Someone else could point a predictable /tmp name at a directory of their choosing.
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    runs.symlink_to(real)
    registry = RunRegistry(SECRET_ID, "night.jsonl", directory=runs)
    with registry as found:
        assert found == []
        assert not registry.registered
    assert _files(real) == []


def test_a_directory_that_cannot_be_created_is_no_error(tmp_path: Path) -> None:
    with RunRegistry(SECRET_ID, "night.jsonl", directory=tmp_path / "no" / "such") as found:
        assert found == []
    assert not (tmp_path / "no").exists()


def test_without_flock_detection_is_off(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(neighbours, "fcntl", None)  # as on Windows
    with RunRegistry(SECRET_ID, "night.jsonl", directory=runs) as found:
        assert found == []
    assert not runs.exists()


# --- Files a run did not write ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"pid": "42", "output": "x.jsonl", "max_share": 1.0}',
        b'{"pid": true, "output": "x.jsonl", "max_share": 1.0}',
        b'{"pid": 42, "output": 7, "max_share": 1.0}',
        b'{"pid": 42, "output": "x.jsonl", "max_share": 7}',
        b'{"pid": 42, "output": "x.jsonl", "max_share": NaN}',
        b'{"pid": 42, "output": "x.jsonl"}',
    ],
)
def test_a_garbled_file_of_a_live_holder_is_ignored_and_kept(runs: Path, content: bytes) -> None:
    runs.mkdir(mode=0o700)
    garbled = runs / f"{PREFIX}42.garbled.json"
    garbled.write_bytes(content)
    with garbled.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # alive, so not removed as a dead run's file
        with RunRegistry(SECRET_ID, "night.jsonl", directory=runs) as found:
            assert found == []
        assert garbled.exists()


def test_a_well_formed_file_of_a_live_holder_is_a_neighbour(runs: Path) -> None:
    # The twin of the garbled cases above: the same set-up does report a valid file.
    runs.mkdir(mode=0o700)
    valid = runs / f"{PREFIX}42.valid.json"
    valid.write_text('{"pid": 42, "output": "x.jsonl", "max_share": 1, "started": 0}')
    with valid.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with RunRegistry(SECRET_ID, "night.jsonl", directory=runs) as found:
            assert found == [Neighbour(pid=42, output="x.jsonl", max_share=1.0)]


def test_an_unlocked_stray_file_is_removed_as_a_dead_run(runs: Path) -> None:
    runs.mkdir(mode=0o700)
    stray = runs / f"{PREFIX}42.stray.json"
    stray.write_text("{not json")
    with RunRegistry(SECRET_ID, "night.jsonl", directory=runs) as found:
        assert found == []
    assert not stray.exists()


# --- Where the registry lives ------------------------------------------------------------------


def test_the_directory_is_under_xdg_runtime_dir_when_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    registry = RunRegistry(SECRET_ID, "night.jsonl")
    with registry:
        assert Path(str(registry.path)).parent == tmp_path / "faceid-poller"
    assert stat.S_IMODE((tmp_path / "faceid-poller").stat().st_mode) == 0o700


@pytest.mark.parametrize("runtime", [None, "relative/dir", "/no/such/dir"])
def test_the_directory_is_a_per_user_temp_dir_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str | None
) -> None:
    if runtime is None:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    else:
        monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    registry = RunRegistry(SECRET_ID, "night.jsonl")
    with registry:
        assert Path(str(registry.path)).parent == tmp_path / f"faceid-poller-{os.getuid()}"


def test_no_temporary_directory_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_tempdir() -> str:
        raise FileNotFoundError("No usable temporary directory found")

    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "gettempdir", no_tempdir)
    registry = RunRegistry(SECRET_ID, "night.jsonl")
    with registry as found:
        assert found == []
        assert not registry.registered


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5, float("nan")])
def test_a_share_outside_the_quota_is_a_programming_error(share: float) -> None:
    with pytest.raises(ValueError, match=r"max_share must be a fraction of the quota in \(0, 1\]"):
        RunRegistry(SECRET_ID, "night.jsonl", share)


def test_registering_twice_is_a_programming_error(runs: Path) -> None:
    registry = RunRegistry(SECRET_ID, "night.jsonl", directory=runs)
    with registry, pytest.raises(RuntimeError, match="already registered"):
        registry.register()


# --- competition_warning -------------------------------------------------------------------------


NIGHT = Neighbour(pid=4242, output="night.jsonl", max_share=1.0)


def test_no_neighbours_no_warning() -> None:
    assert competition_warning([], 1.0) is None


@pytest.mark.parametrize(
    ("own", "theirs"),
    [(0.5, [0.5]), (0.1, [0.34, 0.56]), (1 / 3, [1 / 3, 1 / 3]), (0.5, [0.5 + 1e-12])],
)
def test_runs_that_split_the_quota_already_get_no_warning(own: float, theirs: list[float]) -> None:
    others = [Neighbour(pid=n + 1, output=f"{n}.jsonl", max_share=s) for n, s in enumerate(theirs)]
    assert competition_warning(others, own) is None


def test_a_millionth_over_the_quota_is_competition() -> None:
    assert competition_warning([Neighbour(pid=1, output="a.jsonl", max_share=0.5)], 0.500001)


def test_one_neighbour_at_full_rate_is_named_with_both_remedies() -> None:
    assert competition_warning([NIGHT], 1.0) == (
        "another poller run with the same credentials is running on this machine "
        "(pid 4242, output night.jsonl): the two compete for one account quota and will be "
        "throttled; share it with --shared-quota redis://HOST (one schedule for every run) "
        "or split it with --max-share (e.g. 0.5 each)"
    )


def test_several_neighbours_are_counted_and_listed_on_one_line() -> None:
    others = [
        Neighbour(pid=1, output="a.jsonl", max_share=1.0),
        Neighbour(pid=2, output="b.jsonl", max_share=1.0),
    ]
    warning = competition_warning(others, 1.0)
    assert warning is not None
    assert warning.startswith(
        "2 other poller runs with the same credentials are running on this machine "
        "(pid 1, output a.jsonl; pid 2, output b.jsonl): the 3 runs compete for one account quota"
    )
    assert "--shared-quota redis://HOST" in warning
    assert warning.endswith("split it with --max-share (e.g. 0.33 each)")
    assert "\n" not in warning


def test_the_suggested_split_never_adds_up_to_more_than_the_quota() -> None:
    for count in range(1, 12):
        others = [Neighbour(pid=n + 1, output=f"{n}.jsonl", max_share=1.0) for n in range(count)]
        warning = competition_warning(others, 1.0)
        assert warning is not None
        each = float(warning.rsplit("e.g. ", 1)[1].removesuffix(" each)"))
        assert 0 < each * (count + 1) <= 1.0


def test_shares_that_overlap_are_summed_in_the_warning() -> None:
    warning = competition_warning([NIGHT], 0.5)
    assert warning is not None
    assert "the two compete for one account quota (their --max-share values add up to 1.5)" in (
        warning
    )


def test_an_output_path_with_a_newline_stays_on_one_line() -> None:
    odd = Neighbour(pid=7, output="evil\nname\x1b[2J.jsonl", max_share=1.0)
    warning = competition_warning([odd], 1.0)
    assert warning is not None
    assert warning.isprintable()
    assert "(pid 7, output evil\\nname\\x1b[2J.jsonl)" in warning
