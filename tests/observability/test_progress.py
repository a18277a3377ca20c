"""Progress: a bar on a terminal, one plain line per interval otherwise, nothing when quiet."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from poller.observability.progress import Progress, format_duration
from poller.pipeline.pacing import Pacer
from poller.pipeline.stats import RunStats
from poller.quota.pace import PaceRule
from tests.conftest import PollerLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def lines(poller_log: PollerLog) -> PollerLog:
    return poller_log


def record(stats: RunStats, status: str, n: int = 1) -> None:
    stats.by_status[status] += n


def test_cron_no_line_before_the_interval(lines: PollerLog) -> None:
    stats, clock, out = RunStats(), FakeClock(), io.StringIO()
    progress = Progress(stats, Pacer(19.0), stream=out, total=100, interval=60.0, clock=clock)
    record(stats, "passed", 10)
    for dt in (0.0, 1.0, 30.0, 59.999):
        clock.now = 1000.0 + dt
        progress.tick()
    assert lines.messages == []
    assert out.getvalue() == ""
    assert not progress.is_bar


def test_cron_one_line_per_interval_with_the_numbers(lines: PollerLog) -> None:
    stats, clock, out = RunStats(), FakeClock(), io.StringIO()
    now = [0.0]
    pacer = Pacer(19.0, time_fn=lambda: now[0], rule=PaceRule(factor=13.3 / 19.0, hold=1e6))
    progress = Progress(stats, pacer, stream=out, total=50_000, interval=60.0, clock=clock)
    record(stats, "passed", 950)
    record(stats, "failed", 230)
    record(stats, "pending", 15)
    record(stats, "error", 5)
    # 1200 done in the first 60 s: 20 tokens/s, 48800 to go -> 2440 s = 40m40s.
    for dt in range(0, 61):
        clock.now = 1000.0 + dt
        progress.tick()
    assert lines.messages == [
        "progress: 1200/50000 tokens (2.4%), 20.0 tokens/s, pacing 19.0 req/s, "
        "passed 950 failed 230 pending 15 expired 0 invalid_token 0 error 5, eta 40m40s"
    ]
    # Second interval: 600 more (10 tokens/s: the ETA follows the recent rate), slowed pacer.
    record(stats, "passed", 500)
    record(stats, "expired", 60)
    record(stats, "invalid_token", 40)
    pacer.on_throttle()  # the pace drops to 13.3 (and holds)
    for dt in range(61, 121):
        clock.now = 1000.0 + dt
        progress.tick()
    assert len(lines.messages) == 2
    assert lines.messages[1] == (
        "progress: 1800/50000 tokens (3.6%), 10.0 tokens/s, pacing 13.3 req/s, "
        "passed 1450 failed 230 pending 15 expired 60 invalid_token 40 error 5, eta 1h20m"
    )
    assert all("\r" not in m for m in lines.messages)
    assert out.getvalue() == ""  # never the bar, never anything on the stream itself
    assert lines.records[1].levelno == logging.INFO
    structured = lines.records[1].__dict__["progress"]
    assert structured["done"] == 1800
    assert structured["total"] == 50_000
    assert structured["eta_seconds"] == 4820


def test_cron_a_long_stall_gives_one_line_not_a_burst(lines: PollerLog) -> None:
    stats, clock = RunStats(), FakeClock()
    progress = Progress(stats, Pacer(19.0), stream=io.StringIO(), interval=60.0, clock=clock)
    clock.now += 10 * 60 + 5  # ten intervals without a tick
    progress.tick()
    progress.tick()
    assert len(lines.messages) == 1
    clock.now += 54.0  # still before the 11th interval mark at +660 s
    progress.tick()
    assert len(lines.messages) == 1
    clock.now += 1.0
    progress.tick()
    assert len(lines.messages) == 2


def test_cron_unknown_total_has_no_percentage_or_eta(lines: PollerLog) -> None:
    stats, clock = RunStats(), FakeClock()
    progress = Progress(stats, Pacer(19.0), stream=io.StringIO(), interval=5.0, clock=clock)
    record(stats, "passed", 50)
    clock.now += 5.0
    progress.tick()
    assert lines.messages == [
        "progress: 50 tokens, 10.0 tokens/s, pacing 19.0 req/s, "
        "passed 50 failed 0 pending 0 expired 0 invalid_token 0 error 0"
    ]


def test_skipped_entries_count_as_done(lines: PollerLog) -> None:
    """A resumed run reaches 100% although duplicates and finals write no line."""
    stats, clock = RunStats(), FakeClock()
    progress = Progress(
        stats, Pacer(19.0), stream=io.StringIO(), total=10, interval=1.0, clock=clock
    )
    record(stats, "passed", 6)
    stats.duplicates = 1
    stats.skipped_final = 3
    clock.now += 1.0
    progress.tick()
    assert progress.done == 10
    assert "10/10 tokens (100.0%)" in lines.messages[0]
    assert lines.messages[0].endswith("eta 0s")


def test_cron_zero_rate_eta_unknown(lines: PollerLog) -> None:
    clock = FakeClock()
    progress = Progress(
        RunStats(), Pacer(19.0), stream=io.StringIO(), total=10, interval=1.0, clock=clock
    )
    clock.now += 1.0
    progress.tick()
    assert lines.messages[0].endswith("eta unknown")


def test_tty_draws_a_bar_with_counts_and_pacing(lines: PollerLog) -> None:
    stats, clock, out = RunStats(), FakeClock(), TtyStream()
    progress = Progress(stats, Pacer(19.0), stream=out, total=10, clock=clock)
    assert progress.is_bar
    record(stats, "passed", 3)
    record(stats, "failed", 1)
    record(stats, "error", 2)
    progress.tick()  # not due yet: the clock has not moved
    assert "6/10" not in out.getvalue()
    clock.now += 0.5
    progress.tick()
    drawn = out.getvalue()
    assert "6/10" in drawn
    assert "60%" in drawn
    assert "passed 3 failed 1 pending 0 error 2, pacing 19.0 req/s" in drawn
    assert lines.messages == []  # a terminal gets the bar, not log lines
    progress.close()
    assert out.getvalue().endswith("\n")  # the bar leaves its last state on its own line


def test_tty_close_draws_the_final_counts_and_is_idempotent() -> None:
    stats, clock, out = RunStats(), FakeClock(), TtyStream()
    progress = Progress(stats, Pacer(19.0), stream=out, clock=clock)
    record(stats, "pending", 7)  # no tick: close() must still show it
    progress.close()
    after_first = out.getvalue()
    assert "7tok" in after_first
    assert "pending 7" in after_first
    progress.close()
    progress.tick()
    assert out.getvalue() == after_first


def test_disabled_does_nothing(lines: PollerLog) -> None:
    stats, clock = RunStats(), FakeClock()
    for out in (io.StringIO(), TtyStream()):
        progress = Progress(stats, Pacer(19.0), stream=out, total=5, enabled=False, clock=clock)
        record(stats, "passed", 5)
        clock.now += 3600.0
        progress.tick()
        progress.close()
        progress.close()
        assert out.getvalue() == ""
        assert not progress.is_bar
    assert lines.messages == []


def test_tick_is_one_clock_read_when_nothing_is_due() -> None:
    clock = FakeClock()
    progress = Progress(RunStats(), Pacer(19.0), stream=io.StringIO(), clock=clock)
    before = clock.reads
    for _ in range(1000):
        progress.tick()
    assert clock.reads - before == 1000


async def test_run_periodically_ticks_until_cancelled(lines: PollerLog) -> None:
    stats, clock = RunStats(), FakeClock()
    progress = Progress(stats, Pacer(19.0), stream=io.StringIO(), interval=1.0, clock=clock)
    record(stats, "passed", 4)
    clock.now += 1.0
    task = asyncio.create_task(progress.run_periodically(every=0.0))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(lines.messages) == 1  # it ticked, and the line was due once
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_run_periodically_returns_when_disabled() -> None:
    progress = Progress(RunStats(), Pacer(19.0), stream=io.StringIO(), enabled=False)
    await asyncio.wait_for(progress.run_periodically(every=0.0), timeout=1.0)


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval must be above 0"):
        Progress(RunStats(), Pacer(19.0), stream=io.StringIO(), interval=0)


def test_repr_shows_mode_and_counts() -> None:
    stats = RunStats()
    record(stats, "passed", 2)
    progress = Progress(stats, Pacer(19.0), stream=io.StringIO(), total=9)
    assert repr(progress) == "<Progress log done=2/9 closed=False>"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (44.6, "45s"), (60, "1m00s"), (2000, "33m20s"), (3600, "1h00m"), (7500, "2h05m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_cron_lines_say_how_many_answers_wait_for_their_media(lines: PollerLog) -> None:
    stats, clock, out = RunStats(), FakeClock(), io.StringIO()
    stats.evidence_on, stats.evidence_waiting = True, 256
    progress = Progress(stats, Pacer(19.0), stream=out, total=None, interval=60.0, clock=clock)
    record(stats, "passed", 120)
    for dt in range(0, 61):
        clock.now = 1000.0 + dt
        progress.tick()
    [message] = lines.messages
    assert message.endswith(", archiving 256")
