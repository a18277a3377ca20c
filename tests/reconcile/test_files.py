"""`reconcile_files` over the fixture with every category: figures, and the mismatches file."""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

import pytest

from poller.reconcile import MISMATCH_HEADER, Category, Reconciliation, Vocabulary, reconcile_files
from poller.reconcile._files import ReconcileError, expand
from poller.reconcile._records import RecordsError
from poller.reconcile._vocabulary import parse_mapping
from tests.reconcile.support import S, local_line, result_line, write_fixture

C = Category
DAY1, DAY2 = 1_764_400_000, 1_764_400_000 + 86_400


@pytest.fixture
def fixture(tmp_path: Path) -> tuple[Path, Path, Path]:
    return write_fixture(tmp_path)


def test_every_category_of_the_fixture(fixture: tuple[Path, Path, Path]) -> None:
    ours, first, second = fixture
    rec = reconcile_files(str(ours), [str(first), str(second)])
    assert dict(rec.counts) == {
        C.PASSED_NOT_PASSED: 2,
        C.DISAGREE: 1,
        C.MISSING_IN_OURS: 1,
        C.MISSING_IN_RESULTS: 1,
        C.NOT_FINAL: 1,
        C.AGREE: 4,
    }
    assert rec.tokens == 10
    t = rec.tally
    assert (rec.record_lines, t.records, t.duplicate_records) == (9, 8, 1)
    assert (rec.result_lines, t.result_tokens, t.superseded) == (12, 9, 2)
    assert (rec.unreadable, rec.unreadable_at) == (1, ((str(second), 6),))
    assert t.charges_by_day == {"2025-11-29": 4, "2025-11-30": 3}
    assert [m.token for m in t.samples[C.PASSED_NOT_PASSED]] == ["danger", "danger-expired"]
    assert rec.exit_status() == 1


