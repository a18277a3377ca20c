"""The four formats, parsed back."""

from __future__ import annotations

import json
import re

import pytest

from poller.report import (
    Change,
    Diff,
    Report,
    as_dict,
    diff,
    load,
    render,
    summarize,
)
from tests.report.support import EXPIRED, NEWER, OLDER, S, csv_rows, figure, line, md_tables


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
    assert [r[1] for r in csv_rows(render(report, fmt="csv")) if r[0] == "not_final"] == [evil]
    assert json.loads(render(report, fmt="json"))["not_final"][0]["token"] == evil


def test_csv_token_and_code_cells_cannot_start_a_spreadsheet_formula() -> None:
    older = load([line("=HYPERLINK(1)", S.PENDING, result="-999")], "older")
    newer_lines = [
        line("=HYPERLINK(1)", S.PASSED, result="0"),
        line("@SUM(A1)", S.PENDING, result="-999"),
        line("+t", S.FAILED, result="=1+1"),
        line("-t", S.ERROR, final=False, error="-cmd"),
        line("-5", S.FAILED, result="2015"),  # a number as a token is left as it is too
    ]
    text = render(summarize(newer_lines), diff(older, load(newer_lines, "newer")), "csv")
    rows = csv_rows(text)
    keys = {(r[0], r[1]) for r in rows}
    assert {("not_final", "'@SUM(A1)"), ("not_final", "'-t"), ("new", "'+t"), ("new", "-5")} <= keys
    assert ("changed", "'=HYPERLINK(1)") in keys
    assert ("result", "'=1+1") in keys
    assert ("result", "-999") in keys
    assert ("error_code", "'-cmd") in keys
    changed = next(r for r in rows if r[0] == "changed")
    assert changed[3] == "'-999->0"  # "-999->0" would be a formula
    not_final = {r[1]: r[3] for r in rows if r[0] == "not_final"}
    assert not_final == {"'@SUM(A1)": "-999", "'-t": "'-cmd"}
    assert "\r" not in text


def test_render_rejects_an_unknown_format_and_a_negative_limit(report: Report) -> None:
    with pytest.raises(ValueError, match="yaml"):
        render(report, fmt="yaml")
    with pytest.raises(ValueError, match="limit"):
        render(report, limit=-1)


def test_reprs_stay_short_whatever_the_size(report: Report, changes: Diff) -> None:
    assert repr(report) == "<Report source='newer.jsonl' tokens=13 not_final=4 unreadable=6>"
    assert repr(changes) == "<Diff against='older.jsonl' unchanged=2 changed=3 new=8 dropped=1>"
    assert isinstance(changes.changed[0], Change)
