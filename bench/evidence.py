"""Evidence archiving: `poller run --evidence DEST` at the 20/s quota, at Tencent's file sizes.

The issue asks two things of `--evidence` (SPEC §8): how fast it keeps media (MB/s), and that the
downloads never hold up the API pace (quota use >= 0.9 with archiving on). Both are measured on
the real `poller run` in its own process against the simulator in another, with the quota
bench's strict 20/s window and latency, pending tokens off and the media at `--media-scale`
(1.0: Tencent's example sizes); DEST is a scratch directory on the local disk, removed after each
case so the disk does not fill.

- quota use: as `bench.quota` defines it (admitted / (quota x first-to-last API arrival)).
- MB/s: bytes stored in DEST over the poller's wall time, and over the span from the first file
  stored to the last (file mtimes: the simulator's media log has no times).
- MB/token: bytes stored / tokens. A token has one card result's files and one set per
  CompareResults attempt (1 to 5), so it is well above the ~12 MB of one set.
- backlog: answers waiting for their media, read back as (tokens answered by t) - (manifests
  written by t): the API arrival log against each token's manifest mtime. When it reaches the
  poller's `evidence_backlog`, the API workers wait for room: from then on the archive, not the
  quota, sets the pace (by design; what it costs is the point of the full-size case).

Every token must come back with exactly one final line whose evidence is complete, and DEST
must hold exactly the bytes the lines say were fetched: anything else fails the measurement.

    python -m bench evidence            # this measurement alone (~3 min)
    python -m bench evidence --quick    # tiny files, a smoke test (~15 s)
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.model import ACTION, MARGIN, QUOTA, Section, Sizes, Table, Target, fmt
from bench.procs import (
    ChildResult,
    PollerSummary,
    add_run,
    check_exit,
    parse_summary,
    poller_run,
    run_child,
    scratch,
    simulator,
    write_tokens,
)
from bench.quota import LATENCY_MS, PRE_JITTER_MS, QuotaUse, quota_use, tokens_for
from bench.shared import request_log
from poller.config.settings import Settings
from poller.evidence.manifest import MANIFEST
from poller.simulator.media import CARD_FILES, COMPARE_FILES, SPREAD

TARGET_USE = 0.9
LEAN_FIELDS = ("BestFrame", "CardImage")
LOG_SIZE = 200_000
MB = 1e6
# The poller's defaults, read from it so the report follows them if they change.
DEFAULT_CONCURRENCY = Settings().evidence_concurrency
# For the full-size case: half the default (its earlier value, 8), and the default.
CONCURRENCIES = (DEFAULT_CONCURRENCY // 2, DEFAULT_CONCURRENCY)
BACKLOG = Settings().evidence_backlog
# The most a token can carry at scale 1: the card's files and five attempts', all at +SPREAD.
MAX_TOKEN_BYTES = (
    sum(size for *_, size in CARD_FILES) + 5 * sum(size for *_, size in COMPARE_FILES)
) * (1 + SPREAD)
DISK_SPARE = 2e9  # left free on top of the most a case can store


@dataclass(frozen=True, slots=True)
class EvidenceCase:
    name: str
    tokens: int
    scale: float
    fields: tuple[str, ...] = ()  # () = every field (the poller's default)
    concurrency: int = DEFAULT_CONCURRENCY

    def simulator_flags(self) -> tuple[str, ...]:
        return (
            "--any-token", "--rate", f"{QUOTA:g}", "--latency-ms", f"{LATENCY_MS:g}",
            "--pre-jitter-ms", f"{PRE_JITTER_MS:g}", "--media-scale", f"{self.scale:g}",
            "--request-log-size", str(LOG_SIZE),
        )  # fmt: skip

    def poller_flags(self, dest: Path) -> tuple[str, ...]:
        flags = ["--rate", f"{QUOTA:g}", "--evidence", str(dest)]
        if self.fields:
            flags += ["--evidence-fields", ",".join(self.fields)]
        flags += ["--evidence-concurrency", str(self.concurrency)]
        return tuple(flags)

    @property
    def fields_shown(self) -> str:
        return " + ".join(self.fields) if self.fields else "all"


@dataclass(frozen=True, slots=True)
class Stored:
    """What DEST held after the run: media files (not manifests), their bytes and mtimes."""

    files: int
    bytes: int
    first: float  # wall clock: the earliest file's mtime
    last: float
    per_second: tuple[float, ...]  # bytes stored in each second from `origin` (see `read_dest`)
    manifests: tuple[tuple[str, float], ...]  # (token directory, mtime), wall clock


@dataclass(frozen=True, slots=True)
class EvidenceResult:
    case: EvidenceCase
    use: QuotaUse
    stored: Stored
    fetched_bytes: int  # what the lines say this run downloaded
    api: tuple[float, ...]  # API arrivals, seconds from the first
    backlog_max: int
    backlog_full_at: float | None  # seconds from the first API arrival; None: never full
    summary: PollerSummary
    child: ChildResult
    simulator_cpu: float | None
    simulator_argv: tuple[str, ...]

    @property
    def mb_per_token(self) -> float:
        return self.stored.bytes / MB / self.case.tokens

    @property
    def mb_per_s(self) -> float:
        """Bytes stored over the poller's whole wall time (start-up and API tail included)."""
        return self.stored.bytes / MB / self.child.wall

    @property
    def mb_per_s_storing(self) -> float:
        """Bytes stored over the span from the first file stored to the last."""
        span = self.stored.last - self.stored.first
        return self.stored.bytes / MB / span if span > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Tokens archived a second at the storing rate: what the API can keep up with."""
        return self.mb_per_s_storing / self.mb_per_token if self.mb_per_token else 0.0

    def pace(self, start: float, end: float) -> float:
        """API requests a second between `start` and `end` (seconds from the first)."""
        if end <= start:
            return 0.0
        n = bisect.bisect_left(self.api, end) - bisect.bisect_left(self.api, start)
        return n / (end - start)

    def api_per_second(self) -> list[int]:
        counts = [0] * (int(self.api[-1]) + 1 if self.api else 0)
        for t in self.api:
            counts[int(t)] += 1
        return counts


def max_backlog(
    answered: Iterable[float], archived: Iterable[float], room: int
) -> tuple[int, float | None]:
    """The most answers waiting for their media at once, and the first time it reached `room`
    (None: never). An answer waits from `answered` until its manifest is written (`archived`),
    both on one clock."""
    events = sorted([(t, 1) for t in answered] + [(t, -1) for t in archived])
    waiting = peak = 0
    full_at: float | None = None
    for t, step in events:
        waiting += step
        if waiting > peak:
            peak = waiting
        if full_at is None and waiting >= room:
            full_at = t
    return peak, full_at


def evidence_problems(lines: Iterable[bytes], tokens: Sequence[str]) -> str:
    """What is wrong with the output as the lines of `tokens` with every file kept ("" when
    each token has exactly one final line with complete evidence, and nothing else is there)."""
    seen: dict[str, int] = {}
    unreadable = not_final = no_evidence = incomplete = 0
    example = ""
    for raw in lines:
        try:
            line = json.loads(raw)
            token = str(line["token"])
        except (ValueError, KeyError, TypeError):
            unreadable += 1
            continue
        seen[token] = seen.get(token, 0) + 1
        evidence = line.get("evidence")
        if line.get("final") is not True:
            not_final += 1
        if not isinstance(evidence, dict):
            no_evidence += 1
        elif evidence.get("missing"):
            incomplete += 1
            example = example or f" (e.g. {evidence['missing'][0]})"
    wanted = set(tokens)
    problems = {
        "tokens without a line": len(wanted - seen.keys()),
        "tokens twice or more": sum(1 for t, n in seen.items() if n > 1 and t in wanted),
        "lines of other tokens": sum(n for t, n in seen.items() if t not in wanted),
        "unreadable lines": unreadable,
        "lines not final": not_final,
        "lines without evidence": no_evidence,
        "lines with evidence missing": incomplete,
    }
    text = ", ".join(f"{n} {what}" for what, n in problems.items() if n)
    return text + example if incomplete else text


def read_dest(dest: Path, origin: float) -> Stored:
    """Walk DEST once: media files, bytes, mtimes (bytes per second counted from `origin`, wall
    clock) and each token's manifest mtime (when its archive pass ended)."""
    files = total = 0
    first, last = float("inf"), 0.0
    per_second: list[float] = []
    manifests: list[tuple[str, float]] = []
    for root, _dirs, names in os.walk(dest):
        for name in names:
            st = os.stat(os.path.join(root, name))
            mtime = st.st_mtime_ns / 1e9
            if name == MANIFEST:
                manifests.append((os.path.relpath(root, dest), mtime))
                continue
            if name.startswith("."):
                raise RuntimeError(f"a partial download was left in DEST: {root}/{name}")
            files += 1
            total += st.st_size
            first, last = min(first, mtime), max(last, mtime)
            k = max(int(mtime - origin), 0)
            per_second.extend([0.0] * (k + 1 - len(per_second)))
            per_second[k] += st.st_size
    return Stored(files, total, first if files else 0.0, last, tuple(per_second), tuple(manifests))


