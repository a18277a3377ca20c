"""CPU cost per token: the whole `poller run` process next to a bare-aiohttp floor.

The case (issue 10, item 6): 8,000 tokens against an instant local server (the simulator in a
process of its own, `--rate 100000 --no-auth`, no latency), pacing lifted (poller
`--rate 100000`), 64 requests in flight. Each client is its own process, reaped with `wait4`:
CPU ms per token is that process's user + system time over the tokens, start-up included
(interpreter, imports, settings, reading the input, writing the lines). Each is also run over
an empty token file to show the start-up share. The simulator runs `--no-auth` for all of
them, so the floor (which does not sign) gets the same answers and every client meets the same
server. Runs are interleaved and repeated; the figure is the median of the repeats, with the
lowest and highest beside it to show the noise.

    python -m bench cpu            # this case alone (~30 s): poller and floor
    python -m bench sdk            # the official SDK next to the poller (slow: ~2 min)
"""

from __future__ import annotations

import json
import statistics
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

CONCURRENCY = 64  # every client gets the same
FLOOR_FACTOR = 1.3  # target: poller <= 1.3x the floor
SDK_FACTOR = 5.0  # target: the SDK with threads >= 5x the poller
SIMULATOR_FLAGS = ("--any-token", "--rate", "100000", "--no-auth")


@dataclass(frozen=True, slots=True)
class Client:
    key: str
    label: str

    def argv(self, tokens: Path, output: Path, endpoint: str) -> tuple[str, ...]:
        if self.key == "poller":
            flags = ("--rate", "100000", "--concurrency", str(CONCURRENCY))
            return poller_run(tokens, output, endpoint, *flags)
        return (
            PYTHON, "-m", "bench.clients", self.key, "--endpoint", endpoint, "--tokens",
            str(tokens), "--concurrency", str(CONCURRENCY),
        )  # fmt: skip


POLLER = Client("poller", "poller (`poller run`)")
FLOOR = Client("floor", "floor: bare aiohttp, default event loop, no signing/retries/output")
SDK_CLIENTS = (
    Client("sdk-threads", f"official SDK, sync client, ThreadPoolExecutor({CONCURRENCY})"),
    Client("sdk-async", f"official SDK, async client (httpx), {CONCURRENCY} concurrent"),
)


@dataclass(frozen=True, slots=True)
class CpuResult:
    client: Client
    tokens: int
    runs: tuple[ChildResult, ...]
    startup: ChildResult

    @property
    def median_cpu(self) -> float:
        return statistics.median(r.cpu for r in self.runs)

    @property
    def ms_per_token(self) -> float:
        return self.median_cpu * 1000.0 / self.tokens

    @property
    def best_ms_per_token(self) -> float:
        return min(r.cpu for r in self.runs) * 1000.0 / self.tokens

    @property
    def worst_ms_per_token(self) -> float:
        return max(r.cpu for r in self.runs) * 1000.0 / self.tokens

    @property
    def marginal_ms_per_token(self) -> float:
        return max(self.median_cpu - self.startup.cpu, 0.0) * 1000.0 / self.tokens

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / statistics.median(r.wall for r in self.runs)

    @property
    def maxrss_mb(self) -> float:
        return max(r.maxrss_mb for r in self.runs)

    @property
    def argv(self) -> tuple[str, ...]:
        return self.runs[0].argv


def _run_once(
    client: Client, tokens: Path, count: int, workdir: Path, sim: Simulator
) -> ChildResult:
    output = workdir / f"out-{client.key}.jsonl"
    output.unlink(missing_ok=True)
    child = run_child(client.argv(tokens, output, sim.endpoint), timeout=600)
    sim.check_alive()
    check_exit(child)
    if client.key == "poller":
        written = count_lines(output)
        if written != count:
            raise RuntimeError(f"{client.key} wrote {written} lines for {count} tokens")
    elif count:
        tally = json.loads(child.stdout.strip().splitlines()[-1])
        if tally["ok"] != count:
            raise RuntimeError(f"{client.key}: {tally} for {count} tokens")
    return child


def measure(
    count: int, repeats: int, workdir: Path, clients: tuple[Client, ...]
) -> tuple[list[CpuResult], tuple[str, ...]]:
    tokens = write_tokens(workdir / f"tokens-{count}.txt", count)
    empty = workdir / "empty.txt"
    empty.write_text("")
    runs: dict[str, list[ChildResult]] = {c.key: [] for c in clients}
    startups: dict[str, ChildResult] = {}
    with simulator(*SIMULATOR_FLAGS) as sim:
        for client in clients:
            startups[client.key] = _run_once(client, empty, 0, workdir, sim)
        for _ in range(repeats):  # interleaved: a burst of outside load hits every client alike
            for client in clients:
                runs[client.key].append(_run_once(client, tokens, count, workdir, sim))
        sim_argv = sim.argv
    results = [CpuResult(c, count, tuple(runs[c.key]), startups[c.key]) for c in clients]
    return results, sim_argv


