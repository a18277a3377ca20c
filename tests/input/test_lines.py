"""Bytes to lines (poller/input/lines.py): hostile bytes, binary input, open and read errors,
bounded memory."""

from __future__ import annotations

import io
import itertools
import os
import tracemalloc
from pathlib import Path

import pytest

from poller.config.settings import InputFormat
from poller.input import lines
from poller.input.entries import (
    BAD_TOKEN_CHARS,
    BadEntry,
    InputError,
    InputItem,
    TokenEntry,
)
from poller.input.lines import is_regular_file
from poller.input.tokens import read_tokens
from tests.input.support import UUID, from_file, from_stdin, lines_of, ok

# --- hostile input -----------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024
OK_BAD_OK = [("ok", 1), ("bad", 2), ("ok", 3)]
BAD_OK = [("bad", 1), ("ok", 2)]
HOSTILE_BYTES: list[tuple[str, InputFormat, bytes, list[tuple[str, int]]]] = [
    ("empty text", "text", b"", []),
    ("empty csv", "csv", b"", []),
    ("empty jsonl", "jsonl", b"", []),
    ("bom text", "text", b"\xef\xbb\xbfa\nb\n", [("ok", 1), ("ok", 2)]),
    ("bom csv header", "csv", b"\xef\xbb\xbfSdkToken\na\n", [("ok", 2)]),
    ("bom jsonl", "jsonl", b'\xef\xbb\xbf{"token": "a"}\n', [("ok", 1)]),
    ("bom mid-file (cat a b)", "text", b"a\n\xef\xbb\xbfb\n", [("ok", 1), ("ok", 2)]),
    ("crlf text", "text", b"a\r\n\r\nb\r\n", [("ok", 1), ("ok", 3)]),
    ("crlf csv", "csv", b"token\r\na\r\n\r\nb\r\n", [("ok", 2), ("ok", 4)]),
    ("crlf jsonl", "jsonl", b'{"token": "a"}\r\n{"token": "b"}\r\n', [("ok", 1), ("ok", 2)]),
    ("bad utf-8 text", "text", b"a\nb\xff\xfec\nd\n", [("ok", 1), ("bad", 2), ("ok", 3)]),
    ("bad utf-8 comment", "text", b"# caf\xe9\na\n", [("ok", 2)]),
    ("bad utf-8 csv", "csv", b"token,x\na,1\nb\xff,2\nc,3\n", [("ok", 2), ("bad", 3), ("ok", 4)]),
    (
        "bad utf-8 in csv continuation line",
        "csv",
        b'token,x\na,"1\n\xff"\nc,3\n',
        [("bad", 2), ("ok", 4)],
    ),
    ("bad utf-8 jsonl", "jsonl", b'{"token": "a\xff"}\n{"token": "b"}\n', [("bad", 1), ("ok", 2)]),
    ("nul text", "text", b"a\nx\x00y\nb\n", [("ok", 1), ("bad", 2), ("ok", 3)]),
    ("nul csv", "csv", b"token\nx\x00y\nb\n", [("bad", 2), ("ok", 3)]),
    ("nul jsonl", "jsonl", b'{"token": "x\x00y"}\n{"token": "b"}\n', [("bad", 1), ("ok", 2)]),
    ("lone cr in csv", "csv", b"token\na\rb\nc\n", [("bad", 2), ("ok", 3)]),
    ("10 MB text line", "text", b"a\n" + b"x" * TEN_MB + b"\nb\n", OK_BAD_OK),
    ("10 MB comment", "text", b"#" + b"x" * TEN_MB + b"\nb\n", [("ok", 2)]),
    ("10 MB csv line", "csv", b"token\n" + b"x" * TEN_MB + b"\nb\n", [("bad", 2), ("ok", 3)]),
    ("10 MB jsonl line", "jsonl", b"{" + b" " * TEN_MB + b'}\n{"token": "b"}\n', BAD_OK),
    ("10 MB line no newline", "text", b"x" * TEN_MB, [("bad", 1)]),
    ("line at the byte limit", "text", b"x" * lines.MAX_LINE_BYTES + b"\nb\n", BAD_OK),
    ("line just under it", "text", b"x" * (lines.MAX_LINE_BYTES - 1) + b"\nb\n", BAD_OK),
    ("a few nuls are not binary", "text", b"a\x00\x00\x00\n", [("bad", 1)]),
]


