"""Reconcile: `poller reconcile` over N records against N result lines (plus N/10 superseding lines
in a second file), for N = 1 M and 5 M: wall time, CPU and peak RSS of the process alone.

The data hits every category: 1 in 1,000 records says passed where Tencent says failed
(passed_not_passed), 1 in 997 tokens is missing from the records, 1 in 991 from the results, a
fifth of the tokens are pending; the rest agree. The second results file restates every tenth
token a day later, so the latest-line-per-token rule is exercised too.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

from bench.model import Section, Sizes, Table, Target, fmt
from bench.procs import PYTHON, ChildResult, check_exit, run_child, scratch, shown

RSS_TARGET_MB = 300.0
EXIT_DIFFERENCES = 1
_CHUNK = 50_000

# One result line per (status, day), as the sink writes them in summary detail.
_LINE = (
    '{"token":"%s","status":"%s","final":%s,"result":"%s","description":"d","charge_count":%d,'
    '"request_id":"r","error":null,"attempts":1,"checked_at":"2026-11-%02dT10:00:00Z",'
    '"response":null}\n'
)
_KINDS = (
    ("passed", "true", "0", 1),
    ("failed", "true", "2016", 1),
    ("pending", "false", "-999", 0),
)
_WORD = {"passed": "approved", "failed": "rejected", "pending": "in progress"}


def write_inputs(workdir: Path, n: int, *, seed: int = 11) -> tuple[Path, Path, Path]:
    """The records (CSV) and two results files for `n` tokens."""
    rng = random.Random(seed)
    records, first, second = workdir / "ours.csv", workdir / "run-1.jsonl", workdir / "run-2.jsonl"
    with records.open("w") as ours, first.open("w") as r1, second.open("w") as r2:
        ours.write("token,decision\n")
        for start in range(0, n, _CHUNK):
            o, a, b = [], [], []
            for i in range(start, min(n, start + _CHUNK)):
                token = str(uuid.UUID(int=rng.getrandbits(128)))
                kind = _KINDS[0 if i % 5 in (0, 2) else 1 if i % 5 in (1, 3) else 2]
                status = kind[0]
                word = "approved" if i % 1000 == 1 else _WORD[status]
                if i % 997:
                    o.append(f"{token},{word}\n")
                if i % 991:
                    a.append(_LINE % (token, status, kind[1], kind[2], kind[3], 20))
                    if i % 10 == 0:
                        b.append(_LINE % (token, status, kind[1], kind[2], kind[3], 21))
            ours.write("".join(o))
            r1.write("".join(a))
            r2.write("".join(b))
    return records, first, second


def measure(n: int, workdir: Path) -> tuple[ChildResult, dict[str, object]]:
    records, first, second = write_inputs(workdir, n)
    argv = (
        PYTHON, "-m", "poller", "reconcile", "--records", str(records), str(first), str(second),
        "--mismatches", str(workdir / "mismatches.csv"), "--format", "json",
    )  # fmt: skip
    child = run_child(argv, timeout=1800)
    check_exit(child, EXIT_DIFFERENCES)
    report: dict[str, object] = json.loads(child.stdout)
    for path in workdir.iterdir():
        path.unlink()
    return child, report


def run(sizes: Sizes) -> Section:
    started = time.perf_counter()
    base = sizes.scale_tokens
    # 1 M and the 5 M (scale_tokens): memory must not grow from one to the other.
    counts = (base // 5, base)
    section = Section(
        title="Reconcile",
        intro=(
            "`poller reconcile` over N records (CSV) against N result lines plus N/10 lines that "
            "restate a token a day later (two results files), N = "
            + " and ".join(f"{n:,}" for n in counts)
            + ", writing the mismatches file. Peak RSS is the process's own `ru_maxrss`. The "
            "join runs in a scratch SQLite database (16 MiB page cache), so memory does not grow "
            "with N; time grows a little faster than N (the two sorts)."
        ),
    )
    rows = []
    for n in counts:
        with scratch("reconcile") as workdir:
            child, report = measure(n, workdir)
        categories = report["categories"]
        assert isinstance(categories, dict)
        rows.append(
            [f"{n:,}", f"{int(categories['passed_not_passed']):,}",
             f"{int(categories['agree']):,}", fmt(child.wall, 1), fmt(child.cpu, 1),
             f"**{child.maxrss_mb:.0f}**"]
        )  # fmt: skip
        section.targets.append(
            Target(
                what=f"peak RSS, reconcile {n:,} x {n:,}",
                goal=f"<= {RSS_TARGET_MB:g} MB",
                value=f"{child.maxrss_mb:.0f} MB",
                met=child.maxrss_mb <= RSS_TARGET_MB,
                why=""
                if child.maxrss_mb <= RSS_TARGET_MB
                else "the join holds more than it should",
            )
        )
        section.commands.append(shown(child.argv))
    section.tables.append(
        Table(("records", "passed_not_passed", "agree", "wall s", "CPU s", "peak RSS MB"), rows)
    )
    section.seconds = time.perf_counter() - started
    return section
