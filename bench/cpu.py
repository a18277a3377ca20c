"""CPU cost per token: the poller next to a bare-aiohttp floor and the official SDK.

The quota is lifted (simulator `--rate 100000`, no latency; poller `--rate 100000`) so every
client runs flat out. Each client is its own process, reaped with `wait4`: CPU ms per token is
that process's user + system time over the tokens, start-up included; each is also run over an
empty token file to show the start-up share. The simulator runs `--no-auth` for all of them, so
the floor (which does not sign) gets the same answers and every client meets the same server.
Runs are interleaved and repeated; the table shows the lowest CPU of the repeats (the least
disturbed by other work on the machine) and the highest, to show the noise.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from bench.model import Section, Sizes, Table, Target, fmt
from bench.procs import (
    PYTHON,
    ChildResult,
    Simulator,
    check_exit,
    count_lines,
    poller_run,
    run_child,
    scratch,
    shown,
    simulator,
    write_tokens,
)

CONCURRENCY = 32  # the poller's default; every client gets the same
FLOOR_FACTOR = 1.5  # target: poller <= 1.5x the floor
SDK_FACTOR = 5.0  # target: the SDK with threads >= 5x the poller


@dataclass(frozen=True, slots=True)
class Client:
    key: str
    label: str

    def argv(self, tokens: Path, output: Path, endpoint: str) -> tuple[str, ...]:
        flags = ("--rate", "100000", "--concurrency", str(CONCURRENCY))
        if self.key == "poller":
            return poller_run(tokens, output, endpoint, *flags)
        return (
            PYTHON, "-m", "bench.clients", self.key, "--endpoint", endpoint, "--tokens",
            str(tokens), "--concurrency", str(CONCURRENCY),
        )  # fmt: skip


CLIENTS = (
    Client("poller", "poller (`poller run`)"),
    Client("floor", "floor: bare aiohttp, no signing/retries/output"),
    Client("sdk-threads", "official SDK, sync client, ThreadPoolExecutor(32)"),
    Client("sdk-async", "official SDK, async client (httpx), 32 concurrent"),
)


@dataclass(frozen=True, slots=True)
class CpuResult:
    client: Client
    tokens: int
    runs: tuple[ChildResult, ...]
    startup: ChildResult

    @property
    def best(self) -> ChildResult:
        return min(self.runs, key=lambda r: r.cpu)

    @property
    def ms_per_token(self) -> float:
        return self.best.cpu * 1000.0 / self.tokens

    @property
    def worst_ms_per_token(self) -> float:
        return max(r.cpu for r in self.runs) * 1000.0 / self.tokens

    @property
    def marginal_ms_per_token(self) -> float:
        return max(self.best.cpu - self.startup.cpu, 0.0) * 1000.0 / self.tokens

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.best.wall


def _run_once(
    client: Client, tokens: Path, count: int, workdir: Path, sim: Simulator
) -> ChildResult:
    output = workdir / f"out-{client.key}.jsonl"
    output.unlink(missing_ok=True)
    child = run_child(client.argv(tokens, output, sim.endpoint), timeout=600)
    sim.check_alive()
    check_exit(child)
    if client.key.startswith("poller"):
        written = count_lines(output)
        if written != count:
            raise RuntimeError(f"{client.key} wrote {written} lines for {count} tokens")
    elif count:
        tally = json.loads(child.stdout.strip().splitlines()[-1])
        if tally["ok"] != count:
            raise RuntimeError(f"{client.key}: {tally} for {count} tokens")
    return child


def measure(
    count: int, repeats: int, workdir: Path, clients: tuple[Client, ...] = CLIENTS
) -> tuple[list[CpuResult], tuple[str, ...]]:
    tokens = write_tokens(workdir / f"tokens-{count}.txt", count)
    empty = workdir / "empty.txt"
    empty.write_text("")
    runs: dict[str, list[ChildResult]] = {c.key: [] for c in clients}
    startups: dict[str, ChildResult] = {}
    with simulator("--any-token", "--rate", "100000", "--no-auth") as sim:
        for client in clients:
            startups[client.key] = _run_once(client, empty, 0, workdir, sim)
        for _ in range(repeats):  # interleaved: a burst of outside load hits every client alike
            for client in clients:
                runs[client.key].append(_run_once(client, tokens, count, workdir, sim))
        sim_argv = sim.argv
    results = [CpuResult(c, count, tuple(runs[c.key]), startups[c.key]) for c in clients]
    return results, sim_argv


def _why_sdk(sdk_ms: float, floor_ms: float) -> str:
    needed = sdk_ms / SDK_FACTOR
    if floor_ms >= needed:
        return (
            f"out of reach on this machine: the SDK costs only {sdk_ms / floor_ms:.1f}x the "
            f"bare-aiohttp floor itself, so even a poller at the floor would be under "
            f"{SDK_FACTOR:g}x"
        )
    return f"the poller would need <= {needed:.3f} ms/token, {needed / floor_ms:.2f}x the floor"


def run(sizes: Sizes, repeats: int) -> Section:
    started = time.perf_counter()
    with scratch("cpu") as workdir:
        results, sim_argv = measure(sizes.cpu_tokens, repeats, workdir)
    by_key = {r.client.key: r for r in results}
    floor = by_key["floor"].ms_per_token
    rows = []
    for r in results:
        rows.append(
            [
                r.client.label,
                f"**{r.ms_per_token:.3f}**",
                f"{r.worst_ms_per_token:.3f}",
                f"{r.marginal_ms_per_token:.3f}",
                fmt(r.startup.cpu * 1000.0, 0),
                fmt(r.tokens_per_second, 0),
                fmt(r.best.maxrss_mb, 0),
                f"{r.ms_per_token / floor:.2f}x",
            ]
        )
    section = Section(
        title="CPU cost per token",
        intro=(
            f"{sizes.cpu_tokens:,} tokens, quota lifted (simulator `--rate 100000 --any-token "
            f"--no-auth`, no latency; poller `--rate 100000`), {CONCURRENCY} requests in flight "
            "for every client, each client in its own process. **CPU ms/token** = the "
            "process's user + system CPU (start-up included) / tokens, lowest of "
            f"{repeats} interleaved run(s); *worst* is the highest. *marginal* leaves out "
            "the CPU of the same process over an empty token file (*start-up*). tokens/s = "
            "tokens / the process's wall time (start-up included; the simulator, sharing the "
            "machine, bounds it)."
        ),
    )
    section.tables.append(
        Table(
            (
                "client",
                "CPU ms/token",
                "worst",
                "marginal ms/token",
                "start-up CPU ms",
                "tokens/s",
                "peak RSS MB",
                "vs floor",
            ),
            rows,
        )
    )
    poller = by_key["poller"]
    sdk = by_key["sdk-threads"]
    ratio = poller.ms_per_token / floor
    why_floor = ""
    if ratio > FLOOR_FACTOR:
        why_floor = (
            "work the floor does not do: encoding each result line (with the full `response`), "
            "TC3 signing, pacing, the counters and the output file"
        )
    section.targets.append(
        Target(
            what="CPU per token vs the bare-aiohttp floor",
            goal=f"<= {FLOOR_FACTOR}x floor",
            value=f"{poller.ms_per_token:.3f} vs {floor:.3f} ms = {ratio:.2f}x",
            met=ratio <= FLOOR_FACTOR,
            why=why_floor,
        )
    )
    sdk_ratio = sdk.ms_per_token / poller.ms_per_token
    section.targets.append(
        Target(
            what="CPU per token vs the official SDK with threads",
            goal=f">= {SDK_FACTOR:g}x fewer ms",
            value=(
                f"{poller.ms_per_token:.3f} vs {sdk.ms_per_token:.3f} ms = {sdk_ratio:.1f}x fewer"
            ),
            met=sdk_ratio >= SDK_FACTOR,
            why="" if sdk_ratio >= SDK_FACTOR else _why_sdk(sdk.ms_per_token, floor),
        )
    )
    section.commands.append(shown(sim_argv))
    for r in results:
        section.commands.append(shown(r.best.argv))
    section.notes.append(
        'The floor posts the same `{"SdkToken": ...}` bodies with fixed headers and no '
        "signature, reads each answer and parses its JSON (any client must look at the answer); "
        "it writes nothing. The SDK's sync client gets one client per thread (its best case: a "
        "single shared client overflows the 10-connection pool of `requests`)."
    )
    section.seconds = time.perf_counter() - started
    return section
