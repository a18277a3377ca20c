"""Hostile token files through the real command: per-line problems are lines, whole-file
problems are one sentence and exit 2, and nothing ever ends in a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aioresponses import aioresponses

from poller.cli import main
from tests.helpers import URL, ScriptedServer, ok

pytestmark = pytest.mark.usefixtures("user_env")


# name, file name, content, expected exit, expected {status: count} of the lines written.
# A bad row gets an `invalid_token` line that is not final (SPEC §2): the run exits 1.
PER_LINE_CASES: list[tuple[str, str, bytes, int, dict[str, int]]] = [
    ("empty file", "t.txt", b"", 0, {}),
    ("utf-8 bom and crlf", "t.txt", b"\xef\xbb\xbfgood\r\ngood2\r\n", 0, {"passed": 2}),
    (
        "invalid utf-8 line",
        "t.txt",
        b"good\n\xff\xfe\xfdbad\ngood2\n",
        1,
        {"passed": 2, "invalid_token": 1},
    ),
    ("nul byte in a line", "t.txt", b"good\nba\x00d\n", 1, {"passed": 1, "invalid_token": 1}),
    (
        "10 MB single line",
        "t.txt",
        b"good\n" + b"A" * 10_000_000 + b"\n",
        1,
        {"passed": 1, "invalid_token": 1},
    ),
    (
        "jsonl broken and non-object lines",
        "t.jsonl",
        b'{"SdkToken": "good"}\n[1,2]\n{"token": \n"str"\n{"SdkToken": 5}\n',
        1,
        {"passed": 1, "invalid_token": 4},
    ),
    (
        "csv token cell empty",
        "t.csv",
        b"token,issued_at\ngood,\n,1700000000\n",
        1,
        {"passed": 1, "invalid_token": 1},
    ),
]


@pytest.mark.parametrize(
    ("file_name", "content", "exit_code", "statuses"),
    [case[1:] for case in PER_LINE_CASES],
    ids=[case[0] for case in PER_LINE_CASES],
)
def test_per_line_problems_become_lines(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    file_name: str,
    content: bytes,
    exit_code: int,
    statuses: dict[str, int],
) -> None:
    path = tmp_path / file_name
    path.write_bytes(content)
    out = tmp_path / "out.jsonl"
    server = ScriptedServer({"good": [ok()], "good2": [ok()]})
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        code = main(["run", "--tokens", str(path), "--output", str(out)])
    assert code == exit_code
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    got: dict[str, int] = {}
    for line in lines:
        got[line["status"]] = got.get(line["status"], 0) + 1
        assert len(json.dumps(line)) < 2000  # a 10 MB line never becomes a 10 MB record
    assert got == statuses
    for line in lines:
        if line["status"] == "invalid_token":
            assert line["attempts"] == 0
            assert line["error"]["message"].startswith("line ")
    assert "Traceback" not in capsys.readouterr().err


WHOLE_FILE_CASES: list[tuple[str, str, bytes | None, str]] = [
    ("binary data", "t.txt", bytes(range(256)) * 64, "binary"),
    ("csv without a token column", "t.csv", b"name,age\nx,1\n", "no SdkToken or token column"),
    ("a directory", "dir", None, "directory"),
    ("missing file", "missing.txt", b"", "missing.txt"),
]


@pytest.mark.parametrize(
    ("file_name", "content", "needle"),
    [case[1:] for case in WHOLE_FILE_CASES],
    ids=[case[0] for case in WHOLE_FILE_CASES],
)
def test_whole_file_problems_exit_2_in_one_sentence(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    file_name: str,
    content: bytes | None,
    needle: str,
) -> None:
    path = tmp_path / file_name
    if content is None:
        path.mkdir()
    elif file_name != "missing.txt":
        path.write_bytes(content)
    out = tmp_path / "out.jsonl"
    with aioresponses() as mocked:
        code = main(["run", "--tokens", str(path), "--output", str(out)])
        assert not mocked.requests  # nothing was sent
    assert code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("poller: error: ")
    assert needle in err
    assert "Traceback" not in err
