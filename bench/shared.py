"""Shared quota: 1, 2 and 4 real `poller run`s on one account, one schedule in Redis (issue 12).

The bench starts its own `redis-server` on a free loopback port (nothing saved, stopped at the
end) and, for each case, a fresh strict simulator (`--rate 20 --latency-ms 40`, pending tokens
off, every arrival logged with its token). N `poller run` processes start at once, each on its
own token file and output, all with `--shared-quota` to that Redis and the same demo
credentials, so they take their slots from one GCRA schedule. Redis is flushed between cases.

The combined rate is taken over the span when all N were running (the latest first arrival of
any poller to the earliest last one), from the simulator's arrival log: (requests in it - 1) /
span, so start-up staggering and the last poller's tail do not count. First-to-last arrival is
shown beside it. Targets: zero over quota (max in any 1 s window <= 20, throttled 0) and a
combined use >= 0.9 of the paced rate (19/s at the default 5% margin).

The cost of sharing: one `SharedQuota.reserve()` (the Lua script on Redis) timed in this
process over reservations booked without sleeping, and the CPU of `poller run` with and without
`--shared-quota` at the same token count.

    python -m bench shared           # this measurement alone (~100 s)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.model import ACTION, PACED, QUOTA, Section, Sizes, Table, Target, fmt
from bench.procs import (
    PYTHON,
    ChildResult,
    PollerSummary,
    Simulator,
    check_exit,
    parse_summary,
    poller_run,
    run_child,
    scratch,
    shown,
    simulator,
    write_tokens,
)

TARGET_USE = 0.9  # of the paced rate, all pollers together
LATENCY_MS = 40.0
POLLERS = (1, 2, 4)
SIMULATOR_FLAGS = ("--any-token", "--rate", f"{QUOTA:g}", "--latency-ms", f"{LATENCY_MS:g}")
WARM_UP = 50  # reservations before the timed ones: the script loaded, the connection warm
IMPORT_RUNS = 3
# The timed reservations' schedule: the key is a hash of the SecretId, so not the cases' key.
SCRATCH_ID = "AKIDBENCHSCRATCHNOTANACCOUNT00000000"


class RedisMissing(RuntimeError):
    """No redis-server to start: the shared measurement cannot run."""


def redis_binary() -> str:
    found = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        raise RedisMissing(
            "redis-server is not installed, and the shared-quota measurement needs one: run "
            "`make redis-server` (or `apt-get install -y redis-server`), or set REDIS_SERVER "
            "to its path."
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flushall(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            client.flushall()
        finally:
            client.close()


REDIS_COMMAND = "redis-server --save '' --appendonly no --port RPORT --bind 127.0.0.1"


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """A redis-server of the bench's own on a free loopback port, stopped on the way out."""
    import redis

    port = _free_port()
    argv = [
        redis_binary(), "--save", "", "--appendonly", "no", "--port", str(port),
        "--bind", "127.0.0.1", "--dir", str(workdir), "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip
    stderr = workdir / "redis-server.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)  # noqa: S603
    try:
        deadline = time.monotonic() + 10.0
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited at start with status {proc.returncode}: "
                    f"{stderr.read_text(errors='replace')[-500:]}"
                )
            client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            finally:
                client.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {port} within 10 s")
            time.sleep(0.02)
        yield RedisServer(port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request_log(sim: Simulator) -> dict[str, Any]:
    """The simulator's `GET /__log`: every arrival kept, with its time and token."""
    with urllib.request.urlopen(sim.endpoint + "/__log", timeout=10) as resp:  # noqa: S310
        data: dict[str, Any] = json.loads(resp.read())
    return data


def check_lines(path: Path, tokens: Sequence[str]) -> str:
    """What is wrong with `path` as the output for `tokens` ("" when every token has exactly
    one line, and nothing else is there)."""
    seen: Counter[str] = Counter()
    unreadable = 0
    for raw in path.read_bytes().splitlines():
        try:
            line = json.loads(raw)
            seen[str(line["token"])] += 1
        except (ValueError, KeyError, TypeError):
            unreadable += 1
    wanted = set(tokens)
    counts = (
        (len(wanted - seen.keys()), "tokens without a line"),
        (sum(1 for token, n in seen.items() if token in wanted and n > 1), "tokens twice or more"),
        (sum(n for token, n in seen.items() if token not in wanted), "lines of other tokens"),
        (unreadable, "unreadable lines"),
    )
    problems = [f"{count} {what}" for count, what in counts if count]
    return ", ".join(problems)


@dataclass(frozen=True, slots=True)
class PollerRun:
    tokens: int
    child: ChildResult
    summary: PollerSummary
    arrivals: tuple[float, ...]  # its requests at the simulator (its clock), in order
    problem: str  # "" when every token has exactly one line in its own output


@dataclass(frozen=True, slots=True)
class CaseResult:
    pollers: int
    runs: tuple[PollerRun, ...]
    requests: int
    throttled: int
    max_in_window: int
    together_start: float
    together_end: float
    together_requests: int  # arrivals from any poller while all were running
    first: float
    last: float
    simulator_argv: tuple[str, ...]

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.runs)

    @property
    def together(self) -> float:
        return max(self.together_end - self.together_start, 0.0)

    @property
    def rate(self) -> float:
        """Requests/s at the simulator, all pollers together, while all were running."""
        if self.together <= 0 or self.together_requests < 2:
            return 0.0
        return (self.together_requests - 1) / self.together

    @property
    def rate_first_to_last(self) -> float:
        arrived = sum(len(r.arrivals) for r in self.runs)
        span = self.last - self.first
        return (arrived - 1) / span if span > 0 and arrived > 1 else 0.0

    @property
    def use_paced(self) -> float:
        return self.rate / PACED

    @property
    def exactly_once(self) -> bool:
        return all(not r.problem for r in self.runs)

    @property
    def over_quota(self) -> bool:
        return self.throttled > 0 or self.max_in_window > int(QUOTA)

    def in_together(self, run: PollerRun) -> int:
        return sum(1 for t in run.arrivals if self.together_start <= t <= self.together_end)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def measure_case(
    pollers: int, total: int, redis: RedisServer, workdir: Path
) -> tuple[CaseResult, list[Path]]:
    """N `poller run`s at once on one shared schedule, against a fresh strict simulator."""
    redis.flushall()
    token_files = [
        write_tokens(workdir / f"tokens-{pollers}-{i}.txt", n, seed=2026 + 100 * pollers + i)
        for i, n in enumerate(_split(total, pollers))
    ]
    tokens = [path.read_text(encoding="ascii").split() for path in token_files]
    owner = {token: i for i, batch in enumerate(tokens) for token in batch}
    outputs = [workdir / f"out-{pollers}-{i}.jsonl" for i in range(pollers)]
    for output in outputs:
        output.unlink(missing_ok=True)
    log_size = 2 * total + 1000  # every arrival kept: one request a token, room for retries
    with simulator(*SIMULATOR_FLAGS, "--request-log-size", str(log_size)) as sim:
        argvs = [
            poller_run(t, o, sim.endpoint, "--rate", f"{QUOTA:g}", "--shared-quota", redis.url)
            for t, o in zip(token_files, outputs, strict=True)
        ]
        with ThreadPoolExecutor(max_workers=pollers) as pool:
            children = list(pool.map(lambda argv: run_child(argv, timeout=300), argvs))
        sim.check_alive()
        stats = sim.stats()
        log = request_log(sim)
        sim_argv = sim.argv
    for child in children:
        check_exit(child)
        if "one schedule shared through" not in child.stderr:
            raise RuntimeError(f"{shown(child.argv)} did not say it shares the schedule")
    if log["dropped"]:
        raise RuntimeError(f"the simulator's request log dropped {log['dropped']} arrivals")
    arrivals: list[list[float]] = [[] for _ in range(pollers)]
    for entry in log["requests"]:
        if entry["action"] == ACTION and entry["token"] in owner:
            arrivals[owner[entry["token"]]].append(float(entry["arrived"]))
    if any(not a for a in arrivals):
        raise RuntimeError("a poller's requests never reached the simulator")
    runs = tuple(
        PollerRun(
            tokens=len(batch),
            child=child,
            summary=parse_summary(child.stderr),
            arrivals=tuple(sorted(seen)),
            problem=check_lines(output, batch),
        )
        for batch, child, seen, output in zip(tokens, children, arrivals, outputs, strict=True)
    )
    start = max(r.arrivals[0] for r in runs)
    end = min(r.arrivals[-1] for r in runs)
    everything = sorted(t for r in runs for t in r.arrivals)
    result = CaseResult(
        pollers=pollers,
        runs=runs,
        requests=int(stats["by_action"].get(ACTION, 0)),
        throttled=int(stats["throttled"]),
        max_in_window=int(stats["max_in_window"]),
        together_start=start,
        together_end=end,
        together_requests=sum(1 for t in everything if start <= t <= end),
        first=everything[0],
        last=everything[-1],
        simulator_argv=sim_argv,
    )
    return result, token_files


