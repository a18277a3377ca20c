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

from poller.observability.metrics import MetricsWriter, render_metrics, write_metrics
from poller.pipeline.pacing import Pacer
from poller.pipeline.stats import FatalRunError, RunStats
from tests.conftest import PollerLog
from tests.helpers import slowed_pacer

P = "faceid_poller_"
Sample = tuple[str, tuple[tuple[str, str], ...]]


def busy_stats() -> RunStats:
    stats = RunStats()
    stats.by_status.update({"passed": 950, "failed": 230, "pending": 15, "error": 5})
    stats.result_codes.update({"0": 950, "2016": 200, "2013": 30})
    stats.not_final = 20
    stats.charges = 1180
    stats.requests = 1310
    stats.retries = 110
    stats.throttles = 7
    stats.duplicates = 3
    stats.skipped_final = 40
    stats.final_earlier = 55
    stats.unwritten = 6
    stats.cut_off = 4
    stats.last_success = 1_790_000_123.5
    stats.started = 1_790_000_000.0
    stats.finished = 1_790_000_125.0
    return stats


def busy_pacer() -> Pacer:
    return slowed_pacer(19.0, 13.3, slowdowns=2, below=42.5)


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
        (P + "lines_unwritten", ()): 6,
        (P + "requests_cut_off", ()): 4,
        (P + "duplicates_skipped", ()): 3,
        (P + "already_final_skipped", ()): 40,
        (P + "final_earlier_skipped", ()): 55,
        (P + "requests_total", ()): 1310,
        (P + "retries_total", ()): 110,
        (P + "throttled_total", ()): 7,
        (P + "slowdowns_total", ()): 2,
        (P + "below_target_pace_seconds_total", ()): 42.5,
        (P + "charge_count_total", ()): 1180,
        (P + "pacing_rate_requests_per_second", ()): 13.3,
        (P + "target_rate_requests_per_second", ()): 19.0,
        (P + "run_duration_seconds", ()): 125.0,
        (P + "run_start_timestamp_seconds", ()): 1_790_000_000.0,
        (P + "last_success_timestamp_seconds", ()): 1_790_000_123.5,
        (P + "running", ()): 1,
        (P + "result_codes", (("code", "2016"),)): 200,
        (P + "result_codes", (("code", "2013"),)): 30,
        (P + "result_codes", (("code", "0"),)): 950,
    }
    assert values == expected


def test_types_and_help_strings() -> None:
    text = render_metrics(busy_stats(), busy_pacer(), running=True).decode()
    families = types_and_help(text)
    counters = {n for n, (t, _) in families.items() if t == "counter"}
    names = ("requests", "retries", "throttled", "slowdowns", "below_target_pace_seconds")
    assert counters == {P + n for n in names} | {P + "charge_count"}
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


def test_while_running_duration_counts_up_to_now(monkeypatch: pytest.MonkeyPatch) -> None:
    # The run's clock is pinned 42.5 s after the start: the duration must be exactly that, not
    # whatever the clock says when the test reads it back.
    monkeypatch.setattr("poller.pipeline.engine.time.time", lambda: 1_790_000_042.5)
    stats = RunStats()
    stats.started = 1_790_000_000.0  # finished stays 0: still running
    values = parse(render_metrics(stats, Pacer(19.0), running=True).decode())
    assert values[(P + "run_duration_seconds", ())] == 42.5


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


def test_last_success_is_the_engines_stamp_not_derived_from_other_counters() -> None:
    # A run that has only been throttled or refused: requests went out and lines were written,
    # but no token settled passed/failed/pending, so the engine left last_success unset and the
    # series must stay absent (a staleness alert then fires).
    stats = RunStats()
    stats.started = 1_790_000_000.0
    stats.requests, stats.throttles, stats.retries = 300, 250, 50
    stats.by_status["error"] = 50
    stats.not_final = 50
    names = {name for name, _ in parse(render_metrics(stats, Pacer(19.0), running=True).decode())}
    assert P + "last_success_timestamp_seconds" not in names
    stats.last_success = 1_790_000_007.25
    values = parse(render_metrics(stats, Pacer(19.0), running=True).decode())
    assert values[(P + "last_success_timestamp_seconds", ())] == 1_790_000_007.25


def _codes(values: dict[Sample, float]) -> dict[str, float]:
    return {dict(labels)["code"]: v for (n, labels), v in values.items() if n == P + "result_codes"}


def test_undocumented_result_codes_are_counted_as_other() -> None:
    stats = RunStats()
    stats.result_codes.update({"0": 5, "2016": 2, "1201": 1, "-1101": 3, "99999": 4, "-999": 6})
    stats.result_codes.update({f"x{i}": 1 for i in range(500)})  # a server gone haywire
    stats.result_codes['bad"label\n'] = 2
    values = parse(render_metrics(stats, Pacer(19.0), running=True).decode())
    # "-999" is a default pending code: kept. Every other unknown code is one "other" series.
    assert _codes(values) == {"0": 5, "2016": 2, "1201": 1, "-999": 6, "other": 3 + 4 + 500 + 2}


