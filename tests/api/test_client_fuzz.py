"""Property tests: whatever a server sends, parse_reply gives a Reply or a TransportFault, and
whatever a Reply holds, the output line built from it is one line of valid JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.api.outcomes import Status
from poller.api.reply import MAX_DEPTH, Reply, TransportFault, parse_reply
from poller.config.settings import Detail
from poller.output.records import build_record, encode_record

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text including lone surrogates: the API's JSON can carry "\ud800", which parses to one.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
        st.sampled_from('\n\r\t"\\\u2028\u0000{}[]'),
    ),
    max_size=12,
)
KEYS = st.one_of(
    TEXT, st.sampled_from(["Response", "Error", "Code", "Message", "RequestId", "Result"])
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=12,
)
ERROR_OBJECTS = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({}, optional={"Code": JSON_VALUES | TEXT, "Message": JSON_VALUES}),
)
RESPONSES = st.one_of(
    JSON_VALUES,
    st.dictionaries(KEYS, JSON_VALUES, max_size=6),
    st.dictionaries(KEYS, JSON_VALUES, max_size=6).flatmap(
        lambda d: ERROR_OBJECTS.map(lambda e: {**d, "Error": e})
    ),
)
DOCUMENTS = st.one_of(
    JSON_VALUES,
    RESPONSES.map(lambda r: {"Response": r}),
)


def _encode(doc: Any) -> bytes:
    return json.dumps(doc).encode("ascii")  # surrogates travel as \u escapes


BODIES = st.one_of(
    st.binary(max_size=300),
    DOCUMENTS.map(_encode),
    # Cut short, like a dropped connection.
    st.tuples(DOCUMENTS.map(_encode), st.integers(min_value=0)).map(
        lambda t: t[0][: t[1] % (len(t[0]) + 1)]
    ),
    # Real non-ASCII UTF-8, and a prefix of junk.
    DOCUMENTS.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.tuples(st.binary(max_size=4), DOCUMENTS.map(_encode)).map(lambda t: t[0] + t[1]),
)
STATUSES = st.one_of(st.just(200), st.integers(min_value=100, max_value=599), st.integers())


def _parse(status: int, body: bytes) -> Reply | None:
    fault: TransportFault | None = None
    try:
        reply = parse_reply(status, body)
    except TransportFault as exc:
        fault = exc
    if fault is not None:
        assert fault.code.startswith("Transport.")
        assert str(fault).startswith(fault.code + ": ")
        return None
    assert status == 200
    assert isinstance(reply, Reply)
    assert isinstance(reply.response, dict)
    if reply.error is not None:
        assert isinstance(reply.error.code, str)
        assert reply.error.code != ""
        assert isinstance(reply.error.message, str)
    assert reply.request_id is None or isinstance(reply.request_id, str)
    return reply


def _strict_loads(line: bytes) -> Any:
    def no_constants(name: str) -> Any:
        raise AssertionError(f"{name} in an output line")

    return json.loads(line.decode("utf-8"), parse_constant=no_constants)


def _check_line(response: dict[str, Any]) -> None:
    cases = [
        (Status.PASSED, Detail.FULL),  # response kept
        (Status.PENDING, Detail.SUMMARY),  # response dropped, codes kept
        (Status.ERROR, Detail.FULL),  # response dropped
    ]
    for status, detail in cases:
        record = build_record(
            token="tok",
            status=status,
            final=True,
            attempts=1,
            checked_at=1704067200.0,
            response=response,
            detail=detail,
        )
        line = encode_record(record)
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1
        assert b"\r" not in line
        assert _strict_loads(line) == record


@FUZZ
@given(status=STATUSES, body=BODIES)
def test_parse_reply_gives_a_reply_or_a_fault(status: int, body: bytes) -> None:
    reply = _parse(status, body)
    if reply is not None:
        _check_line(reply.response)


@FUZZ
@given(body=BODIES)
def test_parse_reply_with_200(body: bytes) -> None:
    reply = _parse(200, body)
    if reply is not None:
        _check_line(reply.response)


def _well_formed(response: Any) -> bool:
    if not isinstance(response, dict):
        return False
    error = response.get("Error")
    if error is None:
        return True
    return isinstance(error, dict) and isinstance(error.get("Code"), str) and error["Code"] != ""


@FUZZ
@given(response=RESPONSES)
def test_any_response_object(response: Any) -> None:
    reply = _parse(200, _encode({"Response": response}))
    assert (reply is not None) == _well_formed(response)
    if reply is not None:
        assert reply.response == response
        _check_line(reply.response)


@FUZZ
@given(error=ERROR_OBJECTS, rest=st.dictionaries(KEYS, JSON_VALUES, max_size=4))
def test_any_error_object(error: Any, rest: dict[str, Any]) -> None:
    response = {**rest, "Error": error}
    reply = _parse(200, _encode({"Response": response}))
    well_formed = error is None or (
        isinstance(error, dict) and isinstance(error.get("Code"), str) and error["Code"] != ""
    )
    assert (reply is not None) == well_formed
    if reply is not None and error is not None:
        assert reply.error is not None
        assert reply.error.code == error["Code"]


@FUZZ
@given(response=st.dictionaries(KEYS, JSON_VALUES, max_size=6))
def test_any_response_dict_makes_one_valid_line(response: dict[str, Any]) -> None:
    _check_line(response)


def _nested(depth: int) -> bytes:
    """A body nesting `depth` levels in all: the top object, Response, X, then lists."""
    lists = depth - 2
    return b'{"Response": {"X": ' + b"[" * lists + b"]" * lists + b"}}"


def test_deepest_accepted_body_still_encodes() -> None:
    # json.loads accepts ~990 levels, json.dumps one level deeper (inside a record) does not:
    # parse_reply refuses long before that, and whatever it accepts must encode.
    _check_line(parse_reply(200, _nested(MAX_DEPTH)).response)
    with pytest.raises(TransportFault) as info:
        parse_reply(200, _nested(MAX_DEPTH + 1))
    assert info.value.code == "Transport.BadBody"
    assert str(MAX_DEPTH) in info.value.message