def _process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a running process so far (Linux), None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _check_disk(where: Path, case: EvidenceCase) -> None:
    need = case.tokens * MAX_TOKEN_BYTES * case.scale + DISK_SPARE
    free = shutil.disk_usage(where).free
    if free < need:
        raise RuntimeError(
            f"{case.name}: {free / 1e9:.1f} GB free in {where}, the case may store "
            f"{(need - DISK_SPARE) / 1e9:.1f} GB (and {DISK_SPARE / 1e9:g} GB is left spare)"
        )


def measure(case: EvidenceCase, workdir: Path) -> EvidenceResult:
    """One case end to end: its own simulator, token file and DEST (removed before returning)."""
    tokens_file = write_tokens(workdir / f"tokens-{case.tokens}.txt", case.tokens)
    tokens = tokens_file.read_text(encoding="ascii").split()
    output = workdir / "out.jsonl"
    output.unlink(missing_ok=True)
    dest = workdir / "evidence"
    _check_disk(workdir, case)
    try:
        with simulator(*case.simulator_flags()) as sim:
            argv = poller_run(tokens_file, output, sim.endpoint, *case.poller_flags(dest))
            child = run_child(argv, timeout=900)
            sim.check_alive()
            sim_cpu = _process_cpu(sim.proc.pid)
            stats = sim.stats()
            log = request_log(sim)
            sim_argv = sim.argv
        # Exit 1 (tokens not final) is a failure here: every file must have been kept.
        check_exit(child)
        problems = evidence_problems(output.read_bytes().splitlines(), tokens)
        if problems:
            raise RuntimeError(f"{case.name}: {problems}")
        if log["dropped"]:
            raise RuntimeError(f"the simulator's request log dropped {log['dropped']} arrivals")
        # One clock for the log (monotonic) and the mtimes (wall): read the offset here.
        wall_minus_mono = time.time() - time.monotonic()
        arrivals = [e for e in log["requests"] if e["action"] == ACTION]
        first = float(arrivals[0]["arrived"])
        stored = read_dest(dest, first + wall_minus_mono)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    fetched = 0
    for raw in output.read_bytes().splitlines():
        fetched += int(json.loads(raw)["evidence"]["fetched_bytes"])
    media = stats["media"]
    if fetched != stored.bytes or int(media["by_outcome"].get("ok", 0)) != stored.files:
        raise RuntimeError(
            f"{case.name}: DEST holds {stored.files} files, {stored.bytes} bytes; the lines say "
            f"{fetched} bytes were fetched, the simulator served {media['by_outcome']}"
        )
    # An answer waits from its request's answer (the last request for its token: a throttled
    # one is asked again) to its manifest.
    answered: dict[str, float] = {}
    for e in arrivals:
        answered[str(e["token"])] = float(e["answered"] or e["arrived"]) + wall_minus_mono
    peak, full_at = max_backlog(
        answered.values(), (mtime for _, mtime in stored.manifests), BACKLOG
    )
    origin = first + wall_minus_mono
    return EvidenceResult(
        case=case,
        use=quota_use(stats, QUOTA),
        stored=stored,
        fetched_bytes=fetched,
        api=tuple(sorted(float(e["arrived"]) - first for e in arrivals)),
        backlog_max=peak,
        backlog_full_at=None if full_at is None else full_at - origin,
        summary=parse_summary(child.stderr),
        child=child,
        simulator_cpu=sim_cpu,
        simulator_argv=sim_argv,
    )