@pytest.mark.parametrize(
    ("fmt", "data", "expected"),
    [pytest.param(fmt, data, exp, id=name) for name, fmt, data, exp in HOSTILE_BYTES],
)
def test_hostile_bytes(fmt: InputFormat, data: bytes, expected: list[tuple[str, int]]) -> None:
    items = from_stdin(data, fmt)
    assert lines_of(items) == expected
    for item in items:
        if isinstance(item, BadEntry):
            assert item.reason.startswith(f"line {item.line}: ")
            assert len(item.token) <= BAD_TOKEN_CHARS + 1


def test_ten_megabyte_line_is_clipped_in_the_bad_entry() -> None:
    items = from_stdin(b"x" * TEN_MB + b"\n", "text")
    assert items == [
        BadEntry(
            "x" * BAD_TOKEN_CHARS + "…",
            1,
            "line 1: token is longer than 256 characters "
            "(the line is over 1048576 bytes; the rest of it was skipped)",
        )
    ]


def test_ten_megabyte_line_is_never_held_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as out:
        out.write(b"first\n")
        for _ in range(10):
            out.write(b"x" * (1024 * 1024))
        out.write(b"\nlast\n")
    tracemalloc.start()
    try:
        items = list(read_tokens(str(path)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines_of(items) == [("ok", 1), ("bad", 2), ("ok", 3)]
    assert peak < 1.5 * 1024 * 1024, peak  # at most the 1 MiB line bound plus change, not 10 MB


BINARY_MESSAGE = "looks like a binary file"
HOSTILE_WHOLE: list[tuple[str, bytes, str]] = [
    ("random bytes", bytes((i * 7919 + 13) % 256 for i in range(20000)), BINARY_MESSAGE),
    ("nul-heavy", b"tok\x00\x00\x00\x00\x00\x00\n" * 100, BINARY_MESSAGE),
    ("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, BINARY_MESSAGE),
    ("utf-16 le", "\ufefftoken\na\n".encode("utf-16-le"), "is UTF-16 text; save it as UTF-8"),
    ("utf-16 be", "\ufefftoken\na\n".encode("utf-16-be"), "is UTF-16 text; save it as UTF-8"),
    ("utf-16 without bom", "abcdefgh\nijklmnop\n".encode("utf-16-le"), BINARY_MESSAGE),
]


@pytest.mark.parametrize("fmt", ["text", "csv", "jsonl"])
@pytest.mark.parametrize(
    ("data", "message"), [pytest.param(d, m, id=n) for n, d, m in HOSTILE_WHOLE]
)
def test_binary_input_is_an_input_error(
    tmp_path: Path, fmt: InputFormat, data: bytes, message: str
) -> None:
    with pytest.raises(InputError, match=message) as info:
        from_file(tmp_path, "tokens.bin", data, fmt)
    assert "tokens.bin" in str(info.value)
    with pytest.raises(InputError, match=message):
        from_stdin(data, fmt)


def test_compressed_file_gets_a_hint(tmp_path: Path) -> None:
    import gzip

    with pytest.raises(InputError, match=r"binary file.*decompress it first"):
        from_file(tmp_path, "tokens.txt.gz", gzip.compress(os.urandom(4000)))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=r"token file '.*nope\.txt' does not exist; check the path"
    ):
        list(read_tokens(str(tmp_path / "nope.txt")))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory, not a token file"):
        list(read_tokens(str(tmp_path)))


def test_nul_in_path_is_an_input_error() -> None:
    with pytest.raises(InputError, match="cannot open token file"):
        list(read_tokens("a\x00b.txt"))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file regardless"
)
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(b"a\n")
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied; check its permissions"):
        list(read_tokens(str(path)))


def test_permission_denied_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same mapping, forced, so it is exercised even where tests run as root."""

    def denied(*_args: object, **_kwargs: object) -> io.BytesIO:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(lines, "open", denied, raising=False)
    with pytest.raises(InputError, match=r"cannot read token file 'x\.txt': permission denied"):
        list(read_tokens("x.txt"))


class _FailingStream(io.RawIOBase):
    """Serves some good lines, then fails like a dying disk."""

    def __init__(self, good: bytes) -> None:
        self._good = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._good:
            raise OSError(5, "Input/output error")
        n = min(len(buffer), len(self._good))
        buffer[:n] = self._good[:n]
        self._good = self._good[n:]
        return n


def test_read_error_mid_stream_is_an_input_error() -> None:
    stream = io.BufferedReader(_FailingStream(b"".join(b"tok-%d\n" % i for i in range(5000))))
    got: list[InputItem] = []
    with pytest.raises(InputError, match="error while reading standard input: Input/output error"):
        got.extend(read_tokens("-", "text", stdin=stream))
    assert len(got) > 0


# --- streaming ---------------------------------------------------------------------------------


class _EndlessTokens(io.RawIOBase):
    """An input that never ends: only a streaming reader can yield anything from it."""

    def __init__(self) -> None:
        self.served = 0
        self._pending = b""
        self._counter = itertools.count()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while len(self._pending) < len(buffer):
            self._pending += b"token-%08d\n" % next(self._counter)
        n = len(buffer)
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.served += n
        return n


@pytest.mark.parametrize("fmt", [None, "text"])
def test_reader_streams_from_an_endless_input(fmt: InputFormat | None) -> None:
    source = _EndlessTokens()
    stream = io.BufferedReader(source)
    first = list(itertools.islice(read_tokens("-", fmt, stdin=stream), 1000))
    assert [i.token for i in first[:2]] == ["token-00000000", "token-00000001"]
    assert first[-1] == ok("token-00000999", 1000)
    assert source.served < 64 * 1024  # read ahead only by a buffer or two


@pytest.mark.parametrize(
    ("fmt", "header", "line"),
    [
        ("text", b"", b"%08d-FB5D-4FB6-8765-3E931EBBFC79\n"),
        ("csv", b"SdkToken,issued_at\n", b"%08d-FB5D-4FB6-8765-3E931EBBFC79,1704067200\n"),
        ("jsonl", b"", b'{"SdkToken": "%08d-FB5D-4FB6-8765-3E931EBBFC79"}\n'),
    ],
)
def test_memory_stays_flat_on_a_large_file(
    tmp_path: Path, fmt: InputFormat, header: bytes, line: bytes
) -> None:
    count = 60_000 if fmt == "text" else 20_000  # tracemalloc makes every allocation slow
    path = tmp_path / "big"
    with path.open("wb") as out:
        out.write(header)
        out.writelines(line % i for i in range(count))
    size = path.stat().st_size
    seen = 0
    last = 0
    tracemalloc.start()
    try:
        for item in read_tokens(str(path), fmt):
            assert isinstance(item, TokenEntry)
            assert item.line > last
            last = item.line
            seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 512 * 1024, f"peak {peak} bytes for a {size}-byte file"


def test_is_regular_file(tmp_path: Path) -> None:
    regular = tmp_path / "tokens.txt"
    regular.write_text(UUID + "\n")
    link = tmp_path / "link.txt"
    link.symlink_to(regular)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert is_regular_file(str(regular))
    assert is_regular_file(str(link))  # the file it names decides
    for other in ("-", str(fifo), os.devnull, str(tmp_path), str(tmp_path / "no"), "a\0b"):
        assert not is_regular_file(other), other
