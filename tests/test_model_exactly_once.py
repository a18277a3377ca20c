"""Issue 9's model-based end-to-end test: every token accounted for, whatever happens.

Each seed is one model run (see tests/model_support.py): the real `poller run` process, its input
through a random channel (a regular file, `-`, `/dev/stdin`, a FIFO, bash process substitution)
with stderr a terminal or a pipe, random duplicates and bad rows, the in-process simulator with
random faults, pending tokens, throttles and an unlisted error code, a random SIGINT, SIGTERM,
SIGKILL or double SIGINT at a random moment (or none), then reruns on the same output until one
ends with nothing left to do, then a run over the fixed export. Checked on every run: one line
per token and run (none for a token that only waited when the stop came); the requests the
simulator saw equal the sum of `attempts`; no request after a stop signal but those already on
the wire; across the runs exactly one final line per token, none final that is not, and each final
line agreeing with what the simulator decided.

A bounded number of seeds runs in `make test` (12, about 3-4 s each here). More, or one:
    FACEID_MODEL_RUNS=40 .venv/bin/python -m pytest tests/test_model_exactly_once.py
    FACEID_MODEL_FIRST=1000 FACEID_MODEL_RUNS=40 ...   (seeds 1000..1039)
    FACEID_MODEL_SEEDS=3,17,20-25 .venv/bin/python -m pytest tests/test_model_exactly_once.py
Every failure prints its seed, the scenario, each run, the violations by invariant and the
command that replays it (timing makes a replay likely, not certain, to fail the same way).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

from poller.input.tokens import BadEntry, read_tokens
from poller.simulator import SimulatorConfig, running_simulator
from tests.model_support import (
    ENV,
    MAX_RUNS,
    POLLER,
    RESULT_ACTION,
    Model,
    RunRecord,
    TokenInput,
    build_input,
    check,
    draw_scenario,
    report,
    signal_with_cut,
)

DEFAULT_RUNS = 12
RERUN_DEADLINE = 90.0  # seconds of reruns per seed at most, well inside the test's timeout


def _seeds() -> list[int]:
    chosen = os.environ.get("FACEID_MODEL_SEEDS", "").strip()
    if chosen:
        seeds: list[int] = []
        for part in chosen.split(","):
            low, _, high = part.strip().partition("-")
            seeds.extend(range(int(low), int(high or low) + 1))
        return seeds
    first = int(os.environ.get("FACEID_MODEL_FIRST", "0"))
    return list(range(first, first + int(os.environ.get("FACEID_MODEL_RUNS", DEFAULT_RUNS))))


def _replay_command(seed: int) -> str:
    return f"FACEID_MODEL_SEEDS={seed} .venv/bin/python -m pytest tests/test_model_exactly_once.py"


def _nothing_left(model: Model, run: RunRecord) -> bool:
    """The run ended on its own and left only what must stay unfinished (bad rows, tokens the
    simulator answers with an unlisted code): rerunning would change nothing."""
    if run.interrupted or run.timed_out or run.returncode not in (0, 1):
        return False
    first = run.input.first_rows()
    written = {line["token"] for line in run.lines}
    if any(t not in written and t not in run.final_before for t in first):
        return False
    for line in run.lines:
        if line.get("final") is True or line["token"] == "":
            continue
        row = first.get(line["token"])
        if row is not None and row.bad is not None:
            continue
        if model.sim.decision(line["token"]).status == "unknown_code":
            continue
        return False
    return True


@pytest.mark.timeout(200)
@pytest.mark.parametrize("seed", _seeds(), ids=lambda seed: f"seed={seed}")
async def test_every_token_is_accounted_for(seed: int, tmp_path: Path) -> None:
    scenario = draw_scenario(seed)
    async with running_simulator(scenario.sim) as sim:
        rng = random.Random(f"input:{seed}")
        data = build_input(scenario, sim.mint(scenario.minted), rng)
        model = Model(scenario, sim, tmp_path)
        started = time.monotonic()
        for index in range(MAX_RUNS):
            stop = scenario.stops[index] if index < len(scenario.stops) else None
            run = await model.run(index, data, stop)
            # Done; or out of time (a hanging poller): the checks then say what is missing.
            if _nothing_left(model, run) or time.monotonic() - started > RERUN_DEADLINE:
                break
        if any(row.fixable for row in data.rows):
            # The export is fixed: rows the input decided are asked afresh (SPEC §2).
            await model.run(len(model.runs), data.fixed(rng), None)
        found = check(model)
    if found.items:
        pytest.fail(report(model, found, _replay_command(seed)), pytrace=False)


@pytest.mark.parametrize("seed", range(30))
def test_the_model_input_reads_as_the_model_expects(seed: int, tmp_path: Path) -> None:
    """The model's own assumptions, checked without a process: each rendered input reads back
    as the rows the model wrote, the bad ones bad and the good ones good."""
    scenario = draw_scenario(seed)
    rng = random.Random(seed)
    minted = [f"MINTED-{seed}-{i:03d}-{rng.getrandbits(40):010X}" for i in range(scenario.minted)]
    data = build_input(scenario, minted, rng)
    for version in (data, data.fixed(rng)):
        _assert_reads_back(version, tmp_path / f"in.{scenario.fmt}", rng)


def _assert_reads_back(data: TokenInput, path: Path, rng: random.Random) -> None:
    path.write_bytes(data.render(rng))
    items = list(read_tokens(str(path), data.fmt))  # type: ignore[arg-type]
    rows = list(data.rows)
    assert len(items) == len(rows)
    for item, row in zip(items, rows, strict=True):
        assert item.token == (row.token or ""), (item, row)
        assert isinstance(item, BadEntry) == (row.bad is not None), (item, row)
    assert data.tokenless == sum(1 for item in items if not item.token)


BREAKER_THRESHOLD = 50  # SPEC §2's default


async def test_an_unlisted_code_on_every_token_trips_the_breaker(tmp_path: Path) -> None:
    """SPEC §2's circuit breaker, end to end: when Tencent starts answering every token with a
    code the table does not know, the run stops like a fatal error (exit 3) after about
    `breaker_threshold` tokens, names the code and the count, and writes nothing final."""
    concurrency = 8
    config = SimulatorConfig(
        rate=80, pending_share=0.0, unknown_code_share=1.0, request_log_size=10_000, seed=9
    )
    async with running_simulator(config) as sim:
        tokens = sim.mint(150)
        path = tmp_path / "tokens.txt"
        path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
        out = tmp_path / "out.jsonl"
        argv = ["run", "--tokens", str(path), "--output", str(out), "--endpoint", sim.endpoint]
        argv += ["--rate", "80", "--concurrency", str(concurrency)]
        proc = await asyncio.create_subprocess_exec(
            *POLLER,
            *argv,
            env=ENV,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        requests = sum(1 for r in sim.request_log() if r.action == RESULT_ACTION)
    stderr = err.decode(errors="replace")
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    final = [line["token"] for line in lines if line["final"]]
    assert not final, f"{len(final)} lines written final for an unlisted code"
    assert {(line["status"], line["error"]["code"]) for line in lines} <= {
        ("error", config.unknown_code)
    }
    assert requests == sum(line["attempts"] for line in lines)
    assert proc.returncode == 3, f"exit {proc.returncode}; stderr: {stderr[-500:]}"
    # One sentence names the code and the count.
    count = re.compile(rf"\b{BREAKER_THRESHOLD}\b")
    assert any(config.unknown_code in line and count.search(line) for line in stderr.splitlines())
    # A systemic failure costs tens of requests, not the whole file.
    assert BREAKER_THRESHOLD <= requests <= BREAKER_THRESHOLD + concurrency


# A client of the simulator that stops sending the moment SIGINT arrives, or (with a number)
# sends that many more requests first: the control group for invariant 3's measurement.
_CLIENT = """
import http.client, json, signal, sys, time
from urllib.parse import urlsplit
from poller.api.signing import sign
from poller.simulator import DEMO_SECRET_ID, DEMO_SECRET_KEY
stopped = False
def on_signal(*_):
    global stopped
    stopped = True
