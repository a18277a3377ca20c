"""The front door (poller/input/tokens.py): choosing the reader, stdin and pipes, when errors
surface, and the entry estimate."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from poller.config.settings import InputFormat
from poller.input import tokens
from poller.input.csv_records import read_csv
from poller.input.entries import (
    InputError,
    InputItem,
    TokenEntry,
)
from poller.input.json_lines import read_jsonl
from poller.input.plain_text import read_text
from poller.input.tokens import detect_format, estimate_entries, read_tokens
from tests.input.support import ODD, T2024, UUID, from_file, from_stdin, ok

# --- detect_format -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "explicit", "expected"),
    [
        ("tokens.txt", None, "text"),
        ("tokens", None, "text"),
        ("tokens.CSV", None, "csv"),
        ("dir.csv/tokens.jsonl", None, "jsonl"),
        ("a.ndjson", None, "jsonl"),
        ("a.json", None, "jsonl"),
        ("a.tsv", None, "text"),
        ("-", None, "text"),
        ("tokens.csv", "text", "text"),
        ("tokens.txt", "jsonl", "jsonl"),
        ("-", "csv", "csv"),
    ],
)
def test_detect_format(path: str, explicit: InputFormat | None, expected: InputFormat) -> None:
    assert detect_format(path, explicit) == expected


def test_detect_format_refuses_unknown_explicit_format() -> None:
    with pytest.raises(InputError, match="unknown token format 'xml'; use one of: text, csv"):
        detect_format("a.txt", "xml")  # type: ignore[arg-type]


# --- every format from files, and the stdin sniff -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("t.txt", b"a\nb\n"),
        ("t", b"a\nb\n"),
        ("t.csv", b"SdkToken\na\nb\n"),
        ("t.jsonl", b'{"SdkToken": "a"}\n{"SdkToken": "b"}\n'),
        ("t.ndjson", b'{"SdkToken": "a"}\n{"SdkToken": "b"}\n'),
        ("t.json", b'{"SdkToken": "a"}\n{"SdkToken": "b"}\n'),
    ],
)
def test_files_by_extension(tmp_path: Path, name: str, data: bytes) -> None:
    assert [i.token for i in from_file(tmp_path, name, data)] == ["a", "b"]


@pytest.mark.parametrize(
    ("data", "expected_format"),
    [
        (b"a\nb\n", "text"),
        (b"# comment\na\n", "text"),
        (b"", "text"),
        (b'\n{"SdkToken": "a"}\n', "jsonl"),
        (b"\xef\xbb\xbfSdkToken,issued_at\na,\n", "csv"),
        (b"token\na\n", "csv"),
        (b'"id","Token"\n1,a\n', "csv"),
        (b"tokens,other\na,b\n", "text"),
    ],
)
def test_stdin_format_is_sniffed_from_the_first_line(
    data: bytes, expected_format: InputFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real_text, real_csv, real_jsonl = read_text, read_csv, read_jsonl

    def spy(
        kind: str, real: Callable[..., Iterator[InputItem]]
    ) -> Callable[..., Iterator[InputItem]]:
        def wrapper(*args: object) -> Iterator[InputItem]:
            seen.append(kind)
            return real(*args)

        return wrapper

    monkeypatch.setattr(tokens, "read_text", spy("text", real_text))
    monkeypatch.setattr(tokens, "read_csv", spy("csv", real_csv))
    monkeypatch.setattr(tokens, "read_jsonl", spy("jsonl", real_jsonl))
    from_stdin(data)
    assert seen == [expected_format]


def test_explicit_format_beats_the_stdin_sniff() -> None:
    assert from_stdin(b"token\na\n", "text") == [ok("token", 1), ok("a", 2)]


def test_stdin_defaults_to_sys_stdin_buffer_and_is_not_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = io.TextIOWrapper(io.BytesIO(b"a\nb\n"))
    monkeypatch.setattr(sys, "stdin", fake)
    assert list(read_tokens("-")) == [ok("a", 1), ok("b", 2)]
    assert not fake.buffer.closed


def test_missing_stdin_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(InputError, match="no standard input"):
        list(read_tokens("-"))


# --- errors are raised lazily but before any item -----------------------------------------------


def test_nothing_happens_until_the_first_next(tmp_path: Path) -> None:
    gen = read_tokens(str(tmp_path / "missing.txt"))  # no error yet: it is a generator
    with pytest.raises(InputError):
        next(gen)


def test_csv_header_error_comes_before_any_item() -> None:
    gen = read_tokens("-", "csv", stdin=io.BytesIO(b"a,b\n" + b"1,2\n" * 1000))
    with pytest.raises(InputError):
        next(gen)


def test_file_is_closed_when_the_reader_is_abandoned(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"a\nb\nc\n")
    gen = read_tokens(str(path))
    assert isinstance(gen, types.GeneratorType)
    assert next(gen) == ok("a", 1)
    gen.close()  # with filterwarnings=error an unclosed file would fail the suite


# -- input that can be read only once (issue 9: piped input lost tokens) -------------------------


def _feed_fifo(path: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(path, "wb") as fifo:  # waits for the reader, as a real producer would
            fifo.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return writer


def test_estimate_entries_counts_a_regular_file(tmp_path: Path) -> None:
    text = tmp_path / "tokens.txt"
    text.write_bytes(b"# export\n" + UUID.encode() + b"\n\n  \n" + ODD.encode() + b"\n")
    assert estimate_entries(str(text)) == 2
    table = tmp_path / "tokens.csv"
    table.write_bytes(b"SdkToken,issued_at\n" + UUID.encode() + b",1704067200\n")
    assert estimate_entries(str(table)) == 1  # the header is not an entry


def test_estimate_entries_never_opens_a_fifo(tmp_path: Path) -> None:
    # Opening a FIFO for reading blocks until a writer comes, and once one has, every byte the
    # counter reads is a token the run never sees. So the counter must not open it at all.
    fifo = tmp_path / "tokens"
    os.mkfifo(fifo)
    result: list[int | None] = []
    counter = threading.Thread(target=lambda: result.append(estimate_entries(str(fifo))))
    counter.daemon = True
    counter.start()
    counter.join(timeout=5)
    if counter.is_alive():  # blocked in open(): let it go before failing
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not counter.is_alive(), "estimate_entries opened the FIFO"
    assert result == [None]


def test_estimate_entries_is_none_for_stdin_and_devices(tmp_path: Path) -> None:
    assert estimate_entries("-") is None
    assert estimate_entries(os.devnull) is None
    assert estimate_entries(str(tmp_path)) is None
    assert estimate_entries(str(tmp_path / "missing.txt")) is None


@pytest.mark.parametrize(
    "data",
    [
        b"SdkToken,issued_at\n" + UUID.encode() + b",1704067200\n" + ODD.encode() + b",\n",
        b'{"SdkToken": "' + UUID.encode() + b'", "issued_at": 1704067200}\n',
        b"# tokens\n" + UUID.encode() + b"\n",
    ],
    ids=["csv", "jsonl", "text"],
)
def test_a_fifo_is_read_exactly_like_stdin(tmp_path: Path, data: bytes) -> None:
    # `--tokens <(psql ...)` names /dev/fd/63: no extension, so the format is sniffed from the
    # content exactly as on "-", instead of every CSV row becoming one "token".
    fifo = tmp_path / "tokens"
    os.mkfifo(fifo)
    writer = _feed_fifo(fifo, data)
    items = list(read_tokens(str(fifo)))
    writer.join(timeout=5)
    assert items == from_stdin(data)
    assert items[0] == ok(UUID, items[0].line, T2024 if b"1704067200" in data else None)


def test_a_fifo_with_an_explicit_format_is_not_sniffed(tmp_path: Path) -> None:
    data = b"SdkToken\n" + UUID.encode() + b"\n"
    fifo = tmp_path / "tokens"
    os.mkfifo(fifo)
    writer = _feed_fifo(fifo, data)
    items = list(read_tokens(str(fifo), "text"))
    writer.join(timeout=5)
    assert [i.token for i in items] == ["SdkToken", UUID]


class _Chunked(io.RawIOBase):
    """A pipe that delivers its bytes in the given chunks, one per read (like a slow export)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._chunks:
            return 0
        chunk = self._chunks.pop(0)
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize(
    ("chunks", "tokens"),
    [
        # A blank first chunk, then JSON Lines: sniffed as JSON Lines, not sent as raw text.
        ([b"\n", b'{"token": "js-1"}\n{"token": "js-2"}\n'], ["js-1", "js-2"]),
        # Half a CSV header in the first chunk: the header is not queried as a token.
        ([b"SdkTo", b"ken\nct-1\nct-2\n"], ["ct-1", "ct-2"]),
        ([b"  \r\n", b"\n", b"SdkToken,issued_at\n", b"a-1,\n"], ["a-1"]),
        # Plain text stays text, however it trickles in.
        ([b"tok", b"en-1\n", b"token-2\n"], ["token-1", "token-2"]),
    ],
)
def test_a_pipe_is_sniffed_from_its_first_whole_line(
    chunks: list[bytes], tokens: list[str]
) -> None:
    stream = io.BufferedReader(_Chunked(chunks), buffer_size=8192)
    items = list(read_tokens("-", stdin=stream))
    assert [item.token for item in items] == tokens
    assert all(isinstance(item, TokenEntry) for item in items)
