"""Regressions found in review: each test is named for the failure it pins."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import certifi
import pytest
from aioresponses import aioresponses

from poller.api.client import FaceIdClient
from poller.cli import main
from poller.config.errors import ConfigError
from poller.config.settings import build_settings
from poller.input.tokens import InputError, InputItem, TokenEntry
from poller.output.sink import JsonlSink
from poller.pipeline.engine import Engine
from tests.helpers import URL, ScriptedServer, api_error, make_settings, ok


def test_output_to_dev_null_is_not_fsynced(tmp_path: Path) -> None:
    sink = JsonlSink("/dev/null", fsync_interval=0.0)
    sink.write({"token": "a"})
    sink.write({"token": "b"})
    sink.close()  # EINVAL from fsync used to crash here
    assert sink.lines_written == 2


@pytest.mark.parametrize("endpoint", ["https://[::1", "https://host]"])
def test_malformed_ipv6_endpoint_is_a_config_error(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="not a valid URL"):
        build_settings(
            config_path=None, flags={"endpoint": endpoint}, env={}, need_credentials=False
        )


def test_ca_bundle_without_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="no PEM certificate"):
        build_settings(
            config_path=None, flags={"ca_bundle": str(junk)}, env={}, need_credentials=False
        )
    settings, _ = build_settings(
        config_path=None, flags={"ca_bundle": certifi.where()}, env={}, need_credentials=False
    )
    assert settings.ca_bundle == certifi.where()


async def test_signature_expire_twice_is_fatal_even_with_one_attempt(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = make_settings(max_attempts=1)
    server = ScriptedServer({"t": [api_error("AuthFailure.SignatureExpire")]})
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    engine = Engine(settings, FaceIdClient(session, settings), sink)
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        stats = await engine.run(iter([TokenEntry("t", 1, None)]))
    sink.close()
    assert server.calls["t"] == 2  # re-signed once, rejected again: the clock is wrong
    assert stats.exit_status() == 3


class _FullDisk(JsonlSink):
    def write_lines(self, data: bytes, count: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_a_full_disk_stops_the_run_with_exit_4(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = make_settings()
    sink = _FullDisk(str(tmp_path / "out.jsonl"))
    engine = Engine(settings, FaceIdClient(session, settings), sink)
    with aioresponses() as mocked:
        mocked.post(URL, callback=ScriptedServer({"t": [ok()]}), repeat=True)
        stats = await engine.run(iter([TokenEntry("t", 1, None)]))
    sink.close()
    assert stats.exit_status() == 4
    assert stats.local_error is not None
    assert "No space left" in stats.local_error


async def test_input_breaking_off_mid_file_stops_the_run_with_exit_4(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    def items() -> Iterator[InputItem]:
        yield TokenEntry("t", 1, None)
        raise InputError("reading tokens.txt failed at line 2: Input/output error.")

    settings = make_settings()
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    engine = Engine(settings, FaceIdClient(session, settings), sink)
    with aioresponses() as mocked:
        mocked.post(URL, callback=ScriptedServer({"t": [ok()]}), repeat=True)
        stats = await engine.run(items())
    sink.close()
    assert stats.exit_status() == 4
    assert stats.local_error is not None
    assert "line 2" in stats.local_error


def test_bad_progress_interval_exits_2(user_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = user_env / "t.txt"
    tokens.write_text("a\n")
    assert main(["run", "--tokens", str(tokens), "--progress-interval", "0"]) == 2
    assert "--progress-interval" in capsys.readouterr().err
