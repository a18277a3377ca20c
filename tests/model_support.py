"""The machinery of the model-based end-to-end test (tests/test_model_exactly_once.py).

One *model run* (one seed) draws a scenario, mints tokens in an in-process simulator, writes an
input with duplicates and bad rows, and runs the real `poller run` process over it again and
again on one output file: the first runs perhaps interrupted by a signal, then reruns until one
ends on its own with nothing left to do, then (when the input had fixable rows) one run over the
fixed export. Each run is recorded (`RunRecord`: its lines, the requests the simulator saw in its
time, the moment a stop signal was delivered); `check` holds the records against the contract of
SPEC §2-§4 and returns every violation, each tagged with the invariant it breaks.

Delivering a stop signal so that "no request after the signal" can be judged exactly: the poller
is frozen with SIGSTOP, the simulator is drained (every byte the poller sent before the freeze
has reached a handler and is in the request log: the kernel's receive queues on the simulator's
port are empty and the log has stopped growing), the log position is taken as the cut, then
SIGINT/SIGTERM is queued and SIGCONT resumes the process, which meets the signal at once. Every
request logged after the cut was therefore sent after the signal reached the poller; only
`RACE_ALLOWANCE` of them, arriving within `RACE_SECONDS` of the resume, are excused (a request the
event loop had already committed to in the instruction stream it was frozen in).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import pty
import random
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from poller.simulator import (
    DEMO_SECRET_ID,
    DEMO_SECRET_KEY,
    Decision,
    LoggedRequest,
    RunningSimulator,
    SimulatorConfig,
)
from poller.simulator.config import FAULT_KINDS

RESULT_ACTION = "GetSdkVerificationResult"

# SPEC §2, the token class: the only API error codes a final line may carry.
FINAL_ERROR_CODES = frozenset(
    {
        "InvalidParameterValue.BizTokenExpired",
        "InvalidParameterValue.BizTokenIllegal",
        "FailedOperation.InvalidTokenParameter",
        "InvalidParameter",
        "InvalidParameterValue",
        "ResourceNotFound",
    }
)
STATUSES = frozenset({"passed", "failed", "pending", "expired", "invalid_token", "error"})

CHANNELS = ("file", "stdin", "dev-stdin", "fifo", "process-substitution")
STDERR_KINDS = ("pty", "pipe")
STOPS = ("SIGINT", "SIGTERM", "SIGKILL", "SIGINT-twice")

MAX_RUNS = 5  # runs over the original input, the interrupted ones included
RUN_TIMEOUT = 25.0  # one poller run, start to exit
GRACE_PERIOD = 3.0  # --grace-period of every run
EXIT_SLACK = 3.0  # a stopped run exits within grace + this after the signal
RACE_SECONDS = 0.1
RACE_ALLOWANCE = 1
EXIT_BY_SIGNAL = {"SIGINT": 130, "SIGTERM": 143, "SIGINT-twice": 130}


# -- the scenario -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop a run with `kind` once `trigger` ("lines" written or "requests" seen) reaches `at`."""

    kind: str
    trigger: str
    at: int

    def __str__(self) -> str:
        return f"{self.kind} after {self.at} {self.trigger}"


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int
    fmt: str  # text, csv or jsonl
    sim: SimulatorConfig
    poller_rate: float
    concurrency: int
    max_attempts: int
    timeout: float
    recheck_after: float
    max_pending_wait: float
    minted: int
    never_minted: int
    control: int
    long: int
    garbled: int  # CSV/JSONL rows of a minted token with an unparsable issued_at
    tokenless: int  # CSV/JSONL rows that carry no token at all
    duplicates: int
    padding: int  # bytes of ignored text per row (comments, a wide column): a big input
    stops: tuple[Stop, ...]  # for the first runs; the later ones run to their end
    channels: tuple[tuple[str, str], ...]  # (input channel, stderr kind) for each run
    explicit_format: tuple[bool, ...]  # pass --input-format on that run (always when needed)

    def describe(self) -> str:
        s = self.sim
        return (
            f"format {self.fmt}; tokens: {self.minted} minted, {self.never_minted} never minted, "
            f"{self.control} with a control character, {self.long} over-long, {self.garbled} "
            f"with a garbled issued_at, {self.tokenless} token-less rows, {self.duplicates} "
            f"duplicates, {self.padding} bytes of padding a row; simulator: rate {s.rate:g}/s, "
            f"faults {s.fault_rate:.2f} "
            f"({','.join(s.faults)}), pending {s.pending_share:.2f} for {s.pending_seconds:.1f} s, "
            f"unknown code {s.unknown_code_share:.2f}, injected throttles {s.throttle_share:.2f}, "
            f"latency {s.latency_ms:.0f} ms; poller: --rate {self.poller_rate:g} --concurrency "
            f"{self.concurrency} --max-attempts {self.max_attempts} --timeout {self.timeout:g} "
            f"--recheck-after {self.recheck_after:.2f} --max-pending-wait "
            f"{self.max_pending_wait:.2f}; stops: {', '.join(map(str, self.stops)) or 'none'}"
        )


