"""Scale: peak memory over a 1,000,000-token input, and loading resume state from 1,000,000 lines.

Peak RSS is `ru_maxrss` of the poller process alone (from `wait4`). The real run is stopped with
SIGTERM after a fixed time (the poller then exits 143 after writing what it finished): it shows
the memory of streaming a huge input at full speed, not of finishing it.
"""

from __future__ import annotations

import importlib.util
import json
import time
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
    write_tokens,
)

RSS_TARGET_MB = 150.0
RESUME_TARGET_S = 5.0
EXIT_SIGTERM = 143


def write_output_file(path: Path, lines: int) -> Path:
    """`lines` result lines as the poller writes them (summary detail), plus one torn last line
    (what a crash leaves behind), over distinct tokens: a mix of final and not-final statuses."""
    from poller.api.outcomes import Status
    from poller.config.settings import Detail
    from poller.output.records import ErrorInfo, build_record, encode_record

    checked_at = time.time()
    response = {"Result": "0", "Description": "Success", "ChargeCount": 1, "RequestId": "r"}
    failed = dict(response, Result="2016", Description="Similarity under threshold")
    kinds = [
        (Status.PASSED, True, response, None),
        (Status.FAILED, True, failed, None),
        (Status.PASSED, True, response, None),
        (Status.PENDING, False, dict(response, Result="-999"), None),
        (Status.ERROR, False, None, ErrorInfo("InternalError", "An internal error occurred.")),
    ]
    templates = []
    for status, final, resp, error in kinds:
        record = build_record(
            token="\x00",  # noqa: S106 - a placeholder, swapped for each line's token
            status=status,
            final=final,
            attempts=1,
            checked_at=checked_at,
            response=resp,
            error=error,
            detail=Detail.SUMMARY,
        )
        head, tail = encode_record(record).split(b"\\u0000")
        templates.append((head, tail))
    tokens = write_tokens(path.with_suffix(".tokens"), lines, seed=7)
    with tokens.open("rb") as src, path.open("wb") as out:
        for i, raw in enumerate(src):
            head, tail = templates[i % len(templates)]
            out.write(head + raw.rstrip(b"\n") + tail)
        out.write(b'{"token":"torn-line","status":"pas')
    tokens.unlink()
    return path


def measure_resume(lines: int, workdir: Path) -> tuple[ChildResult | None, dict[str, float | None]]:
    """None when `poller.output.resume` does not exist (it was written on another branch)."""
    if importlib.util.find_spec("poller.output.resume") is None:
        return None, {}
    output = write_output_file(workdir / "resume.jsonl", lines)
    child = run_child((PYTHON, "-m", "bench.resume_probe", str(output)), timeout=300)
    check_exit(child)
    report: dict[str, float | None] = json.loads(child.stdout.strip().splitlines()[-1])
    return child, report


def run(sizes: Sizes) -> Section:
    started = time.perf_counter()
    n = sizes.scale_tokens
    section = Section(
        title="Scale",
        intro=(
            f"A generated {n:,}-token input (UUID-shaped tokens, one a line). Peak RSS is the "
            "poller process's own `ru_maxrss`. (a) `--dry-run` reads, checks and de-duplicates "
            f"every token; (b) a real run at `--rate 100000` against the `--any-token` "
            f"simulator, sent SIGTERM after {sizes.scale_run_seconds:g} s (exit 143 after "
            f"writing what it finished). Resume: `load_resume_state` over a {sizes.resume_lines:,}"
            "-line output file (summary detail, mixed statuses, one torn last line)."
        ),
    )
    with scratch("scale") as workdir:
        tokens = write_tokens(workdir / "tokens.txt", n)
        dry_argv = (PYTHON, "-m", "poller", "run", "--tokens", str(tokens), "--dry-run")
        dry = run_child(dry_argv, timeout=600)
        check_exit(dry)
        output = workdir / "out.jsonl"
        with simulator("--any-token", "--rate", "100000") as sim:
            argv = poller_run(tokens, output, sim.endpoint, "--rate", "100000")
            real = run_child(argv, terminate_after=sizes.scale_run_seconds, timeout=600)
            sim.check_alive()
            sim_argv = sim.argv
        check_exit(real, (0, EXIT_SIGTERM))
        written = count_lines(output)
        resume_child, resume = measure_resume(sizes.resume_lines, workdir)
    rows = [
        ["(a) `--dry-run`", f"{n:,}", fmt(dry.wall, 1), f"**{dry.maxrss_mb:.0f}**",
         str(dry.returncode)],
        [f"(b) real run, SIGTERM after {sizes.scale_run_seconds:g} s", f"{written:,} written",
         fmt(real.wall, 1), f"**{real.maxrss_mb:.0f}**", str(real.returncode)],
    ]  # fmt: skip
    section.tables.append(Table(("run", "tokens", "wall s", "peak RSS MB", "exit"), rows))
    section.notes.append(
        "The real run's figure covers the tokens it reached before SIGTERM: the bounded queue "
        "keeps the input streaming, but the de-duplication set grows with every token read, "
        "so a run that reads the whole input ends near the dry run's figure."
    )
    for label, child in (("--dry-run", dry), ("real run", real)):
        section.targets.append(
            Target(
                what=f"peak RSS, {n:,} tokens, {label}",
                goal=f"<= {RSS_TARGET_MB:g} MB",
                value=f"{child.maxrss_mb:.0f} MB",
                met=child.maxrss_mb <= RSS_TARGET_MB,
                why=""
                if child.maxrss_mb <= RSS_TARGET_MB
                else (
                    "the de-duplication set in `poller.input.triage` holds every token as a str "
                    "(~124 MB per million UUID-shaped tokens, measured); 16-byte blake2b "
                    "digests would take ~93 MB, 64-bit ints ~78 MB"
                ),
            )
        )
    if resume_child is None:
        section.tables.append(
            Table(("resume state", "lines", "seconds", "peak RSS MB"),
                  [["`poller.output.resume.load_resume_state`", f"{sizes.resume_lines:,}",
                    "not available", "not available"]])
        )  # fmt: skip
        section.targets.append(
            Target(
                what=f"resume state from {sizes.resume_lines:,} lines",
                goal=f"<= {RESUME_TARGET_S:g} s",
                value="not available",
                met=None,
                why="`poller.output.resume` is not on this branch; the measurement runs once it is",
            )
        )
    else:
        seconds = float(resume["seconds"] or 0.0)
        entries = resume.get("entries")
        section.tables.append(
            Table(
                ("resume state", "lines", "entries loaded", "seconds", "peak RSS MB"),
                [["`poller.output.resume.load_resume_state`", f"{sizes.resume_lines:,}",
                  "n/a" if entries is None else f"{int(entries):,}", f"**{seconds:.2f}**",
                  f"{resume_child.maxrss_mb:.0f}"]],
            )
        )  # fmt: skip
        section.targets.append(
            Target(
                what=f"resume state from {sizes.resume_lines:,} lines",
                goal=f"<= {RESUME_TARGET_S:g} s",
                value=f"{seconds:.2f} s, {resume_child.maxrss_mb:.0f} MB",
                met=seconds <= RESUME_TARGET_S,
                why="" if seconds <= RESUME_TARGET_S else "load_resume_state is too slow",
            )
        )
        section.commands.append(shown(resume_child.argv))
    section.commands[:0] = [shown(dry.argv), shown(sim_argv), shown(real.argv)]
    section.seconds = time.perf_counter() - started
    return section
