"""Result lines (poller/output/records.py): building (SPEC §4) and encoding."""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from poller.api.outcomes import Status
from poller.api.reply import MAX_DEPTH
from poller.config.settings import Detail
from poller.output.records import (
    KEYS,
    LOCAL_EXPIRY_CODE,
    ErrorInfo,
    build_record,
    encode_record,
    is_local_line,
    rfc3339,
)
from tests.helpers import ok

SPEC_KEYS = [
    "token",
    "status",
    "final",
    "result",
    "description",
    "charge_count",
    "request_id",
    "error",
    "attempts",
    "checked_at",
    "response",
]
T = 1704067200.0  # 2024-01-01T00:00:00Z
TOKEN = "D2B55F0C-FB5D-4FB6-8765-3E931EBBFC79"


def full_response() -> dict[str, Any]:
    """A realistic Response with nested personal data and fields Tencent may add later."""
    response = ok(
        "0",
        CardVerifyResults=[
            {"IsPass": True, "NormalCardInfo": {"HKIDCard": {"CnName": "陳大文", "Birthday": "1"}}}
        ],
        CompareResults=[{"ErrorCode": "0", "Sim": 93.5, "BestFrame": {"Url": "https://x/y?s=1"}}],
        SomethingNew={"nested": [1, None, {"deep": "ok"}]},
    )["Response"]
    assert isinstance(response, dict)
    return response


# -- build_record --------------------------------------------------------------------------------


def test_key_order_matches_spec() -> None:
    assert list(KEYS) == SPEC_KEYS


@pytest.mark.parametrize("status", list(Status))
def test_every_status_has_exactly_the_spec_keys_in_order(status: Status) -> None:
    record = build_record(
        token=TOKEN,
        status=status,
        final=status is not Status.PENDING,
        attempts=2,
        checked_at=T,
        response=full_response(),
        error=ErrorInfo("Some.Code", "msg") if status is Status.ERROR else None,
    )
    assert list(record) == SPEC_KEYS
    assert record["token"] == TOKEN
    assert record["status"] == status.value
    assert record["attempts"] == 2
    assert record["checked_at"] == "2024-01-01T00:00:00Z"


@pytest.mark.parametrize("status", [Status.PASSED, Status.FAILED, Status.PENDING])
def test_response_kept_unchanged_for_answered_statuses(status: Status) -> None:
    response = full_response()
    before = copy.deepcopy(response)
    record = build_record(
        token=TOKEN, status=status, final=True, attempts=1, checked_at=T, response=response
    )
    assert record["response"] == before  # deep-equal, unknown fields included
    assert record["response"]["SomethingNew"] == {"nested": [1, None, {"deep": "ok"}]}
    assert response == before  # the caller's object is not modified
    assert record["result"] == "0"
    assert record["description"] == "success"
    assert record["charge_count"] == 1
    assert record["request_id"] == "req-0"
    assert record["error"] is None


@pytest.mark.parametrize("status", [Status.PASSED, Status.FAILED, Status.PENDING])
def test_summary_detail_drops_response_but_keeps_codes(status: Status) -> None:
    record = build_record(
        token=TOKEN,
        status=status,
        final=True,
        attempts=1,
        checked_at=T,
        response=full_response(),
        detail=Detail.SUMMARY,
    )
    assert record["response"] is None
    assert (record["result"], record["charge_count"], record["request_id"]) == ("0", 1, "req-0")
    assert "陳大文" not in encode_record(record).decode("utf-8")  # no personal data


@pytest.mark.parametrize("status", [Status.EXPIRED, Status.INVALID_TOKEN, Status.ERROR])
def test_response_is_null_for_other_statuses(status: Status) -> None:
    record = build_record(
        token=TOKEN,
        status=status,
        final=True,
        attempts=1,
        checked_at=T,
        response={"Error": {"Code": "X", "Message": "m"}, "RequestId": "r-1"},
        error=ErrorInfo("InvalidParameterValue.BizTokenExpired", "expired"),
    )
    assert record["response"] is None
    assert record["error"] == {
        "code": "InvalidParameterValue.BizTokenExpired",
        "message": "expired",
    }
    assert record["request_id"] == "r-1"


