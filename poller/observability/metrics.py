"""A Prometheus metrics file for node_exporter's textfile collector.

`write_metrics` renders a snapshot of the live `RunStats` and `Pacer` in the Prometheus text
format (prometheus_client, a private registry: nothing leaks into or out of the global one) and
replaces the file atomically, so the collector never reads half a file. `MetricsWriter` does it
every `interval` seconds while the run lasts and once more at the end with `running 0`.

A run killed with SIGKILL never writes `running 0`; alert on staleness with node_exporter's own
`node_textfile_mtime_seconds` rather than trusting `running` alone.

`faceid_poller_last_success_timestamp_seconds` is `RunStats.last_success`, which the engine
sets only when a token settles passed, failed or pending: throttles and API errors do not
refresh it, so a staleness alert fires through a throttling outage. It is left out until the
first such answer (never written as NaN): `time() - NaN` makes an alert rule silently false,
whereas a missing series is caught by `absent()`. `faceid_poller_run_start_timestamp_seconds`
likewise appears once the run has started.

`faceid_poller_result_codes{code}` takes its label from the server's `Result`; only the codes
SPEC §1.4 documents (and the pending codes) are kept as labels, every other one is counted as
`other`: a label value per unknown code would let the server grow the series without bound.

The final write (`running 0`) adds how the run ended: `faceid_poller_exit_status` and
`faceid_poller_stopped{reason}` (1 for the reason the run stopped early, 0 for the others), so
an alert can tell a breaker trip from a Ctrl-C without reading the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from poller.api.outcomes import Status
from poller.config.settings import Settings
from poller.pipeline.pacing import Pacing
from poller.pipeline.stats import RunStats

log = logging.getLogger("poller")

PREFIX = "faceid_poller_"
# The textfile collector runs as another user (node_exporter) and must be able to read the file.
# World-readable is fine: it holds counts and rates only, no tokens, personal data or secrets.
FILE_MODE = 0o644

# SPEC §1.4: "0" (passed) and every documented failure code.
DOCUMENTED_RESULT_CODES = frozenset(
    {
        "0",
        "1001",
        "1002",
        "1004",
        "1005",
        "1201",
        "2004",
        "2012",
        "2013",
        "2014",
        "2015",
        "2016",
        "2017",
    }
)
DEFAULT_PENDING_CODES: tuple[str, ...] = Settings().pending_codes
OTHER_CODE = "other"
# Why a run stopped early, in the order `RunStats.exit_status` decides: at most one is 1.
STOP_REASONS = ("fatal", "breaker", "local_error", "signal", "deadline")


def bounded_result_codes(counts: Mapping[str, int], known: frozenset[str]) -> dict[str, int]:
    """`counts` with every code outside `known` added up under "other" (present only if any)."""
    bounded: dict[str, int] = {}
    for code, n in counts.items():
        label = code if code in known else OTHER_CODE
        bounded[label] = bounded.get(label, 0) + n
    return bounded


def stop_reason(stats: RunStats) -> str | None:
    """Which of STOP_REASONS ended the run, matching the exit status; None if none did."""
    if stats.fatal is not None:
        return "breaker" if stats.fatal.breaker else "fatal"
    if stats.local_error is not None and not (stats.stopped_by and stats.output_closed):
        return "local_error"
    if stats.stopped_by in ("SIGINT", "SIGTERM"):  # the names RunStats.exit_status knows
        return "signal"
    if stats.stopped_by == "deadline":  # --stop-after
        return "deadline"
    return None


class _Snapshot:
    """A prometheus_client collector over the live counters, read at each write."""

    __slots__ = ("known_codes", "pacer", "running", "stats")

    def __init__(
        self, stats: RunStats, pacer: Pacing, running: bool, known_codes: frozenset[str]
    ) -> None:
        self.stats = stats
        self.pacer = pacer
        self.running = running
        self.known_codes = known_codes

    def collect(self) -> Iterable[Metric]:
        stats, pacer = self.stats, self.pacer

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            # CounterMetricFamily appends the _total suffix, and (unlike a Counter object)
            # no _created series, which would only restate the start time.
            return CounterMetricFamily(PREFIX + name, doc, value=value)

        tokens = GaugeMetricFamily(
            PREFIX + "tokens",
            "Tokens settled in this run, by status (one output line each).",
            labels=["status"],
        )
        for status in Status:  # every status, zeros included: a series that appears late
            tokens.add_metric([status.value], stats.by_status.get(status.value, 0))
        yield tokens

        yield gauge(
            "tokens_not_final",
            "Tokens whose line is not final (pending, or an error): poll them again later.",
            stats.not_final,
        )
        yield gauge(
            "lines_unwritten",
            "Lines counted above that never reached the output (it failed, or its reader "
            "stalled until a hard stop): their tokens are asked again by the next run.",
            stats.unwritten,
        )
        yield gauge(
            "requests_cut_off",
            "Requests still on the wire when a hard stop came; their tokens got lines that "
            "are not final.",
            stats.cut_off,
        )
        yield gauge(
            "duplicates_skipped",
            "Input entries skipped as repeats of a token already seen in this run.",
            stats.duplicates,
        )
        yield gauge(
            "already_final_skipped",
            "Tokens skipped because the output file already has a final line for them.",
            stats.skipped_final,
        )
        yield gauge(
            "final_earlier_skipped",
            "Tokens skipped because an earlier run's results file (--skip-final-in) has a "
            "final line for them; they get no line in this run.",
            stats.final_earlier,
        )
        yield counter(
            "requests", "API requests sent in this run, retries included.", stats.requests
        )
        yield counter("retries", "Attempts that were retries of a failed attempt.", stats.retries)
        yield counter(
            "throttled", "Replies that were RequestLimitExceeded (throttled).", stats.throttles
        )
        yield counter(
            "slowdowns", "Times the pacing rate was lowered after throttling.", pacer.slowdowns
        )
        yield counter(
            "below_target_pace_seconds",
            "Seconds the pace spent below its target after throttling (it climbs back by time).",
            pacer.seconds_below_target,
        )
        if stats.evidence_on:
            yield counter(
                "evidence_files_fetched",
                "Media files downloaded, checked against their MD5 and size, and stored.",
                stats.evidence_files,
            )
            yield counter("evidence_bytes_fetched", "Bytes of those files.", stats.evidence_bytes)
            yield gauge(
                "evidence_incomplete_tokens",
                "Tokens whose evidence is not all kept (not final: the next run asks again).",
                stats.evidence_incomplete,
            )
            yield gauge(
                "evidence_waiting_tokens",
                "Answers whose media are being kept (their lines not yet written); near "
                "evidence_backlog, the archive's bandwidth sets the pace.",
                stats.evidence_waiting,
            )
            yield counter(
                "evidence_requeries",
                "Answers asked again for fresh links after an expired or refused link.",
                stats.evidence_requeries,
            )
        yield counter(
            "charge_count",
            "Sum of ChargeCount over the replies: verifications billed, as FaceID reports them.",
            stats.charges,
        )
        yield gauge(
            "pacing_rate_requests_per_second",
            "Current pacing rate (lower than the target after throttling).",
            pacer.rate,
        )
        yield gauge(
            "target_rate_requests_per_second",
            "Configured pacing rate, below the API quota.",
            pacer.target_rate,
        )
        yield gauge(
            "run_duration_seconds",
            "Seconds since the run started (the whole run once it has finished).",
            stats.elapsed if stats.started else 0.0,
        )
        if stats.started:
            yield gauge(
                "run_start_timestamp_seconds",
                "Unix time the run started.",
                stats.started,
            )
        if stats.last_success is not None:
            yield gauge(
                "last_success_timestamp_seconds",
                "Unix time a token last settled passed, failed or pending (throttles and errors "
                "do not count); absent until the first one.",
                stats.last_success,
            )
        yield gauge(
            "running", "1 while the run is in progress, 0 once it has ended.", float(self.running)
        )

        codes = GaugeMetricFamily(
            PREFIX + "result_codes",
            "Passed and failed tokens in this run, by the FaceID Result code "
            '(undocumented codes as "other").',
            labels=["code"],
        )
        bounded = bounded_result_codes(stats.result_codes, self.known_codes)
        for code, n in sorted(bounded.items()):
            codes.add_metric([code], n)
        yield codes

        if not self.running:
            # Only at the end: while running, the exit status is not decided yet.
            yield gauge(
                "exit_status",
                "The exit status of the run (0 all final, 1 some not final, 3 fatal or "
                "breaker, 4 output/input failure, 130/143 signal).",
                stats.exit_status(),
            )
            stopped = GaugeMetricFamily(
                PREFIX + "stopped",
                "1 for the reason the run stopped early (fatal API error, circuit breaker, "
                "local output/input failure, signal, --stop-after deadline), 0 for the others.",
                labels=["reason"],
            )
            reason = stop_reason(stats)
            for name in STOP_REASONS:
                stopped.add_metric([name], float(name == reason))
            yield stopped
            yield gauge(
                "not_reached_tokens",
                "Input tokens the early stop left unasked (no line; the next run asks them); "
                "a lower bound when the rest of the input could not be read.",
                stats.not_reached,
            )


def known_result_codes(pending_codes: Iterable[str] = DEFAULT_PENDING_CODES) -> frozenset[str]:
    """The `result_codes` label values kept as they are: SPEC §1.4's and the pending codes."""
    return DOCUMENTED_RESULT_CODES | frozenset(pending_codes)


