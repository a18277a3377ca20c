"""The JSON-lines sink (poller/output/sink.py): mode 0600, append only, whole lines."""

from __future__ import annotations

import errno
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poller.api.outcomes import Status
from poller.output.records import build_record, encode_record
from poller.output.sink import WRITE_PIECE, JsonlSink, Sink

T = 1704067200.0  # 2024-01-01T00:00:00Z


def test_jsonl_sink_is_a_sink() -> None:
    sink: Sink = JsonlSink(os.devnull)  # mypy checks the protocol; this checks it runs
    try:
        sink.write_lines(b"{}\n", 1)
        assert sink.lines_written == 1
    finally:
        sink.close()


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _rec(token: str) -> dict[str, Any]:
    return build_record(token=token, status=Status.ERROR, final=True, attempts=1, checked_at=T)


@pytest.mark.usefixtures("permissive_umask")
def test_sink_creates_file_0600(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(str(path))
    try:
        sink.write(_rec("a"))
    finally:
        sink.close()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sink.lines_written == 1


@pytest.mark.usefixtures("permissive_umask")
def test_sink_appends_and_never_truncates(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    first = encode_record(_rec("old"))
    path.write_bytes(first)
    path.chmod(0o644)
    sink = JsonlSink(str(path))
    sink.write(_rec("new1"))
    sink.write(_rec("new2"))
    sink.close()
    data = path.read_bytes()
    assert data.startswith(first)
    assert [json.loads(line)["token"] for line in data.splitlines()] == ["old", "new1", "new2"]
    assert sink.lines_written == 2
    assert os.stat(path).st_mode & 0o777 == 0o644  # an existing file's mode is left alone


@pytest.mark.usefixtures("permissive_umask")
def test_sink_keeps_a_stricter_existing_mode(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(encode_record(_rec("old")))
    path.chmod(0o200)  # write-only: the sink cannot even look at the last byte
    sink = JsonlSink(str(path))
    sink.write(_rec("a"))
    sink.close()
    assert os.stat(path).st_mode & 0o777 == 0o200
    path.chmod(0o600)
    assert [json.loads(line)["token"] for line in path.read_bytes().splitlines()] == ["old", "a"]


def test_sink_ends_a_torn_last_line_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    whole = encode_record(_rec("done"))
    torn = encode_record(_rec("torn"))[:25]
    path.write_bytes(whole + torn)
    sink = JsonlSink(str(path))
    sink.write(_rec("after"))
    sink.close()
    lines = path.read_bytes().splitlines()
    assert lines[0] == whole.rstrip(b"\n")
    assert lines[1] == torn
    assert json.loads(lines[2])["token"] == "after"  # not glued to the torn fragment
    assert sink.lines_written == 1


def test_sink_lines_are_flushed_as_written(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(str(path))
    try:
        sink.write(_rec("a"))
        # Before close: a crash now must still leave the complete line on disk.
        assert json.loads(path.read_bytes())["token"] == "a"
        assert "lines_written=1" in repr(sink)
    finally:
        sink.close()


def test_sink_dash_writes_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    sink = JsonlSink("-")
    sink.write(_rec("a"))
    sink.write(_rec("b"))
    sink.close()
    out = capsysbinary.readouterr().out
    assert [json.loads(line)["token"] for line in out.splitlines()] == ["a", "b"]
    assert sink.lines_written == 2
    assert not os.path.exists("-")


class _Trickle(io.RawIOBase):
    """A file that takes at most 7 bytes a call, like a pipe write cut short by a signal."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        chunk = bytes(b[:7])
        self.data += chunk
        return len(chunk)


def test_sink_finishes_short_writes_so_lines_never_merge(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    trickle = _Trickle()
    real = sink._fh
    sink._fh = trickle  # type: ignore[assignment]
    try:
        sink.write(_rec("a"))
        sink.write_lines(encode_record(_rec("b")) + encode_record(_rec("c")), 2)
    finally:
        sink._fh = real
        sink.close()
    lines = bytes(trickle.data).splitlines()
    assert [json.loads(line)["token"] for line in lines] == ["a", "b", "c"]
    assert sink.lines_written == 3


class _FillsUp(io.RawIOBase):
    """A disk with room for `room` more bytes; then ENOSPC (after a short write)."""

    def __init__(self, room: int) -> None:
        self.data = bytearray()
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        left = self.room - len(self.data)
        if left <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        chunk = bytes(b[:left])
        self.data += chunk
        return len(chunk)


def test_sink_counts_the_lines_that_got_out_before_the_disk_filled(tmp_path: Path) -> None:
    lines = [encode_record(_rec(f"t{n}")) for n in range(3)]
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    disk = _FillsUp(len(lines[0]) + len(lines[1]) + 10)  # two whole lines and a torn third
    real = sink._fh
    sink._fh = disk  # type: ignore[assignment]
    try:
        with pytest.raises(OSError, match="No space"):
            sink.write_lines(b"".join(lines), 3)
    finally:
        sink._fh = real
        sink.close()
    assert sink.lines_written == 2  # not 0 (the batch failed) nor 3 (it was handed over)


def test_sink_writes_a_big_batch_in_pieces_cut_at_line_ends(tmp_path: Path) -> None:
    batch = b"".join(encode_record(_rec(f"tok-{n:06}")) for n in range(2000))  # ~400 KB
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    trickle = _Trickle()
    seen: list[int] = []
    real_write = trickle.write

    def spy(b: Any) -> int:
        seen.append(len(b))
        return real_write(b)

    trickle.write = spy  # type: ignore[method-assign]
    real = sink._fh
    sink._fh = trickle  # type: ignore[assignment]
    try:
        sink.write_lines(batch, 2000)
    finally:
        sink._fh = real
        sink.close()
    assert bytes(trickle.data) == batch
    assert sink.lines_written == 2000
    assert max(seen) <= WRITE_PIECE
