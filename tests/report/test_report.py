"""`poller report`: every figure of a known results file, the diff of two runs, the four formats
parsed back, the command's exit statuses, and memory that does not grow with the file."""

from __future__ import annotations

import argparse
import csv
import errno
import io
import json
import os
import re
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import poller.report._command as command
from poller.api.outcomes import Status
from poller.output.records import ErrorInfo, build_record, encode_record
from poller.report import (
    CODE_MEANINGS,
    CSV_HEADER,
    Change,
    Diff,
    Entry,
    Report,
    TokenResult,
    as_dict,
    configure_parser,
    diff,
    load,
    meaning,
    render,
    run_command,
    summarize,
)

S = Status


def line(
    token: str,
    status: Status,
    *,
    final: bool | None = None,
    result: str | None = None,
    charge: int | None = 0,
    error: str | None = None,
) -> bytes:
    """A result line exactly as the poller's sink writes it."""
    response: dict[str, Any] | None = None
    if status in (S.PASSED, S.FAILED, S.PENDING):
        response = {"ChargeCount": charge, "RequestId": "req-" + token, "Extra": ""}
        if result is not None:
            response["Result"] = result
    record = build_record(
        token=token,
        status=status,
        final=status is not S.PENDING if final is None else final,
        attempts=1,
        checked_at=1_700_000_000,
        response=response,
        error=None if error is None else ErrorInfo(error, "message for " + error),
    )
    return encode_record(record)


EXPIRED = "InvalidParameterValue.BizTokenExpired"
ILLEGAL = "InvalidParameterValue.BizTokenIllegal"

# Physical line numbers in the comments: the unreadable ones are asserted by number.
NEWER = [
    line(
        "p2", S.PENDING, result="-999", charge=7
    ),  # 1 superseded by 10 (its charge must not count)
    line("e1", S.ERROR, final=False, error="RequestLimitExceeded"),  # 2 superseded by 18
    line("p1", S.PASSED, result="0", charge=1),  # 3
    b"not json at all\n",  # 4 unreadable
    line("n1", S.PENDING, result="-999"),  # 5 superseded by 11
    b"\n",  # 6 blank: neither read nor unreadable
    line("f1", S.FAILED, result="2015", charge=1),  # 7
    b"[1, 2]\n",  # 8 unreadable: not an object
    b'{"status": "passed", "final": true}\n',  # 9 unreadable: no token
    line("p2", S.PASSED, result="0", charge=1),  # 10
    line("n1", S.PENDING, result="-999"),  # 11
    line("f2", S.FAILED, result="1002", charge=2),  # 12
    b'{"token": 5, "status": "passed"}\n',  # 13 unreadable: token not a string
    b'{"token": "zz", "status": "done"}\n',  # 14 unreadable: not one of the six statuses
    line("f3", S.FAILED, result="9999", charge=0),  # 15 an undocumented code
    line("p3", S.PASSED, result="0", charge=None),  # 16 null charge counts as 0
    line("x1", S.EXPIRED, error=EXPIRED),  # 17
    line("i1", S.INVALID_TOKEN, error=ILLEGAL),  # 18
    line("e1", S.ERROR, final=False, error="InternalError"),  # 19
    line("n2", S.PENDING, result="17"),  # 20
    line("e2", S.ERROR, final=True, error="FailedOperation.Something"),  # 21
    line("n3", S.PENDING),  # 22 no Result at all
    line("cut", S.PASSED, result="0", charge=1)[:40],  # 23 torn by a crash: no newline
]
NEWER_ORDER = ["p1", "f1", "p2", "n1", "f2", "f3", "p3", "x1", "i1", "e1", "n2", "e2", "n3"]

OLDER = [
    line("p1", S.PASSED, result="0", charge=1),  # unchanged
    line("p2", S.PENDING, result="-999", final=False),  # -> passed
    line("p3", S.ERROR, final=False, error="InternalError"),  # -> passed
    line("f2", S.FAILED, result="2015", charge=1),  # -> failed 1002: same status, new code
    line("n1", S.PENDING, result="-999"),  # unchanged (still pending)
    line("d1", S.PASSED, result="0", charge=1),  # dropped
    b'{"token": "torn", "sta',
]


def test_fixture_line_numbers_are_what_the_comments_say() -> None:
    assert len(NEWER) == 23
    assert NEWER[5] == b"\n"
    assert not NEWER[-1].endswith(b"\n")


# --- figures ----------------------------------------------------------------------------------


