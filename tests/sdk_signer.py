"""An independent TC3-HMAC-SHA256 expectation for tests: Tencent's official SDK signs, not us.

`poller.api.signing.sign` is what the client (and the simulator's verifier) use, so a test that
computes its expectation with it can only prove that the client calls it, not that the result is
right. Here the official SDK's own signing path (`tencentcloud-sdk-python-intl-en`, a dev
dependency) signs the exact bytes a request carried: its canonical request, string to sign and
key chain. `tests/test_client.py` pins this helper to the published vectors of SPEC §1.1.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tencentcloud.common import credential
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.faceid.v20180301 import faceid_client

# `_get_tc3_signature` reads only its arguments; the client is just where the SDK keeps it.
_SDK: Any = faceid_client.FaceidClient(credential.Credential("unused", "unused"), "ap-singapore")


def sdk_authorization(
    *,
    secret_id: str,
    secret_key: str,
    host: str,
    timestamp: int,
    payload: bytes,
    content_type: str = "application/json",
    service: str = "faceid",
) -> str:
    """The `Authorization` header the official SDK computes for these exact body bytes."""
    request = RequestInternal(
        host,
        "POST",
        "/",
        header={"Content-Type": content_type, "Host": host, "X-TC-Timestamp": str(timestamp)},
    )
    request.data = payload  # bytes: the SDK hashes them as they are
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))  # the UTC date, as the SDK takes it
    signature: str = _SDK._get_tc3_signature({}, request, date, service, secret_key)
    return (
        f"TC3-HMAC-SHA256 Credential={secret_id}/{date}/{service}/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )


def assert_sdk_signed(
    headers: Mapping[str, str], body: bytes, *, secret_id: str, secret_key: str
) -> None:
    """The request's Authorization is the SDK's for its own Host, X-TC-Timestamp and body."""
    expected = sdk_authorization(
        secret_id=secret_id,
        secret_key=secret_key,
        host=headers["Host"],
        timestamp=int(headers["X-TC-Timestamp"]),
        payload=body,
        content_type=headers["Content-Type"],
    )
    assert headers["Authorization"] == expected
