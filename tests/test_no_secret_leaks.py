"""The SecretKey and session token never appear in any stream or file, at any verbosity."""

from __future__ import annotations

import os
from pathlib import Path

from poller.simulator import DEMO_SECRET_ID, SimulatorConfig, running_simulator
from tests.e2e import run_poller

SECRET_KEY = "LeakCanarySecretKey0123456789abc"
SESSION_TOKEN = "LeakCanarySessionToken/with+chars=="


def _every_file(folder: Path) -> list[str]:
    return [p.read_text(errors="replace") for p in folder.iterdir() if p.is_file()]


async def test_max_verbosity_with_faults_never_shows_a_secret(tmp_path: Path) -> None:
    config = SimulatorConfig(
        secret_id=DEMO_SECRET_ID,
        secret_key=SECRET_KEY,
        any_token=True,
        rate=500,
        fault_rate=0.3,
        stall_seconds=0.5,
        pending_share=0.2,
        pending_seconds=0.2,
        seed=8,
    )
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(f"tok-{n:04d}\n" for n in range(80)) + "bad\x01\n")
    env = {
        **os.environ,
        "TENCENTCLOUD_SECRET_ID": DEMO_SECRET_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
        "TENCENTCLOUD_TOKEN": SESSION_TOKEN,
    }
    streams: list[str] = []
    async with running_simulator(config) as sim:
        for log_format in ("text", "json"):
            out = tmp_path / f"out-{log_format}.jsonl"
            code, stdout, stderr = await run_poller(
                *[
                    "run",
                    "--tokens",
                    str(tokens),
                    "--output",
                    str(out),
                    "--endpoint",
                    sim.endpoint,
                    "--rate",
                    "500",
                    "--timeout",
                    "0.2",
                    "--recheck-after",
                    "0.1",
                    "--metrics-file",
                    str(tmp_path / f"metrics-{log_format}.prom"),
                    "--log-format",
                    log_format,
                    "--progress-interval",
                    "0.2",
                    "-vv",
                ],
                env=env,
            )
            assert code in (0, 1), stderr
            assert "attempt" in stderr  # debug lines about faults were really logged
            streams += [stdout, stderr]
        # The dry run prints the credentials' source and secret id, never the key.
        code, stdout, stderr = await run_poller(
            *["run", "--tokens", str(tokens), "--endpoint", sim.endpoint, "--dry-run"], env=env
        )
        assert code == 0
        assert DEMO_SECRET_ID in stdout
        streams += [stdout, stderr]
        # A wrong key is a fatal error whose message must not echo what was sent.
        wrong = {**env, "TENCENTCLOUD_SECRET_KEY": SECRET_KEY[::-1]}
        code, stdout, stderr = await run_poller(
            *["run", "--tokens", str(tokens), "--endpoint", sim.endpoint, "-vv"], env=wrong
        )
        assert code == 3
        streams += [stdout, stderr]

    files = _every_file(tmp_path)
    assert len(files) >= 5
    for text in streams + files:
        for secret in (SECRET_KEY, SECRET_KEY[::-1], SESSION_TOKEN):
            assert secret not in text
