"""`poller report` as a command: arguments, files, exit statuses."""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import poller.report._command as command
from poller.report import (
    run_command,
)
from tests.report.support import NEWER, assert_one_sentence, csv_rows, parse


def test_parser_defaults_and_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("r.jsonl")
    assert (args.results, args.format, args.against, args.output, args.limit, args.top) == (
        ["r.jsonl"],
        "text",
        None,
        "-",
        50,
        10,
    )
    for bad in (["r", "--limit", "-1"], ["r", "--limit", "x"], ["r", "--format", "yaml"]):
        with pytest.raises(SystemExit) as exc:
            parse(*bad)
        assert exc.value.code == 2
    capsys.readouterr()


def test_command_writes_the_report_to_a_file_0600(files: tuple[Path, Path]) -> None:
    newer, older = files
    out = newer.parent / "report.json"
    args = parse(str(newer), "--against", str(older), "--format", "json", "--output", str(out))
    assert run_command(args) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["results"] == str(newer)
    assert data["tokens"]["total"] == 13
    assert data["diff"]["against"] == str(older)
    assert data["diff"]["tokens"]["changed"] == 3
    assert out.stat().st_mode & 0o777 == 0o600


def test_command_writes_to_stdout_and_reads_stdin(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    newer, _ = files
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(newer.read_bytes())))
    assert run_command(parse("-", "--format", "csv")) == 0
    captured = capsys.readouterr()
    assert ["tokens", "total", "13", ""] in csv_rows(captured.out)
    assert captured.err == ""


def test_missing_results_file_is_exit_2_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_command(parse(str(tmp_path / "nope.jsonl"))) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_sentence(captured.err, "cannot read results file", "nope.jsonl", "no such file")


def test_a_directory_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(parse(str(tmp_path))) == 2
    assert_one_sentence(capsys.readouterr().err, "is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file regardless")
def test_an_unreadable_file_is_exit_2(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    newer, _ = files
    newer.chmod(0)
    assert run_command(parse(str(newer))) == 2
    assert_one_sentence(capsys.readouterr().err, "permission denied")


def test_a_read_error_mid_file_is_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class FailingDisk(io.BytesIO):
        def __iter__(self) -> Iterator[bytes]:
            yield NEWER[0]
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(command, "open", lambda *_: FailingDisk(), raising=False)
    assert run_command(parse("results.jsonl")) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_sentence(captured.err, "results.jsonl", "input/output error")


def test_a_missing_older_file_is_exit_2_and_no_report_is_written(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    newer, _ = files
    out = newer.parent / "report.txt"
    out.write_text("yesterday's report")
    args = parse(str(newer), "--against", str(newer.parent / "gone"), "--output", str(out))
    assert run_command(args) == 2
    assert_one_sentence(capsys.readouterr().err, "cannot read older results file")
    assert out.read_text() == "yesterday's report"


def test_stdin_twice_and_output_over_input_are_refused(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    newer, older = files
    assert run_command(parse("-", "--against", "-")) == 2
    assert_one_sentence(capsys.readouterr().err, "standard input")
    before = older.read_bytes()
    assert run_command(parse(str(newer), "--against", str(older), "--output", str(older))) == 2
    assert_one_sentence(capsys.readouterr().err, "refusing")
    assert older.read_bytes() == before


def test_an_unwritable_output_is_exit_2(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    newer, _ = files
    assert run_command(parse(str(newer), "--output", str(newer.parent / "no" / "dir.txt"))) == 2
    assert_one_sentence(capsys.readouterr().err, "cannot write the report")