# -- the section -------------------------------------------------------------------------------


def use_target(r: EvidenceResult) -> Target:
    use = r.use
    # At the 3 decimals shown, as the quota bench compares.
    ok = round(use.share, 3) >= TARGET_USE
    why = ""
    if not ok:
        if r.backlog_full_at is not None:
            t = r.backlog_full_at
            end = r.api[-1] if r.api else 0.0
            why = (
                f"the archive is the limit: it stored {r.mb_per_s_storing:.0f} MB/s = "
                f"{r.tokens_per_s:.1f} tokens/s at {r.mb_per_token:.1f} MB a token, under the "
                f"{QUOTA * (1 - MARGIN):g}/s pace; the backlog of answers waiting for their "
                f"media reached its {BACKLOG} at {t:.1f} s, and the API pace went from "
                f"{r.pace(0.0, t):.1f}/s before to {r.pace(t, end):.1f}/s after"
            )
        elif use.throttled:
            why = _throttles(r)
        else:
            why = f"the API left slots unused with the backlog at most {r.backlog_max}"
        if use.throttled and r.backlog_full_at is not None:
            why += "; " + _throttles(r)
    return Target(
        what=f"quota use with archiving on, {r.case.name}",
        goal=f">= {TARGET_USE}",
        value=f"{use.share:.3f}, {use.throttled} throttled",
        met=ok,
        why=why,
    )


