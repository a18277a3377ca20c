"""The `simulate` command: flags, credentials, the port file, signals and user errors."""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poller.api.signing import sign
from poller.simulator import DEMO_SECRET_ID, DEMO_SECRET_KEY, SimulatorConfig
from poller.simulator.__main__ import main
from poller.simulator.command import config_from_args, configure_parser

ENV_ID = "AKIDfromTheEnvironment000000000000"
ENV_KEY = "keyFromTheEnvironment"


def _subcommand_args(argv: list[str]) -> argparse.Namespace:
    """Parse the way the main CLI will: a `simulate` subparser configured by us."""
    parser = argparse.ArgumentParser(prog="poller")
    sub = parser.add_subparsers(dest="command", required=True)
    configure_parser(sub.add_parser("simulate"))
    return parser.parse_args(["simulate", *argv])


def test_the_flag_defaults_are_the_config_defaults() -> None:
    assert config_from_args(_subcommand_args([]), {}) == SimulatorConfig()


def test_every_flag_reaches_the_config() -> None:
    flags = (
        "--host 127.0.0.2 --port 8123 --seed 9 --rate 18.5 --pass-share 0.5 --pending-share 0.2 "
        "--pending-seconds 3 --token-ttl-seconds 60 --clock-offset 7 --any-token --no-auth "
        "--latency-ms 80 "
        "--pre-jitter-ms 20 --fault-rate 0.1 --faults reset,stall --stall-seconds 2"
    )
    args = _subcommand_args(flags.split(" "))
    config = config_from_args(args, {})
    assert config == SimulatorConfig(
        host="127.0.0.2",
        port=8123,
        seed=9,
        rate=18.5,
        pass_share=0.5,
        pending_share=0.2,
        pending_seconds=3,
        token_ttl_seconds=60,
        clock_offset=7,
        any_token=True,
        check_signatures=False,
        latency_ms=80,
        pre_jitter_ms=20,
        fault_rate=0.1,
        faults=("reset", "stall"),
        stall_seconds=2,
    )


def test_the_model_test_knobs_reach_the_config() -> None:
    flags = (
        "--unknown-code-share 0.25 --unknown-code FailedOperation.Brand.New "
        "--throttle-share 0.1 --request-log-size 500"
    )
    config = config_from_args(_subcommand_args(flags.split(" ")), {})
    assert config == SimulatorConfig(
        unknown_code_share=0.25,
        unknown_code="FailedOperation.Brand.New",
        throttle_share=0.1,
        request_log_size=500,
    )
    # Off by default: the simulator behaves as before unless asked.
    defaults = config_from_args(_subcommand_args([]), {})
    assert (defaults.unknown_code_share, defaults.throttle_share, defaults.request_log_size) == (
        0.0,
        0.0,
        0,
    )


def test_credentials_come_from_flags_then_environment_then_the_demo_pair() -> None:
    env = {"TENCENTCLOUD_SECRET_ID": ENV_ID, "TENCENTCLOUD_SECRET_KEY": ENV_KEY}
    from_env = config_from_args(_subcommand_args([]), env)
    assert (from_env.secret_id, from_env.secret_key) == (ENV_ID, ENV_KEY)
    flags = _subcommand_args(["--secret-id", "AKIDflag", "--secret-key", "flagkey"])
    from_flags = config_from_args(flags, env)
    assert (from_flags.secret_id, from_flags.secret_key) == ("AKIDflag", "flagkey")
    demo = config_from_args(_subcommand_args([]), {})
    assert (demo.secret_id, demo.secret_key) == (DEMO_SECRET_ID, DEMO_SECRET_KEY)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fault-rate", "2"], "fault-rate must be in 0..1"),
        (["--pending-share", "-0.1"], "pending-share must be in 0..1"),
        (["--rate", "0"], "rate must be a number >= 1"),
        (["--port", "70000"], "port must be 0..65535"),
        (["--secret-id", "AKIDonly"], "give both a secret id and a secret key"),
        (["--unknown-code-share", "2"], "unknown-code-share must be in 0..1"),
        (["--throttle-share", "-1"], "throttle-share must be in 0..1"),
        (["--request-log-size", "-5"], "request-log-size must be >= 0"),
        (["--media-ttl", "0"], "media-ttl must be a number > 0"),
        (["--media-scale", "-1"], "media-scale must be a number > 0"),
        (["--media-fault-rate", "1.5"], "media-fault-rate must be in 0..1"),
        (["--media-fail-first", "-1"], "media-fail-first must be >= 0"),
        (["--media-slow-seconds", "nan"], "media-slow-seconds must be >= 0"),
    ],
)
def test_bad_values_are_one_sentence_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


@pytest.mark.parametrize("argv", [["--faults", "bogus"], ["--rate", "fast"], ["--port", "x"]])
def test_unparsable_flags_exit_2_through_argparse(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_a_port_in_use_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"simulate: error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in err


def _start(
    port_file: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "poller.simulator", "--port", "0", "--port-file", str(port_file),
         *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    # Bounded wait for a subprocess to start listening: at most 10 s in 50 ms steps.
    for _ in range(200):
        if port_file.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    if not port_file.exists():
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the simulator did not start: {out!r} {err!r}")
    return proc


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _apply(port: int, secret_id: str, secret_key: str) -> dict[str, object]:
    host, body, ts = f"127.0.0.1:{port}", b"{}", int(time.time())
    signature = sign(
        secret_id=secret_id,
        secret_key=secret_key,
        service="faceid",
        host=host,
        timestamp=ts,
        payload=body,
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(
            "POST",
            "/",
            body=body,
            headers={
                "Authorization": signature.authorization,
                "Content-Type": "application/json",
                "Host": host,
                "X-TC-Action": "ApplySdkVerificationToken",
                "X-TC-Version": "2018-03-01",
                "X-TC-Timestamp": str(ts),
                "X-TC-Region": "ap-singapore",
            },
        )
        reply: dict[str, object] = json.loads(conn.getresponse().read())["Response"]
        return reply
    finally:
        conn.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_command_listens_writes_its_port_and_stops_cleanly(
    tmp_path: Path, signum: signal.Signals
) -> None:
    port_file = tmp_path / "sim.port"
    env = {"PATH": "/usr/bin:/bin", "TENCENTCLOUD_SECRET_ID": ENV_ID,
           "TENCENTCLOUD_SECRET_KEY": ENV_KEY}  # fmt: skip
    proc = _start(port_file, env=env)
    try:
        port = int(port_file.read_text(encoding="utf-8"))
        assert [p.name for p in tmp_path.iterdir()] == ["sim.port"]  # no temp file left
        assert "SdkToken" in _apply(port, ENV_ID, ENV_KEY)  # credentials from the environment
        refused = _apply(port, DEMO_SECRET_ID, DEMO_SECRET_KEY)
        assert refused["Error"] == {
            "Code": "AuthFailure.SecretIdNotFound",
            "Message": "The SecretId is not found.",
        }
        status, stats = _get(port, "/__stats")
        assert status == 200
        assert stats["tokens_minted"] == 1
        started = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert time.monotonic() - started < 5
    assert out.splitlines() == [f"listening on http://127.0.0.1:{port}"]
    assert "Traceback" not in err
    assert "simulator stopped: 2 requests" in err
