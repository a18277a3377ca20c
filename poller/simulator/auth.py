"""TC3-HMAC-SHA256 verification as the real gateway does it, pure and I/O-free.

The simulator recomputes the signature with the project's own signer (`poller.api.signing.sign`)
from the bytes it received, so a client that signs anything other than those exact bytes, Host
and Content-Type fails here exactly as it would against Tencent Cloud.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from poller.api.signing import ALGORITHM, SIGNED_HEADERS, sign, utc_date

from .config import MAX_SKEW_SECONDS, SERVICE

_AUTH_RE = re.compile(
    r"^TC3-HMAC-SHA256\s+Credential=(?P<id>[^/,\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/"
    r"(?P<service>[^/,\s]+)/tc3_request\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*"
    r"Signature=(?P<sig>[0-9a-fA-F]+)\s*$"
)


@dataclass(frozen=True, slots=True)
class AuthError:
    """One API error the gateway would answer with instead of running the action."""

    code: str
    message: str


def verify(
    *,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    credentials: Mapping[str, str],
    max_skew: float = MAX_SKEW_SECONDS,
) -> AuthError | None:
    """Check one request's signature; None means it is authentic and fresh.

    `headers` must be case-insensitive (aiohttp's CIMultiDict is). `now` is the server's wall
    clock in seconds, never offset: the skew check is about the caller's clock.
    """
    authorization = headers.get("Authorization", "")
    if not authorization:
        return AuthError("AuthFailure.InvalidAuthorization", "The Authorization header is missing.")
    match = _AUTH_RE.match(authorization.strip())
    if match is None:
        return AuthError(
            "AuthFailure.InvalidAuthorization",
            f"Authorization must look like `{ALGORITHM} Credential=<SecretId>/<date>/faceid/"
            "tc3_request, SignedHeaders=content-type;host, Signature=<hex>`.",
        )
    if match["signed"].lower() != SIGNED_HEADERS:
        return AuthError(
            "AuthFailure.InvalidAuthorization",
            f"SignedHeaders must be `{SIGNED_HEADERS}`, got `{match['signed']}`.",
        )
    raw_timestamp = headers.get("X-TC-Timestamp", "").strip()
    if not raw_timestamp.isdigit():
        return AuthError(
            "AuthFailure.InvalidAuthorization",
            "X-TC-Timestamp must be the request time in Unix seconds.",
        )
    timestamp = int(raw_timestamp)
    if abs(now - timestamp) > max_skew:
        return AuthError(
            "AuthFailure.SignatureExpire",
            f"Signature expired: the timestamp {timestamp} is more than {max_skew:.0f} s away "
            f"from the server time {int(now)}.",
        )
    secret_key = credentials.get(match["id"])
    if secret_key is None:
        return AuthError("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
    if match["service"] != SERVICE or match["date"] != utc_date(timestamp):
        return AuthError(
            "AuthFailure.SignatureFailure",
            "The credential scope must be `<UTC date of X-TC-Timestamp>/faceid/tc3_request`.",
        )
    expected = sign(
        secret_id=match["id"],
        secret_key=secret_key,
        service=SERVICE,
        host=headers.get("Host", ""),
        timestamp=timestamp,
        payload=body,
        content_type=headers.get("Content-Type", ""),
    )
    if not hmac.compare_digest(expected.signature, match["sig"].lower()):
        return AuthError(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature.",
        )
    return None