def _throttles(r: EvidenceResult) -> str:
    s = r.summary
    return (
        f"{r.use.throttled} requests throttled, the pace lowered {s.slowdowns} time(s), "
        f"{s.below_target:.1f} s below its target (the backlog at most {r.backlog_max})"
    )


def sustained_use(r: EvidenceResult) -> float:
    """The quota use the archive allows once the backlog is full: the API can answer only as
    many tokens a second as the archive stores (at most the pace). Where the archive kept up,
    it stored as fast as answers came, so this is the pace it was given, a floor."""
    return min(r.tokens_per_s, QUOTA * (1 - MARGIN)) / QUOTA


def sustained_target(r: EvidenceResult) -> Target:
    value = sustained_use(r)
    ok = round(value, 3) >= TARGET_USE
    why = ""
    if not ok:
        why = (
            f"bandwidth: {r.mb_per_s_storing:.0f} MB/s stored (loopback, MD5, disk; the poller "
            f"at {r.child.cpu / r.child.wall:.2f} cores) / {r.mb_per_token:.1f} MB a token = "
            f"{r.tokens_per_s:.1f} tokens/s; a run longer than the {BACKLOG}-answer backlog "
            "can hide goes at that pace"
        )
    return Target(
        what=f"quota use the archive sustains, {r.case.name}",
        goal=f">= {TARGET_USE}",
        value=f"{value:.3f} ({r.tokens_per_s:.1f} tokens/s archived)",
        met=ok,
        why=why,
    )


HEADERS = (
    "case", "fields", "concurrency", "tokens", "MB/token", "stored MB", "files", "wall s",
    "MB/s (wall)", "MB/s (storing)", "API span s", "quota use", "throttled", "slowdowns",
    "below target pace s", "max in 1 s window", "max backlog", "poller CPU s (cores)",
    "simulator CPU s",
)  # fmt: skip


def _row(r: EvidenceResult) -> list[str]:
    c, use = r.case, r.use
    full = f" (full at {r.backlog_full_at:.1f} s)" if r.backlog_full_at is not None else ""
    sim_cpu = "-" if r.simulator_cpu is None else fmt(r.simulator_cpu, 1)
    return [
        c.name,
        c.fields_shown,
        str(c.concurrency),
        str(c.tokens),
        fmt(r.mb_per_token, 2),
        fmt(r.stored.bytes / MB, 0),
        str(r.stored.files),
        fmt(r.child.wall, 1),
        f"**{r.mb_per_s:.1f}**",
        fmt(r.mb_per_s_storing, 1),
        fmt(use.span, 1),
        f"**{use.share:.3f}**",
        str(use.throttled),
        str(r.summary.slowdowns),
        fmt(r.summary.below_target, 1),
        f"{use.max_in_window} / {int(QUOTA)}",
        f"{r.backlog_max} / {BACKLOG}{full}",
        f"{r.child.cpu:.1f} ({r.child.cpu / r.child.wall:.2f})",
        sim_cpu,
    ]


def _series(values: Iterable[float]) -> str:
    return "`" + " ".join(f"{v:.0f}" for v in values) + "`"