def test_error_record_without_response() -> None:
    record = build_record(
        token=TOKEN,
        status=Status.ERROR,
        final=False,
        attempts=6,
        checked_at=T,
        error=ErrorInfo("Transport.Timeout", "no answer within 10 s"),
        request_id="explicit",
    )
    assert record == {
        "token": TOKEN,
        "status": "error",
        "final": False,
        "result": None,
        "description": None,
        "charge_count": None,
        "request_id": "explicit",
        "error": {"code": "Transport.Timeout", "message": "no answer within 10 s"},
        "attempts": 6,
        "checked_at": "2024-01-01T00:00:00Z",
        "response": None,
    }


def test_explicit_request_id_wins_over_response() -> None:
    record = build_record(
        token=TOKEN,
        status=Status.PASSED,
        final=True,
        attempts=1,
        checked_at=T,
        response={"Result": "0", "RequestId": "from-response"},
        request_id="explicit",
    )
    assert record["request_id"] == "explicit"


@pytest.mark.parametrize(
    ("fields", "result", "description", "charge_count", "request_id"),
    [
        ({}, None, None, None, None),
        ({"Result": 0, "Description": None}, "0", None, None, None),
        ({"Result": -999}, "-999", None, None, None),
        ({"Result": 2015.5}, "2015.5", None, None, None),
        ({"Result": True}, "true", None, None, None),
        ({"Result": ["x"]}, '["x"]', None, None, None),
        ({"Description": {"a": "é"}}, None, '{"a": "\\u00e9"}', None, None),
        ({"ChargeCount": True}, None, None, None, None),
        ({"ChargeCount": False}, None, None, None, None),
        ({"ChargeCount": "3"}, None, None, None, None),
        ({"ChargeCount": 3.0}, None, None, None, None),
        ({"ChargeCount": None}, None, None, None, None),
        ({"ChargeCount": 0}, None, None, 0, None),
        ({"ChargeCount": 10**20}, None, None, 10**20, None),
        ({"RequestId": 42}, None, None, None, "42"),
        ({"RequestId": "abc"}, None, None, None, "abc"),
    ],
)
def test_field_extraction_with_odd_types(
    fields: dict[str, Any],
    result: str | None,
    description: str | None,
    charge_count: int | None,
    request_id: str | None,
) -> None:
    record = build_record(
        token=TOKEN, status=Status.FAILED, final=True, attempts=1, checked_at=T, response=fields
    )
    assert record["result"] == result
    assert record["description"] == description
    assert record["charge_count"] == charge_count
    assert record["request_id"] == request_id
    assert record["response"] == fields


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0.0, "1970-01-01T00:00:00Z"),
        (T, "2024-01-01T00:00:00Z"),
        (T - 0.5, "2023-12-31T23:59:59Z"),  # UTC, not local time; fraction dropped
        (1551113065.999, "2019-02-25T16:44:25Z"),
    ],
)
def test_checked_at_is_rfc3339_utc(ts: float, text: str) -> None:
    assert rfc3339(ts) == text
    record = build_record(token="t", status=Status.ERROR, final=True, attempts=0, checked_at=ts)
    assert record["checked_at"] == text


def test_checked_at_ignores_local_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Singapore")
    time.tzset()
    try:
        assert rfc3339(T) == "2024-01-01T00:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


# -- encode_record -------------------------------------------------------------------------------


def _record(response: dict[str, Any]) -> dict[str, Any]:
    return build_record(
        token=TOKEN, status=Status.PASSED, final=True, attempts=1, checked_at=T, response=response
    )