@pytest.fixture
def report() -> Report:
    return summarize(iter(NEWER), "newer.jsonl")


def test_token_and_line_counts(report: Report) -> None:
    assert report.source == "newer.jsonl"
    assert report.tokens == 13
    assert report.final == 9
    assert len(report.not_final) == 4
    assert report.lines.read == 22  # 23 lines, one blank
    assert report.lines.superseded == 3
    assert report.lines.unreadable == 6
    assert report.lines.unreadable_lines == (4, 8, 9, 13, 14)  # the first five only


def test_by_status_lists_all_six_in_spec_order(report: Report) -> None:
    assert list(report.by_status.items()) == [
        (S.PASSED, 3),
        (S.FAILED, 3),
        (S.PENDING, 3),
        (S.EXPIRED, 1),
        (S.INVALID_TOKEN, 1),
        (S.ERROR, 2),
    ]
    empty = summarize([line("a", S.PASSED, result="0")])
    assert empty.by_status == {
        S.PASSED: 1,
        S.FAILED: 0,
        S.PENDING: 0,
        S.EXPIRED: 0,
        S.INVALID_TOKEN: 0,
        S.ERROR: 0,
    }


def test_by_result_code_largest_first_with_meanings(report: Report) -> None:
    assert list(report.by_result.items()) == [
        ("0", 3),
        ("", 1),  # n3: pending without a Result
        ("-999", 1),
        ("1002", 1),
        ("17", 1),
        ("2015", 1),
        ("9999", 1),
    ]
    assert [meaning(code) for code in report.by_result] == [
        "passed",
        "not finished (no result yet)",
        "not finished",
        "suspected recording attack",
        "not finished",
        "comparison failed",
        "unknown code",
    ]


def test_charges_pass_rate_and_error_codes(report: Report) -> None:
    assert report.charge_count == 5  # 1+1+1+2, null and superseded lines add nothing
    assert report.pass_rate == 0.5  # 3 passed of 6 passed or failed
    assert report.error_codes == {
        "FailedOperation.Something": 1,
        "InternalError": 1,  # e1's last line; its earlier RequestLimitExceeded is superseded
        EXPIRED: 1,
        ILLEGAL: 1,
    }


def test_not_final_tokens_in_the_order_of_their_last_lines(report: Report) -> None:
    assert [(t, e.status, e.result, e.error_code) for t, e in report.not_final] == [
        ("n1", S.PENDING, "-999", None),
        ("e1", S.ERROR, None, "InternalError"),
        ("n2", S.PENDING, "17", None),
        ("n3", S.PENDING, None, None),
    ]


def test_pass_rate_is_none_without_passed_or_failed() -> None:
    only_pending = summarize([line("a", S.PENDING, result="-999")])
    assert only_pending.pass_rate is None
    assert "n/a" in render(only_pending)
    assert json.loads(render(only_pending, fmt="json"))["pass_rate"] is None


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("0", "passed"),
        ("1001", "liveness engine call failed"),
        ("1002", "suspected recording attack"),
        ("1004", "face detection failed"),
        ("1005", "liveness failed"),
        ("1201", "too dark/bright"),
        ("2004", "image size out of range"),
        ("2012", "several faces"),
        ("2013", "no or partial face"),
        ("2014", "quality too low"),
        ("2015", "comparison failed"),
        ("2016", "similarity under threshold"),
        ("2017", "face occluded"),
        ("-999", "not finished"),
        ("17", "not finished"),
        ("1003", "unknown code"),
        ("00", "unknown code"),
    ],
)
def test_code_meanings_follow_spec_1_4(code: str, text: str) -> None:
    assert meaning(code) == text


def test_meaning_table_has_no_code_beyond_spec() -> None:
    assert len(CODE_MEANINGS) == 16  # 13 documented, two pending defaults, "" for no Result


def test_streaming_and_index_agree_on_a_file_the_poller_wrote() -> None:
    assert summarize(iter(NEWER)) == summarize(load(iter(NEWER)))


def test_index_applies_last_line_wins_even_after_a_final_line() -> None:
    # Two outputs joined with cat: a final line followed by another line for the same token.
    joined = [line("a", S.FAILED, result="2015", charge=1), line("a", S.PASSED, result="0")]
    index = load(joined)
    assert index.entries["a"].status is S.PASSED
    assert index.lines.superseded == 1
    exact = summarize(index)
    assert exact.tokens == 1
    assert exact.by_status[S.PASSED] == 1
    assert exact.by_status[S.FAILED] == 0


