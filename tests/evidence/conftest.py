"""What the evidence tests share: the archive's own download session, and a backoff that
does not wait (the retries' timing is tenacity's, tested there)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from poller.evidence.download import open_download_session


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = open_download_session(concurrency=4, timeout=5.0, tls=False)
    yield s
    await s.close()


async def no_sleep(_delay: float) -> None:
    return None
