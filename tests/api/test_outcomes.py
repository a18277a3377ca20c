"""The classification table of SPEC §2, row by row."""

from __future__ import annotations

import pytest

from poller.api.outcomes import ErrorClass, classify

ROWS = [
    ("RequestLimitExceeded", ErrorClass.THROTTLE),
    ("RequestLimitExceeded.UinLimitExceeded", ErrorClass.THROTTLE),
    ("RequestLimitExceeded.GlobalRegionUinLimitExceeded", ErrorClass.THROTTLE),
    ("FailedOperation.RequestLimitExceeded", ErrorClass.THROTTLE),
    ("InternalError", ErrorClass.TRANSIENT),
    ("InternalError.ServerError", ErrorClass.TRANSIENT),
    ("ServiceUnavailable", ErrorClass.TRANSIENT),
    ("ResourceUnavailable", ErrorClass.TRANSIENT),
    ("ResourceInsufficient", ErrorClass.TRANSIENT),
    ("FailedOperation.UnKnown", ErrorClass.TRANSIENT),
    ("AuthFailure.SignatureExpire", ErrorClass.CLOCK),
    ("InvalidParameterValue.BizTokenExpired", ErrorClass.EXPIRED),
    ("InvalidParameterValue.BizTokenIllegal", ErrorClass.INVALID_TOKEN),
    ("FailedOperation.InvalidTokenParameter", ErrorClass.INVALID_TOKEN),
    ("InvalidParameter", ErrorClass.INVALID_TOKEN),
    ("InvalidParameterValue", ErrorClass.INVALID_TOKEN),
    ("ResourceNotFound", ErrorClass.INVALID_TOKEN),
    ("AuthFailure.SignatureFailure", ErrorClass.FATAL),
    ("AuthFailure.SecretIdNotFound", ErrorClass.FATAL),
    ("AuthFailure.InvalidSecretId", ErrorClass.FATAL),
    ("AuthFailure", ErrorClass.FATAL),
    ("UnauthorizedOperation", ErrorClass.FATAL),
    ("UnauthorizedOperation.Nonactivated", ErrorClass.FATAL),
    ("OperationDenied", ErrorClass.FATAL),
    ("InvalidAction", ErrorClass.FATAL),
    ("NoSuchVersion", ErrorClass.FATAL),
    ("UnsupportedRegion", ErrorClass.FATAL),
    ("UnsupportedOperation", ErrorClass.FATAL),
    ("IpInBlacklist", ErrorClass.FATAL),
    ("IpNotInWhitelist", ErrorClass.FATAL),
    ("FailedOperation.SomethingNew", ErrorClass.OTHER),
    ("LimitExceeded", ErrorClass.OTHER),
    ("", ErrorClass.OTHER),
    # Look-alikes must not ride on a prefix meant for another family.
    ("InternalErrorish", ErrorClass.OTHER),
    ("RequestLimitExceededX", ErrorClass.OTHER),
    ("InvalidParameterValue.Other", ErrorClass.OTHER),
]


@pytest.mark.parametrize(("code", "expected"), ROWS)
def test_classification_row(code: str, expected: ErrorClass) -> None:
    assert classify(code) is expected
