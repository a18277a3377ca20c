"""`outcome_of`: every kind of exchange → exactly one outcome (SPEC §1.4 and the table of §2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from poller.api.outcomes import (
    ClockSkew,
    Fatal,
    Fault,
    Outcome,
    Settled,
    Status,
    Throttled,
    Transient,
    UnknownCode,
    outcome_of,
    status_for_result,
)
from poller.api.reply import ApiError, Reply, TransportFault, parse_reply

PENDING_CODES = ("-999", "17")


def answer(body: dict[str, Any]) -> Reply:
    """A reply as the client parses it off the wire."""
    return parse_reply(200, json.dumps({"Response": body}).encode())


def error_reply(code: str, message: str = "msg", request_id: str = "req-1") -> Reply:
    return answer({"Error": {"Code": code, "Message": message}, "RequestId": request_id})


# -- API error codes: SPEC §2, row by row ------------------------------------------------------

FaultKind = type[Throttled] | type[Transient] | type[ClockSkew] | type[Fatal] | type[UnknownCode]

FAULT_ROWS: list[tuple[str, FaultKind]] = [
    ("RequestLimitExceeded", Throttled),
    ("RequestLimitExceeded.UinLimitExceeded", Throttled),
    ("RequestLimitExceeded.GlobalRegionUinLimitExceeded", Throttled),
    ("FailedOperation.RequestLimitExceeded", Throttled),
    ("InternalError", Transient),
    ("InternalError.ServerError", Transient),
    ("ServiceUnavailable", Transient),
    ("ResourceUnavailable", Transient),
    ("ResourceInsufficient", Transient),
    ("FailedOperation.UnKnown", Transient),
    ("AuthFailure.SignatureExpire", ClockSkew),
    ("AuthFailure.SignatureFailure", Fatal),
    ("AuthFailure.SecretIdNotFound", Fatal),
    ("AuthFailure.InvalidSecretId", Fatal),
    ("AuthFailure", Fatal),
    ("UnauthorizedOperation", Fatal),
    ("UnauthorizedOperation.Nonactivated", Fatal),
    ("OperationDenied", Fatal),
    ("InvalidAction", Fatal),
    ("NoSuchVersion", Fatal),
    ("UnsupportedRegion", Fatal),
    ("UnsupportedOperation", Fatal),
    ("IpInBlacklist", Fatal),
    ("IpNotInWhitelist", Fatal),
    ("FailedOperation.SomethingNew", UnknownCode),
    ("AuthFailureLookalike", UnknownCode),  # SPEC: `AuthFailure.*`, not any prefix
    ("LimitExceeded", UnknownCode),
    # Look-alikes must not ride on a prefix meant for another family.
    ("InternalErrorish", UnknownCode),
    ("RequestLimitExceededX", UnknownCode),
    ("InvalidParameterValue.Other", UnknownCode),
]


@pytest.mark.parametrize(("code", "kind"), FAULT_ROWS)
def test_an_error_code_becomes_its_fault_kind_with_code_message_and_request_id(
    code: str, kind: FaultKind
) -> None:
    outcome = outcome_of(error_reply(code, "what the API said", "req-42"), PENDING_CODES)
    assert type(outcome) is kind
    assert outcome == kind(code, "what the API said", "req-42")


TOKEN_ROWS: list[tuple[str, Status]] = [
    ("InvalidParameterValue.BizTokenExpired", Status.EXPIRED),
    ("InvalidParameterValue.BizTokenIllegal", Status.INVALID_TOKEN),
    ("FailedOperation.InvalidTokenParameter", Status.INVALID_TOKEN),
    ("InvalidParameter", Status.INVALID_TOKEN),
    ("InvalidParameterValue", Status.INVALID_TOKEN),
    ("ResourceNotFound", Status.INVALID_TOKEN),
]


@pytest.mark.parametrize(("code", "status"), TOKEN_ROWS)
def test_a_per_token_error_settles_the_token_for_good(code: str, status: Status) -> None:
    outcome = outcome_of(error_reply(code, "gone", "req-7"), PENDING_CODES)
    assert outcome == Settled(status, True, error=ApiError(code, "gone"), request_id="req-7")
    assert isinstance(outcome, Settled)
    assert not outcome.answered  # no verification result: the pacer and the alert hear nothing


# -- verification results: SPEC §1.4 -------------------------------------------------------------

RESULT_ROWS: list[tuple[dict[str, Any], Status, bool]] = [
    ({"Result": "0"}, Status.PASSED, True),
    ({"Result": "2015"}, Status.FAILED, True),
    ({"Result": "-999"}, Status.PENDING, False),
    ({"Result": ""}, Status.PENDING, False),
    ({}, Status.PENDING, False),
]


@pytest.mark.parametrize(("fields", "status", "final"), RESULT_ROWS)
def test_a_result_settles_with_the_response_unchanged(
    fields: dict[str, Any], status: Status, final: bool
) -> None:
    reply = answer({**fields, "Extra": "order-1", "RequestId": "req-9"})
    outcome = outcome_of(reply, PENDING_CODES)
    assert outcome == Settled(status, final, response=reply.response, request_id="req-9")
    assert isinstance(outcome, Settled)
    assert outcome.answered
    assert outcome.response is reply.response


def test_the_pending_codes_are_the_callers() -> None:
    outcome = outcome_of(answer({"Result": "5"}), ("5",))
    assert isinstance(outcome, Settled)
    assert (outcome.status, outcome.final) == (Status.PENDING, False)


# -- transport faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        TransportFault("Transport.Timeout", "no answer within 5 s"),
        TransportFault("Transport.HTTP502", "HTTP 502: '<html>'"),
        TransportFault("Transport.BadBody", "the body is not complete JSON (12 bytes)"),
        TransportFault("Transport.Connection", "ServerDisconnectedError: gone"),
    ],
)
def test_a_transport_fault_is_transient_without_a_request_id(fault: TransportFault) -> None:
    assert outcome_of(fault, PENDING_CODES) == Transient(fault.code, fault.message, None)


def test_every_kind_of_exchange_ends_in_exactly_one_outcome_kind() -> None:
    exchanges: list[Reply | TransportFault] = [
        answer({"Result": "0"}),
        *(error_reply(code) for code, _ in FAULT_ROWS),
        *(error_reply(code) for code, _ in TOKEN_ROWS),
        TransportFault("Transport.Timeout", "x"),
    ]
    kinds: set[type[Outcome]] = {type(outcome_of(e, PENDING_CODES)) for e in exchanges}
    assert kinds == {Settled, Throttled, Transient, ClockSkew, Fatal, UnknownCode}
    assert all(issubclass(k, Fault) for k in kinds - {Settled})


def test_outcomes_are_frozen_values() -> None:
    outcome = Throttled("RequestLimitExceeded", "slow down")
    with pytest.raises(AttributeError):
        outcome.code = "x"  # type: ignore[misc]
    assert not hasattr(outcome, "__dict__")  # slots: one per answer, kept small


# -- status_for_result -------------------------------------------------------------------------


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
    assert status_for_result(response, PENDING_CODES) is expected


def test_status_for_result_custom_pending_codes() -> None:
    assert status_for_result({"Result": "17"}, ("5",)) is Status.FAILED
    assert status_for_result({"Result": "5"}, ("5",)) is Status.PENDING
    assert status_for_result({"Result": "-999"}, ()) is Status.FAILED
    assert status_for_result({"Result": ""}, ()) is Status.PENDING  # empty is always pending
    assert status_for_result({"Result": "0"}, ("0",)) is Status.PASSED  # "0" always passes
