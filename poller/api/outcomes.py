"""What one exchange with the API means for its token: decided once, here, pure (SPEC §1.4, §2).

`outcome_of` turns whatever came back from one request (a parsed `Reply`, or a
`TransportFault`) into one outcome value, and the engine only acts on it: it never looks at an
error code or a `Result` itself. The outcomes, and what the engine does with each:

- `Settled`: a verification result (passed / failed / pending) or a per-token error (expired,
  invalid_token). The engine writes the line; a pending token may be re-checked first.
- `Throttled`: `RequestLimitExceeded` and kin. Slow the run down, retry (own bound).
- `Transient`: a transient API error, or any transport fault. Back off, retry (bounded).
- `ClockSkew`: `AuthFailure.SignatureExpire`. Re-sign and send once more; twice is fatal.
- `Fatal`: every other `AuthFailure.*`, `UnauthorizedOperation*`, ... Stop the run (exit 3).
- `UnknownCode`: a code the table does not list. An `error` line, not final, not retried
  (the next run asks again); the circuit breaker counts them.

A new code is one row in the table below plus one test row.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from poller.api.reply import ApiError, Reply, TransportFault


class Status(StrEnum):
    """The `status` of an output line (SPEC §4)."""

    PASSED = "passed"
    FAILED = "failed"
    PENDING = "pending"
    EXPIRED = "expired"
    INVALID_TOKEN = "invalid_token"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Settled:
    """The token's answer for this run: a verification result, or a per-token error.

    `response` is the API's `Response` object for passed / failed / pending (None for an
    error); `error` is the API's error for expired / invalid_token (None for a result)."""

    status: Status
    final: bool
    response: dict[str, Any] | None = None
    error: ApiError | None = None
    request_id: str | None = None

    @property
    def answered(self) -> bool:
        """A verification result (passed, failed or pending): what "healthy" means for the
        pacer's recovery, the retry budget's refill and the staleness alert."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class Fault:
    """An answer that settles nothing by itself; its subclass says what to do about it.

    `request_id` is the API's (None for a transport fault): the token's line keeps it for
    support."""

    code: str
    message: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Throttled(Fault):
    """Over the account's quota: slow the whole run down, retry this token."""


@dataclass(frozen=True, slots=True)
class Transient(Fault):
    """A passing failure (an internal error, a timeout, a 502, a torn body): retry, bounded."""


@dataclass(frozen=True, slots=True)
class ClockSkew(Fault):
    """The server found the request's timestamp over 5 minutes off: re-sign and send once more."""


@dataclass(frozen=True, slots=True)
class Fatal(Fault):
    """Every other token would fail the same way (bad keys, no permission): stop the run."""


@dataclass(frozen=True, slots=True)
class UnknownCode(Fault):
    """A code the table does not know: `error`, not final, not retried within the run (the next
    run asks again); the circuit breaker counts these."""


Outcome = Settled | Throttled | Transient | ClockSkew | Fatal | UnknownCode
# The outcomes worth another attempt after a backoff (a clock skew is re-sent at once instead).
Retry = Throttled | Transient


# A row of the classification table (SPEC §2): a fault kind, or the status of a final line.
_Kind = type[Throttled] | type[Transient] | type[ClockSkew] | type[Fatal] | type[UnknownCode]
_Row = _Kind | Status

# Exact codes first, then prefixes (a code "X.*" row matches "X" itself and "X.anything").
_EXACT: Final[dict[str, _Row]] = {
    "RequestLimitExceeded": Throttled,
    "FailedOperation.RequestLimitExceeded": Throttled,
    "InternalError": Transient,
    "ServiceUnavailable": Transient,
    "ResourceUnavailable": Transient,
    "ResourceInsufficient": Transient,
    "FailedOperation.UnKnown": Transient,
    "AuthFailure.SignatureExpire": ClockSkew,
    "InvalidParameterValue.BizTokenExpired": Status.EXPIRED,
    "InvalidParameterValue.BizTokenIllegal": Status.INVALID_TOKEN,
    "FailedOperation.InvalidTokenParameter": Status.INVALID_TOKEN,
    "InvalidParameter": Status.INVALID_TOKEN,
    "InvalidParameterValue": Status.INVALID_TOKEN,
    "ResourceNotFound": Status.INVALID_TOKEN,
    "OperationDenied": Fatal,
    "InvalidAction": Fatal,
    "NoSuchVersion": Fatal,
    "UnsupportedRegion": Fatal,
    "UnsupportedOperation": Fatal,
    "IpInBlacklist": Fatal,
    "IpNotInWhitelist": Fatal,
    "AuthFailure": Fatal,  # SPEC lists `AuthFailure.*`: the code itself and its sub-codes
}

# Checked in order; the first prefix that matches wins.
_PREFIXES: Final[tuple[tuple[str, _Row], ...]] = (
    ("RequestLimitExceeded.", Throttled),
    ("InternalError.", Transient),
    ("AuthFailure.", Fatal),  # every AuthFailure.* but SignatureExpire (exact above)
    ("UnauthorizedOperation", Fatal),  # SPEC lists `UnauthorizedOperation*`
)


def outcome_of(exchange: Reply | TransportFault, pending_codes: Collection[str]) -> Outcome:
    """What one request's answer means for its token; the only place that decides it.

    A transport fault (no well-formed answer at all) is transient. A well-formed answer is a
    verification result (its status from `Result`), or an API error looked up in the table;
    `pending_codes` are the `Result` codes that mean "not finished yet" (a setting)."""
    if isinstance(exchange, TransportFault):
        return Transient(exchange.code, exchange.message)
    error = exchange.error
    if error is None:
        status = status_for_result(exchange.response, pending_codes)
        return Settled(
            status,
            status is not Status.PENDING,
            response=exchange.response,
            request_id=exchange.request_id,
        )
    row = _row(error.code)
    if isinstance(row, Status):
        return Settled(row, True, error=error, request_id=exchange.request_id)
    return row(error.code, error.message, exchange.request_id)


def is_throttle_code(code: str) -> bool:
    """`RequestLimitExceeded` and kin (SPEC §2): another caller of the account is over the
    quota. For callers that classify a code themselves (`SharedQuota.report`)."""
    return _row(code) is Throttled


def _row(code: str) -> _Row:
    exact = _EXACT.get(code)
    if exact is not None:
        return exact
    for prefix, row in _PREFIXES:
        if code.startswith(prefix):
            return row
    return UnknownCode


def status_for_result(response: Mapping[str, Any], pending_codes: Collection[str]) -> Status:
    """`"0"` passed; a pending code or an empty/missing Result means the user has not finished
    (SPEC §1.4: no "not finished" code is documented, so the set is configurable)."""
    result = response.get("Result")
    if result is None or result == "":
        return Status.PENDING
    code = result if isinstance(result, str) else json.dumps(result)
    if code == "0":
        return Status.PASSED
    if code in pending_codes:
        return Status.PENDING
    return Status.FAILED
