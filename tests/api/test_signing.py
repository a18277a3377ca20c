"""The signer against every published vector (SPEC §1.1 and shared/data/tc3_vectors.json)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from poller.api.signing import sign, utc_date

VECTORS_FILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tc3_vectors.json"
if not VECTORS_FILE.exists():  # a checkout outside the workplace keeps a copy beside the tests
    VECTORS_FILE = Path(__file__).parents[1] / "data" / "tc3_vectors.json"

EXAMPLE_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"
EXAMPLE_KEY = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"


def _vectors() -> list[dict[str, Any]]:
    data: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors


def test_tencent_published_cvm_example() -> None:
    body = (
        b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    )
    sig = sign(
        secret_id=EXAMPLE_ID,
        secret_key=EXAMPLE_KEY,
        service="cvm",
        host="cvm.tencentcloudapi.com",
        timestamp=1551113065,
        payload=body,
        content_type="application/json; charset=utf-8",
    )
    assert sig.canonical_request.endswith(
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    assert "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031" in sig.string_to_sign
    assert sig.signature == "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (
            "faceid.intl.tencentcloudapi.com",
            "70dee8f0b7446d118300399b2dcbec6e76afde5a735309b5e6e5c020d3b2d7ee",
        ),
        ("127.0.0.1:8080", "24a34962aa0aaf4c48545b5e870711dbfad28eb0bfbed947999465249be94990"),
    ],
)
def test_faceid_spec_examples(host: str, expected: str) -> None:
    body = b'{"SdkToken": "D2B55F0C-FB5D-4FB6-8765-3E931EBBFC79"}'
    sig = sign(
        secret_id=EXAMPLE_ID,
        secret_key=EXAMPLE_KEY,
        service="faceid",
        host=host,
        timestamp=1551113065,
        payload=body,
    )
    assert sig.canonical_request.endswith(
        "3286b95797a59837e37e60594626e4ce533182098c0a4bd45d12ca6028488fd7"
    )
    assert sig.signature == expected


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: str(v["name"]))
def test_sdk_vectors(vector: dict[str, Any]) -> None:
    inp, exp = vector["inputs"], vector["expected"]
    import base64

    payload = base64.b64decode(inp["payload_b64"])
    sig = sign(
        secret_id=inp["secret_id"],
        secret_key=inp["secret_key"],
        service=inp["service"],
        host=inp["host"],
        timestamp=inp["timestamp"],
        payload=payload,
        content_type=inp["content_type"],
    )
    assert utc_date(inp["timestamp"]) == exp["date"]
    assert sig.credential_scope == exp["credential_scope"]
    assert sig.canonical_request == exp["canonical_request"]
    assert sig.string_to_sign == exp["string_to_sign"]
    assert sig.signature == exp["signature"]
    assert sig.authorization == exp["authorization"]


def test_vectors_cover_the_cases_the_spec_names() -> None:
    names = {v["name"] for v in _vectors()}
    assert len(names) == 8
    assert {"temporary_credential_x_tc_token", "local_capture_host_with_port"} <= names


def test_the_scope_date_is_the_utc_date_across_midnights() -> None:
    # utc_date caches one string per UTC day: the second before and after midnight differ.
    for day in (0, 1, 20_423, 20_424):
        midnight = day * 86_400
        for ts in (midnight - 1, midnight, midnight + 86_399):
            assert utc_date(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d"), ts
