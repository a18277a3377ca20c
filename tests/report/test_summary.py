"""The figures of a results file: statuses, codes, meanings, charges, not-final tokens, memory."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from poller.report import (
    CODE_MEANINGS,
    Report,
    load,
    meaning,
    render,
    summarize,
)
from tests.report.support import EXPIRED, ILLEGAL, NEWER, S, at, line, local, synthetic


def test_token_and_line_counts(report: Report) -> None:
    assert report.source == "newer.jsonl"
    assert report.tokens == 13
    assert report.final == 9
    assert len(report.not_final) == 4
    assert report.lines.read == 22  # 23 lines, one blank
    assert report.lines.superseded == 3
    assert report.lines.unreadable == 6
    assert report.lines.unreadable_lines == (4, 8, 9, 13, 14)  # the first five only


def test_by_status_lists_all_six_in_spec_order(report: Report) -> None:
    assert list(report.by_status.items()) == [
        (S.PASSED, 3),
        (S.FAILED, 3),
        (S.PENDING, 3),
        (S.EXPIRED, 1),
        (S.INVALID_TOKEN, 1),
        (S.ERROR, 2),
    ]
    empty = summarize([line("a", S.PASSED, result="0")])
    assert empty.by_status == {
        S.PASSED: 1,
        S.FAILED: 0,
        S.PENDING: 0,
        S.EXPIRED: 0,
        S.INVALID_TOKEN: 0,
        S.ERROR: 0,
    }


def test_by_result_code_largest_first_with_meanings(report: Report) -> None:
    assert list(report.by_result.items()) == [
        ("0", 3),
        ("", 1),  # n3: pending without a Result
        ("-999", 1),
        ("1002", 1),
        ("17", 1),
        ("2015", 1),
        ("9999", 1),
    ]
    assert [meaning(code) for code in report.by_result] == [
        "passed",
        "not finished (no result yet)",
        "not finished",
        "suspected recording attack",
        "not finished",
        "comparison failed",
        "unknown code",
    ]


def test_charges_pass_rate_and_error_codes(report: Report) -> None:
    assert report.charge_count == 5  # 1+1+1+2, null and superseded lines add nothing
    assert report.pass_rate == 0.5  # 3 passed of 6 passed or failed
    assert report.error_codes == {
        "FailedOperation.Something": 1,
        "InternalError": 1,  # e1's last line; its earlier RequestLimitExceeded is superseded
        EXPIRED: 1,
        ILLEGAL: 1,
    }


def test_not_final_tokens_in_the_order_of_their_last_lines(report: Report) -> None:
    assert [(t, e.status, e.result, e.error_code) for t, e in report.not_final] == [
        ("n1", S.PENDING, "-999", None),
        ("e1", S.ERROR, None, "InternalError"),
        ("n2", S.PENDING, "17", None),
        ("n3", S.PENDING, None, None),
    ]


def test_pass_rate_is_none_without_passed_or_failed() -> None:
    only_pending = summarize([line("a", S.PENDING, result="-999")])
    assert only_pending.pass_rate is None
    assert "n/a" in render(only_pending)
    assert json.loads(render(only_pending, fmt="json"))["pass_rate"] is None


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("0", "passed"),
        ("1001", "liveness engine call failed"),
        ("1002", "suspected recording attack"),
        ("1004", "face detection failed"),
        ("1005", "liveness failed"),
        ("1201", "too dark/bright"),
        ("2004", "image size out of range"),
        ("2012", "several faces"),
        ("2013", "no or partial face"),
        ("2014", "quality too low"),
        ("2015", "comparison failed"),
        ("2016", "similarity under threshold"),
        ("2017", "face occluded"),
        ("-999", "not finished"),
        ("17", "not finished"),
        ("1003", "unknown code"),
        ("00", "unknown code"),
    ],
)
def test_code_meanings_follow_spec_1_4(code: str, text: str) -> None:
    assert meaning(code) == text


def test_meaning_table_has_no_code_beyond_spec() -> None:
    assert len(CODE_MEANINGS) == 16  # 13 documented, two pending defaults, "" for no Result


def test_streaming_and_index_agree_on_a_file_the_poller_wrote() -> None:
    assert summarize(iter(NEWER)) == summarize(load(iter(NEWER)))


def test_in_one_file_a_local_line_never_replaces_an_api_line() -> None:
    # A resumed run appends to the same file: a pending token later found too old, a token
    # first found too old then asked (its input corrected), a bad row.
    lines = [
        at("pending-then-old", S.PENDING, 100, "-999"),
        local("pending-then-old", 200),
        local("old-then-asked", 100),
        at("old-then-asked", S.PASSED, 50),  # older, but Tencent's: it wins
        local("bad-row", 100, too_old=False),
    ]
    streamed = summarize(iter(lines))
    assert streamed == summarize(load(iter(lines)))
    assert streamed.tokens == 3
    assert streamed.by_status[S.PENDING] == 1
    assert streamed.by_status[S.PASSED] == 1
    assert streamed.by_status[S.INVALID_TOKEN] == 1
    assert streamed.by_status[S.EXPIRED] == 0
    assert streamed.lines.superseded == 2


def test_summary_memory_does_not_grow_with_the_file() -> None:
    # 200k lines: count live allocations as the generator is consumed (tracemalloc over the
    # whole file would take seconds). Kept tokens would add >= 200k blocks; none may stay.
    probe: list[int] = []
    report = summarize(synthetic(200_000, probe))
    assert report.tokens == 200_000
    assert report.charge_count == 200_000
    assert len(probe) == 5
    assert max(probe) - probe[0] < 2_000, probe
    # The probe has teeth: an index of a tenth of the lines keeps every token.
    control: list[int] = []
    assert len(load(synthetic(20_000, control)).entries) == 20_000
    assert control[-1] - control[0] > 19_000


def test_summary_peak_memory_is_small() -> None:
    tracemalloc.start()
    try:
        summarize(synthetic(5_000))
        _, summary_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        index = load(synthetic(5_000))
        _, index_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(index.entries) == 5_000
    assert summary_peak < 64 * 1024, summary_peak
    assert index_peak > 256 * 1024, index_peak  # what keeping per-token data would cost