def test_the_mismatches_file(fixture: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ours, first, second = fixture
    out = tmp_path / "mismatches.csv"
    reconcile_files(str(ours), [str(first), str(second)], mismatches=str(out))
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600  # it names tokens
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == MISMATCH_HEADER
    first_name, second_name = str(first), str(second)
    assert rows[1:] == [
        ["danger", "passed_not_passed", "passed", "failed", "1005", "true",
         "2025-11-29T07:06:40Z", "approved", "3", first_name, "2"],
        ["danger-expired", "passed_not_passed", "passed", "expired",
         "InvalidParameterValue.BizTokenExpired", "true", "2025-11-29T07:06:40Z", "accepted",
         "4", second_name, "3"],
        ["other", "disagree", "failed", "passed", "0", "true", "2025-11-29T07:06:40Z",
         "rejected", "5", first_name, "3"],
        ["extra", "missing_in_ours", "", "passed", "0", "true", "2025-11-30T07:06:40Z", "", "",
         first_name, "5"],
        ["gone", "missing_in_results", "passed", "", "", "", "", "approved", "6", "", ""],
        ["waiting", "not_final", "", "pending", "-999", "false", "2025-11-30T07:06:40Z", "",
         "", first_name, "6"],
    ]  # fmt: skip


def test_a_custom_vocabulary_changes_the_verdict(fixture: tuple[Path, Path, Path]) -> None:
    ours, first, second = fixture
    # Their "accepted" only means the documents were received: not a pass.
    vocabulary = Vocabulary().with_mappings([parse_mapping("accepted=expired")])
    rec = reconcile_files(str(ours), [str(first), str(second)], vocabulary=vocabulary)
    assert rec.counts[C.PASSED_NOT_PASSED] == 1
    assert rec.counts[C.AGREE] == 5


def test_all_agree_exits_0_and_not_final_only_on_request(tmp_path: Path) -> None:
    from tests.reconcile.support import S, result_line

    ours = tmp_path / "ours.jsonl"
    ours.write_text('{"token": "a", "status": "ok"}\n{"token": "b", "status": "pending"}\n')
    results = tmp_path / "r.jsonl"
    results.write_bytes(result_line("a", S.PASSED) + result_line("b", S.PENDING))
    rec: Reconciliation = reconcile_files(str(ours), [str(results)])
    assert (rec.counts[C.AGREE], rec.counts[C.NOT_FINAL]) == (1, 1)
    assert rec.exit_status() == 0
    assert rec.exit_status(fail_on_not_final=True) == 1


def test_a_later_local_line_never_overrides_tencents_answer(tmp_path: Path) -> None:
    ours = tmp_path / "ours.csv"
    ours.write_text("token,outcome\nasked,passed\nnever-asked,passed\nbad-row,passed\n")
    night1, night2 = tmp_path / "night1.jsonl", tmp_path / "night2.jsonl"
    night1.write_bytes(result_line("asked", S.PASSED, at=DAY1))
    # The next night reached the tokens after their 72 h, or found them malformed: no request.
    night2.write_bytes(
        local_line("asked", at=DAY2)
        + local_line("never-asked", at=DAY2)
        + local_line("bad-row", at=DAY2, too_old=False)
    )
    out = tmp_path / "m.csv"
    rec = reconcile_files(str(ours), [str(night1), str(night2)], mismatches=str(out))
    assert rec.counts[C.AGREE] == 1  # Tencent's passed from night 1 stands
    # Tencent never answered the other two: nothing to agree or disagree with, no alarm.
    assert rec.counts[C.NOT_FINAL] == 2
    assert rec.counts[C.PASSED_NOT_PASSED] == rec.counts[C.DISAGREE] == 0
    assert rec.exit_status() == 0
    with out.open(newline="", encoding="utf-8") as f:
        got = [[row[0], row[1], row[3], row[4]] for row in csv.reader(f)][1:]
    assert got == [
        ["bad-row", "not_final", "invalid_token", "InvalidInput"],
        ["never-asked", "not_final", "expired", "TokenTooOld"],
    ]
    # Whatever the order the files are named in.
    rec = reconcile_files(str(ours), [str(night2), str(night1)])
    assert (rec.counts[C.AGREE], rec.counts[C.NOT_FINAL]) == (1, 2)


def test_globs_expand_sorted_and_an_empty_glob_is_an_error(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.jsonl", "c.txt"):
        (tmp_path / name).write_text("")
    assert expand([str(tmp_path / "*.jsonl")]) == [
        str(tmp_path / "a.jsonl"),
        str(tmp_path / "b.jsonl"),
    ]
    with pytest.raises(ReconcileError, match=r"no results file matches '.*\*\.csv'\."):
        expand([str(tmp_path / "*.csv")])


def test_missing_files_and_writing_over_an_input_are_one_sentence(
    fixture: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ours, first, _ = fixture
    with pytest.raises(
        ReconcileError,
        match=r"^cannot read results file '.*nope.jsonl': no such file or directory\.$",
    ):
        reconcile_files(str(ours), [str(tmp_path / "nope.jsonl")])
    with pytest.raises(ReconcileError, match=r"^cannot read records file '.*nope.csv'"):
        reconcile_files(str(tmp_path / "nope.csv"), [str(first)])
    with pytest.raises(ReconcileError, match="refusing to write the mismatches over an input"):
        reconcile_files(str(ours), [str(first)], mismatches=str(first))


def test_the_scratch_directory_is_removed_even_after_an_error(
    fixture: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    ours, first, second = fixture
    reconcile_files(str(ours), [str(first), str(second)])
    bad = tmp_path / "bad.csv"
    bad.write_text("token,status\na,maybe\n")
    with pytest.raises(RecordsError, match="maybe"):
        reconcile_files(str(bad), [str(first)])
    assert list(scratch.iterdir()) == []


def test_a_mismatches_path_that_cannot_be_written_fails_before_the_work(
    fixture: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ours, first, _ = fixture
    target = tmp_path / "no-such-dir" / "m.csv"
    with pytest.raises(ReconcileError) as caught:
        reconcile_files(str(ours), [str(first)], mismatches=str(target))
    assert str(caught.value) == (
        f"cannot write the mismatches to {str(target)!r}: no such file or directory."
    )


def test_a_failed_run_leaves_the_previous_mismatches_file_untouched(
    fixture: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ours, first, second = fixture
    out = tmp_path / "m.csv"
    out.write_text("yesterday's mismatches\n")
    before = sorted(tmp_path.iterdir())
    bad = tmp_path / "bad.csv"
    bad.write_text("token,status\na,approved\nb,maybe\n")
    with pytest.raises(RecordsError, match="maybe"):
        reconcile_files(str(bad), [str(first)], mismatches=str(out))
    with pytest.raises(ReconcileError, match=r"nope\.jsonl"):
        reconcile_files(str(ours), [str(first), str(tmp_path / "nope.jsonl")], mismatches=str(out))
    assert out.read_text() == "yesterday's mismatches\n"
    assert sorted(tmp_path.iterdir()) == sorted([*before, bad])  # no temporary file left
    # Success replaces it, mode 0600 whatever the old file had, nothing left behind.
    out.chmod(0o644)
    reconcile_files(str(ours), [str(first), str(second)], mismatches=str(out))
    assert out.read_text().startswith(",".join(MISMATCH_HEADER) + "\n")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert sorted(tmp_path.iterdir()) == sorted([*before, bad])


def test_the_mismatches_file_is_written_through_a_symlink(
    fixture: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ours, first, second = fixture
    real = tmp_path / "reports" / "m.csv"
    real.parent.mkdir()
    link = tmp_path / "latest.csv"
    link.symlink_to(real)
    reconcile_files(str(ours), [str(first), str(second)], mismatches=str(link))
    assert link.is_symlink()
    assert real.read_text().startswith("token,category,")


def test_a_directory_as_the_mismatches_path_fails_before_the_work(
    fixture: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ours, first, _ = fixture
    with pytest.raises(ReconcileError, match=r"^cannot write the mismatches to .*: is a direct"):
        reconcile_files(str(ours), [str(first)], mismatches=str(tmp_path))


def test_the_mismatches_file_has_lf_line_ends_and_no_cell_starts_a_formula(
    tmp_path: Path,
) -> None:
    ours = tmp_path / "o.csv"
    ours.write_text('token,outcome\n=HYPERLINK("x"),passed\n@t,-999\nplain,approved\n+t,passed\n')
    results = tmp_path / "r.jsonl"
    results.write_bytes(
        result_line('=HYPERLINK("x")', S.FAILED, result="-999", final=True)
        + result_line("@t", S.PASSED)
        + result_line("plain", S.FAILED, result="=1+1")
        + result_line("-only-theirs", S.PASSED)
    )
    out = tmp_path / "m.csv"
    reconcile_files(
        str(ours),
        [str(results)],
        mismatches=str(out),
        vocabulary=Vocabulary().with_mappings([parse_mapping("-999=pending")]),
    )
    data = out.read_bytes()
    assert b"\r" not in data
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert [(r[0], r[4], r[7]) for r in rows[1:]] == [
        ('\'=HYPERLINK("x")', "-999", "passed"),  # a negative code stays a number
        ("plain", "'=1+1", "approved"),
        ("'@t", "0", "-999"),
        ("'-only-theirs", "0", ""),
        ("'+t", "", "passed"),
    ]


def test_a_hostile_token_in_the_mismatches_file_stays_one_csv_field(tmp_path: Path) -> None:
    ours = tmp_path / "o.jsonl"
    ours.write_text('{"token": "a,\\"b\\"\\nc", "status": "ok"}\n')
    results = tmp_path / "r.jsonl"
    results.write_text("")
    out = tmp_path / "m.csv"
    reconcile_files(str(ours), [str(results)], mismatches=str(out))
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert [row[:2] for row in rows[1:]] == [['a,"b"\nc', "missing_in_results"]]
