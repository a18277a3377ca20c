"""Scale: memory and time at 5,000,000 tokens (issue 11): the dry run; a real run that reads the
whole input while resuming from a 5,000,000-line output with a 5,000,000-line `--skip-final-in`
index; and the time to build that index alone.

Peak RSS is `ru_maxrss` of the poller process alone (from `wait4`). The real run ends by
itself after reading the whole input: every generated token but the last `FRESH` is settled
beforehand (final in the output, or else in the `--skip-final-in` file), so the poller triages
all 5,000,000 entries and sends requests only for the fresh ones. The de-duplication set holds
every token read, so its peak is the whole input's, which a run stopped after N seconds would
never show.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

from bench.model import Section, Sizes, Table, Target, fmt
from bench.procs import (
    PYTHON,
    ChildResult,
    check_exit,
    count_lines,
    poller_run,
    run_child,
    scratch,
    shown,
    simulator,
)

RSS_TARGET_MB = 200.0
INDEX_TARGET_S = 15.0  # the earlier-runs index over 5,000,000 lines (issue 11)
FRESH = 2_000  # tokens the real runs actually ask (the rest is settled beforehand)
CHUNK = 50_000


def uuid_tokens(count: int, *, seed: int) -> Iterator[list[str]]:
    """`count` distinct UUID-shaped tokens in chunks; ~1 us a token (uuid.UUID is ~3 us)."""
    rng = random.Random(seed)
    for start in range(0, count, CHUNK):
        n = min(CHUNK, count - start)
        hexes = rng.randbytes(16 * n).hex()
        yield [
            f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
            for h in (hexes[i : i + 32] for i in range(0, 32 * n, 32))
        ]


def _templates(statuses: list[tuple[str, bool]]) -> list[tuple[bytes, bytes]]:
    """(head, tail) of a real summary-detail line per (status, final), split at the token."""
    from poller.api.outcomes import Status
    from poller.config.settings import Detail
    from poller.output.records import ErrorInfo, build_record, encode_record

    response = {"Result": "0", "Description": "Success", "ChargeCount": 1, "RequestId": "r"}
    failed = dict(response, Result="2016", Description="Similarity under threshold")
    kinds = {
        "passed": (Status.PASSED, response, None),
        "failed": (Status.FAILED, failed, None),
        "pending": (Status.PENDING, dict(response, Result="-999"), None),
        "error": (Status.ERROR, None, ErrorInfo("InternalError", "An internal error occurred.")),
    }
    templates = []
    for name, final in statuses:
        status, resp, error = kinds[name]
        record = build_record(
            token="\x00",  # noqa: S106 - a placeholder, swapped for each line's token
            status=status,
            final=final,
            attempts=1,
            checked_at=time.time(),
            response=resp,
            error=error,
            detail=Detail.SUMMARY,
        )
        head, tail = encode_record(record).split(b"\\u0000")
        templates.append((head, tail))
    return templates


# The output resumed from: 3 of 5 lines final, 2 not (pending, error), as write_output_file had.
OUTPUT_MIX = [("passed", True), ("failed", True), ("passed", True), ("pending", False),
              ("error", False)]  # fmt: skip
# An earlier night's file: every token settled (so the real runs read the input, not the API).
EARLIER_MIX = [("passed", True), ("failed", True)]


def _paths(workdir: Path) -> tuple[Path, Path, Path]:
    return workdir / "tokens.txt", workdir / "out.jsonl", workdir / "earlier.jsonl"


def write_inputs(workdir: Path, n: int) -> tuple[Path, Path, Path]:
    """tokens.txt (n settled tokens, then FRESH new ones), out.jsonl (n lines over the same
    tokens, OUTPUT_MIX, one torn last line) and earlier.jsonl (n final lines), in one pass."""
    tokens, output, earlier = _paths(workdir)
    out_t, earlier_t = _templates(OUTPUT_MIX), _templates(EARLIER_MIX)
    with tokens.open("wb") as tf, output.open("wb") as of, earlier.open("wb") as ef:
        i = 0
        for chunk in uuid_tokens(n, seed=2026):
            raw = [t.encode() for t in chunk]
            tf.write(b"\n".join(raw) + b"\n")
            parts, eparts = [], []
            for token in raw:
                head, tail = out_t[i % 5]
                parts.append(head + token + tail)
                head, tail = earlier_t[i % 2]
                eparts.append(head + token + tail)
                i += 1
            of.write(b"".join(parts))
            ef.write(b"".join(eparts))
        for chunk in uuid_tokens(FRESH, seed=7):
            tf.write("\n".join(chunk).encode() + b"\n")
        of.write(b'{"token":"torn-line","status":"pas')
    return tokens, output, earlier


def _probe(path: Path, *flags: str) -> tuple[ChildResult, dict[str, float | None]]:
    child = run_child((PYTHON, "-m", "bench.resume_probe", *flags, str(path)), timeout=300)
    check_exit(child)
    report: dict[str, float | None] = json.loads(child.stdout.strip().splitlines()[-1])
    return child, report


def run(sizes: Sizes) -> Section:
    started = time.perf_counter()
    n = sizes.scale_tokens
    section = Section(
        title="Scale",
        intro=(
            f"A generated input of {n:,} UUID-shaped tokens followed by {FRESH:,} new ones; an "
            f"earlier night's file with a final line for each of the {n:,} (`earlier.jsonl`); "
            f"an output file of {n:,} lines over the same tokens, 3 in 5 final (summary detail, "
            "one torn last line). Peak RSS is the poller process's own `ru_maxrss`; target "
            f"{RSS_TARGET_MB:g} MB each. (a) `--dry-run` reads, checks and de-duplicates "
            "every entry. (b) A real run against the simulator (`--any-token --no-auth --rate "
            "100000`, poller `--rate 100000`) that resumes into the output file with "
            "`--skip-final-in earlier.jsonl`: every token but the new ones is settled (final in "
            "the output, or else in the earlier file), so it reads the whole input, asks only "
            f"the {FRESH:,} new tokens and ends by itself: its peak holds the resume state, the "
            "earlier-runs index and a de-duplication set of the whole input at once (no early "
            "stop). The earlier-runs index is also built alone, in a process of its own "
            "(`bench.resume_probe --earlier`), for its time."
        ),
    )
    with scratch("scale") as workdir:
        # In a child: a process's peak RSS starts from its parent's at fork (Linux keeps the
        # high-water mark across exec), so the bench process itself must stay small.
        gen = run_child((PYTHON, "-m", "bench.scale", str(workdir), str(n)), timeout=600)
        check_exit(gen)
        tokens, resumed, earlier = _paths(workdir)
        floor = run_child((PYTHON, "-c", "pass"))
        dry = run_child((PYTHON, "-m", "poller", "run", "--tokens", str(tokens), "--dry-run"),
                        timeout=600)  # fmt: skip
        check_exit(dry)
        index_child, index = _probe(earlier, "--earlier")
        with simulator("--any-token", "--no-auth", "--rate", "100000") as sim:
            argv = poller_run(tokens, resumed, sim.endpoint, "--rate", "100000",
                              "--skip-final-in", str(earlier))  # fmt: skip
            real = run_child(argv, timeout=600)
            sim.check_alive()
            sim_argv = sim.argv
        check_exit(real, (0, 1))
        written = count_lines(resumed) - n
    rows = [
        ["(a) `--dry-run`", f"{n + FRESH:,} read", fmt(dry.wall, 1), f"**{dry.maxrss_mb:.0f}**",
         str(dry.returncode)],
        [f"(b) real run resuming from {n:,} lines, `--skip-final-in` over {n:,} lines",
         f"{n + FRESH:,} read, {written:,} written", fmt(real.wall, 1),
         f"**{real.maxrss_mb:.0f}**", str(real.returncode)],
    ]  # fmt: skip
    section.tables.append(Table(("run", "tokens", "wall s", "peak RSS MB", "exit"), rows))
    for label, child in (("--dry-run", dry), ("real run resuming, with the index", real)):
        section.targets.append(
            Target(
                what=f"peak RSS, {n:,} tokens, {label}",
                goal=f"<= {RSS_TARGET_MB:g} MB",
                value=f"{child.maxrss_mb:.0f} MB",
                met=child.maxrss_mb <= RSS_TARGET_MB,
                why=""
                if child.maxrss_mb <= RSS_TARGET_MB
                else "the key sets (poller/input/keyset.py) and the interpreter together",
            )
        )
    index_s = float(index["seconds"] or 0.0)
    section.tables.append(
        Table(
            ("built alone", "lines", "tokens final", "seconds", "peak RSS MB"),
            [["earlier-runs index (`load_earlier_results`)", f"{n:,}",
              f"{int(index['entries'] or 0):,}", f"**{index_s:.2f}**",
              f"{index_child.maxrss_mb:.0f}"]],
        )
    )  # fmt: skip
    section.targets.append(
        Target(
            what=f"earlier-runs index over {n:,} lines",
            goal=f"<= {INDEX_TARGET_S:g} s",
            value=f"{index_s:.2f} s, {index_child.maxrss_mb:.0f} MB",
            met=index_s <= INDEX_TARGET_S,
            why=""
            if index_s <= INDEX_TARGET_S
            else "the scanner in poller/output/resume.py (~3 us a line with a plain set on this "
            "machine when measured) plus ~1.3 us a key for the compact set",
        )
    )
    section.notes.append(
        f"Generating the three files took {gen.wall:.1f} s (in a child process). A child's "
        "peak RSS includes the bench process's own at the moment it was started (Linux copies "
        f"the high-water mark at fork and keeps it across exec): `python -c pass` shows "
        f"{floor.maxrss_mb:.0f} MB here. Each key set (poller/input/keyset.py) holds a token "
        "in ~12 bytes once past 65,536 keys (6 bytes stored, the rest allocator slack); a "
        "Python set of ints took ~76, so (b) would have held its ~13 million keys in ~1 GB."
    )
    section.commands += [shown(dry.argv), shown(index_child.argv), shown(sim_argv),
                         shown(real.argv)]  # fmt: skip
    section.seconds = time.perf_counter() - started
    return section


if __name__ == "__main__":
    # `python -m bench.scale DIR N`: write the Scale inputs for N tokens into DIR.
    import sys

    write_inputs(Path(sys.argv[1]), int(sys.argv[2]))
