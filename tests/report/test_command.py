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
from poller.api.outcomes import Status
from poller.output.records import build_record, encode_record
from poller.report import (
    run_command,
)
from tests.report.support import NEWER, assert_one_sentence, csv_rows, local, parse


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


# --- several files ----------------------------------------------------------------------------


def at(token: str, status: Status, when: int, result: str = "0") -> bytes:
    record = build_record(
        token=token,
        status=status,
        final=status is not Status.PENDING,
        attempts=1,
        checked_at=when,
        response={"Result": result, "ChargeCount": 1},
    )
    return encode_record(record)


def test_several_files_the_latest_checked_at_wins_then_file_then_line_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day1, day2 = tmp_path / "day1.jsonl", tmp_path / "day2.jsonl"
    day1.write_bytes(
        at("late", Status.PASSED, 300)  # newer than its line in day2: wins though read first
        + at("tie", Status.PENDING, 200, "-999")
        + at("p", Status.PENDING, 100, "-999")
    )
    day2.write_bytes(
        at("late", Status.FAILED, 250, "2016")
        + at("tie", Status.FAILED, 200, "2015")  # same second: the later file wins
        + at("p", Status.PASSED, 150)
        + at("p", Status.FAILED, 150, "2017")  # same second, same file: the later line wins
    )
    out = tmp_path / "r.json"
    assert run_command(parse(str(day1), str(day2), "--format", "json", "--output", str(out))) == 0
    data = json.loads(out.read_text())
    assert data["tokens"]["total"] == 3
    assert data["lines"]["superseded"] == 4
    assert data["by_result"] == {
        "0": {"meaning": "passed", "tokens": 1},
        "2015": {"meaning": "comparison failed", "tokens": 1},
        "2017": {"meaning": "face occluded", "tokens": 1},
    }
    assert [f["path"] for f in data["files"]] == [str(day1), str(day2)]
    # The other order: only the tie changes hands.
    assert run_command(parse(str(day2), str(day1), "--format", "json", "--output", str(out))) == 0
    assert json.loads(out.read_text())["by_result"]["-999"]["tokens"] == 1
    text_out = tmp_path / "r.txt"
    assert run_command(parse(str(day1), str(day2), "--output", str(text_out))) == 0
    assert "Files (path, lines read, unreadable)" in text_out.read_text()


def test_a_later_local_line_never_overrides_tencents_answer(tmp_path: Path) -> None:
    night1, night2 = tmp_path / "night1.jsonl", tmp_path / "night2.jsonl"
    night1.write_bytes(at("t", Status.PASSED, 100) + at("p", Status.PENDING, 100, "-999"))
    # The next night reached both after their 72 h: lines written without a request.
    night2.write_bytes(local("t", 200) + local("p", 200) + local("only-local", 200))
    out = tmp_path / "r.json"
    for order in ((night1, night2), (night2, night1)):
        assert run_command(parse(*map(str, order), "--format", "json", "--output", str(out))) == 0
        data = json.loads(out.read_text())
        assert data["by_status"]["passed"] == 1
        assert data["by_status"]["pending"] == 1  # Tencent's last word on it
        assert data["by_status"]["expired"] == 1  # only-local: no answer to prefer
        assert data["error_codes"] == {"TokenTooOld": 1}
        assert data["lines"]["superseded"] == 2


def test_a_quoted_pattern_is_expanded_by_name_and_a_file_is_read_once(tmp_path: Path) -> None:
    for day, status in (("b", Status.PASSED), ("a", Status.FAILED)):
        (tmp_path / f"{day}.jsonl").write_bytes(at("t", status, 100, "0" if day == "b" else "2015"))
    out = tmp_path / "r.json"
    pattern = str(tmp_path / "*.jsonl")
    args = parse(pattern, str(tmp_path / "a.jsonl"), "--format", "json", "--output", str(out))
    assert run_command(args) == 0
    data = json.loads(out.read_text())
    assert [Path(f["path"]).name for f in data["files"]] == ["a.jsonl", "b.jsonl"]
    assert data["by_status"]["passed"] == 1  # b.jsonl is read last, so it wins the tie


def test_a_pattern_matching_nothing_is_exit_2_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_command(parse(str(tmp_path / "*.jsonl"))) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_sentence(captured.err, "no results file matches the pattern", "*.jsonl")
    (tmp_path / "r.jsonl").write_bytes(at("t", Status.PASSED, 1))
    assert run_command(parse(str(tmp_path / "r.jsonl"), "--against", str(tmp_path / "x*"))) == 2
    assert_one_sentence(capsys.readouterr().err, "no older results file matches")
