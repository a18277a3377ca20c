"""The four formats of the report, parsed back where they are machine formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from poller.reconcile import Category, Format, Reconciliation, reconcile_files, render
from tests.reconcile.support import write_fixture


@pytest.fixture
def rec(tmp_path: Path) -> Reconciliation:
    ours, first, second = write_fixture(tmp_path)
    return reconcile_files(str(ours), [str(first), str(second)], sample=1)


def test_json(rec: Reconciliation) -> None:
    data = json.loads(render(rec, Format.JSON, exit_status=1))
    assert list(data["categories"]) == [c.value for c in Category]
    assert data["categories"]["passed_not_passed"] == 2
    assert data["tokens"] == 10
    assert data["records"]["duplicates"] == 1
    assert data["results"]["superseded"] == 2
    assert data["results"]["unreadable_at"] == [{"file": rec.results_files[1], "line": 6}]
    (danger,) = data["examples"]["passed_not_passed"]  # sample=1
    assert danger["token"] == "danger"
    assert (danger["ours"], danger["ours_word"], danger["theirs"], danger["result"]) == (
        "passed", "approved", "failed", "1005",
    )  # fmt: skip
    assert data["charges_by_day"] == {"2025-11-29": 4, "2025-11-30": 3}
    assert data["exit_status"] == 1


def test_csv(rec: Reconciliation) -> None:
    rows = list(csv.reader(io.StringIO(render(rec, "csv", exit_status=1))))
    assert rows[0] == ["section", "key", "value", "detail"]
    categories = [r for r in rows if r[0] == "category"]
    assert [r[1] for r in categories] == [c.value for c in Category]
    assert categories[0][2] == "2"
    assert ["charges_by_day", "2025-11-30", "3", ""] in rows
    assert ["exit_status", "", "1", ""] in rows
    assert ["results", "superseded", "2", ""] in rows


def test_text_lists_the_dangerous_category_first_with_examples(rec: Reconciliation) -> None:
    text = render(rec, "text", exit_status=1)
    lines = text.splitlines()
    start = lines.index("categories:")
    assert lines[start + 1].split()[:2] == ["passed_not_passed", "2"]
    assert "passed_not_passed (the first 1 of 2):" in lines
    assert any(line.split()[:4] == ["danger", "passed", "failed", "1005"] for line in lines)
    assert "  2025-11-29  4" in lines
    assert lines[-1] == (
        "exit 1: 2 passed_not_passed, 1 disagree, 1 missing_in_ours, 1 missing_in_results, "
        "1 not_final"
    )


def test_markdown(rec: Reconciliation) -> None:
    text = render(rec, "markdown", exit_status=1)
    assert "| `passed_not_passed` | 2 | we recorded passed, Tencent says not passed |" in text
    assert "| danger | passed | failed | 1005 | 2025\\-11\\-29T07:06:40Z |" in text
    assert "## Charges per day (UTC)" in text
    assert text.rstrip().endswith("**")


def test_a_hostile_token_cannot_drive_the_terminal(tmp_path: Path) -> None:
    ours = tmp_path / "o.jsonl"
    ours.write_text('{"token": "a\\u001b[2Jb", "status": "ok"}\n')
    results = tmp_path / "r.jsonl"
    results.write_text("")
    rec = reconcile_files(str(ours), [str(results)])
    text = render(rec, "text", exit_status=1)
    assert "\x1b" not in text
    assert "a\\x1b[2Jb" in text