def test_hostile_lines_are_unreadable_not_a_crash() -> None:
    lines = [
        b"[" * 100_000 + b"\n",  # deep nesting: RecursionError inside json
        b"\xff\xfe{}\n",  # not UTF-8
        b'{"token": "a", "status": ["passed"]}\n',  # unhashable status
        b'{"token": "", "status": "passed"}\n',  # empty token
        b"null\n",
    ]
    report = summarize(lines)
    assert report.tokens == 0
    assert report.lines.unreadable == 5
    assert report.lines.unreadable_lines == (1, 2, 3, 4, 5)


def test_odd_field_values_are_read_leniently() -> None:
    lines = [
        b'{"token": "a", "status": "error", "error": {"code": ["x"]}, "charge_count": true}\n',
        b'{"token": "b", "status": "failed", "result": 2015, "charge_count": 3}\n',
        b'{"token": "c", "status": "pending"}\n',  # no `final`: pending is not final
        b'{"token": "d", "status": "error", "error": "boom"}\n',  # no `final`: error is final
    ]
    entries = load(lines).entries
    assert entries["a"] == Entry(S.ERROR, True, None, 0, None)
    assert entries["b"] == Entry(S.FAILED, True, "2015", 3, None)
    assert entries["c"] == Entry(S.PENDING, False, None, 0, None)
    assert entries["d"] == Entry(S.ERROR, True, None, 0, None)
    assert summarize(lines).error_codes == {"(none)": 2}


def test_identical_entries_are_one_shared_tuple() -> None:
    entries = load([line(f"t{i}", S.PASSED, result="0", charge=1) for i in range(3)]).entries
    assert entries["t0"] is entries["t1"] is entries["t2"]


# --- diff -------------------------------------------------------------------------------------


@pytest.fixture
def changes() -> Diff:
    return diff(load(OLDER, "older.jsonl"), load(NEWER, "newer.jsonl"))


def test_diff_counts(changes: Diff) -> None:
    assert changes.older_source == "older.jsonl"
    assert changes.older_tokens == 6
    assert changes.newer_tokens == 13
    assert changes.in_both == 5
    assert changes.unchanged == 2  # p1, n1
    assert changes.older_lines.unreadable == 1
    assert changes.older_lines.unreadable_lines == (7,)


def test_diff_transitions_and_code_changes(changes: Diff) -> None:
    assert list(changes.transitions.items()) == [
        ((S.PENDING, S.PASSED), 1),
        ((S.ERROR, S.PASSED), 1),
    ]
    assert changes.code_changes == {(S.FAILED, "2015", "1002"): 1}
    assert [(c.token, c.old.code, c.new.code) for c in changes.changed] == [
        ("p2", "-999", "0"),
        ("f2", "2015", "1002"),
        ("p3", "InternalError", "0"),
    ]
    # Every token in both files is counted exactly once.
    counted = (
        changes.unchanged + sum(changes.transitions.values()) + sum(changes.code_changes.values())
    )
    assert counted == changes.in_both


def test_diff_new_and_dropped_tokens(changes: Diff) -> None:
    assert [t for t, _ in changes.only_in_newer] == [
        t for t in NEWER_ORDER if t not in {"p1", "p2", "p3", "f2", "n1"}
    ]
    assert changes.only_in_older == (TokenResult("d1", Entry(S.PASSED, True, "0", 1, None)),)


def test_diff_takes_lines_as_well_as_indexes() -> None:
    assert diff(OLDER, NEWER).changed == diff(load(OLDER), load(NEWER)).changed


# --- formats ----------------------------------------------------------------------------------


def test_json_parses_back_with_every_figure(report: Report, changes: Diff) -> None:
    data = json.loads(render(report, changes, "json"))
    assert data == json.loads(json.dumps(as_dict(report, changes)))
    assert data["tokens"] == {"total": 13, "final": 9, "not_final": 4}
    assert data["lines"] == {
        "read": 22,
        "superseded": 3,
        "unreadable": 6,
        "unreadable_lines": [4, 8, 9, 13, 14],
    }
    assert data["by_status"] == {
        "passed": 3,
        "failed": 3,
        "pending": 3,
        "expired": 1,
        "invalid_token": 1,
        "error": 2,
    }
    assert data["by_result"]["2015"] == {"meaning": "comparison failed", "tokens": 1}
    assert data["by_result"]["9999"] == {"meaning": "unknown code", "tokens": 1}
    assert data["charge_count"] == 5
    assert data["pass_rate"] == 0.5
    assert [t["token"] for t in data["not_final"]] == ["n1", "e1", "n2", "n3"]
    d = data["diff"]
    assert d["tokens"] == {
        "older": 6,
        "newer": 13,
        "in_both": 5,
        "unchanged": 2,
        "changed": 3,
        "only_in_newer": 8,
        "only_in_older": 1,
    }
    assert d["transitions"] == [
        {"from": "pending", "to": "passed", "tokens": 1},
        {"from": "error", "to": "passed", "tokens": 1},
    ]
    assert d["code_changes"] == [{"status": "failed", "from": "2015", "to": "1002", "tokens": 1}]
    assert d["changed"][2] == {
        "token": "p3",
        "old_status": "error",
        "old_code": "InternalError",
        "new_status": "passed",
        "new_code": "0",
    }
    assert [t["token"] for t in d["only_in_older"]] == ["d1"]


