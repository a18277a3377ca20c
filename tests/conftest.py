"""Fixtures shared across test modules."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import SECRET_ID, SECRET_KEY
from tests.redis_server import RedisServer
from tests.s3_server import S3Bucket, S3Server
from tests.simulator_support import FakeClock


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test, created inside the test's loop (never at import)."""
    async with aiohttp.ClientSession() as client:
        yield client


class PollerLog(logging.Handler):
    """Keeps every record the "poller" logger emits."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def poller_log() -> Iterator[PollerLog]:
    """What the "poller" logger emits, whatever other tests configured on it."""
    logger = logging.getLogger("poller")
    handler = PollerLog()
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield handler
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def clock() -> FakeClock:
    """Wall-clock seconds that move only when the test says so."""
    return FakeClock()


@pytest.fixture
def user_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A user's shell: credentials in TENCENTCLOUD_*, no FACEID_POLLER_* settings, and a HOME
    with no ~/.tencentcloud profile. Returns the test's tmp_path."""
    for name in list(os.environ):
        if name.startswith(("TENCENTCLOUD_", "FACEID_POLLER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", SECRET_ID)
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session's shared-quota tests (emptied before each use)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server, emptied: each test starts with no schedule in it."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # a test that killed it leaves it for the next one to restart
    redis_server.flush()
    return redis_server.url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One real S3-compatible server (moto) for the session's object-store tests."""
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> S3Bucket:
    """A fresh, empty bucket on that server for each test."""
    return S3Bucket.create(s3_server)