def draw_scenario(seed: int) -> Scenario:
    rng = random.Random(seed)
    fmt = rng.choice(("text", "csv", "jsonl"))
    sim_rate = rng.choice((25.0, 40.0, 60.0))
    throttling = rng.choice(("none", "quota", "injected", "both"))
    minted = rng.randint(20, 80)
    sim = SimulatorConfig(
        seed=seed,
        rate=sim_rate,
        pass_share=0.75,
        fault_rate=rng.choice((0.0, round(rng.uniform(0.03, 0.15), 3))),
        faults=tuple(sorted(rng.sample(FAULT_KINDS, rng.randint(1, len(FAULT_KINDS))))),
        stall_seconds=1.2,
        pending_share=rng.choice((0.0, round(rng.uniform(0.1, 0.4), 3))),
        pending_seconds=round(rng.uniform(0.5, 2.5), 2),
        unknown_code_share=rng.choice((0.0, round(rng.uniform(0.05, 0.2), 3))),
        throttle_share=round(rng.uniform(0.05, 0.15), 3)
        if throttling in ("injected", "both")
        else 0,
        latency_ms=round(rng.uniform(2.0, 30.0), 1),
        request_log_size=200_000,
        shutdown_timeout=0.5,
    )
    stops: list[Stop] = []
    first = rng.choices(("none", *STOPS), weights=(2, 3, 3, 3, 1))[0]
    if first != "none":
        stops.append(_draw_stop(rng, first, minted))
        if rng.random() < 0.3:
            stops.append(_draw_stop(rng, rng.choice(STOPS), minted))
    runs = MAX_RUNS + 1  # the fixed-export run too
    return Scenario(
        seed=seed,
        fmt=fmt,
        sim=sim,
        poller_rate=sim_rate * 1.6 if throttling in ("quota", "both") else sim_rate,
        concurrency=rng.choice((2, 4, 8, 16)),
        max_attempts=rng.randint(3, 6),
        timeout=0.6,
        recheck_after=round(rng.uniform(0.2, 0.6), 2),
        max_pending_wait=round(rng.uniform(0.5, 3.0), 2),
        minted=minted,
        never_minted=rng.randint(0, 3),
        control=rng.randint(0, 2),
        long=rng.randint(0, 2),
        garbled=rng.randint(0, 3) if fmt != "text" else 0,
        tokenless=rng.randint(0, 2) if fmt != "text" else 0,
        duplicates=rng.randint(0, 6),
        padding=rng.choice((0, rng.randint(1000, 3000))),
        stops=tuple(stops),
        channels=tuple((rng.choice(CHANNELS), rng.choice(STDERR_KINDS)) for _ in range(runs)),
        explicit_format=tuple(rng.random() < 0.5 for _ in range(runs)),
    )