def test_encode_is_one_compact_utf8_line_that_round_trips() -> None:
    response = full_response()
    response["Extra"] = 'line one\nline two\r\tend \u2028 \u0000 "quoted" \\'
    record = _record(response)
    line = encode_record(record)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b"\r" not in line
    assert b", " not in line
    assert b'": ' not in line  # compact separators
    assert "陳大文".encode() in line  # non-ASCII kept as UTF-8, not \u-escaped
    assert json.loads(line.decode("utf-8")) == record
    assert list(json.loads(line)) == SPEC_KEYS


def test_encode_lone_surrogate_stays_valid_json() -> None:
    # The API's JSON may carry "\ud800"; json.loads turns it into a lone surrogate.
    response = json.loads('{"Result": "0", "Extra": "a\\ud800b", "Description": "陳"}')
    record = _record(response)
    line = encode_record(record)
    assert line.count(b"\n") == 1
    text = line.decode("utf-8")  # valid UTF-8
    assert json.loads(text) == record


def test_encode_is_what_the_standard_library_writes() -> None:
    # Byte for byte what json.dumps(ensure_ascii=False, compact) wrote before orjson: the resume
    # fast path and every reader of existing files see the same lines.
    text = "".join(map(chr, range(0x80))) + "\u2028\u2029\x7f é陳😀\ufeff"
    response = full_response()
    response["Extra"] = {text: [text, 0, -1, 2**63 - 1, 2**64 - 1, 0.5, 1.5e300, True, None]}
    record = build_record(
        token="tök\n\"en\\", status=Status.PASSED, final=True, attempts=3, checked_at=T,
        response=response,
    )  # fmt: skip
    expected = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    assert encode_record(record) == expected


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("\ud800", id="lone-high-surrogate"),
        pytest.param("a\udfffb", id="lone-low-surrogate"),
        pytest.param({"\ud83d": "key"}, id="surrogate-in-a-key"),
        pytest.param(2**64, id="int-beyond-64-bits"),
        pytest.param(-(10**40), id="int-far-beyond-64-bits"),
    ],
)
def test_encode_what_orjson_refuses_is_still_one_valid_line(extra: Any) -> None:
    record = _record({"Result": "0", "Description": "陳", "Extra": extra})
    line = encode_record(record)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert line.isascii()  # escaped: the only form a lone surrogate has in valid UTF-8 JSON
    assert b", " not in line
    assert json.loads(line.decode("utf-8")) == record
    assert list(json.loads(line)) == SPEC_KEYS


def test_encode_the_deepest_reply_accepted() -> None:
    # parse_reply accepts MAX_DEPTH levels; inside a record that is one more, well within
    # orjson's 254, so even the deepest reply takes the fast encoder.
    value: Any = "leaf"
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    record = _record({"Result": "0", "X": value})
    line = encode_record(record)
    assert line == orjson.dumps(record) + b"\n"
    assert json.loads(line) == record


def test_checked_at_is_the_whole_utc_second_whatever_the_cache_holds() -> None:
    # rfc3339 caches by whole second: any timestamp must still format as the uncached form.
    rng = random.Random(7)
    stamps = [0.0, 0.999, 1.0, -1.5, 1_764_547_199.999, 1_764_547_200.0, 253_402_300_799.0]
    stamps += [rng.uniform(0, 4e9) for _ in range(2000)]
    for ts in stamps:
        expected = datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
        assert rfc3339(ts) == expected.replace("+00:00", "Z"), ts


def test_is_local_line_is_a_line_written_without_a_request() -> None:
    local = build_record(
        token=TOKEN,
        status=Status.EXPIRED,
        final=True,
        attempts=0,
        checked_at=T,
        error=ErrorInfo(LOCAL_EXPIRY_CODE, "too old"),
    )
    asked = build_record(
        token=TOKEN, status=Status.PASSED, final=True, attempts=1, checked_at=T, response=ok()
    )
    assert is_local_line(local)
    assert is_local_line(json.loads(encode_record(local)))
    assert not is_local_line(asked)
    # Another writer's line without a usable count is taken as an API line.
    for attempts in (None, False, "0", 0.5):
        assert not is_local_line({**local, "attempts": attempts})
    assert not is_local_line({"token": TOKEN})