# -- the cost of one reservation ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReserveCost:
    count: int
    median_us: float
    p99_us: float
    cpu_us: float  # this process's CPU per reservation


async def _reserve_many(url: str, count: int) -> ReserveCost:
    from poller.quota.shared import SharedQuota

    async with SharedQuota(url, QUOTA, secret_id=SCRATCH_ID) as quota:
        for _ in range(WARM_UP):
            await quota.reserve()
        times = []
        cpu = time.process_time()
        for _ in range(count):
            t0 = time.perf_counter()
            await quota.reserve()  # booked, never slept: the slots pile up ahead, unused
            times.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu
    return ReserveCost(
        count=count,
        median_us=statistics.median(times) * 1e6,
        p99_us=statistics.quantiles(times, n=100)[98] * 1e6,
        cpu_us=cpu / count * 1e6,
    )


def reserve_cost(redis: RedisServer, count: int) -> ReserveCost:
    redis.flushall()
    return asyncio.run(_reserve_many(redis.url, count))


# -- the whole poller's CPU with and without the shared quota ----------------------------------


@dataclass(frozen=True, slots=True)
class RunCpu:
    shared: ChildResult
    alone: ChildResult
    requests_shared: int
    requests_alone: int
    import_redis: float  # CPU s of importing redis-py once (median of the runs)

    @property
    def shared_ms(self) -> float:
        return self.shared.cpu / self.requests_shared * 1e3

    @property
    def alone_ms(self) -> float:
        return self.alone.cpu / self.requests_alone * 1e3

    @property
    def added_us(self) -> float:
        """CPU per request the shared quota adds, importing redis-py once left out."""
        return (self.shared.cpu - self.alone.cpu - self.import_redis) / self.requests_shared * 1e6