def test_json_keys_are_the_same_with_and_without_a_diff(report: Report) -> None:
    plain = json.loads(render(report, None, "json", limit=0))
    assert plain["diff"] is None
    assert list(plain) == list(as_dict(report, diff(OLDER, NEWER)))
    assert len(plain["not_final"]) == 4  # --limit does not cut json


def csv_rows(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(CSV_HEADER)
    assert all(len(row) == 4 for row in rows)
    return rows[1:]


def test_csv_parses_back_with_every_figure(report: Report, changes: Diff) -> None:
    rows = csv_rows(render(report, changes, "csv", limit=1))
    figures = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    assert figures["tokens", "total"] == ("13", "")
    assert figures["lines", "unreadable"] == ("6", "lines 4, 8, 9, 13, 14 and 1 more")
    assert [r[1:3] for r in rows if r[0] == "status"] == [
        ["passed", "3"],
        ["failed", "3"],
        ["pending", "3"],
        ["expired", "1"],
        ["invalid_token", "1"],
        ["error", "2"],
    ]
    assert figures["result", "1002"] == ("1", "suspected recording attack")
    assert figures["charges", "total"] == ("5", "")
    assert float(figures["pass_rate", "passed/(passed+failed)"][0]) == 0.5
    assert figures["error_code", EXPIRED] == ("1", "")
    # Lists are complete whatever --limit says: one row per token, the token as key.
    assert [r[1:] for r in rows if r[0] == "not_final"] == [
        ["n1", "pending", "-999"],
        ["e1", "error", "InternalError"],
        ["n2", "pending", "17"],
        ["n3", "pending", "-"],
    ]
    assert figures["transition", "pending->passed"] == ("1", "")
    assert figures["code_change", "2015->1002"] == ("1", "failed")
    assert figures["changed", "p3"] == ("error->passed", "InternalError->0")
    assert len([r for r in rows if r[0] == "new"]) == 8
    assert figures["dropped", "d1"] == ("passed", "0")
    assert figures["diff", "unchanged"] == ("2", "")


def md_tables(text: str) -> list[list[str]]:
    """Every markdown table row, split into cells on unescaped pipes."""
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        for row in text.splitlines()
        if row.startswith("|")
    ]


def test_markdown_tables_hold_the_figures(report: Report, changes: Diff) -> None:
    text = render(report, changes, "markdown", limit=2)
    rows = md_tables(text)
    assert ["tokens", "13", ""] in rows
    assert ["passed", "3"] in rows
    assert ["invalid_token", "1"] in rows
    assert ["2016", "1"] not in rows
    assert ["1002", "1", "suspected recording attack"] in rows
    assert ["pending", "passed", "1"] in rows
    assert ["failed", "2015", "1002", "1"] in rows
    assert ["p2", "pending", "-999", "passed", "0"] in rows
    assert ["n1", "pending", "-999"] in rows
    assert ["n2", "pending", "17"] not in rows  # beyond --limit 2
    assert "_... and 2 more (raise --limit to list them)_" in text
    assert "## Dropped (only in older): 1" in text


def figure(text: str, name: str) -> str:
    match = re.search(rf"^  {re.escape(name)} +(\S+)", text, re.MULTILINE)
    assert match, f"no {name!r} figure in:\n{text}"
    return match.group(1)


