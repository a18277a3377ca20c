"""Start-up: from launching `poller run` to the simulator seeing its first request.

The bench notes the wall clock just before it launches the process; the simulator (another
process on the same machine, same clock) records `first_request_at`. The interpreter alone
(`python -c pass`) and the poller's imports alone are timed next to it, for scale.
"""

from __future__ import annotations

import re
import statistics
import time

from bench.model import Section, Sizes, Table, Target
from bench.procs import (
    PYTHON,
    check_exit,
    poller_run,
    run_child,
    scratch,
    shown,
    simulator,
    write_tokens,
)

TARGET_S = 0.5
TOKENS = 20
# Imports worth naming in the start-up table: the big third-party ones and the poller's own.
WATCHED = ("aiohttp", "poller.simulator", "poller.config.settings", "tenacity", "aiolimiter",
           "poller.input.tokens")  # fmt: skip
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|\s+(\S+)$")


def import_times() -> dict[str, float]:
    """Cumulative ms per watched module from `python -X importtime -c 'import poller.cli'`."""
    child = run_child((PYTHON, "-X", "importtime", "-c", "import poller.cli"))
    check_exit(child)
    found: dict[str, float] = {}
    for line in child.stderr.splitlines():
        match = _IMPORT_LINE.match(line.strip())
        if match is not None and match[3] in (*WATCHED, "poller.cli"):
            found.setdefault(match[3], int(match[2]) / 1000.0)
    return found


def run(sizes: Sizes) -> Section:
    started = time.perf_counter()
    delays: list[float] = []
    with scratch("startup") as workdir:
        tokens = write_tokens(workdir / "tokens.txt", TOKENS)
        output = workdir / "out.jsonl"
        with simulator("--any-token", "--rate", "20") as sim:
            for _ in range(sizes.startup_runs):
                sim.reset()
                output.unlink(missing_ok=True)
                argv = poller_run(tokens, output, sim.endpoint, "--rate", "20")
                child = run_child(argv, timeout=120)
                check_exit(child)
                first = sim.stats()["first_request_at"]
                if first is None:
                    raise RuntimeError("the simulator saw no request from the poller")
                delays.append(float(first) - child.started_at)
            sim_argv = sim.argv
        bare = [run_child((PYTHON, "-c", "pass")).wall for _ in range(sizes.startup_runs)]
        imports = [
            run_child((PYTHON, "-c", "import poller.cli")).wall for _ in range(sizes.startup_runs)
        ]
        imported = import_times()
    median = statistics.median(delays)
    section = Section(
        title="Start-up",
        intro=(
            f"Wall time from launching `poller run` ({TOKENS} tokens, quota 20/s) to the "
            f"simulator's `first_request_at`, {sizes.startup_runs} runs. For scale: the "
            "interpreter alone, and the interpreter importing `poller.cli`."
        ),
    )
    section.tables.append(
        Table(
            ("what", "median s", "min s", "max s"),
            [
                [
                    "launch -> first request",
                    f"**{median:.3f}**",
                    f"{min(delays):.3f}",
                    f"{max(delays):.3f}",
                ],
                [
                    "`python -c pass`",
                    f"{statistics.median(bare):.3f}",
                    f"{min(bare):.3f}",
                    f"{max(bare):.3f}",
                ],
                [
                    "`python -c 'import poller.cli'`",
                    f"{statistics.median(imports):.3f}",
                    f"{min(imports):.3f}",
                    f"{max(imports):.3f}",
                ],
            ],
        )
    )
    total = imported.get("poller.cli", 0.0)
    section.tables.append(
        Table(
            ("import (cumulative, `-X importtime`)", "ms", "share of `import poller.cli`"),
            [
                [f"`{name}`", f"{ms:.0f}", f"{ms / total:.0%}" if total else "-"]
                for name, ms in sorted(imported.items(), key=lambda kv: -kv[1])
            ],
        )
    )
    if "poller.simulator" in imported:
        section.notes.append(
            "`poller.cli` imports the simulator (and with it `aiohttp.web`) for the `simulate` "
            "subcommand even when it runs `poller run`; importing it inside the subcommand "
            f"would save ~{imported['poller.simulator']:.0f} ms of every start."
        )
    section.targets.append(
        Target(
            what="first request after start (median)",
            goal=f"<= {TARGET_S} s",
            value=f"{median:.3f} s (max {max(delays):.3f})",
            met=median <= TARGET_S,
            why=""
            if median <= TARGET_S
            else (
                f"importing the poller alone takes {statistics.median(imports):.3f} s "
                "(see `python -X importtime -m poller --help`)"
            ),
        )
    )
    section.commands += [shown(sim_argv), shown(argv)]
    section.seconds = time.perf_counter() - started
    return section