# `-X importtime`'s outermost line for redis.asyncio: what importing it adds after poller.cli.
_REDIS_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| redis\.asyncio$", re.MULTILINE)


def import_redis_seconds() -> float:
    """What importing redis-py adds to `poller run` once (its modules not already loaded)."""
    child = run_child((PYTHON, "-X", "importtime", "-c", "import poller.cli, redis.asyncio"))
    check_exit(child)
    match = _REDIS_IMPORT.search(child.stderr)
    if match is None:
        raise RuntimeError("`python -X importtime` printed no line for redis.asyncio")
    return int(match[1]) / 1e6


def run_cpu(single: CaseResult, tokens: Path, workdir: Path) -> tuple[RunCpu, tuple[str, ...]]:
    """The same tokens as the 1-poller case, the same simulator, no `--shared-quota`."""
    output = workdir / "out-alone.jsonl"
    output.unlink(missing_ok=True)
    with simulator(*SIMULATOR_FLAGS) as sim:
        argv = poller_run(tokens, output, sim.endpoint, "--rate", f"{QUOTA:g}")
        alone = run_child(argv, timeout=300)
        stats = sim.stats()
    check_exit(alone)
    imports = [import_redis_seconds() for _ in range(IMPORT_RUNS)]
    return (
        RunCpu(
            shared=single.runs[0].child,
            alone=alone,
            requests_shared=single.requests,
            requests_alone=int(stats["by_action"].get(ACTION, 0)),
            import_redis=statistics.median(imports),
        ),
        argv,
    )


def _shown(argv: Sequence[str]) -> str:
    """`shown`, with the Redis port told apart from the simulator's."""
    return shown(argv).replace("redis://127.0.0.1:PORT", "redis://127.0.0.1:RPORT")


# -- the section -------------------------------------------------------------------------------

HEADERS = (
    "pollers", "tokens", "requests", "all running s", "combined /s (all running)",
    "first to last /s", "use of 20/s", "use of 19/s", "max in 1 s window", "throttled",
    "one line per token",
)  # fmt: skip