def series_table(results: Sequence[EvidenceResult]) -> Table:
    rows = []
    for r in results:
        rows.append([r.case.name, "API requests", _series(r.api_per_second())])
        rows.append([r.case.name, "MB stored", _series(b / MB for b in r.stored.per_second)])
    return Table(("case", "each second from the first API request", "series"), rows)


def cases(sizes: Sizes) -> list[EvidenceCase]:
    full = [
        EvidenceCase(
            f"all fields, {n} downloads",
            sizes.evidence_full_tokens,
            sizes.evidence_scale,
            concurrency=n,
        )
        for n in CONCURRENCIES
    ]
    lean = EvidenceCase(
        "BestFrame + CardImage",
        tokens_for(QUOTA, sizes.evidence_seconds),
        sizes.evidence_scale,
        fields=LEAN_FIELDS,
    )
    return [*full, lean]


def run(sizes: Sizes) -> Section:
    started = time.perf_counter()
    with scratch("evidence") as workdir:
        results = [measure(case, workdir) for case in cases(sizes)]
    section = Section(
        title="Evidence archiving",
        intro=(
            "The real `poller run --evidence DEST` (subprocess, `--rate 20`, 5% margin) against "
            "the simulator in its own process: the quota bench's strict sliding 1 s window of "
            f"{QUOTA:g}/s, `--latency-ms {LATENCY_MS:g} --pre-jitter-ms {PRE_JITTER_MS:g}`, "
            f"pending tokens off, media at `--media-scale {sizes.evidence_scale:g}` "
            "(1 = Tencent's example sizes, SPEC §8: ~12 MB for the card and one attempt, "
            "~2.6 MB more for each further CompareResults attempt, 1 to 5 a token). DEST is a "
            "scratch directory on the local disk, removed after each case. *quota use* as in "
            "Quota use (admitted / (20 x first-to-last API arrival)); *MB/s (wall)* = bytes "
            "stored / the poller's wall time; *MB/s (storing)* = the same over the span from "
            "the first file stored to the last (file mtimes); *MB/token* = bytes stored / "
            "tokens. *max backlog* = the most answers waiting for their media at once (tokens "
            "answered less manifests written), of the poller's `evidence_backlog` room: when it "
            "is full the API workers wait, and the archive sets the pace: *quota use the archive "
            "sustains* = min(tokens archived a second while storing, 19) / 20 is what a run "
            "too long for the backlog to hide would get. Every token has one "
            "final line with complete evidence, and DEST holds exactly the bytes the lines say "
            "were fetched (else the measurement fails). *poller CPU* is the process's own "
            "(`wait4`), with the cores it kept busy on average; the simulator's is read from "
            "/proc before it stops."
        ),
    )
    section.tables.append(Table(HEADERS, [_row(r) for r in results]))
    section.tables.append(series_table(results))
    for r in results:
        section.targets.extend((use_target(r), sustained_target(r)))
    section.notes.append(
        "Throttles with archiving on (the quota bench's 20/s case, the same simulator, has "
        "none): the downloads share the event loop that paces the API, and at full sizes the "
        "poller keeps about one core busy hashing and writing. Since this was measured, MD5 "
        "and disk writes run on worker threads in megabyte blocks and bodies are read in "
        "megabyte pieces (the table above is after that change). Before it, a monitor "
        "task in the poller's loop (10 ms ticks, 300 tokens, all fields, 8 downloads) saw lags "
        "of p50 4.5 ms, p99 8.8 ms, max 48 ms, against p50 0.3, max 5 ms without `--evidence`, "
        "and BestFrame + CardImage alone (200 tokens) p99 11 ms, max 42 ms; under asyncio's "
        "debug mode one step of `TokenArchive._keep` held the loop 140 ms. A late wake-up "
        "delays API sends; the pacer's drift-free schedule then sends the missed slots 3/4 of a"
        " slot apart, and with the +-20 ms jitter a 1 s window can hold 21 (seen in the arrival"
        " log: a 174 ms gap at 0.3 s, then gaps of 16 and 28 ms, 21 in the window ending at "
        "1.36 s). Each throttle lowers the pace to 70% and costs ~2.5 s below target pace."
    )
    for r in results:
        add_run(section, r.case.name, r.simulator_argv, r.child.argv)
    section.seconds = time.perf_counter() - started
    return section
