"""Result lines as the poller writes them, and a fixture with a token in every category."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poller.api.outcomes import Status
from poller.output.records import ErrorInfo, build_record, encode_record
from tests.helpers import local_line as shared_local_line

S = Status
DAY1 = 1_764_400_000  # 2025-11-29T07:06:40Z
DAY2 = DAY1 + 86_400  # 2025-11-30


def result_line(
    token: str,
    status: Status,
    *,
    at: float = DAY1,
    result: str | None = None,
    charge: int = 1,
    final: bool | None = None,
    error: str | None = None,
) -> bytes:
    """One result line exactly as the poller's sink writes it."""
    response: dict[str, Any] | None = None
    if status in (S.PASSED, S.FAILED, S.PENDING):
        code = result or {S.PASSED: "0", S.FAILED: "2016", S.PENDING: "-999"}[status]
        response = {"Result": code, "ChargeCount": charge, "RequestId": "req-" + token}
    record = build_record(
        token=token,
        status=status,
        final=status is not S.PENDING if final is None else final,
        attempts=1,
        checked_at=at,
        response=response,
        error=None if error is None else ErrorInfo(error, "message for " + error),
    )
    return encode_record(record)


def local_line(token: str, *, at: float = DAY2, too_old: bool = True) -> bytes:
    return shared_local_line(token, at, too_old=too_old)


# Our records (CSV): the physical line numbers are in the comments.
OURS_CSV = """token,decision
agree-pass,approved
danger,approved
danger-expired,accepted
other,rejected
gone,approved
later,approved
agree-fail,2016
twice,approved
twice,rejected
"""
# line 2 .. line 10:      agree-pass=2 danger=3 danger-expired=4 other=5 gone=6 later=7
#                         agree-fail=8 twice=9, twice=10 (the last one counts)

# Two results files; `later` and `agree-pass` are superseded across and within files.
FIRST = [
    result_line("agree-pass", S.PENDING, at=DAY1),  # 1: superseded by SECOND line 1
    result_line("danger", S.FAILED, at=DAY1, result="1005"),  # 2
    result_line("other", S.PASSED, at=DAY1),  # 3
    result_line("later", S.PASSED, at=DAY2),  # 4: newer than SECOND line 2 by checked_at
    result_line("extra", S.PASSED, at=DAY2),  # 5: our records lack it
    result_line("waiting", S.PENDING, at=DAY2, charge=0),  # 6: not final, not in ours
]
SECOND = [
    result_line("agree-pass", S.PASSED, at=DAY2),  # 1
    result_line("later", S.FAILED, at=DAY1),  # 2: older by checked_at: loses to FIRST line 4
    result_line(
        "danger-expired", S.EXPIRED, at=DAY1, error="InvalidParameterValue.BizTokenExpired"
    ),  # 3
    result_line("agree-fail", S.FAILED, at=DAY1),  # 4
    result_line("twice", S.FAILED, at=DAY1),  # 5
    b'{"token": "torn", "sta',  # 6: a line cut off by a crash
]


def write_fixture(tmp: Path) -> tuple[Path, Path, Path]:
    ours = tmp / "ours.csv"
    ours.write_text(OURS_CSV, encoding="utf-8")
    first, second = tmp / "run-1.jsonl", tmp / "run-2.jsonl"
    first.write_bytes(b"".join(FIRST))
    second.write_bytes(b"".join(x if x.endswith(b"\n") else x + b"\n" for x in SECOND))
    return ours, first, second