POLLER_HEADERS = (
    "poller", "tokens", "requests", "share while all ran", "retries", "throttled (its own)",
    "lines", "wall s", "CPU s",
)  # fmt: skip


def _row(r: CaseResult) -> list[str]:
    return [
        str(r.pollers),
        str(r.tokens),
        str(r.requests),
        fmt(r.together, 2),
        fmt(r.rate, 2),
        fmt(r.rate_first_to_last, 2),
        f"{r.rate / QUOTA:.3f}",
        f"**{r.use_paced:.3f}**",
        f"{r.max_in_window} / {int(QUOTA)}",
        str(r.throttled),
        "yes" if r.exactly_once else "**no**",
    ]


def _poller_rows(r: CaseResult) -> list[list[str]]:
    rows = []
    for i, run in enumerate(r.runs):
        share = r.in_together(run) / r.together_requests if r.together_requests else 0.0
        rows.append(
            [
                str(i + 1),
                str(run.tokens),
                str(len(run.arrivals)),
                f"{share:.3f}",
                str(run.summary.retries),
                str(run.summary.throttled),
                "each token once" if not run.problem else f"**{run.problem}**",
                fmt(run.child.wall, 2),
                fmt(run.child.cpu, 2),
            ]
        )
    return rows


def _target(r: CaseResult) -> Target:
    ok_use = round(r.use_paced, 3) >= TARGET_USE
    why = []
    if r.over_quota:
        why.append(f"{r.throttled} throttled, max {r.max_in_window} in 1 s")
    if not ok_use:
        why.append(
            f"together {r.rate:.2f}/s = {r.use_paced:.3f} of the paced {PACED:g}/s < {TARGET_USE:g}"
        )
    if not r.exactly_once:
        why.append(
            "; ".join(f"poller {i + 1}: {x.problem}" for i, x in enumerate(r.runs) if x.problem)
        )
    return Target(
        what=f"shared quota, {r.pollers} poller{'s' if r.pollers > 1 else ''} on one key",
        goal=f">= {TARGET_USE:g} of {PACED:g}/s together, 0 over quota",
        value=(
            f"{r.use_paced:.3f} of {PACED:g}/s, {r.throttled} over quota "
            f"(max {r.max_in_window} in 1 s)"
        ),
        met=ok_use and not r.over_quota and r.exactly_once,
        why="; ".join(why),
    )


def _verdicts(results: Sequence[CaseResult]) -> list[str]:
    def each(ok: list[bool], figure: list[str]) -> str:
        parts = [
            f"{r.pollers} poller{'s' if r.pollers > 1 else ''} {f} ({'met' if good else 'not met'})"
            for r, good, f in zip(results, ok, figure, strict=True)
        ]
        return ", ".join(parts)

    over = [not r.over_quota for r in results]
    use = [round(r.use_paced, 3) >= TARGET_USE for r in results]
    once = [r.exactly_once for r in results]
    return [
        "Target, zero over quota (max in any 1 s window <= 20 and 0 throttled at the simulator): "
        + ("**met**" if all(over) else "**not met**")
        + " — "
        + each(over, [f"max {r.max_in_window}, {r.throttled} throttled" for r in results])
        + ".",
        f"Target, combined use >= {TARGET_USE:g} of the paced {PACED:g}/s while all ran: "
        + ("**met**" if all(use) else "**not met**")
        + " — "
        + each(use, [f"{r.use_paced:.3f}" for r in results])
        + ".",
        "Every token exactly one line in its own poller's output (each output parsed): "
        + ("**yes**" if all(once) else "**no**")
        + " — "
        + ", ".join(
            f"{r.pollers}: {'yes' if ok else 'no'}" for r, ok in zip(results, once, strict=True)
        )
        + ".",
    ]


