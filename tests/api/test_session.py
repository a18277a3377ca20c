"""The run's HTTP session (poller/api/session.py): TLS verified unless the endpoint is http."""

from __future__ import annotations

from dataclasses import replace

import pytest

from poller.api import session as session_module
from poller.api.session import open_session
from tests.helpers import make_settings


@pytest.mark.parametrize(
    ("endpoint", "verified"),
    [
        ("https://faceid.intl.tencentcloudapi.com", True),
        ("HTTPS://127.0.0.1:8443", True),  # found in review: the raw text said "not https:"
        ("Https://127.0.0.1:8443", True),
        (" https://127.0.0.1:8443", True),
        ("http://127.0.0.1:8080", False),
        ("HTTP://127.0.0.1:8080", False),
    ],
)
async def test_tls_is_verified_for_every_spelling_of_https(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, verified: bool
) -> None:
    built: list[str] = []
    real = session_module.ssl_context

    def recording(settings: object) -> object:
        built.append(endpoint)
        return real(settings)  # type: ignore[arg-type]

    monkeypatch.setattr(session_module, "ssl_context", recording)
    async with open_session(replace(make_settings(), endpoint=endpoint)):
        pass
    assert bool(built) is verified
