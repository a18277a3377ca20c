"""Result lines (poller/records.py): building (SPEC §4), encoding, and the JSON-lines sink."""

from __future__ import annotations

import copy
import errno
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from poller.api.client import MAX_DEPTH
from poller.config.settings import Detail
from poller.output.records import (
    KEYS,
    WRITE_PIECE,
    ErrorInfo,
    JsonlSink,
    Status,
    build_record,
    encode_record,
    rfc3339,
    status_for_result,
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


# -- status_for_result ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ({"Result": "0"}, Status.PASSED),
        ({"Result": 0}, Status.PASSED),
        ({"Result": "-999"}, Status.PENDING),
        ({"Result": -999}, Status.PENDING),
        ({"Result": "17"}, Status.PENDING),
        ({"Result": 17}, Status.PENDING),
        ({"Result": ""}, Status.PENDING),
        ({"Result": None}, Status.PENDING),
        ({}, Status.PENDING),
        ({"Result": "1001"}, Status.FAILED),
        ({"Result": "2015"}, Status.FAILED),
        ({"Result": "00"}, Status.FAILED),
        ({"Result": " 0"}, Status.FAILED),
        ({"Result": 0.0}, Status.FAILED),
        ({"Result": False}, Status.FAILED),
        ({"Result": "-1"}, Status.FAILED),
    ],
)
def test_status_for_result_default_codes(response: dict[str, Any], expected: Status) -> None:
    assert status_for_result(response, ("-999", "17")) is expected


def test_status_for_result_custom_pending_codes() -> None:
    assert status_for_result({"Result": "17"}, ("5",)) is Status.FAILED
    assert status_for_result({"Result": "5"}, ("5",)) is Status.PENDING
    assert status_for_result({"Result": "-999"}, ()) is Status.FAILED
    assert status_for_result({"Result": ""}, ()) is Status.PENDING  # empty is always pending
    assert status_for_result({"Result": "0"}, ("0",)) is Status.PASSED  # "0" always passes


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


# -- JsonlSink -----------------------------------------------------------------------------------


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _rec(token: str) -> dict[str, Any]:
    return build_record(token=token, status=Status.ERROR, final=True, attempts=1, checked_at=T)


@pytest.mark.usefixtures("permissive_umask")
def test_sink_creates_file_0600(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(str(path))
    try:
        sink.write(_rec("a"))
    finally:
        sink.close()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sink.lines_written == 1


@pytest.mark.usefixtures("permissive_umask")
def test_sink_appends_and_never_truncates(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    first = encode_record(_rec("old"))
    path.write_bytes(first)
    path.chmod(0o644)
    sink = JsonlSink(str(path))
    sink.write(_rec("new1"))
    sink.write(_rec("new2"))
    sink.close()
    data = path.read_bytes()
    assert data.startswith(first)
    assert [json.loads(line)["token"] for line in data.splitlines()] == ["old", "new1", "new2"]
    assert sink.lines_written == 2
    assert os.stat(path).st_mode & 0o777 == 0o644  # an existing file's mode is left alone


@pytest.mark.usefixtures("permissive_umask")
def test_sink_keeps_a_stricter_existing_mode(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(encode_record(_rec("old")))
    path.chmod(0o200)  # write-only: the sink cannot even look at the last byte
    sink = JsonlSink(str(path))
    sink.write(_rec("a"))
    sink.close()
    assert os.stat(path).st_mode & 0o777 == 0o200
    path.chmod(0o600)
    assert [json.loads(line)["token"] for line in path.read_bytes().splitlines()] == ["old", "a"]


def test_sink_ends_a_torn_last_line_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    whole = encode_record(_rec("done"))
    torn = encode_record(_rec("torn"))[:25]
    path.write_bytes(whole + torn)
    sink = JsonlSink(str(path))
    sink.write(_rec("after"))
    sink.close()
    lines = path.read_bytes().splitlines()
    assert lines[0] == whole.rstrip(b"\n")
    assert lines[1] == torn
    assert json.loads(lines[2])["token"] == "after"  # not glued to the torn fragment
    assert sink.lines_written == 1


def test_sink_lines_are_flushed_as_written(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(str(path))
    try:
        sink.write(_rec("a"))
        # Before close: a crash now must still leave the complete line on disk.
        assert json.loads(path.read_bytes())["token"] == "a"
        assert "lines_written=1" in repr(sink)
    finally:
        sink.close()


def test_sink_dash_writes_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    sink = JsonlSink("-")
    sink.write(_rec("a"))
    sink.write(_rec("b"))
    sink.close()
    out = capsysbinary.readouterr().out
    assert [json.loads(line)["token"] for line in out.splitlines()] == ["a", "b"]
    assert sink.lines_written == 2
    assert not os.path.exists("-")


class _Trickle(io.RawIOBase):
    """A file that takes at most 7 bytes a call, like a pipe write cut short by a signal."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        chunk = bytes(b[:7])
        self.data += chunk
        return len(chunk)


def test_sink_finishes_short_writes_so_lines_never_merge(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    trickle = _Trickle()
    real = sink._fh
    sink._fh = trickle  # type: ignore[assignment]
    try:
        sink.write(_rec("a"))
        sink.write_lines(encode_record(_rec("b")) + encode_record(_rec("c")), 2)
    finally:
        sink._fh = real
        sink.close()
    lines = bytes(trickle.data).splitlines()
    assert [json.loads(line)["token"] for line in lines] == ["a", "b", "c"]
    assert sink.lines_written == 3


class _FillsUp(io.RawIOBase):
    """A disk with room for `room` more bytes; then ENOSPC (after a short write)."""

    def __init__(self, room: int) -> None:
        self.data = bytearray()
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        left = self.room - len(self.data)
        if left <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        chunk = bytes(b[:left])
        self.data += chunk
        return len(chunk)


def test_sink_counts_the_lines_that_got_out_before_the_disk_filled(tmp_path: Path) -> None:
    lines = [encode_record(_rec(f"t{n}")) for n in range(3)]
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    disk = _FillsUp(len(lines[0]) + len(lines[1]) + 10)  # two whole lines and a torn third
    real = sink._fh
    sink._fh = disk  # type: ignore[assignment]
    try:
        with pytest.raises(OSError, match="No space"):
            sink.write_lines(b"".join(lines), 3)
    finally:
        sink._fh = real
        sink.close()
    assert sink.lines_written == 2  # not 0 (the batch failed) nor 3 (it was handed over)


def test_sink_writes_a_big_batch_in_pieces_cut_at_line_ends(tmp_path: Path) -> None:
    batch = b"".join(encode_record(_rec(f"tok-{n:06}")) for n in range(2000))  # ~400 KB
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    trickle = _Trickle()
    seen: list[int] = []
    real_write = trickle.write

    def spy(b: Any) -> int:
        seen.append(len(b))
        return real_write(b)

    trickle.write = spy  # type: ignore[method-assign]
    real = sink._fh
    sink._fh = trickle  # type: ignore[assignment]
    try:
        sink.write_lines(batch, 2000)
    finally:
        sink._fh = real
        sink.close()
    assert bytes(trickle.data) == batch
    assert sink.lines_written == 2000
    assert max(seen) <= WRITE_PIECE
