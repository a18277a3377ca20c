"""`make bench` = `python -m bench`: every measurement, then `docs/benchmarks.md`.

python -m bench                 # the full suite (~15 min on 2 cores) -> docs/benchmarks.md
python -m bench --quick         # small sizes, a smoke test; prints, writes nothing
python -m bench cpu             # one case alone (~30 s): the poller vs the bare-aiohttp floor
python -m bench shared          # 1, 2, 4 pollers on one shared quota in Redis (~100 s)
python -m bench contention      # another client takes part of the quota, then stops (~75 s)
python -m bench evidence        # --evidence at Tencent's file sizes: MB/s and quota use (~3 min)
python -m bench --only cpu,startup --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench import contention, cpu, evidence, quota, reconcile, scale, shared, startup
from bench.model import Section, Sizes
from bench.procs import SimulatorDied
from bench.report import render

DOC = Path("docs/benchmarks.md")
MEASUREMENTS = (
    "quota", "cpu", "sdk", "scale", "startup", "reconcile", "shared", "contention", "evidence",
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="measurement", help="the same as --only, space-separated"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    parser.add_argument(
        "--only", help=f"comma list of measurements to run (default all: {','.join(MEASUREMENTS)})"
    )
    parser.add_argument(
        "--repeats", type=int, help="runs per client for cpu/sdk (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"write the report here (default {DOC} for a full run of everything; none for "
        "--quick or --only)",
    )
    args = parser.parse_args(argv)
    if args.names:
        args.only = ",".join([*filter(None, (args.only or "").split(",")), *args.names])
    chosen = MEASUREMENTS if not args.only else tuple(args.only.split(","))
    unknown = sorted(set(chosen) - set(MEASUREMENTS))
    if unknown:
        parser.error(f"unknown measurement(s) {', '.join(unknown)}; choose from {MEASUREMENTS}")
    sizes = Sizes.quick() if args.quick else Sizes.full()
    repeats = args.repeats or (1 if args.quick else 3)
    runners: dict[str, Callable[[], Section]] = {
        "quota": lambda: quota.run(sizes),
        "cpu": lambda: cpu.run(sizes, repeats),
        "sdk": lambda: cpu.run_sdk(sizes, repeats),
        "scale": lambda: scale.run(sizes),
        "startup": lambda: startup.run(sizes),
        "reconcile": lambda: reconcile.run(sizes),
        "shared": lambda: shared.run(sizes),
        "contention": lambda: contention.run(sizes),
        "evidence": lambda: evidence.run(sizes),
    }
    if "shared" in chosen:
        try:
            shared.redis_binary()  # missing: said at once, not after the other measurements
        except shared.RedisMissing as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    load_before = os.getloadavg()
    sections = []
    for name in MEASUREMENTS:
        if name in chosen:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            try:
                section = runners[name]()
            except SimulatorDied as exc:
                print(f"bench: {name}: {exc}; measuring it again", file=sys.stderr, flush=True)
                section = runners[name]()
            print(f"bench: {name} done in {section.seconds:.0f} s", file=sys.stderr, flush=True)
            sections.append(section)
    seconds = time.perf_counter() - started
    command = "python -m bench" + (" --quick" if args.quick else "")
    if args.only:
        command += f" --only {args.only}"
    if args.repeats:
        command += f" --repeats {args.repeats}"
    text = render(
        sections,
        command=command,
        started=started_at,
        seconds=seconds,
        load_before=load_before,
        load_after=os.getloadavg(),
    )
    print(text)
    output = args.output or (DOC if not args.quick and not args.only else None)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        print(f"bench: wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
