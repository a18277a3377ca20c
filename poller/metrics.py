"""A Prometheus metrics file for node_exporter's textfile collector.

`write_metrics` renders a snapshot of the live `RunStats` and `Pacer` in the Prometheus text
format (prometheus_client, a private registry: nothing leaks into or out of the global one) and
replaces the file atomically, so the collector never reads half a file. `MetricsWriter` does it
every `interval` seconds while the run lasts and once more at the end with `running 0`.

A run killed with SIGKILL never writes `running 0`; alert on staleness with node_exporter's own
`node_textfile_mtime_seconds` rather than trusting `running` alone.

`faceid_poller_last_success_timestamp_seconds` is left out until the first well-formed API
answer (never written as NaN): `time() - NaN` makes an alert rule silently false, whereas a
missing series is caught by `absent()`. `faceid_poller_run_start_timestamp_seconds` likewise
appears once the run has started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from poller.engine import RunStats
from poller.pacing import Pacer
from poller.records import Status

log = logging.getLogger("poller")

PREFIX = "faceid_poller_"
# The textfile collector runs as another user (node_exporter) and must be able to read the file.
# World-readable is fine: it holds counts and rates only, no tokens, personal data or secrets.
FILE_MODE = 0o644


class _Snapshot:
    """A prometheus_client collector over the live counters, read at each write."""

    __slots__ = ("pacer", "running", "stats")

    def __init__(self, stats: RunStats, pacer: Pacer, running: bool) -> None:
        self.stats = stats
        self.pacer = pacer
        self.running = running

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
            "duplicates_skipped",
            "Input entries skipped as repeats of a token already seen in this run.",
            stats.duplicates,
        )
        yield gauge(
            "already_final_skipped",
            "Tokens skipped because the output file already has a final line for them.",
            stats.skipped_final,
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
                "Unix time of the last well-formed API answer; absent until the first one.",
                stats.last_success,
            )
        yield gauge(
            "running", "1 while the run is in progress, 0 once it has ended.", float(self.running)
        )

        codes = GaugeMetricFamily(
            PREFIX + "result_codes",
            "Passed and failed tokens in this run, by the FaceID Result code.",
            labels=["code"],
        )
        for code, n in sorted(stats.result_codes.items()):
            codes.add_metric([code], n)
        yield codes


def render_metrics(stats: RunStats, pacer: Pacer, *, running: bool) -> bytes:
    """The metrics in the Prometheus text format (version 0.0.4)."""
    registry = CollectorRegistry()
    registry.register(_Snapshot(stats, pacer, running))
    return generate_latest(registry)


def write_metrics(path: str, stats: RunStats, pacer: Pacer, *, running: bool) -> None:
    """Replace `path` atomically with the current metrics; raises OSError on failure.

    prometheus_client's `write_to_textfile` does the same temp-file-and-rename, but its temp
    file takes the process umask: under `umask 077` the collector could not read the result.
    So the rename is ours, with the mode set explicitly before the file becomes visible.
    """
    data = render_metrics(stats, pacer, running=running)
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

    __slots__ = ("_failing", "_sleep", "failures", "interval", "pacer", "path", "stats", "writes")

    def __init__(
        self,
        path: str,
        stats: RunStats,
        pacer: Pacer,
        interval: float = 15.0,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be above 0 seconds, not {interval!r}")
        self.path = path
        self.stats = stats
        self.pacer = pacer
        # 15 s matches Prometheus' usual scrape interval: a faster write is never seen.
        self.interval = interval
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
        """The last write, with `running 0`; call after the run (and after cancelling run())."""
        return self.write(running=False)

    def write(self, *, running: bool) -> bool:
        try:
            write_metrics(self.path, self.stats, self.pacer, running=running)
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