def test_every_documented_code_keeps_its_label_and_other_is_absent_when_unused() -> None:
    documented = [
        *("0", "1001", "1002", "1004", "1005", "1201", "2004"),
        *("2012", "2013", "2014", "2015", "2016", "2017"),
    ]
    stats = RunStats()
    stats.result_codes.update({code: i + 1 for i, code in enumerate(documented)})
    values = parse(render_metrics(stats, Pacer(19.0), running=True).decode())
    assert _codes(values) == {code: i + 1 for i, code in enumerate(documented)}


def test_configured_pending_codes_are_kept(tmp_path: Path) -> None:
    stats = RunStats()
    stats.result_codes.update({"0": 1, "-999": 2, "P7": 3})
    path = tmp_path / "faceid_poller.prom"
    writer = MetricsWriter(str(path), stats, Pacer(19.0), pending_codes=("P7",))
    assert writer.write(running=True)
    # The configured set replaces the default one: "-999" is no longer a pending code here.
    assert _codes(parse(path.read_text())) == {"0": 1, "P7": 3, "other": 2}


def _ended(
    *,
    not_final: int = 0,
    fatal: FatalRunError | None = None,
    stopped_by: str | None = None,
    local_error: str | None = None,
    closed: bool = False,
) -> RunStats:
    stats = busy_stats()
    stats.not_final = not_final
    stats.fatal = fatal
    stats.stopped_by = stopped_by
    stats.local_error = local_error
    stats.output_closed = closed
    return stats


@pytest.mark.parametrize(
    ("stats", "exit_status", "reason"),
    [
        (_ended(), 0, None),
        (_ended(not_final=20), 1, None),
        (_ended(fatal=FatalRunError("AuthFailure.SecretIdNotFound", "no such key")), 3, "fatal"),
        (
            _ended(fatal=FatalRunError("FailedOperation.New", "50 in a row", breaker=True)),
            3,
            "breaker",
        ),
        (_ended(local_error="cannot write the output: No space left on device"), 4, "local_error"),
        (_ended(not_final=3, stopped_by="SIGINT"), 130, "signal"),
        (_ended(stopped_by="SIGTERM"), 143, "signal"),
        # Ctrl-C on `poller run | consumer`: the consumer's closed pipe is the interrupt's doing.
        (
            _ended(stopped_by="SIGINT", local_error="the output pipe was closed", closed=True),
            130,
            "signal",
        ),
        # --stop-after: the deadline stop exits 1, whatever the lines say.
        (_ended(stopped_by="deadline"), 1, "deadline"),
    ],
    ids=[
        "all-final",
        "not-final",
        "fatal",
        "breaker",
        "local-error",
        "sigint",
        "sigterm",
        "sigint-closed-pipe",
        "deadline",
    ],
)
def test_final_write_says_how_the_run_ended(
    tmp_path: Path, stats: RunStats, exit_status: int, reason: str | None
) -> None:
    path = tmp_path / "faceid_poller.prom"
    writer = MetricsWriter(str(path), stats, busy_pacer())
    assert writer.write(running=True)
    running = {name for name, _ in parse(path.read_text())}
    assert P + "exit_status" not in running  # not decided while the run goes on
    assert P + "stopped" not in running
    assert writer.final()
    values = parse(path.read_text())
    assert values[(P + "exit_status", ())] == exit_status
    stopped = {dict(labels)["reason"]: v for (n, labels), v in values.items() if n == P + "stopped"}
    reasons = ("fatal", "breaker", "local_error", "signal", "deadline")
    assert stopped == {r: float(r == reason) for r in reasons}
    families = types_and_help(path.read_text())
    assert families[P + "exit_status"][0] == "gauge"
    assert families[P + "stopped"][0] == "gauge"


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


def test_the_evidence_counters_appear_only_when_the_run_keeps_evidence(tmp_path: Path) -> None:
    path = tmp_path / "faceid_poller.prom"
    stats = busy_stats()
    write_metrics(str(path), stats, busy_pacer(), running=True)
    assert not [name for name, _ in parse(path.read_text()) if "evidence" in name]
    stats.evidence_on = True
    stats.evidence_files, stats.evidence_bytes = 90, 123_456_789
    stats.evidence_incomplete, stats.evidence_requeries = 2, 5
    stats.evidence_waiting = 7
    write_metrics(str(path), stats, busy_pacer(), running=True)
    values = parse(path.read_text())
    assert values[(P + "evidence_files_fetched_total", ())] == 90
    assert values[(P + "evidence_bytes_fetched_total", ())] == 123_456_789
    assert values[(P + "evidence_incomplete_tokens", ())] == 2
    assert values[(P + "evidence_requeries_total", ())] == 5
    assert values[(P + "evidence_waiting_tokens", ())] == 7
