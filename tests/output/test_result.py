"""`Result` (poller/output/result.py): one output line as a typed, frozen object, and back.

`poll` yielding `Result`s is tests/test_api.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from poller.api.outcomes import Status
from poller.output.records import ErrorInfo, build_record, encode_record
from poller.output.result import LineFormatError, Result
from tests.helpers import ok

T = 1_767_225_600.0  # 2026-01-01T00:00:00Z


# -- round trips -------------------------------------------------------------------------------


def _lines() -> Iterator[dict[str, Any]]:
    """Lines as the engine writes them, read back the way a file is."""
    full = ok("0", Extra="ü", CompareResults=[{"Sim": 91.5}])["Response"]
    records = [
        build_record(token="p", status=Status.PASSED, final=True, attempts=2, checked_at=T,
                     response=full),
        build_record(token="w", status=Status.PENDING, final=False, attempts=1, checked_at=T,
                     response={"Result": "-999", "RequestId": "r"}),
        build_record(token="e", status=Status.ERROR, final=False, attempts=6, checked_at=T,
                     error=ErrorInfo("InternalError", "try later"), request_id="r2"),
        build_record(token="x", status=Status.INVALID_TOKEN, final=False, attempts=0,
                     checked_at=T, error=ErrorInfo("InvalidInput", "line 3: token is empty")),
    ]  # fmt: skip
    for record in records:
        yield json.loads(encode_record(record))


@pytest.mark.parametrize("line", list(_lines()), ids=lambda line: line["status"])
def test_a_result_round_trips_its_line(line: dict[str, Any]) -> None:
    result = Result.from_line(line)
    assert result.to_line() == line
    assert list(result.to_line()) == list(line)  # the file's key order
    assert result.status is Status(line["status"])
    assert result.checked_at == datetime(2026, 1, 1, tzinfo=UTC)
    if line["error"] is not None:
        assert result.error == ErrorInfo(line["error"]["code"], line["error"]["message"])


def test_a_result_is_frozen_and_hides_the_personal_data_from_its_repr() -> None:
    result = Result.from_line(next(_lines()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.final = False  # type: ignore[misc]
    assert result.response is not None
    assert "CompareResults" not in repr(result)
    assert hash(result) == hash(Result.from_line(next(_lines())))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"final": "yes"}, "final should be a boolean, not str"),
        ({"status": "done"}, "'done' is not a valid Status"),
        ({"attempts": True}, "attempts should be an integer, not bool"),
        ({"checked_at": "2026-01-01T00:00:00"}, "has no time zone"),
        ({"error": {"code": 1}}, "error should hold a code and a message"),
    ],
)
def test_a_malformed_line_is_a_poller_error(change: dict[str, Any], message: str) -> None:
    line = {**next(_lines()), **change}
    with pytest.raises(LineFormatError, match=re.escape(message)) as caught:
        Result.from_line(line)
    assert isinstance(caught.value, ValueError)


def test_a_line_without_a_key_names_it() -> None:
    line = next(_lines())
    del line["attempts"]
    with pytest.raises(LineFormatError, match="no attempts"):
        Result.from_line(line)


def test_keys_the_line_format_does_not_know_are_ignored() -> None:
    line = next(_lines())
    assert Result.from_line({**line, "added_in_v9": 1}) == Result.from_line(line)


def test_a_time_with_another_offset_is_read_as_the_same_instant_in_utc() -> None:
    line = {**next(_lines()), "checked_at": "2026-01-01T08:00:00+08:00"}
    result = Result.from_line(line)
    assert result.checked_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert result.checked_at.tzinfo is UTC
    assert result.to_line()["checked_at"] == "2026-01-01T00:00:00Z"


def test_a_response_that_is_not_an_object_is_a_line_format_error() -> None:
    line = {**next(_lines()), "response": ["Result", "0"]}
    with pytest.raises(LineFormatError, match="response should be an object, not list"):
        Result.from_line(line)