signal.signal(signal.SIGINT, on_signal)
endpoint, extra = sys.argv[1], int(sys.argv[2])
host = urlsplit(endpoint).netloc
conn = http.client.HTTPConnection(host)
for i in range(100_000):
    if stopped:
        if extra == 0:
            break
        extra -= 1
    body = json.dumps({"SdkToken": f"t{i}"}).encode()
    ts = int(time.time())
    signed = sign(secret_id=DEMO_SECRET_ID, secret_key=DEMO_SECRET_KEY, service="faceid",
                  host=host, timestamp=ts, payload=body)
    conn.request("POST", "/", body=body, headers={
        "Authorization": signed.authorization, "Content-Type": "application/json",
        "Host": host, "X-TC-Action": "GetSdkVerificationResult", "X-TC-Version": "2018-03-01",
        "X-TC-Timestamp": str(ts), "X-TC-Region": "ap-singapore"})
    conn.getresponse().read()
    time.sleep(0.005)  # a paced client, as the poller is
"""


@pytest.mark.parametrize(("trial", "extra"), [(1, 0), (2, 0), (3, 0), (4, 3)])
async def test_the_stop_cut_counts_exactly_the_requests_sent_after_the_signal(
    tmp_path: Path, trial: int, extra: int
) -> None:
    """Invariant 3's measurement itself: a client that stops at once shows no request after the
    cut, and one that sends `extra` more shows exactly those."""
    script = tmp_path / "client.py"
    script.write_text(_CLIENT, encoding="utf-8")
    config = SimulatorConfig(any_token=True, rate=1000, latency_ms=4, request_log_size=10_000)
    async with running_simulator(config) as sim:
        model = Model(draw_scenario(0), sim, tmp_path)
        proc = await asyncio.create_subprocess_exec(
            POLLER[0], str(script), sim.endpoint, str(extra), env=ENV
        )
        try:
            target = random.Random(trial).randint(5, 40)
            for _ in range(2000):  # bounded: choosing the moment, at most 2000 polls of 5 ms
                if len(sim.request_log()) >= target or proc.returncode is not None:
                    break
                await asyncio.sleep(0.005)
            cut = await signal_with_cut(proc, signal.SIGINT, model)
            assert cut is not None
            await asyncio.wait_for(proc.wait(), 10)
            await model.drain()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        after = [r for r in sim.request_log() if r.seq >= cut[0]]
    assert len(after) == extra, [(r.seq, r.arrived - cut[1]) for r in after]