def _draw_stop(rng: random.Random, kind: str, minted: int) -> Stop:
    if rng.random() < 0.5:
        return Stop(kind, "lines", rng.randint(1, max(1, minted // 2)))
    return Stop(kind, "requests", rng.randint(1, minted))


# -- the input --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One input record. `token` is what the output line will name (None: no token at all)."""

    token: str | None
    raw: str  # the token text as written (may carry spaces around it in text inputs)
    issued_at: str | int | None = None
    bad: str | None = None  # why the input decides this row locally, None for a good row
    fixable: bool = False  # a garbled issued_at: the fixed export repairs it


@dataclass(frozen=True, slots=True)
class TokenInput:
    rows: tuple[Row, ...]
    fmt: str
    padding: int = 0

    def first_rows(self) -> dict[str, Row]:
        """The first row of each token: it decides (later ones are duplicates)."""
        first: dict[str, Row] = {}
        for row in self.rows:
            if row.token is not None and row.token not in first:
                first[row.token] = row
        return first

    @property
    def tokenless(self) -> int:
        return sum(1 for row in self.rows if row.token is None)

    def fixed(self, rng: random.Random) -> TokenInput:
        """The export as its owner would fix it: issued_at repaired, broken rows dropped."""
        rows = []
        for row in self.rows:
            if row.fixable:
                rows.append(replace(row, issued_at=_good_issued_at(rng), bad=None, fixable=False))
            elif row.bad is None:
                rows.append(row)
        return TokenInput(tuple(rows), self.fmt, self.padding)

    def render(self, rng: random.Random) -> bytes:
        pad = "x" * self.padding
        if self.fmt == "text":
            return _render_text(self.rows, rng, pad)
        if self.fmt == "csv":
            return _render_csv(self.rows, pad)
        return _render_jsonl(self.rows, pad)


def _good_issued_at(rng: random.Random) -> str | int | None:
    now = time.time()
    choice = rng.randrange(4)
    if choice == 0:
        return None
    moment = now - rng.uniform(60, 3600)
    if choice == 1:
        return int(moment)
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


GARBLED = ("yesterday", "2026-13-45T99:99:99Z", "12:00", "not-a-date", "1e999", "2026-11-31")


def build_input(scenario: Scenario, minted: Sequence[str], rng: random.Random) -> TokenInput:
    issued = scenario.fmt != "text"
    rows: list[Row] = []
    for token in minted:
        raw = token
        if scenario.fmt == "text" and rng.random() < 0.2:
            raw = f"  {token}\t"  # surrounding white space is trimmed, not part of the token
        rows.append(Row(token, raw, _good_issued_at(rng) if issued else None))
    for i in range(scenario.never_minted):
        token = f"NEVER-MINTED-{scenario.seed}-{i}-{rng.getrandbits(32):08X}"
        rows.append(Row(token, token, _good_issued_at(rng) if issued else None))
    for i in range(scenario.control):
        char = rng.choice(("\x01", "\x07", "\x1b", "\x7f"))
        token = f"CTRL{i}{char}TOKEN-{scenario.seed}"
        rows.append(Row(token, token, None, bad="control character"))
    for i in range(scenario.long):
        token = f"LONG{i}-" + "L" * rng.randint(257, 290)
        rows.append(Row(token, token, None, bad="over-long token"))
    for token in rng.sample(list(minted), min(scenario.garbled, len(minted))):
        rows.append(Row(token, token, rng.choice(GARBLED), bad="garbled issued_at", fixable=True))
    for _ in range(scenario.tokenless):
        # An issued_at keeps a CSV row from being an all-empty row (those are skipped).
        rows.append(Row(None, "", _good_issued_at(rng) or 0, bad="no token"))
    rng.shuffle(rows)
    for _ in range(scenario.duplicates):
        at = rng.randrange(len(rows))
        copy = rows[at]
        if copy.fixable and rng.random() < 0.5:  # a good duplicate after the bad first row
            copy = replace(copy, issued_at=_good_issued_at(rng), bad=None, fixable=False)
        rows.insert(rng.randint(at + 1, len(rows)), copy)
    return TokenInput(tuple(rows), scenario.fmt, scenario.padding)


def _render_text(rows: Iterable[Row], rng: random.Random, pad: str) -> bytes:
    out = ["# tokens exported for the model test"]
    for row in rows:
        if pad:
            out.append(f"# {pad}")
        if rng.random() < 0.1:
            out.append("")
        if rng.random() < 0.05:
            out.append("# a comment between tokens")
        out.append(row.raw)
    return ("\n".join(out) + "\n").encode()


def _render_csv(rows: Iterable[Row], pad: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["SdkToken", "issued_at", "note"])
    for row in rows:
        writer.writerow([row.raw, "" if row.issued_at is None else row.issued_at, pad])
    return buffer.getvalue().encode()


def _render_jsonl(rows: Iterable[Row], pad: str) -> bytes:
    out = []
    for n, row in enumerate(rows):
        if row.token is None:
            out.append('{"SdkToken": "broken' if n % 2 else '{"other": 1}')
            continue
        obj: dict[str, Any] = {"SdkToken": row.raw}
        if row.issued_at is not None:
            obj["issued_at"] = row.issued_at
        if pad:
            obj["note"] = pad
        out.append(json.dumps(obj))
    return ("\n".join(out) + "\n").encode()


# -- one run of the poller --------------------------------------------------------------------


@dataclass(slots=True)
class RunRecord:
    index: int
    channel: str
    stderr_kind: str
    input: TokenInput
    stop: Stop | None
    delivered: str | None = None  # the stop actually delivered (None: it ended first)
    returncode: int | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    bad_json: list[str] = field(default_factory=list)
    prefix_rewritten: bool = False
    requests: list[LoggedRequest] = field(default_factory=list)
    cut_seq: int | None = None  # first log seq after the stop signal (SIGINT/SIGTERM)
    resumed_at: float | None = None  # monotonic time of SIGCONT after the signal
    exited_at: float | None = None
    timed_out: bool = False
    stderr: str = ""
    final_before: frozenset[str] = frozenset()

    @property
    def interrupted(self) -> bool:
        return self.delivered is not None

    def describe(self) -> str:
        sent = sum(1 for r in self.requests if r.action == RESULT_ACTION)
        stop = f"{self.stop}" if self.stop else "no stop"
        if self.stop and not self.delivered:
            stop += " (ended before the trigger)"
        return (
            f"run {self.index}: --tokens via {self.channel}, stderr {self.stderr_kind}, {stop}; "
            f"exit {self.returncode}; {len(self.lines)} lines, {sent} requests"
        )


class Model:
    """One model run's world: the simulator, the output file, the runs so far."""

    def __init__(self, scenario: Scenario, sim: RunningSimulator, workdir: Path) -> None:
        self.scenario = scenario
        self.sim = sim
        self.workdir = workdir
        self.output = workdir / "out.jsonl"
        self.runs: list[RunRecord] = []
        self._complete = b""  # the output's complete lines after the last run

    def _argv(self, index: int, fmt_flag: bool) -> list[str]:
        s = self.scenario
        argv = [
            "run",
            "--output",
            str(self.output),
            "--endpoint",
            self.sim.endpoint,
            "--rate",
            f"{s.poller_rate:g}",
            "--concurrency",
            str(s.concurrency),
            "--max-attempts",
            str(s.max_attempts),
            "--timeout",
            f"{s.timeout:g}",
            "--recheck-after",
            f"{s.recheck_after:g}",
            "--max-pending-wait",
            f"{s.max_pending_wait:g}",
            "--grace-period",
            f"{GRACE_PERIOD:g}",
            "--progress-interval",
            "0.5",
        ]
        if fmt_flag:
            argv += ["--input-format", s.fmt]
        return argv

    async def run(self, index: int, data: TokenInput, stop: Stop | None) -> RunRecord:
        channel, stderr_kind = self.scenario.channels[index % len(self.scenario.channels)]
        record = RunRecord(index, channel, stderr_kind, data, stop)
        record.final_before = frozenset(
            line["token"] for line in _parse(self._complete)[0] if line.get("final") is True
        )
        # Paths with no extension cannot tell the format: say it (a user would have to as well).
        needs_flag = channel in ("dev-stdin", "process-substitution") and data.fmt != "text"
        explicit = self.scenario.explicit_format
        fmt_flag = needs_flag or explicit[index % len(explicit)]
        content = data.render(random.Random(f"{self.scenario.seed}:{index}"))
        log_start = self.log_total()
        async with _launch(
            self.workdir, index, channel, stderr_kind, self._argv(index, fmt_flag), content, data
        ) as launched:
            proc = launched.proc
            if stop is not None:
                await self._stop(record, launched, stop, log_start)
            try:
                await asyncio.wait_for(proc.wait(), RUN_TIMEOUT)
            except TimeoutError:
                record.timed_out = True
                proc.kill()
                await proc.wait()
            record.exited_at = time.monotonic()
            record.returncode = proc.returncode
        record.stderr = launched.stderr_text()
        await self.drain()
        record.requests = [r for r in self.sim.request_log() if r.seq >= log_start]
        self._collect_lines(record)
        self.runs.append(record)
        return record

    def log_total(self) -> int:
        log = self.sim.request_log()
        return log[-1].seq + 1 if log else 0

    def _collect_lines(self, record: RunRecord) -> None:
        try:
            data = self.output.read_bytes()
        except FileNotFoundError:
            data = b""
        record.prefix_rewritten = not data.startswith(self._complete)
        complete = data[: data.rfind(b"\n") + 1]  # a torn last line (SIGKILL) is not a line
        new = complete[len(self._complete) :] if not record.prefix_rewritten else complete
        record.lines, record.bad_json = _parse(new)
        self._complete = complete

    async def _stop(
        self, record: RunRecord, launched: _Launched, stop: Stop, log_start: int
    ) -> None:
        proc = launched.proc
        lines_before = len(self._complete.splitlines())
        for _ in range(4000):  # bounded: at most 4000 polls of 5 ms (20 s) for the trigger
            if proc.returncode is not None:
                return
            if stop.trigger == "lines":
                if _count_lines(self.output) - lines_before >= stop.at:
                    break
            elif self._result_requests_since(log_start) >= stop.at:
                break
            await asyncio.sleep(0.005)
        else:
            return
        if stop.kind == "SIGKILL":
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
                record.delivered = stop.kind
            return
        signum = signal.SIGTERM if stop.kind == "SIGTERM" else signal.SIGINT
        cut = await signal_with_cut(proc, signum, self)
        if cut is None:
            return  # it ended on its own first
        record.cut_seq, record.resumed_at = cut
        record.delivered = stop.kind
        if stop.kind == "SIGINT-twice":
            # The second one once the first was taken (it names itself on stderr): a hard stop.
            for _ in range(600):  # bounded: 600 polls of 5 ms
                if proc.returncode is not None or "SIGINT" in launched.stderr_text():
                    break
                await asyncio.sleep(0.005)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)

    def _result_requests_since(self, log_start: int) -> int:
        return sum(
            1 for r in self.sim.request_log() if r.seq >= log_start and r.action == RESULT_ACTION
        )

    async def drain(self) -> None:
        """Until every byte sent to the simulator has reached a handler (see the module doc)."""
        port = self.sim.port
        for _ in range(2000):  # bounded: at most 2000 polls of 1 ms
            if not _bytes_waiting(port):
                break
            await asyncio.sleep(0.001)
        last, stable = self.log_total(), 0
        for _ in range(2000):  # bounded: loop turns, no timer
            await asyncio.sleep(0)
            total = self.log_total()
            stable = stable + 1 if total == last else 0
            last = total
            if stable >= 30:
                return


def _parse(data: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    lines: list[dict[str, Any]] = []
    bad: list[str] = []
    for raw in data.splitlines():
        try:
            obj = json.loads(raw)
        except ValueError:
            bad.append(raw[:200].decode(errors="replace"))
            continue
        if isinstance(obj, dict) and isinstance(obj.get("token"), str):
            lines.append(obj)
        else:
            bad.append(raw[:200].decode(errors="replace"))
    return lines, bad


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _bytes_waiting(port: int) -> bool:
    """Whether any socket on the simulator's port (listening or accepted) holds unread data or
    connections not yet accepted (/proc/net/tcp's rx_queue)."""
    local = f"0100007F:{port:04X}"  # 127.0.0.1, where the simulator listens
    with open("/proc/net/tcp", encoding="ascii") as fh:
        next(fh)
        for line in fh:
            parts = line.split()
            if parts[1] == local and int(parts[4].split(":")[1], 16):
                return True
    return False


async def signal_with_cut(
    proc: asyncio.subprocess.Process, signum: int, model: Model
) -> tuple[int, float] | None:
    """Freeze the process, drain what it sent before, cut, signal, resume (module doc).

    Returns (the first request-log seq after the signal, the monotonic time of the resume), or
    None when the process ended before it could be frozen."""
    try:
        proc.send_signal(signal.SIGSTOP)
    except ProcessLookupError:
        return None
    if not await _wait_stopped(proc):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
        return None
    await model.drain()
    cut = model.log_total()
    proc.send_signal(signum)  # queued while frozen: met the moment it runs again
    proc.send_signal(signal.SIGCONT)
    return cut, time.monotonic()


def _process_state(stat_path: str) -> str | None:
    """The state letter of /proc/PID/stat (R, S, T, Z, ...), None once the process is gone."""
    try:
        with open(stat_path, encoding="utf-8", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return None


async def _wait_stopped(proc: asyncio.subprocess.Process) -> bool:
    """True once the process is stopped (SIGSTOP); False if it exited first."""
    stat_path = f"/proc/{proc.pid}/stat"
    for _ in range(3000):  # bounded: at most 3000 polls of 1 ms
        if proc.returncode is not None:
            return False
        state = _process_state(stat_path)
        if state is None:
            return False
        if state in ("T", "t"):
            return True
        if state in ("Z", "X"):
            return False
        await asyncio.sleep(0.001)
    return False


# -- launching one process with its input channel and stderr ----------------------------------


POLLER = (sys.executable, "-m", "poller")
ENV = {
    **os.environ,
    "TENCENTCLOUD_SECRET_ID": DEMO_SECRET_ID,
    "TENCENTCLOUD_SECRET_KEY": DEMO_SECRET_KEY,
    "COLUMNS": "100",
}
for _name in list(ENV):
    if _name.startswith("FACEID_POLLER_") or _name == "TENCENTCLOUD_TOKEN":
        del ENV[_name]


class _Launched:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.err = bytearray()

    def stderr_text(self) -> str:
        return self.err.decode(errors="replace")


class _Feeder:
    """Writes the input into a pipe or FIFO on a thread of its own; stopped whatever happens."""

    def __init__(self, opener: Callable[[], int], data: bytes, fifo: Path | None) -> None:
        self._opener = opener
        self._data = data
        self._fifo = fifo
        self._thread = threading.Thread(target=self._run, name="model-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            fd = self._opener()
        except OSError:
            return
        try:
            view = memoryview(self._data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:  # BrokenPipeError: the reader went away first
            pass
        finally:
            os.close(fd)

    def stop(self) -> None:
        for _ in range(100):  # bounded
            if not self._thread.is_alive():
                return
            if self._fifo is not None:
                # A writer blocked in open() waits for a reader: be one for a moment.
                with contextlib.suppress(OSError):
                    os.close(os.open(self._fifo, os.O_RDONLY | os.O_NONBLOCK))
            self._thread.join(0.05)
        raise AssertionError("the input feeder thread did not stop")


@contextlib.asynccontextmanager
async def _launch(
    workdir: Path,
    index: int,
    channel: str,
    stderr_kind: str,
    argv: list[str],
    content: bytes,
    data: TokenInput,
) -> AsyncIterator[_Launched]:
    ext = {"text": ".txt", "csv": ".csv", "jsonl": ".jsonl"}[data.fmt]
    feeder: _Feeder | None = None
    stdin: int = asyncio.subprocess.DEVNULL
    close_after_spawn: list[int] = []
    path = workdir / f"tokens-{index}{ext}"
    if channel in ("file", "process-substitution"):
        path.write_bytes(content)
    if channel == "file":
        command = [*POLLER, *argv, "--tokens", str(path)]
    elif channel == "process-substitution":
        script = 'f=$1; shift; exec "$@" --tokens <(cat -- "$f")'
        command = ["bash", "-c", script, "bash", str(path), *POLLER, *argv]
    elif channel in ("stdin", "dev-stdin"):
        read_end, write_end = os.pipe()
        stdin = read_end
        close_after_spawn.append(read_end)
        feeder = _Feeder(lambda: write_end, content, None)
        command = [*POLLER, *argv, "--tokens", "-" if channel == "stdin" else "/dev/stdin"]
    else:  # fifo
        fifo = workdir / f"tokens-fifo-{index}{ext}"
        os.mkfifo(fifo)
        feeder = _Feeder(lambda: os.open(fifo, os.O_WRONLY), content, fifo)
        command = [*POLLER, *argv, "--tokens", str(fifo)]
    master = slave = -1
    if stderr_kind == "pty":
        master, slave = pty.openpty()
        close_after_spawn.append(slave)
    proc: asyncio.subprocess.Process | None = None
    reader_done = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=stdin,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=slave if stderr_kind == "pty" else asyncio.subprocess.PIPE,
            env=ENV,
        )
        for fd in close_after_spawn:
            os.close(fd)
        close_after_spawn.clear()
        launched = _Launched(proc)
        pipe_task: asyncio.Task[None] | None = None
        if stderr_kind == "pty":
            os.set_blocking(master, False)

            def on_readable() -> None:
                try:
                    chunk = os.read(master, 65536)
                except BlockingIOError:
                    return
                except OSError:  # EIO: every holder of the terminal's other side is gone
                    chunk = b""
                if chunk:
                    launched.err += chunk
                else:
                    loop.remove_reader(master)
                    reader_done.set()

            loop.add_reader(master, on_readable)
        else:
            assert proc.stderr is not None
            stream = proc.stderr

            async def pump() -> None:
                while chunk := await stream.read(65536):
                    launched.err += chunk

            pipe_task = asyncio.create_task(pump())
        try:
            yield launched
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if pipe_task is not None:
                try:
                    await asyncio.wait_for(pipe_task, 5.0)
                except TimeoutError:
                    pipe_task.cancel()
            elif master >= 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader_done.wait(), 5.0)
                loop.remove_reader(master)
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        for fd in close_after_spawn:
            os.close(fd)
        if master >= 0:
            os.close(master)
        if feeder is not None:
            feeder.stop()


# -- the invariants ---------------------------------------------------------------------------


@dataclass(slots=True)
class Violations:
    items: list[tuple[int, str]] = field(default_factory=list)

    def add(self, invariant: int, message: str) -> None:
        self.items.append((invariant, message))

    def by_invariant(self) -> dict[int, list[str]]:
        grouped: dict[int, list[str]] = defaultdict(list)
        for invariant, message in self.items:
            grouped[invariant].append(message)
        return dict(sorted(grouped.items()))


INVARIANTS = {
    1: "each input token has exactly one line per run (none if it only waited for a slot)",
    2: "the requests the simulator saw equal the sum of `attempts`",
    3: "no request reaches the simulator after a stop signal but those already on the wire",
    4: "after the reruns exactly one final line per token; nothing final that is not",
    5: "each final line agrees with what the simulator decided",
    6: "exit status, exit time and the output file itself (SPEC §3, §4)",
}


def _short(token: str) -> str:
    shown = json.dumps(token)
    return shown if len(shown) <= 48 else shown[:45] + '..."'


def _tokens(tokens: Iterable[str], limit: int = 4) -> str:
    listed = sorted(tokens)
    shown = ", ".join(_short(t) for t in listed[:limit])
    return shown + (f" and {len(listed) - limit} more" if len(listed) > limit else "")


def check(model: Model) -> Violations:
    found = Violations()
    decisions: dict[str, Decision] = {}

    def decided(token: str) -> Decision:
        if token not in decisions:
            decisions[token] = model.sim.decision(token)
        return decisions[token]

    for run in model.runs:
        _check_run(run, found, decided)
    _check_across_runs(model, found, decided)
    return found


def _check_run(run: RunRecord, found: Violations, decided: Callable[[str], Decision]) -> None:
    tag = f"run {run.index} ({run.delivered or 'no stop'}, --tokens via {run.channel})"
    first = run.input.first_rows()
    requests = [r for r in run.requests if r.action == RESULT_ACTION]
    asked = Counter(r.token for r in requests)
    per_token = Counter(line["token"] for line in run.lines if line["token"] != "")
    tokenless_lines = sum(1 for line in run.lines if line["token"] == "")
    ended_itself = run.delivered is None and not run.timed_out
    killed = run.delivered in ("SIGKILL", "SIGINT-twice")

    # 6: the process and the file.
    if run.timed_out:
        found.add(6, f"{tag}: did not end within {RUN_TIMEOUT:g} s and was killed")
    if run.prefix_rewritten:
        found.add(6, f"{tag}: lines written by earlier runs were changed (only appends allowed)")
    if run.bad_json:
        found.add(6, f"{tag}: {len(run.bad_json)} complete lines are not JSON records")
    all_final = all(line.get("final") is True for line in run.lines)
    if ended_itself and run.returncode not in (0, 1):
        found.add(6, f"{tag}: exit {run.returncode}, expected 0 or 1; stderr: {_tail(run.stderr)}")
    elif ended_itself and run.returncode != (0 if all_final else 1):
        found.add(
            6,
            f"{tag}: exit {run.returncode} but {'every' if all_final else 'not every'} line "
            "of the run is final",
        )
    if run.delivered in EXIT_BY_SIGNAL and run.returncode != EXIT_BY_SIGNAL[run.delivered]:
        found.add(
            6,
            f"{tag}: exit {run.returncode} after {run.delivered}, expected "
            f"{EXIT_BY_SIGNAL[run.delivered]}; stderr: {_tail(run.stderr)}",
        )
    if run.delivered in ("SIGINT", "SIGTERM") and run.resumed_at and run.exited_at:
        took = run.exited_at - run.resumed_at
        if took > GRACE_PERIOD + EXIT_SLACK:
            found.add(6, f"{tag}: exited {took:.1f} s after the signal (grace {GRACE_PERIOD:g} s)")

    # 1: exactly one line per token per run, none for what only waited.
    twice = {t for t, n in per_token.items() if n > 1}
    if twice:
        found.add(1, f"{tag}: {len(twice)} tokens have several lines in one run: {_tokens(twice)}")
    strangers = set(per_token) - set(first)
    if strangers:
        found.add(1, f"{tag}: lines for tokens not in the input: {_tokens(strangers)}")
    resumed = set(per_token) & run.final_before
    if resumed:
        found.add(
            1, f"{tag}: {len(resumed)} tokens already final got another line: {_tokens(resumed)}"
        )
    expected = {t for t in first if t not in run.final_before}
    if ended_itself:
        missing = expected - set(per_token)
        if missing:
            kinds = Counter(first[t].bad or "good row" for t in missing)
            found.add(
                1,
                f"{tag}: exit {run.returncode} with {len(missing)} of {len(expected)} tokens "
                f"without a line ({dict(kinds)}): {_tokens(missing)}",
            )
        if tokenless_lines != run.input.tokenless:
            found.add(
                1,
                f"{tag}: {tokenless_lines} lines without a token, for {run.input.tokenless} "
                "such rows in the input (each is reported once per run; more: fragments of a "
                "lost read?)",
            )
    elif run.delivered in ("SIGINT", "SIGTERM"):
        unwritten = {t for t in asked if t is not None and t not in per_token}
        if unwritten:
            found.add(
                1,
                f"{tag}: {len(unwritten)} tokens reached the server but got no line: "
                f"{_tokens(unwritten)}",
            )
    if tokenless_lines > run.input.tokenless and not ended_itself:
        found.add(1, f"{tag}: {tokenless_lines} token-less lines for {run.input.tokenless} rows")

    # 2: requests seen == sum of attempts (per token; in total unless the run was cut short).
    for line in run.lines:
        token = line["token"]
        attempts = line.get("attempts")
        if token in per_token and per_token[token] == 1 and asked[token] != attempts:
            found.add(
                2,
                f"{tag}: {_short(token)} line says attempts={attempts}, the simulator saw "
                f"{asked[token]} requests for it",
            )
    total_attempts = sum(int(line.get("attempts") or 0) for line in run.lines)
    if not killed and len(requests) != total_attempts:
        found.add(
            2,
            f"{tag}: the simulator saw {len(requests)} requests, the lines say "
            f"{total_attempts} attempts",
        )
    never = {t for t in asked if t is None or t not in first}
    if never:
        found.add(2, f"{tag}: requests for tokens not in the input: {_tokens(map(str, never))}")
    local = {t for t in asked if t is not None and t in first and first[t].bad is not None}
    if local:
        # Its first row is bad, so the poller can only have asked for it from a later duplicate
        # row: it never read the first one.
        found.add(
            1,
            f"{tag}: {len(local)} tokens whose first row is bad were queried, as if that row "
            f"had never been read (lost input?): {_tokens(local)}",
        )
    # A killed run leaves requests unaccounted: not only those on the wire (a token between
    # retries, or waiting for a re-check, has spent some without being on the wire), so no
    # bound is checked on them; every token that did get a line is held to its requests above.

    # 3: nothing new after a stop signal.
    if run.cut_seq is not None and run.resumed_at is not None:
        after = [r for r in requests if r.seq >= run.cut_seq]
        excused = [r for r in after if r.arrived <= run.resumed_at + RACE_SECONDS]
        excused = excused[:RACE_ALLOWANCE]
        late = [r for r in after if r not in excused]
        if late:
            first_at, last_at = (
                late[0].arrived - run.resumed_at,
                late[-1].arrived - run.resumed_at,
            )
            span = f"{first_at:+.2f} s .. {last_at:+.2f} s"
            found.add(
                3,
                f"{tag}: {len(late)} requests reached the simulator after the signal "
                f"({span} after it; {len(late) + len(excused)} in all, "
                f"{len({r.token for r in late})} tokens)",
            )

    # Per line: the shape the contract promises.
    for line in run.lines:
        _check_line(tag, line, first.get(line["token"]), found, decided)


def _check_line(
    tag: str,
    line: dict[str, Any],
    row: Row | None,
    found: Violations,
    decided: Callable[[str], Decision],
) -> None:
    token, status, final = line["token"], line.get("status"), line.get("final")
    error = line.get("error") or {}
    code = error.get("code") if isinstance(error, dict) else None
    what = f"{tag}: {_short(token)} {status} final={final}"
    if status not in STATUSES or not isinstance(final, bool):
        found.add(4, f"{what}: not a status/final the contract knows")
        return
    by_input = token == "" or (row is not None and row.bad is not None)
    if by_input:
        if line.get("attempts") != 0:
            return  # answered by the API from a later row: reported with the run (lost input)
        if final:
            reason = row.bad if row is not None and row.bad else "no token"
            found.add(4, f"{what}: decided by the input ({reason}, code {code}) but final")
        return
    if line.get("attempts") == 0:
        found.add(1, f"{what}: a line without a request, for a token its row does not decide")
    decision = decided(token)
    if decision.status == "unknown_code" and (status != "error" or final):
        found.add(
            4,
            f"{what}: the simulator answers {decision.error_code} (a code SPEC §2 does not "
            "list) for it: expected error, final=false",
        )
    elif status in ("passed", "failed") and not final:
        found.add(4, f"{what}: a settled result must be final")
    elif status in ("pending", "error") and final:
        found.add(4, f"{what}: {status} is never final (code {code})")
    elif final and code is not None and code not in FINAL_ERROR_CODES:
        found.add(4, f"{what}: final with {code}, which SPEC §2 does not list as final")
    if not final:
        return
    # 5: a final line says what the simulator decided.
    if status in ("passed", "failed"):
        if (decision.status, decision.result) != (status, line.get("result")):
            found.add(
                5,
                f"{what}: result {line.get('result')}, the simulator decided "
                f"{decision.status} {decision.result or decision.error_code}",
            )
        response = line.get("response")
        if isinstance(response, dict) and response.get("Result") != line.get("result"):
            found.add(5, f"{what}: result {line.get('result')} but response.Result differs")
    elif status in ("invalid_token", "expired") and decision.status != status:
        found.add(
            5,
            f"{what}: {code} from the API, but the simulator decided {decision.status} "
            f"{decision.result or decision.error_code or ''}",
        )


def _check_across_runs(model: Model, found: Violations, decided: Callable[[str], Decision]) -> None:
    if not model.runs:
        return
    last_input = model.runs[-1].input.first_rows()
    finals: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for run in model.runs:
        for line in run.lines:
            if line.get("final") is True:
                finals[line["token"]].append((run.index, line))
    runs = len(model.runs)
    for token, row in last_input.items():
        decision = decided(token)
        got = finals.get(token, [])
        if row.bad is not None or decision.status == "unknown_code":
            continue  # never final: judged line by line above
        if not got:
            seen = [
                f"run {run.index}: {line.get('status')}"
                + (f" {line['error']['code']}" if line.get("error") else "")
                for run in model.runs
                for line in run.lines
                if line["token"] == token
            ]
            found.add(
                4,
                f"{_short(token)} ({decision.status}) has no final line after {runs} runs "
                f"(its lines: {', '.join(seen) or 'none'})",
            )
        elif len(got) > 1:
            found.add(
                4,
                f"{_short(token)} has {len(got)} final lines (runs "
                f"{', '.join(str(i) for i, _ in got)})",
            )
        else:
            index, line = got[0]
            said = (line.get("status"), line.get("result"))
            if said != (decision.status, decision.result):
                earlier = model.runs[index].input.first_rows().get(token)
                why = f" (decided by its bad row: {earlier.bad})" if earlier and earlier.bad else ""
                code = (line.get("error") or {}).get("code")
                found.add(
                    5,
                    f"{_short(token)}: its one final line (run {index}: {said[0]} "
                    f"{said[1] or code}){why} is not what the simulator decides "
                    f"({decision.status} {decision.result or decision.error_code}), and no "
                    "later run asked again",
                )


def _tail(text: str, limit: int = 300) -> str:
    text = text.strip().replace("\r", "\n")
    lines = [line for line in text.splitlines() if line.strip()]
    shown = " | ".join(lines[-3:])
    return shown if len(shown) <= limit else "..." + shown[-limit:]


def report(model: Model, found: Violations, command: str) -> str:
    out = [
        f"model run seed={model.scenario.seed} broke the contract; reproduce with:",
        f"    {command}",
        f"scenario: {model.scenario.describe()}",
        *(f"  {run.describe()}" for run in model.runs),
    ]
    for invariant, messages in found.by_invariant().items():
        out.append(f"invariant {invariant} ({INVARIANTS[invariant]}): {len(messages)} violations")
        out.extend(f"  - {message}" for message in messages[:12])
        if len(messages) > 12:
            out.append(f"  - ... and {len(messages) - 12} more")
    return "\n".join(out)
