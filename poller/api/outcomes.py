"""The error classification table of SPEC §2, pure.

One table decides what the poller does with every API error code, so the engine never
string-matches codes itself and a new code is one row here plus one test row.
"""

from __future__ import annotations

from enum import Enum


class ErrorClass(Enum):
    THROTTLE = "throttle"  # back off, slow the pacer down, retry
    TRANSIENT = "transient"  # back off with jitter, retry within bounds
    CLOCK = "clock"  # re-sign with a fresh timestamp once; twice means the local clock is wrong
    EXPIRED = "expired"  # final for the token: older than the 72 h query window
    INVALID_TOKEN = "invalid_token"  # final for the token: the service does not know it
    FATAL = "fatal"  # stop the run: every other token would fail the same way
    OTHER = "other"  # final `error` for the token, the run goes on


# Exact codes first, then prefixes (a code "X.*" row matches "X" itself and "X.anything").
_EXACT: dict[str, ErrorClass] = {
    "RequestLimitExceeded": ErrorClass.THROTTLE,
    "FailedOperation.RequestLimitExceeded": ErrorClass.THROTTLE,
    "InternalError": ErrorClass.TRANSIENT,
    "ServiceUnavailable": ErrorClass.TRANSIENT,
    "ResourceUnavailable": ErrorClass.TRANSIENT,
    "ResourceInsufficient": ErrorClass.TRANSIENT,
    "FailedOperation.UnKnown": ErrorClass.TRANSIENT,
    "AuthFailure.SignatureExpire": ErrorClass.CLOCK,
    "InvalidParameterValue.BizTokenExpired": ErrorClass.EXPIRED,
    "InvalidParameterValue.BizTokenIllegal": ErrorClass.INVALID_TOKEN,
    "FailedOperation.InvalidTokenParameter": ErrorClass.INVALID_TOKEN,
    "InvalidParameter": ErrorClass.INVALID_TOKEN,
    "InvalidParameterValue": ErrorClass.INVALID_TOKEN,
    "ResourceNotFound": ErrorClass.INVALID_TOKEN,
    "OperationDenied": ErrorClass.FATAL,
    "InvalidAction": ErrorClass.FATAL,
    "NoSuchVersion": ErrorClass.FATAL,
    "UnsupportedRegion": ErrorClass.FATAL,
    "UnsupportedOperation": ErrorClass.FATAL,
    "IpInBlacklist": ErrorClass.FATAL,
    "IpNotInWhitelist": ErrorClass.FATAL,
}

# Checked in order; the first prefix that matches wins.
_PREFIXES: tuple[tuple[str, ErrorClass], ...] = (
    ("RequestLimitExceeded.", ErrorClass.THROTTLE),
    ("InternalError.", ErrorClass.TRANSIENT),
    ("AuthFailure", ErrorClass.FATAL),  # every AuthFailure.* but SignatureExpire (exact above)
    ("UnauthorizedOperation", ErrorClass.FATAL),  # SPEC lists `UnauthorizedOperation*`
)


def classify(code: str) -> ErrorClass:
    """Map an API error code to what the poller does with it; unknown codes are `OTHER`."""
    exact = _EXACT.get(code)
    if exact is not None:
        return exact
    for prefix, klass in _PREFIXES:
        if code.startswith(prefix):
            return klass
    return ErrorClass.OTHER
