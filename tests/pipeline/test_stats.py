"""`RunStats`, the exit policy (SPEC §3) and both forms of the end-of-run summary."""

from __future__ import annotations

from collections import Counter

import pytest

from poller.pipeline.pacing import Pacer
from poller.pipeline.stats import FatalRunError, RunStats, format_summary
from tests.helpers import slowed_pacer


def busy() -> RunStats:
    """A run that did a bit of everything, over exactly 10 s."""
    return RunStats(
        by_status=Counter(passed=156, failed=44, pending=3, error=2),
        result_codes=Counter({"0": 156, "2015": 40, "1001": 4, "-999": 3}),
        not_final=5,
        charges=285,
        requests=218,
        retries=5,
        throttles=2,
        duplicates=1,
        skipped_final=7,
        final_earlier=9,
        expired_local=4,
        rechecks=13,
        started=1000.0,
        finished=1010.0,
    )


def pacer() -> Pacer:
    return slowed_pacer(19.0, 13.3, slowdowns=1, below=12.5)


# -- counting and the exit policy --------------------------------------------------------------


def test_count_adds_one_line_to_every_counter_it_touches() -> None:
    stats = RunStats()
    line = {"status": "pending", "final": False, "result": "-999", "charge_count": 2}
    stats.count(line)
    stats.count({"status": "error", "final": False, "result": None, "charge_count": None})
    stats.count({"status": "expired", "final": True, "result": "7", "charge_count": 0})
    assert stats.tokens == 3
    assert (stats.not_final, stats.charges) == (2, 2)
    assert stats.result_codes == Counter({"-999": 1})  # codes of answered statuses only


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        (RunStats(), 0),
        (RunStats(not_final=1), 1),
        (RunStats(not_final=1, fatal=FatalRunError("AuthFailure.X", "no")), 3),
        (RunStats(local_error="disk full", stopped_by="SIGINT"), 4),
        (RunStats(local_error="pipe closed", output_closed=True, stopped_by="SIGINT"), 130),
        (RunStats(local_error="pipe closed", output_closed=True), 4),
        (RunStats(stopped_by="SIGINT", not_final=3), 130),
        (RunStats(stopped_by="SIGTERM"), 143),
        (RunStats(stopped_by="deadline", not_final=2), 1),
    ],
)
def test_exit_status(stats: RunStats, expected: int) -> None:
    assert stats.exit_status() == expected


# -- the one line (cron) -----------------------------------------------------------------------


def test_the_line_is_the_one_users_grep() -> None:
    assert format_summary(busy(), pacer()) == (
        "summary: 205 tokens in 10.0 s: passed 156, failed 44, pending 3, expired 0, "
        "invalid_token 0, error 2; not final 5; skipped: already final 7, final in an earlier "
        "run 9, duplicates 1; "
        "expired by issued_at 4; pending re-checks 13; result codes -999:3 0:156 1001:4 "
        "2015:40; charge_count total 285; requests 218 (retries 5, throttled 2, slowdowns 1, "
        "below target pace 12.5 s); "
        "effective rate 21.80 req/s (pacing 13.30 of 19.00)"
    )


def test_the_line_adds_what_went_wrong_only_when_it_did() -> None:
    stats = busy()
    stats.budget_denied, stats.cut_off, stats.unwritten = 3, 2, 1
    line = format_summary(stats, pacer())
    assert line.endswith(
        "; retries refused by the retry budget 3; requests cut off on the wire by the hard "
        "stop 2; lines that never reached the output 1"
    )
    assert "\n" not in line


# -- the table (a terminal) --------------------------------------------------------------------


def test_the_table_holds_the_same_numbers_aligned() -> None:
    table = format_summary(busy(), pacer(), terminal=True)
    assert table == "\n".join(
        [
            "summary",
            "  tokens        205 (passed 156, failed 44, pending 3, error 2)",
            "  not final     5",
            "  skipped       already final 7, final in an earlier run 9, duplicates 1, "
            "expired by issued_at 4",
            "  requests      218 (retries 5, throttled 2, pending re-checks 13)",
            "  rate          21.80 req/s (pacing 13.30 of 19.00, slowdowns 1, below target 12.5 s)",
            "  elapsed       10.0 s",
            "  charges       285",
            "  result codes  -999:3 0:156 1001:4 2015:40",
        ]
    )


def test_the_table_adds_a_row_for_what_went_wrong_and_realigns() -> None:
    stats = busy()
    stats.budget_denied, stats.unwritten = 3, 1
    rows = format_summary(stats, pacer(), terminal=True).splitlines()
    assert rows[-2:] == ["  budget refused  3", "  never written   1"]
    assert "cut off" not in "\n".join(rows)  # zero: no row
    # Every value starts in one column, two spaces after the longest label.
    column = len("  budget refused  ")
    assert all(row[column - 2 : column] == "  " and row[column] != " " for row in rows[1:])


def test_an_empty_run_still_says_so_in_both_forms() -> None:
    stats = RunStats(started=5.0, finished=5.0)
    assert format_summary(stats, Pacer(19.0)).startswith("summary: 0 tokens in 0.0 s: passed 0")
    table = format_summary(stats, Pacer(19.0), terminal=True).splitlines()
    assert table[1] == "  tokens        0"
    assert "  result codes  none" in table