def render_metrics(
    stats: RunStats,
    pacer: Pacing,
    *,
    running: bool,
    pending_codes: Iterable[str] = DEFAULT_PENDING_CODES,
) -> bytes:
    """The metrics in the Prometheus text format (version 0.0.4)."""
    registry = CollectorRegistry()
    registry.register(_Snapshot(stats, pacer, running, known_result_codes(pending_codes)))
    return generate_latest(registry)


def write_metrics(
    path: str,
    stats: RunStats,
    pacer: Pacing,
    *,
    running: bool,
    pending_codes: Iterable[str] = DEFAULT_PENDING_CODES,
) -> None:
    """Replace `path` atomically with the current metrics; raises OSError on failure.

    prometheus_client's `write_to_textfile` does the same temp-file-and-rename, but its temp
    file takes the process umask: under `umask 077` the collector could not read the result.
    So the rename is ours, with the mode set explicitly before the file becomes visible.
    """
    data = render_metrics(stats, pacer, running=running, pending_codes=pending_codes)
    directory, name = os.path.split(os.path.abspath(path))
    # Same directory, so the rename is atomic; the leading dot and .tmp suffix keep the
    # collector (which reads *.prom only) away from the half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
        # No fsync: after a crash a stale or missing metrics file is harmless.
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class MetricsWriter:
    """Writes the metrics file every `interval` seconds, and a last time at the end.

    A failed write is logged (once, until writes succeed again) and never stops the run: the
    results matter more than their metrics. To fail fast on a bad path, call `write_metrics`
    once before starting.
    """

    __slots__ = (
        "_failing",
        "_sleep",
        "failures",
        "interval",
        "pacer",
        "path",
        "pending_codes",
        "stats",
        "writes",
    )

    def __init__(
        self,
        path: str,
        stats: RunStats,
        pacer: Pacing,
        interval: float = 15.0,
        *,
        pending_codes: Iterable[str] = DEFAULT_PENDING_CODES,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be above 0 seconds, not {interval!r}")
        self.path = path
        self.stats = stats
        self.pacer = pacer
        # 15 s matches Prometheus' usual scrape interval: a faster write is never seen.
        self.interval = interval
        self.pending_codes = tuple(pending_codes)
        self._sleep = sleep
        self.writes = 0
        self.failures = 0
        self._failing = False

    async def run(self) -> None:
        """Write at once, then every `interval` seconds, until cancelled.

        The write runs on the event loop, not in a thread: it reads counters the workers are
        changing, and a few hundred bytes to a local file take well under a millisecond."""
        while True:
            self.write(running=True)
            await self._sleep(self.interval)

    def final(self) -> bool:
        """The last write, with `running 0`, the exit status and why the run stopped; call
        after the run (and after cancelling run())."""
        return self.write(running=False)

    def write(self, *, running: bool) -> bool:
        try:
            write_metrics(
                self.path, self.stats, self.pacer, running=running, pending_codes=self.pending_codes
            )
        except OSError as exc:
            self.failures += 1
            if not self._failing:
                log.warning("warning: cannot write the metrics file %s: %s", self.path, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("metrics file %s written again", self.path)
        self._failing = False
        self.writes += 1
        return True

    def __repr__(self) -> str:
        return (
            f"<MetricsWriter {self.path!r} every {self.interval:g}s "
            f"writes={self.writes} failures={self.failures}>"
        )
