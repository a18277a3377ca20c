"""`poller run` as a user runs it: exit statuses, one-sentence errors, no tracebacks."""

from __future__ import annotations

import json
import os
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aioresponses import aioresponses

from poller import job
from poller.cli import main
from poller.config.settings import FIELD_NAMES, Settings
from poller.input.tokens import InputItem
from poller.pipeline.pacing import Pacer
from poller.pipeline.stats import RunStats
from tests.helpers import SECRET_KEY, URL, ScriptedServer, api_error, ok

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(user_env: Path) -> Path:
    return user_env


def _tokens(tmp_path: Path, *tokens: str) -> str:
    path = tmp_path / "tokens.txt"
    path.write_text("# nightly batch\n" + "\n".join(tokens) + "\n")
    return str(path)


def _assert_one_sentence(err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("poller: error: ")
    assert "Traceback" not in err


def test_fatal_error_exits_3_naming_the_code(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = ScriptedServer({"a": [api_error("AuthFailure.SecretIdNotFound", "no such id")]})
    out = env / "out.jsonl"
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        code = main(["run", "--tokens", _tokens(env, "a"), "--output", str(out), "-q"])
    assert code == 3
    err = capsys.readouterr().err
    assert "AuthFailure.SecretIdNotFound" in err
    assert SECRET_KEY not in err
    [line] = [json.loads(x) for x in out.read_text().splitlines()]  # the one request, accounted
    assert (line["status"], line["final"], line["error"]["code"]) == (
        "error",
        False,
        "AuthFailure.SecretIdNotFound",
    )


def test_successful_run_writes_0600_lines_and_a_summary(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ScriptedServer({"a": [ok()], "b": [ok("2016")]})
    out = env / "out.jsonl"
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        code = main(["run", "--tokens", _tokens(env, "a", "b"), "--output", str(out)])
    assert code == 0
    assert os.stat(out).st_mode & 0o777 == 0o600
    statuses = sorted(json.loads(line)["status"] for line in out.read_text().splitlines())
    assert statuses == ["failed", "passed"]
    err = capsys.readouterr().err
    assert "summary: 2 tokens" in err
    assert "passed 1, failed 1" in err
    assert "result codes 0:1 2016:1" in err


def test_output_to_stdout(env: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    server = ScriptedServer({"a": [ok()]})
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        code = main(["run", "--tokens", _tokens(env, "a"), "-q"])
    assert code == 0
    line = json.loads(capsysbinary.readouterr().out)
    assert line["token"] == "a"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--endpoint", "http://faceid.example.com"], "plain http://"),
        (["--endpoint", "ftp://127.0.0.1"], "https://"),
        (["--region", "mars-1"], "region"),
        (["--rate", "0"], "rate"),
        (["--concurrency", "0"], "concurrency"),
        (["--tokens", "/nonexistent/tokens.txt"], "/nonexistent/tokens.txt"),
        (["--config", "/nonexistent/poller.toml"], "/nonexistent/poller.toml"),
        (["--output", "/nonexistent-dir/out.jsonl"], "/nonexistent-dir/out.jsonl"),
    ],
)
def test_user_errors_exit_2_with_one_sentence(
    env: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    args = ["run", "--tokens", _tokens(env, "a"), "--output", str(env / "o.jsonl"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    _assert_one_sentence(err)
    assert needle in err


def test_swapped_tokens_and_output_leave_the_export_untouched(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found in review: the export given as --output got result lines appended, exit 0."""
    export = Path(_tokens(env, "sw-1", "sw-2"))
    before = export.read_bytes()
    results = env / "res.jsonl"
    results.write_text('{"token": "sw-1"}\n')
    assert main(["run", "--tokens", str(results), "--output", str(export)]) == 2
    err = capsys.readouterr().err
    _assert_one_sentence(err)
    assert "none is a result line" in err
    assert export.read_bytes() == before


def test_unknown_config_key_suggests_the_nearest(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = env / "poller.toml"
    config.write_text("rat = 10\n")
    assert main(["run", "--tokens", _tokens(env, "a"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    _assert_one_sentence(err)
    assert "did you mean 'rate'?" in err


def test_missing_credentials_exit_2(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TENCENTCLOUD_SECRET_ID")
    monkeypatch.delenv("TENCENTCLOUD_SECRET_KEY")
    assert main(["run", "--tokens", _tokens(env, "a")]) == 2
    err = capsys.readouterr().err
    _assert_one_sentence(err)
    assert "TENCENTCLOUD_SECRET_ID" in err


def test_help_explains_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--tokens", "--output", "--config", "--endpoint", "--region", "--rate"):
        assert flag in out
    for flag in ("--concurrency", "--max-attempts", "--timeout", "--verbose", "--quiet"):
        assert flag in out


def test_config_example_documents_every_key_with_its_default() -> None:
    text = (ROOT / "config.example.toml").read_text()
    example = tomllib.loads(text)
    defaults = Settings()
    assert set(example) == set(FIELD_NAMES)
    for key, value in example.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            assert tuple(value) == default, key
        else:
            assert value == default, key
    for secret_key in ("secret_id", "secret_key", "session_token"):
        assert f"# {secret_key} = " in text


def test_tls_verification_stays_on_and_a_ca_bundle_is_added() -> None:
    import ssl

    import certifi

    from poller.api.session import ssl_context
    from tests.helpers import make_settings

    default = ssl_context(make_settings())
    bundled = ssl_context(make_settings(ca_bundle=certifi.where()))
    for context in (default, bundled):
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname is True
    assert bundled.cert_store_stats()["x509_ca"] > default.cert_store_stats()["x509_ca"]


def test_console_script_and_module_entry_points() -> None:
    import subprocess
    import sys

    script = Path(sys.executable).with_name("poller")  # installed beside the interpreter
    for cmd in ([sys.executable, "-m", "poller", "--help"], [str(script), "--help"]):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert done.returncode == 0
        for command in ("run", "report", "simulate"):
            assert command in done.stdout


def test_proxy_comes_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from poller.api.session import proxy_for

    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    endpoint = "https://faceid.intl.tencentcloudapi.com"
    assert proxy_for(endpoint) == (None, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.corp.example:3128")
    proxy, auth = proxy_for(endpoint)
    assert str(proxy) == "http://proxy.corp.example:3128"
    assert auth is not None
    assert auth.login == "user"
    monkeypatch.setenv("NO_PROXY", "faceid.intl.tencentcloudapi.com")
    assert proxy_for(endpoint) == (None, None)


def test_report_and_simulate_are_reached_through_main(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "r.jsonl"
    results.write_text(
        '{"token":"a","status":"passed","final":true,"result":"0","description":"ok",'
        '"charge_count":1,"request_id":"r","error":null,"attempts":1,'
        '"checked_at":"2026-01-01T00:00:00Z","response":null}\n'
    )
    assert main(["report", str(results), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"]["total"] == 1
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--help"])
    assert exc.value.code == 0
    assert "--any-token" in capsys.readouterr().out


def _fifo_fed_with(path: Path, data: bytes) -> threading.Thread:
    os.mkfifo(path)

    def write() -> None:
        with open(path, "wb") as fifo:  # waits for the poller to open it, as a producer would
            fifo.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return writer


class _Ran:
    """What `poller run` handed to run_job, captured by a stand-in that reads every item."""

    def __init__(self) -> None:
        self.items: list[object] = []
        self.total: int | None = None
        self.counter_given = False


def _capture_run_job(monkeypatch: pytest.MonkeyPatch) -> _Ran:
    ran = _Ran()

    async def fake_run_job(
        settings: Settings, items: Iterator[InputItem], sink: object, **kwargs: Any
    ) -> SimpleNamespace:
        count = kwargs["count_entries"]
        ran.counter_given = count is not None
        ran.total = count() if count is not None else None
        ran.items = list(items)
        return SimpleNamespace(stats=RunStats(), pacer=Pacer(19.0))

    monkeypatch.setattr(job, "run_job", fake_run_job)  # the path `poller run` shares
    return ran


def test_the_bar_total_is_counted_for_a_regular_file(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _capture_run_job(monkeypatch)
    code = main(["run", "--tokens", _tokens(env, "a", "b", "c"), "--output", str(env / "o"), "-q"])
    assert code == 0
    assert ran.counter_given
    assert ran.total == 3
    assert len(ran.items) == 3


def test_a_fifo_gets_no_second_reader_and_every_token_reaches_the_run(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _capture_run_job(monkeypatch)
    # 120 KB: more than a pipe holds, so the producer is still writing when the run starts.
    tokens = [f"token-{i:05d}-{'x' * 28}" for i in range(3000)]
    fifo = env / "tokens"
    writer = _fifo_fed_with(fifo, ("\n".join(tokens) + "\n").encode())
    code = main(["run", "--tokens", str(fifo), "--output", str(env / "o"), "-q"])
    writer.join(timeout=10)
    assert code == 0
    assert not ran.counter_given  # counting would have opened the FIFO a second time
    assert [getattr(item, "token", None) for item in ran.items] == tokens


def test_dry_run_reads_a_fifo_once_and_counts_every_entry(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = env / "tokens"
    writer = _fifo_fed_with(fifo, b"".join(b"token-%05d\n" % i for i in range(2500)))
    code = main(["run", "--tokens", str(fifo), "--output", str(env / "o"), "--dry-run"])
    writer.join(timeout=10)
    assert code == 0
    text = capsys.readouterr().out
    assert f"input {fifo}: 2500 entries read" in text
    assert "to query" in text


def test_the_breaker_exits_3_in_one_sentence_naming_the_code_and_count(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = [f"t{n}" for n in range(20)]
    server = ScriptedServer({t: [api_error("FailedOperation.Brand.New", "??")] for t in tokens})
    out = env / "out.jsonl"
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        code = main(
            [
                "run",
                "--tokens",
                _tokens(env, *tokens),
                "--output",
                str(out),
                "-q",
                "--breaker-threshold",
                "3",
                "--concurrency",
                "1",
            ]
        )
    assert code == 3
    err = capsys.readouterr().err
    _assert_one_sentence(err)
    assert "circuit breaker" in err
    assert "3 tokens in a row" in err
    assert "FailedOperation.Brand.New" in err
    assert sum(server.calls.values()) == 3
    assert len(out.read_text().splitlines()) == 3


def test_an_empty_input_is_a_warning_not_silence(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = env / "empty.txt"
    empty.write_text("# nothing tonight\n")
    code = main(["run", "--tokens", str(empty), "--output", str(env / "out.jsonl")])
    assert code == 0  # an empty night is legal...
    assert "the input held no tokens" in capsys.readouterr().err  # ...but cron hears of it


def test_observability_settings_come_from_the_config_and_the_environment_too(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10, item 5: under cron a config file or the environment sets these, not flags."""
    metrics = env / "poller.prom"
    config = env / "poller.toml"
    config.write_text(f'metrics_file = "{metrics}"\nprogress_interval = 5.0\n')
    monkeypatch.setenv("FACEID_POLLER_LOG_FORMAT", "json")
    server = ScriptedServer({"a": [ok()]})
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        code = main(
            [
                "run",
                "--tokens",
                _tokens(env),  # no tokens: a warning, logged in the configured format
                "--output",
                str(env / "o.jsonl"),
                "--config",
                str(config),
                "-v",
            ]
        )
    assert code == 0
    assert "faceid_poller_exit_status 0.0" in metrics.read_text()
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line[:1] == "{"]
    assert any("the input held no tokens" in entry["message"] for entry in logged)


def test_a_bad_log_format_in_the_config_is_one_sentence(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = env / "poller.toml"
    config.write_text('log_format = "xml"\n')
    code = main(["run", "--tokens", _tokens(env, "a"), "--config", str(config)])
    assert code == 2
    _assert_one_sentence(capsys.readouterr().err)
