"""Assembles one run: the HTTP session, client, engine and sink, plus the signal handling.

Kept out of cli.py (which only parses arguments) so tests and library users can run a job
in-process with the same wiring the command uses.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from poller.api.client import FaceIdClient
from poller.config.settings import Settings
from poller.input.reader import run_in_daemon_thread
from poller.input.tokens import InputItem
from poller.observability.progress import Progress
from poller.output.records import JsonlSink
from poller.pipeline.engine import Engine

if TYPE_CHECKING:
    from poller.observability.metrics import MetricsWriter

log = logging.getLogger("poller")

SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


def ssl_context(settings: Settings) -> ssl.SSLContext:
    # TLS verification is always on; a corporate CA bundle is added, never a bypass.
    context = ssl.create_default_context()
    if settings.ca_bundle:
        context.load_verify_locations(cafile=settings.ca_bundle)
    return context


def proxy_for(endpoint: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy HTTPS_PROXY/HTTP_PROXY/NO_PROXY (and ~/.netrc) name for the endpoint.

    Looked up once per run rather than with `trust_env=True`, which makes aiohttp re-read the
    environment and ~/.netrc on every request: that cost more CPU than signing (benchmarks)."""
    try:
        return get_env_proxy_for_url(URL(endpoint))
    except LookupError:
        return None, None


class _Stopper:
    """First signal: send nothing more, give requests on the wire `grace_period`. Second: now."""

    def __init__(self, engine: Engine, grace: float) -> None:
        self.engine = engine
        self.grace = grace
        self.timer: asyncio.TimerHandle | None = None

    def __call__(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        if self.engine.stats.stopped_by is None:
            log.warning(
                "%s received: sending no more requests; those on the wire have %g s to finish "
                "(send it again to stop at once)",
                name,
                self.grace,
            )
            self.engine.stop(name)
            self.timer = loop.call_later(self.grace, self.engine.abort)
        else:
            log.warning("%s received again: stopping now", name)
            self.engine.abort()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


async def _show_progress(
    engine: Engine,
    out: list[Progress],
    interval: float,
    count_entries: Callable[[], int | None] | None,
) -> None:
    # Counting the input's entries (for the bar's total and ETA) runs in a thread while the
    # run starts: the first request does not wait for a scan of a million-line file. It reads
    # the input a second time, so the caller passes it only for a regular file: on a pipe it
    # would steal tokens from the run (issue 9).
    total = await run_in_daemon_thread(count_entries) if count_entries else None
    progress = Progress(engine.stats, engine.pacer, total=total, interval=interval)
    out.append(progress)
    await progress.run_periodically(0.5)


async def run_job(
    settings: Settings,
    items: Iterable[InputItem],
    sink: JsonlSink,
    *,
    already_final: Callable[[str], bool] | None = None,
    expired_before: Callable[[str], bool] | None = None,
    handle_signals: bool = False,
    progress: bool = False,
    progress_interval: float = 60.0,
    count_entries: Callable[[], int | None] | None = None,
    metrics_file: str | None = None,
    metrics_interval: float = 15.0,
) -> Engine:
    """Run one batch. Progress and metrics are side tasks that only read the counters.

    With `handle_signals`, SIGINT/SIGTERM stop the run gracefully (a second one at once); a
    run stopped by one leaves both ignored on return, for a caller that is about to exit."""
    connector = aiohttp.TCPConnector(limit=settings.concurrency, ssl=ssl_context(settings))
    proxy, proxy_auth = proxy_for(settings.endpoint)
    async with aiohttp.ClientSession(
        connector=connector, proxy=proxy, proxy_auth=proxy_auth
    ) as session:
        engine = Engine(
            settings,
            FaceIdClient(session, settings),
            sink,
            already_final=already_final,
            expired_before=expired_before,
        )
        loop = asyncio.get_running_loop()
        stopper = _Stopper(engine, settings.grace_period)
        if handle_signals:
            for signum, name in SIGNALS.items():
                loop.add_signal_handler(signum, stopper, name)
        side_tasks: list[asyncio.Task[None]] = []
        metrics: MetricsWriter | None = None
        if metrics_file:
            from poller.observability.metrics import (
                MetricsWriter,
            )  # prometheus_client: only when asked for

            metrics = MetricsWriter(
                metrics_file,
                engine.stats,
                engine.pacer,
                metrics_interval,
                pending_codes=settings.pending_codes,
            )
            side_tasks.append(loop.create_task(metrics.run()))
        bar: list[Progress] = []
        if progress:
            side_tasks.append(
                loop.create_task(_show_progress(engine, bar, progress_interval, count_entries))
            )
        try:
            await engine.run(items)
        finally:
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            for shown in bar:
                shown.close()
            if metrics is not None:
                metrics.final()
            stopper.close()
            if handle_signals:
                for signum in SIGNALS:
                    loop.remove_signal_handler(signum)
                    if engine.stats.stopped_by is not None:
                        # Already stopping on a signal: a repeat while the process exits
                        # changes nothing, and must not kill it mid-exit (Python resets
                        # SIGINT to the default action during finalisation), so the exit
                        # status stays 130/143.
                        signal.signal(signum, signal.SIG_IGN)
    return engine
