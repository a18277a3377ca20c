"""Reply parsing (poller/api/reply.py): well-formed answers, API errors, hostile bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from poller.api.reply import MAX_DEPTH, ApiError, Reply, TransportFault, _deeper_than, parse_reply
from tests.helpers import api_error, ok


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


# -- parse_reply ---------------------------------------------------------------------------------


def test_parse_success() -> None:
    body = ok("0", Unknown={"kept": [1, 2]})
    reply = parse_reply(200, dumps(body))
    assert reply == Reply(body["Response"], None)
    assert reply.request_id == "req-0"
    assert reply.response["Unknown"] == {"kept": [1, 2]}


def test_parse_api_error() -> None:
    reply = parse_reply(200, dumps(api_error("AuthFailure.SignatureExpire", "too old")))
    assert reply.error == ApiError("AuthFailure.SignatureExpire", "too old")
    assert reply.request_id == "req-err"


@pytest.mark.parametrize(
    ("message", "expected"),
    [(None, ""), (42, ""), ("", ""), ("text", "text")],
)
def test_parse_api_error_with_odd_message(message: object, expected: str) -> None:
    body = {"Response": {"Error": {"Code": "InternalError", "Message": message}}}
    reply = parse_reply(200, dumps(body))
    assert reply.error == ApiError("InternalError", expected)
    assert reply.request_id is None


def test_parse_api_error_without_message() -> None:
    reply = parse_reply(200, b'{"Response":{"Error":{"Code":"InternalError"}}}')
    assert reply.error == ApiError("InternalError", "")


def test_parse_null_error_is_success() -> None:
    reply = parse_reply(200, b'{"Response":{"Result":"0","Error":null}}')
    assert reply.error is None


def test_parse_request_id_of_wrong_type_is_none() -> None:
    assert parse_reply(200, b'{"Response":{"RequestId":7}}').request_id is None


def test_parse_utf8_bom_and_non_ascii() -> None:
    body = '\ufeff{"Response":{"Description":"陳大文"}}'.encode()
    assert parse_reply(200, body).response == {"Description": "陳大文"}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (502, b"<html><body>502 Bad Gateway</body></html>"),
        (503, b""),
        (404, b"not found"),
        (500, dumps(api_error("InternalError"))),  # an error body does not make a 500 an answer
        (302, b""),
        (201, dumps(ok())),
        (204, b""),
    ],
)
def test_parse_non_200_is_http_fault(status: int, body: bytes) -> None:
    with pytest.raises(TransportFault) as info:
        parse_reply(status, body)
    assert info.value.code == f"Transport.HTTP{status}"
    assert f"HTTP {status}" in info.value.message
    assert str(info.value).startswith(f"Transport.HTTP{status}: ")


def test_http_fault_message_is_a_short_single_line() -> None:
    body = b"<html>\n" + b"x" * 10_000 + b"\n</html>"
    with pytest.raises(TransportFault) as info:
        parse_reply(502, body)
    assert "\n" not in str(info.value)
    assert len(info.value.message) < 120


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(dumps(ok())[:-3], id="truncated"),
        pytest.param(b"", id="empty"),
        pytest.param(b"<html><body>gateway</body></html>", id="html"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"[1, 2]", id="array2"),
        pytest.param(b"42", id="number"),
        pytest.param(b'"Response"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"{}", id="no-response"),
        pytest.param(b'{"response": {}}', id="lowercase-response"),
        pytest.param(b'{"Response": null}', id="response-null"),
        pytest.param(b'{"Response": []}', id="response-array"),
        pytest.param(b'{"Response": "ok"}', id="response-string"),
        pytest.param(b'{"Response": {"Error": "boom"}}', id="error-string"),
        pytest.param(b'{"Response": {"Error": ["x"]}}', id="error-array"),
        pytest.param(b'{"Response": {"Error": 0}}', id="error-zero"),
        pytest.param(b'{"Response": {"Error": {}}}', id="error-empty"),
        pytest.param(b'{"Response": {"Error": {"Message": "m"}}}', id="error-no-code"),
        pytest.param(b'{"Response": {"Error": {"Code": ""}}}', id="error-empty-code"),
        pytest.param(b'{"Response": {"Error": {"Code": 4000}}}', id="error-int-code"),
        pytest.param(b'{"Response": {"Error": {"Code": null}}}', id="error-null-code"),
        pytest.param(b'{"Response": {"Result": NaN}}', id="nan"),
        pytest.param(b'{"Response": {"Sim": Infinity}}', id="infinity"),
        pytest.param(b'{"Response": {"Sim": -Infinity}}', id="minus-infinity"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(b'{"Response": {"Big": ' + b"9" * 5000 + b"}}", id="int-over-digit-limit"),
        pytest.param(b"[" * 100_000, id="deep-arrays"),
        # Parses (json.loads allows ~990 levels) but could not be written back out.
        pytest.param(b'{"Response": {"X": ' + b"[" * 900 + b"]" * 900 + b"}}", id="deep-parsable"),
        pytest.param(b'{"a":' * 100_000, id="deep-objects"),
        pytest.param(b'{"Response": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep-closed"),
    ],
)
def test_parse_bad_body(body: bytes) -> None:
    with pytest.raises(TransportFault) as info:
        parse_reply(200, body)
    assert info.value.code == "Transport.BadBody"


def _nested(depth: int) -> bytes:
    """A body nesting `depth` levels in all: the top object, Response, X, then lists."""
    lists = depth - 3
    return b'{"Response":{"X":{"Y":' + b"[" * lists + b"]" * lists + b"}}}"


@pytest.mark.parametrize(
    "depth",
    [
        pytest.param(MAX_DEPTH + 1, id="one-over-the-limit"),
        pytest.param(254, id="orjson-writes-at-most-254"),
        pytest.param(255, id="orjson-cannot-write"),
        pytest.param(1024, id="orjson-parses-at-most-1024"),
        pytest.param(1025, id="orjson-refuses-json-decides"),
        pytest.param(5000, id="past-the-recursion-limit"),
    ],
)
def test_parse_too_deep_is_bad_body(depth: int) -> None:
    with pytest.raises(TransportFault) as info:
        parse_reply(200, _nested(depth))
    assert info.value.code == "Transport.BadBody"


def test_parse_depth_limit_is_exact() -> None:
    assert parse_reply(200, _nested(MAX_DEPTH)).response["X"]["Y"] == _nest_lists(MAX_DEPTH - 3)
    with pytest.raises(TransportFault, match=f"nests over {MAX_DEPTH} levels"):
        parse_reply(200, _nested(MAX_DEPTH + 1))


def _nest_lists(count: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(count - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "limit", "deeper"),
    [
        (1, 0, False),  # a scalar nests no levels
        ([], 0, True),
        ([], 1, False),
        ({"a": [1, {"b": "c"}]}, 2, True),
        ({"a": [1, {"b": "c"}]}, 3, False),
        ([[], [[[]]], {}], 3, True),  # the deepest branch counts, wherever it is
        ([[], [[[]]], {}], 4, False),
    ],
)
def test_deeper_than(value: Any, limit: int, deeper: bool) -> None:
    assert _deeper_than(value, limit) is deeper


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"Response": {"Sim": 1e400}}', id="beyond-a-float"),
        pytest.param(b'{"Response": {"Sim": -1e400}}', id="beyond-a-float-negative"),
        pytest.param(b'{"Response": {"X": "\\ud800", "Sim": 1e400}}', id="surrogate-beyond"),
        pytest.param(b'{"Response": {"X": "\\ud800", "Sim": NaN}}', id="surrogate-nan"),
        pytest.param(b'\xef\xbb\xbf{"Response": {"Sim": Infinity}}', id="bom-infinity"),
    ],
)
def test_parse_non_finite_numbers_are_bad_body(body: bytes) -> None:
    # Neither could be written back out as JSON: json.dumps would write `Infinity`.
    with pytest.raises(TransportFault) as info:
        parse_reply(200, body)
    assert info.value.code == "Transport.BadBody"


def test_parse_keeps_lone_surrogates() -> None:
    # A settled answer with a broken character in a name is still a settled answer (orjson
    # would refuse the whole body).
    escaped = b'{"Response":{"Result":"0","Name":"a\\ud800b"}}'
    raw = b'{"Response":{"Result":"0","Name":"a\xed\xa0\x80b"}}'  # its UTF-8-like bytes
    for body in (escaped, raw):
        assert parse_reply(200, body).response == {"Result": "0", "Name": "a\ud800b"}


def test_parse_keeps_numbers_exact() -> None:
    # The response goes into the line unchanged (SPEC §4): an integer beyond 64 bits stays an
    # exact int (orjson would turn it into a float).
    body = b'{"Response":{"A":9223372036854775807,"B":-123456789012345678901234567890,"C":0.1}}'
    response = parse_reply(200, body).response
    assert response == {"A": 2**63 - 1, "B": -123456789012345678901234567890, "C": 0.1}
    assert type(response["B"]) is int