def test_text_report_is_aligned_and_complete(report: Report, changes: Diff) -> None:
    text = render(report, changes, "text", limit=1)
    assert figure(text, "tokens") == "13"
    assert figure(text, "superseded lines") == "3"
    assert figure(text, "unreadable lines") == "6"
    assert "lines 4, 8, 9, 13, 14 and 1 more" in text
    assert figure(text, "pass rate") == "50.0%"
    assert figure(text, "charges") == "5"
    assert figure(text, "invalid_token") == "1"
    assert re.search(r"^  1002 +1  suspected recording attack$", text, re.MULTILINE)
    assert re.search(r"^  pending -> passed +1$", text, re.MULTILINE)
    assert re.search(r"^  n1 +pending +-999$", text, re.MULTILINE)
    assert "e1" not in text.split("Not final: 4")[1].split("\n\n")[0]  # --limit 1
    assert "  ... and 3 more (raise --limit to list them)" in text
    # Status column lines up: every status figure ends in the same column.
    status_block = text.split("By status\n")[1].split("\n\n")[0].splitlines()
    assert len(status_block) == 6
    assert len({len(row) for row in status_block}) == 1


def test_text_limit_zero_lists_no_token_but_counts_them(report: Report) -> None:
    text = render(report, limit=0)
    assert "n1" not in text
    assert "  ... and 4 more" in text


def test_tokens_cannot_smuggle_control_characters_into_text_or_markdown() -> None:
    evil = "ev|l\x1b[31m"
    report = summarize([line(evil, S.PENDING, result="-999")])
    assert "\x1b" not in render(report, fmt="text")
    assert "ev|l\\x1b[31m" in render(report, fmt="text")
    assert ["ev\\|l\\\\x1b\\[31m", "pending", "-999"] in md_tables(render(report, fmt="markdown"))
    # Machine formats keep the token exactly.
    assert csv_rows(render(report, fmt="csv"))[-1][1] == evil
    assert json.loads(render(report, fmt="json"))["not_final"][0]["token"] == evil


def test_render_rejects_an_unknown_format_and_a_negative_limit(report: Report) -> None:
    with pytest.raises(ValueError, match="yaml"):
        render(report, fmt="yaml")
    with pytest.raises(ValueError, match="limit"):
        render(report, limit=-1)


def test_reprs_stay_short_whatever_the_size(report: Report, changes: Diff) -> None:
    assert repr(report) == "<Report source='newer.jsonl' tokens=13 not_final=4 unreadable=6>"
    assert repr(changes) == "<Diff against='older.jsonl' unchanged=2 changed=3 new=8 dropped=1>"
    assert isinstance(changes.changed[0], Change)


# --- the command ------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="poller report")
    configure_parser(parser)
    return parser.parse_args(argv)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    newer, older = tmp_path / "newer.jsonl", tmp_path / "older.jsonl"
    newer.write_bytes(b"".join(NEWER))
    older.write_bytes(b"".join(OLDER))
    return newer, older


def test_parser_defaults_and_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("r.jsonl")
    assert (args.results, args.format, args.against, args.output, args.limit) == (
        "r.jsonl",
        "text",
        None,
        "-",
        50,
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


def assert_one_sentence(err: str, *fragments: str) -> None:
    assert err.startswith("poller: error: ")
    assert err.endswith(".\n")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


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


# --- streaming --------------------------------------------------------------------------------


def synthetic(n: int, probe: list[int] | None = None) -> Iterator[bytes]:
    """n final lines, one token each; `probe` gets the live allocated-block count as it goes."""
    for i in range(n):
        if probe is not None and i % 50_000 == 1_000:
            probe.append(sys.getallocatedblocks())
        yield b'{"token":"t%d","status":"passed","charge_count":1}\n' % i
    if probe is not None:
        probe.append(sys.getallocatedblocks())


def test_summary_memory_does_not_grow_with_the_file() -> None:
    # 200k lines: count live allocations as the generator is consumed (tracemalloc over the
    # whole file would take seconds). Kept tokens would add >= 200k blocks; none may stay.
    probe: list[int] = []
    report = summarize(synthetic(200_000, probe))
    assert report.tokens == 200_000
    assert report.charge_count == 200_000
    assert len(probe) == 5
    assert max(probe) - probe[0] < 2_000, probe
    # The probe has teeth: an index of a tenth of the lines keeps every token.
    control: list[int] = []
    assert len(load(synthetic(20_000, control)).entries) == 20_000
    assert control[-1] - control[0] > 19_000


def test_summary_peak_memory_is_small() -> None:
    tracemalloc.start()
    try:
        summarize(synthetic(5_000))
        _, summary_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        index = load(synthetic(5_000))
        _, index_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(index.entries) == 5_000
    assert summary_peak < 64 * 1024, summary_peak
    assert index_peak > 256 * 1024, index_peak  # what keeping per-token data would cost