def _cpu_note(cpu: RunCpu) -> str:
    more = cpu.shared.cpu - cpu.alone.cpu
    said = (
        f"CPU of the whole `poller run` (`wait4`, user + system, start-up included), the "
        f"1-poller case's {cpu.requests_shared} tokens at {QUOTA:g}/s: with `--shared-quota` "
        f"{cpu.shared.cpu:.2f} s ({cpu.shared_ms:.2f} ms/request), without it "
        f"{cpu.alone.cpu:.2f} s ({cpu.alone_ms:.2f} ms/request, same tokens, fresh simulator). "
        f"Importing redis-py once takes {cpu.import_redis:.2f} s (`python -X importtime -c "
        f"'import poller.cli, redis.asyncio'`, median of {IMPORT_RUNS}). "
    )
    if cpu.added_us <= 0:
        return said + (
            f"The difference ({more:+.2f} s) is below the noise of one run each at this size."
        )
    return said + (
        f"The rest of the {more:.2f} s more is **{cpu.added_us:.0f} µs per request**: the "
        "reservation, and about twice the event-loop turns per request (a cProfile of both "
        "runs, made while building this). One run each, so a rough figure: three full runs "
        "while building this gave 0.5 to 1.1 ms per request."
    )


def run(sizes: Sizes) -> Section:
    started = time.perf_counter()
    redis_binary()  # missing: one sentence, before anything starts
    with scratch("shared") as workdir, redis_server(workdir) as redis:
        measured = [measure_case(n, sizes.shared_tokens, redis, workdir) for n in POLLERS]
        results = [result for result, _ in measured]
        single_tokens = measured[0][1][0]  # POLLERS starts with the one poller alone
        cost = reserve_cost(redis, sizes.shared_reservations)
        cpu, alone_argv = run_cpu(results[0], single_tokens, workdir)
    section = Section(
        title="Shared quota",
        intro=(
            "N real `poller run` processes at once (issue 12), each on its own token file and "
            "output, all with `--shared-quota` to one `redis-server` the bench starts on "
            "loopback and the same demo credentials, so every request takes its slot from one "
            "GCRA schedule. The simulator (its own process, fresh for each case) enforces a "
            f"strict sliding 1 s window of {QUOTA:g}/s with `--latency-ms {LATENCY_MS:g}`, "
            "pending tokens off (one request a token) and every arrival logged with its token; "
            f"Redis is flushed between cases. {sizes.shared_tokens} tokens per case, split "
            "evenly. *all running* is the span from the latest first arrival of any poller to "
            "the earliest last one; *combined /s* = (arrivals in it - 1) / span, all pollers "
            "together, so start-up and the last poller's tail are left out; *first to last* "
            "uses every arrival instead. *use of 19/s* is the combined rate over the paced "
            "rate (the quota less the default 5% margin); *one line per token* parses each "
            "output and checks every token of its input has exactly one line."
        ),
    )
    section.tables.append(Table(HEADERS, [_row(r) for r in results]))
    section.targets.extend(_target(r) for r in results)
    section.notes.extend(_verdicts(results))
    for r in results:
        section.notes.append(
            f"{r.pollers} poller{'s' if r.pollers > 1 else ''}: *share while all ran* is each "
            "poller's part of the arrivals in the all-running span (even is "
            f"{1 / r.pollers:.3f})."
        )
        section.tables.append(Table(POLLER_HEADERS, _poller_rows(r)))
    section.notes.append(
        f"Cost of one reservation: `SharedQuota.reserve()` (one `EVALSHA` of `gcra.lua` on the "
        f"loopback Redis, redis-py's asyncio client) timed {cost.count} times on a scratch key, "
        f"booked without sleeping: round trip median **{cost.median_us:.0f} µs**, p99 "
        f"**{cost.p99_us:.0f} µs**; CPU in the client process **{cost.cpu_us:.0f} µs** per "
        "reservation (`time.process_time()` over the loop / count). At the paced 19/s a slot "
        f"is {1e6 / PACED:,.0f} µs apart, so one round trip is "
        f"{cost.median_us / (1e6 / PACED):.1%} of it."
    )
    section.notes.append(_cpu_note(cpu))
    for r in results:
        section.commands.append(f"# {r.pollers} poller(s), each with its own tokens and output")
        section.commands.append(shown(r.simulator_argv))
        section.commands.extend(_shown(x.child.argv) for x in r.runs)
    section.commands.insert(0, REDIS_COMMAND + "  # RPORT: a free port; FLUSHALL between cases")
    section.commands.append("# the 1-poller case's tokens without --shared-quota, for its CPU")
    section.commands.append(shown(alone_argv))
    section.seconds = time.perf_counter() - started
    return section
