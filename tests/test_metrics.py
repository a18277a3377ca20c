"""The metrics file: every value equals the counters, atomically replaced, readable by others."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from poller.engine import RunStats
from poller.metrics import MetricsWriter, render_metrics, write_metrics
from poller.pacing import Pacer
from tests.conftest import PollerLog

P = "faceid_poller_"
Sample = tuple[str, tuple[tuple[str, str], ...]]


def busy_stats() -> RunStats:
    stats = RunStats()
    stats.by_status.update({"passed": 950, "failed": 230, "pending": 15, "error": 5})
    stats.result_codes.update({"0": 950, "-1101": 200, "-1102": 30})
    stats.not_final = 20
    stats.charges = 1180
    stats.requests = 1310
    stats.retries = 110
    stats.throttles = 7
    stats.duplicates = 3
    stats.skipped_final = 40
    stats.last_success = 1_790_000_123.5
    stats.started = 1_790_000_000.0
    stats.finished = 1_790_000_125.0
    return stats


def busy_pacer() -> Pacer:
    pacer = Pacer(19.0)
    pacer.rate = 13.3
    pacer.slowdowns = 2
    return pacer


def parse(text: str) -> dict[Sample, float]:
    values: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in values, f"duplicate series {key}"
            values[key] = sample.value
    return values


def types_and_help(text: str) -> dict[str, tuple[str, str]]:
    return {f.name: (f.type, f.documentation) for f in text_string_to_metric_families(text)}


def test_every_value_equals_the_counters(tmp_path: Path) -> None:
    path = tmp_path / "faceid_poller.prom"
    write_metrics(str(path), busy_stats(), busy_pacer(), running=True)
    values = parse(path.read_text())
    expected: dict[Sample, float] = {
        (P + "tokens", (("status", "passed"),)): 950,
        (P + "tokens", (("status", "failed"),)): 230,
        (P + "tokens", (("status", "pending"),)): 15,
        (P + "tokens", (("status", "expired"),)): 0,
        (P + "tokens", (("status", "invalid_token"),)): 0,
        (P + "tokens", (("status", "error"),)): 5,
        (P + "tokens_not_final", ()): 20,
        (P + "duplicates_skipped", ()): 3,
        (P + "already_final_skipped", ()): 40,
        (P + "requests_total", ()): 1310,
        (P + "retries_total", ()): 110,
        (P + "throttled_total", ()): 7,
        (P + "slowdowns_total", ()): 2,
        (P + "charge_count_total", ()): 1180,
        (P + "pacing_rate_requests_per_second", ()): 13.3,
        (P + "target_rate_requests_per_second", ()): 19.0,
        (P + "run_duration_seconds", ()): 125.0,
        (P + "run_start_timestamp_seconds", ()): 1_790_000_000.0,
        (P + "last_success_timestamp_seconds", ()): 1_790_000_123.5,
        (P + "running", ()): 1,
        (P + "result_codes", (("code", "-1101"),)): 200,
        (P + "result_codes", (("code", "-1102"),)): 30,
        (P + "result_codes", (("code", "0"),)): 950,
    }
    assert values == expected


def test_types_and_help_strings() -> None:
    text = render_metrics(busy_stats(), busy_pacer(), running=True).decode()
    families = types_and_help(text)
    counters = {n for n, (t, _) in families.items() if t == "counter"}
    assert counters == {P + n for n in ("requests", "retries", "throttled", "slowdowns")} | {
        P + "charge_count"
    }
    assert all(t in ("counter", "gauge") for t, _ in families.values())
    assert all(len(doc) > 15 for _, doc in families.values())  # each says what it is
    assert "_created" not in text  # no creation-time series next to the counters


def test_before_the_first_answer_last_success_is_absent_not_nan() -> None:
    stats = RunStats()
    values = parse(render_metrics(stats, Pacer(19.0), running=True).decode())
    names = {name for name, _ in values}
    assert P + "last_success_timestamp_seconds" not in names
    assert P + "run_start_timestamp_seconds" not in names  # not started yet either
    assert values[(P + "run_duration_seconds", ())] == 0.0
    assert not any(math.isnan(v) for v in values.values())
    # Every status is there from the first write, at zero.
    assert sum(1 for name, _ in values if name == P + "tokens") == 6


def test_while_running_duration_counts_up_to_now() -> None:
    stats = RunStats()
    stats.started = 1.0  # finished stays 0: still running
    values = parse(render_metrics(stats, Pacer(19.0), running=True).decode())
    assert values[(P + "run_duration_seconds", ())] == pytest.approx(stats.elapsed, abs=5.0)


def test_replaced_atomically_and_no_temp_files_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "faceid_poller.prom"
    path.write_text("# the previous run's complete file\n")
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def spying_replace(src: str, dst: str) -> None:
        # At the moment of the swap the old file is still whole and the new one complete.
        assert Path(dst).read_text() == "# the previous run's complete file\n"
        new = Path(src).read_text()
        assert new == render_metrics(busy_stats(), busy_pacer(), running=False).decode()
        assert Path(src).parent == tmp_path  # same filesystem: rename(2) is atomic
        assert not Path(src).name.endswith(".prom")  # the collector never reads the temp file
        seen.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spying_replace)
    write_metrics(str(path), busy_stats(), busy_pacer(), running=False)
    assert len(seen) == 1
    assert os.listdir(tmp_path) == ["faceid_poller.prom"]
    assert parse(path.read_text())[(P + "running", ())] == 0


def test_a_failed_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "faceid_poller.prom"
    path.write_text("old\n")

    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        write_metrics(str(path), busy_stats(), busy_pacer(), running=True)
    assert os.listdir(tmp_path) == ["faceid_poller.prom"]
    assert path.read_text() == "old\n"


@pytest.fixture
def strict_umask() -> Iterator[None]:
    old = os.umask(0o077)
    yield
    os.umask(old)


@pytest.mark.usefixtures("strict_umask")
def test_file_is_readable_by_the_collector_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "faceid_poller.prom"
    write_metrics(str(path), busy_stats(), busy_pacer(), running=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_final_writes_running_zero(tmp_path: Path) -> None:
    path = tmp_path / "faceid_poller.prom"
    stats, pacer = busy_stats(), busy_pacer()
    writer = MetricsWriter(str(path), stats, pacer)
    assert writer.write(running=True)
    assert parse(path.read_text())[(P + "running", ())] == 1
    stats.by_status["passed"] += 1
    assert writer.final()
    values = parse(path.read_text())
    assert values[(P + "running", ())] == 0
    assert values[(P + "tokens", (("status", "passed"),))] == 951
    assert writer.writes == 2


async def test_run_writes_every_interval_until_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "faceid_poller.prom"
    stats, pacer = RunStats(), Pacer(19.0)
    snapshots: list[float] = []
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        snapshots.append(parse(path.read_text())[(P + "tokens", (("status", "passed"),))])
        stats.by_status["passed"] += 10  # the run moves on between two writes
        if len(sleeps) == 3:
            raise asyncio.CancelledError

    writer = MetricsWriter(str(path), stats, pacer, interval=15.0, sleep=fake_sleep)
    with pytest.raises(asyncio.CancelledError):
        await writer.run()
    assert sleeps == [15.0, 15.0, 15.0]
    assert snapshots == [0, 10, 20]  # written at once, then after each interval
    assert parse(path.read_text())[(P + "running", ())] == 1
    writer.final()
    assert parse(path.read_text())[(P + "running", ())] == 0


async def test_run_survives_write_failures_and_logs_once(
    tmp_path: Path, poller_log: PollerLog
) -> None:
    missing = tmp_path / "no-such-dir" / "faceid_poller.prom"
    calls = 0

    async def fake_sleep(seconds: float) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            missing.parent.mkdir()  # the directory appears: writes recover
        if calls == 4:
            raise asyncio.CancelledError

    writer = MetricsWriter(str(missing), RunStats(), Pacer(19.0), sleep=fake_sleep)
    with pytest.raises(asyncio.CancelledError):
        await writer.run()
    assert writer.failures == 3
    assert writer.writes == 1
    messages = [(r.levelno, r.getMessage()) for r in poller_log.records]
    assert len(messages) == 2
    assert messages[0][0] == logging.WARNING
    assert "cannot write the metrics file" in messages[0][1]
    assert messages[1] == (logging.INFO, f"metrics file {missing} written again")
    assert missing.exists()
    assert os.listdir(missing.parent) == ["faceid_poller.prom"]


def test_writer_rejects_a_zero_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval must be above 0"):
        MetricsWriter(str(tmp_path / "m.prom"), RunStats(), Pacer(19.0), interval=0)


def test_repr(tmp_path: Path) -> None:
    writer = MetricsWriter("/var/lib/node_exporter/faceid.prom", RunStats(), Pacer(19.0))
    assert repr(writer) == (
        "<MetricsWriter '/var/lib/node_exporter/faceid.prom' every 15s writes=0 failures=0>"
    )
