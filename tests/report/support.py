"""Shared by the report tests: result lines as the poller writes them, the two fixture files
and readers for the four formats."""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from collections.abc import Iterator
from typing import Any

from poller.api.outcomes import Status
from poller.output.records import ErrorInfo, build_record, encode_record
from poller.report import (
    CSV_HEADER,
    configure_parser,
)
from tests.helpers import local_line

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


def at(token: str, status: Status, when: float, result: str = "0") -> bytes:
    """An API line (attempts 1) checked at `when`."""
    record = build_record(
        token=token,
        status=status,
        final=status is not S.PENDING,
        attempts=1,
        checked_at=when,
        response={"Result": result, "ChargeCount": 1},
    )
    return encode_record(record)


def local(token: str, when: float, *, too_old: bool = True) -> bytes:
    return local_line(token, when, too_old=too_old)


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


def csv_rows(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(CSV_HEADER)
    assert all(len(row) == 4 for row in rows)
    return rows[1:]


def md_tables(text: str) -> list[list[str]]:
    """Every markdown table row, split into cells on unescaped pipes."""
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        for row in text.splitlines()
        if row.startswith("|")
    ]


def figure(text: str, name: str) -> str:
    match = re.search(rf"^  {re.escape(name)} +(\S+)", text, re.MULTILINE)
    assert match, f"no {name!r} figure in:\n{text}"
    return match.group(1)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="poller report")
    configure_parser(parser)
    return parser.parse_args(argv)


def assert_one_sentence(err: str, *fragments: str) -> None:
    assert err.startswith("poller: error: ")
    assert err.endswith(".\n")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def synthetic(n: int, probe: list[int] | None = None) -> Iterator[bytes]:
    """n final lines, one token each; `probe` gets the live allocated-block count as it goes."""
    for i in range(n):
        if probe is not None and i % 50_000 == 1_000:
            probe.append(sys.getallocatedblocks())
        yield b'{"token":"t%d","status":"passed","charge_count":1}\n' % i
    if probe is not None:
        probe.append(sys.getallocatedblocks())
