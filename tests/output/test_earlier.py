"""The earlier-runs index (poller/output/earlier.py): `--skip-final-in` files read into one set.

A token with a final line in any file counts; `pending` and `error` lines do not; a local
expiry (TokenTooOld) is kept apart; the files are never changed; a pattern that names nothing
is one sentence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from poller.output.earlier import EarlierResults, expand_patterns, load_earlier_results
from poller.output.records import LOCAL_EXPIRY_CODE
from poller.output.resume import ResumeError
from tests.output.support import write


def line(token: str, status: str, final: bool, **rest: Any) -> bytes:
    record = {"token": token, "status": status, "final": final, "attempts": 1, **rest}
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def too_old(token: str) -> bytes:
    return line(token, "expired", True, error={"code": LOCAL_EXPIRY_CODE, "message": "old"})


def test_a_final_line_in_any_file_counts_and_pending_or_error_lines_do_not(
    tmp_path: Path,
) -> None:
    one = write(
        tmp_path / "night-1.jsonl",
        line("passed", "passed", True),
        line("pending", "pending", False),
        line("error", "error", False),
        line("later", "pending", False),
    )
    two = write(
        tmp_path / "night-2.jsonl", line("later", "failed", True), line("new", "error", False)
    )
    earlier = load_earlier_results([str(one), str(two)])
    assert [t for t in ("passed", "later", "pending", "error", "new") if earlier.is_final(t)] == [
        "passed",
        "later",
    ]
    assert earlier.state.lines == 6
    assert "2 files, 6 lines: tokens final there 2, lines not final 4" in earlier.summary()


@pytest.mark.parametrize("slow", [False, True])
def test_a_later_pending_line_does_not_undo_a_final_one(tmp_path: Path, slow: bool) -> None:
    # SPEC §9: once final, final. Resume reads "last line wins"; this index "any final line".
    # `slow`: keys in another order, so the exact path (json.loads) reads the lines.
    def rec(token: str, status: str, final: bool) -> bytes:
        if not slow:
            return line(token, status, final)
        return json.dumps({"final": final, "status": status, "token": token}).encode() + b"\n"

    path = write(tmp_path / "a.jsonl", rec("t", "passed", True), rec("t", "pending", False))
    other = write(tmp_path / "b.jsonl", rec("t", "error", False))
    earlier = load_earlier_results([str(path), str(other)])
    assert earlier.is_final("t")
    assert earlier.state.fast_lines == (0 if slow else 3)


def test_a_local_expiry_is_kept_apart_from_final_answers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.jsonl",
        too_old("old"),
        too_old("answered"),
        line("answered", "passed", True),
        line(
            "api-expired", "expired", True, error={"code": "InvalidParameterValue.BizTokenExpired"}
        ),
    )
    earlier = load_earlier_results([str(path)])
    assert earlier.was_expired_locally("old")
    assert not earlier.is_final("old")
    assert earlier.is_final("answered")
    assert earlier.is_final("api-expired")  # Tencent said expired: settled for good
    assert not earlier.was_expired_locally("api-expired")


def test_a_torn_last_line_is_left_alone_and_not_counted(tmp_path: Path) -> None:
    data = line("a", "passed", True) + b'{"token":"b","status":"pas'
    path = write(tmp_path / "a.jsonl", data)
    earlier = load_earlier_results([str(path)])
    assert (earlier.is_final("a"), earlier.is_final("b"), earlier.torn_bytes) == (True, False, 26)
    assert path.read_bytes() == data
    assert not (tmp_path / "a.jsonl.torn").exists()
    assert "torn last lines left alone (26 bytes)" in earlier.summary()


def test_globs_expand_sorted_and_each_file_is_read_once(tmp_path: Path) -> None:
    for name in ("n-2.jsonl", "n-1.jsonl", "other.txt"):
        write(tmp_path / name, line(name, "passed", True))
    pattern = str(tmp_path / "n-*.jsonl")
    paths = expand_patterns([pattern, str(tmp_path / "n-1.jsonl"), pattern])
    assert paths == (str(tmp_path / "n-1.jsonl"), str(tmp_path / "n-2.jsonl"))
    earlier = load_earlier_results([pattern])
    assert earlier.is_final("n-2.jsonl")
    assert not earlier.is_final("other.txt")


def test_a_glob_that_matches_nothing_is_one_sentence(tmp_path: Path) -> None:
    pattern = str(tmp_path / "nights" / "*.jsonl")
    with pytest.raises(ResumeError) as caught:
        load_earlier_results([pattern])
    assert str(caught.value) == (
        f"--skip-final-in {pattern} matches no file; check the pattern, or leave it out to ask "
        "every token."
    )


def test_a_missing_file_or_a_directory_is_one_sentence(tmp_path: Path) -> None:
    missing = tmp_path / "night-0.jsonl"
    with pytest.raises(
        ResumeError, match=r"^cannot read the earlier results file .*night-0\.jsonl: "
    ):
        load_earlier_results([str(missing)])
    with pytest.raises(ResumeError, match=r"it is a directory\.$"):
        load_earlier_results([str(tmp_path)])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ResumeError, match=r"it is not a regular file\.$"):
        load_earlier_results([str(fifo)])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file regardless")
def test_an_unreadable_file_is_one_sentence(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", line("a", "passed", True))
    path.chmod(0)
    with pytest.raises(
        ResumeError, match=r"^cannot read the earlier results file .*: Permission denied\.$"
    ):
        load_earlier_results([str(path)])


def test_no_files_means_nothing_is_settled() -> None:
    earlier = load_earlier_results([])
    assert earlier == EarlierResults()
    assert not earlier.is_final("a")