HEADERS = (
    "client",
    "CPU ms/token (median)",
    "lowest",
    "highest",
    "marginal ms/token",
    "start-up CPU ms",
    "tokens/s",
    "peak RSS MB",
    "vs floor",
)


def _row(r: CpuResult, floor_ms: float | None) -> list[str]:
    return [
        r.client.label,
        f"**{r.ms_per_token:.3f}**",
        f"{r.best_ms_per_token:.3f}",
        f"{r.worst_ms_per_token:.3f}",
        f"{r.marginal_ms_per_token:.3f}",
        fmt(r.startup.cpu * 1000.0, 0),
        fmt(r.tokens_per_second, 0),
        fmt(r.maxrss_mb, 0),
        "-" if floor_ms is None else f"{r.ms_per_token / floor_ms:.2f}x",
    ]


def _intro(tokens: int, repeats: int) -> str:
    return (
        f"{tokens:,} tokens against an instant local server (the simulator in its own process, "
        f"`{' '.join(SIMULATOR_FLAGS)}`, no latency), pacing lifted (poller `--rate 100000`), "
        f"{CONCURRENCY} requests in flight for every client, each client a whole process of "
        "its own. **CPU ms/token** = the process's user + system CPU (start-up included: "
        "interpreter, imports, settings, reading the input, writing the lines) / tokens, median "
        f"of {repeats} interleaved run(s); *lowest* and *highest* show the noise. *marginal* "
        "leaves out the CPU of the same process over an empty token file (*start-up*). "
        "tokens/s = tokens / the process's median wall time (start-up included; the simulator, "
        "sharing the machine, bounds it)."
    )


def floor_target(poller: CpuResult, floor: CpuResult) -> Target:
    ratio = poller.ms_per_token / floor.ms_per_token
    return Target(
        what="CPU per token vs the bare-aiohttp floor",
        goal=f"<= {FLOOR_FACTOR}x floor",
        value=f"{poller.ms_per_token:.3f} vs {floor.ms_per_token:.3f} ms = {ratio:.2f}x",
        met=round(ratio, 2) <= FLOOR_FACTOR,
        why=""
        if round(ratio, 2) <= FLOOR_FACTOR
        else (
            "work the floor does not do: TC3 signing, pacing, retries, the counters, encoding "
            "each result line (with the full `response`) and writing the output file"
        ),
    )


def run(sizes: Sizes, repeats: int) -> Section:
    """The target case: the poller and the floor, nothing else (`python -m bench cpu`)."""
    started = time.perf_counter()
    with scratch("cpu") as workdir:
        results, sim_argv = measure(sizes.cpu_tokens, repeats, workdir, (POLLER, FLOOR))
    poller, floor = results
    section = Section(title="CPU cost per token", intro=_intro(sizes.cpu_tokens, repeats))
    section.tables.append(Table(HEADERS, [_row(r, floor.ms_per_token) for r in results]))
    section.targets.append(floor_target(poller, floor))
    section.commands += [shown(sim_argv), *(shown(r.argv) for r in results)]
    section.notes.append(
        'The floor posts the same `{"SdkToken": ...}` bodies with fixed headers and no '
        "signature, reads each answer and parses it with the standard `json` (any client must "
        "look at the answer); it writes nothing and runs on asyncio's default event loop."
    )
    section.seconds = time.perf_counter() - started
    return section


def _why_sdk(sdk_ms: float, poller_ms: float) -> str:
    needed = sdk_ms / SDK_FACTOR
    return (
        f"the SDK costs only {sdk_ms / poller_ms:.1f}x the poller: the poller would need "
        f"<= {needed:.3f} ms/token"
    )


def run_sdk(sizes: Sizes, repeats: int) -> Section:
    """The official SDK next to the poller, same case (`python -m bench sdk`)."""
    started = time.perf_counter()
    with scratch("sdk") as workdir:
        results, sim_argv = measure(sizes.cpu_tokens, repeats, workdir, (POLLER, *SDK_CLIENTS))
    poller, sdk = results[0], results[1]
    section = Section(
        title="CPU cost per token, the official SDK", intro=_intro(sizes.cpu_tokens, repeats)
    )
    section.tables.append(Table(HEADERS, [_row(r, None) for r in results]))
    sdk_ratio = sdk.ms_per_token / poller.ms_per_token
    section.targets.append(
        Target(
            what="CPU per token vs the official SDK with threads",
            goal=f">= {SDK_FACTOR:g}x fewer ms",
            value=(
                f"{poller.ms_per_token:.3f} vs {sdk.ms_per_token:.3f} ms = {sdk_ratio:.1f}x fewer"
            ),
            met=sdk_ratio >= SDK_FACTOR,
            why="" if sdk_ratio >= SDK_FACTOR else _why_sdk(sdk.ms_per_token, poller.ms_per_token),
        )
    )
    section.commands += [shown(sim_argv), *(shown(r.argv) for r in results)]
    section.notes.append(
        "The SDK's sync client gets one client per thread (its best case: a single shared "
        "client overflows the 10-connection pool of `requests`)."
    )
    section.seconds = time.perf_counter() - started
    return section
