"""The risk view on lines whose responses the simulator rendered: device levels, suspected attacks
(as the result and in an earlier attempt), passes on edited OCR fields, the score and its top N,
and `--detail summary` lines, which must be reported as unknown rather than as zeros."""

from __future__ import annotations

import json
from typing import Any

from poller.api.outcomes import Status
from poller.output.records import build_record, encode_record
from poller.report import (
    ATTACK_CODES,
    SCORE_RULE,
    Entry,
    load,
    reasons,
    render,
    score,
    summarize,
)
from poller.simulator.outcomes import ApplyParams, TokenPlan, render_result
from tests.report.support import csv_rows, md_tables

S = Status


def response(
    result: str,
    *,
    level: str = "",
    edited: bool = False,
    earlier: str | None = None,
    attempts: int = 2,
    check_mode: int = 1,
) -> dict[str, Any]:
    """A settled Response as the simulator renders it, with the risk facts set."""
    plan = TokenPlan(
        token="t",
        result=result,
        attempts=attempts,
        pending_seconds=0.0,
        issued_at=1_700_000_000.0,
        params=ApplyParams(sdk_version="ENHANCED", check_mode=check_mode),
        device_info_level=level,
        detail_seed=7,
    )
    body = render_result(plan, token_now=1_700_000_100.0, request_id="req")
    for card in body["CardVerifyResults"]:
        card["IsEdit"] = False
    if body["CardVerifyResults"]:
        body["CardVerifyResults"][-1]["IsEdit"] = edited
    for compare in body["CompareResults"][:-1]:
        compare["ErrorCode"] = earlier or "2014"
    return body


def settled(
    token: str, body: dict[str, Any], *, at: float = 1_700_000_200, summary: bool = False
) -> bytes:
    status = S.PASSED if body["Result"] == "0" else S.FAILED
    record = build_record(
        token=token, status=status, final=True, attempts=1, checked_at=at, response=body
    )
    if summary:
        record["response"] = None  # what --detail summary writes
    return encode_record(record)


LINES = [
    settled("calm", response("0", level="1")),  # nothing to score
    settled("lvl3", response("0", level="3")),  # 1
    settled("edit", response("0", level="2", edited=True)),  # 2
    settled("edit-fail", response("2016", level="2", edited=True)),  # 0: edited, but no pass
    settled("lvl4", response("2015", level="4")),  # 4
    settled("replay", response("1002", level="1")),  # 8
    settled("retry", response("0", level="3", earlier="1002", attempts=3)),  # 8 + 1
    settled("all", response("0", level="4", edited=True, earlier="1002")),  # 8 + 4 + 2
    settled("basic", response("0", check_mode=3)),  # no level given, no card results
    encode_record(
        build_record(
            token="wait",
            status=S.PENDING,
            final=False,
            attempts=1,
            checked_at=1_700_000_000,
            response={"Result": "-999", "DeviceInfoLevel": "4"},
        )
    ),
]


def test_the_simulators_bodies_carry_what_the_view_reads() -> None:
    body = response("0", level="4", edited=True, earlier="1002", attempts=3)
    assert body["DeviceInfoLevel"] == "4"
    assert body["CardVerifyResults"][-1]["IsEdit"] is True
    assert [c["ErrorCode"] for c in body["CompareResults"]] == ["1002", "1002", "0"]
    assert set(ATTACK_CODES) == {"1002"}  # the only attack SPEC §1.4 names


def test_device_levels_attacks_and_edited_passes() -> None:
    risk = summarize(LINES).risk
    assert risk.tokens == 9  # the pending token is not judged
    assert risk.without_response == 0
    assert risk.complete
    assert risk.device_levels == {
        "1": 2,
        "2": 2,
        "3": 2,
        "4": 2,
        "not given": 1,
        "no response": 0,
    }
    assert risk.attacks["1002"].in_result == 1
    assert risk.attacks["1002"].earlier_only == 2
    assert risk.attacks["1002"].total == 3
    assert risk.edited_passes == 2  # "edit" and "all"; "edit-fail" did not pass


def test_score_order_is_attack_then_level_4_then_edited_pass_then_level_3() -> None:
    risk = summarize(LINES, top=4).risk
    assert risk.scored == 6
    assert [(t.token, t.score) for t in risk.top] == [
        ("all", 14),
        ("retry", 9),
        ("replay", 8),
        ("lvl4", 4),
    ]
    assert reasons(risk.top[0].entry) == (
        "suspected attack 1002 in an earlier attempt",
        "device level 4",
        "passed on edited OCR fields",
    )
    assert reasons(risk.top[2].entry) == ("suspected attack 1002 in the result",)
    assert "8 suspected attack" in SCORE_RULE
    # One finding outweighs all lower ones together.
    assert score(Entry(S.FAILED, True, "2016", 0, None, True, 4)) > score(
        Entry(S.PASSED, True, "0", 0, None, True, 3, edited=True)
    )


def test_equal_scores_rank_in_the_order_of_their_lines_and_top_zero_names_none() -> None:
    lines = [settled(f"t{i}", response("2015", level="4")) for i in range(3)]
    assert [t.token for t in summarize(lines, top=2).risk.top] == ["t0", "t1"]
    assert summarize(lines, top=0).risk.top == ()
    assert summarize(lines, top=0).risk.scored == 3


def test_streaming_and_index_give_the_same_view() -> None:
    assert summarize(LINES, top=3).risk.top == summarize(load(LINES), top=3).risk.top
    assert summarize(LINES).risk.device_levels == summarize(load(LINES)).risk.device_levels


def test_a_superseded_line_leaves_no_fact_behind() -> None:
    # A token first seen replayed, then (a later checked_at) passed cleanly: only the last counts.
    lines = [
        settled("x", response("1002", level="4"), at=100),
        settled("x", response("0", level="1"), at=200),
    ]
    risk = summarize(load(lines)).risk
    assert risk.attacks["1002"].total == 0
    assert risk.device_levels["4"] == 0
    assert risk.device_levels["1"] == 1
    assert risk.scored == 0


def test_summary_detail_lines_are_unknown_not_zero() -> None:
    lines = [
        settled("s1", response("0", level="4", edited=True), summary=True),
        settled("s2", response("1002", level="4"), summary=True),
        settled("full", response("0", level="3")),
    ]
    report = summarize(lines)
    risk = report.risk
    assert risk.without_response == 2
    assert not risk.complete
    assert risk.device_levels["no response"] == 2
    assert risk.device_levels["4"] == 0
    assert risk.passes_without_response == 1
    assert risk.attacks["1002"].in_result == 1  # the result code is still on the line
    text = render(report)
    assert (
        "note: 2 of 3 passed/failed lines have no response (written with --detail summary)" in text
    )
    assert "unknown for 1 passes without a response" in text
    data = json.loads(render(report, fmt="json"))["risk"]
    assert data["without_response"] == 2
    assert "--detail summary" in data["note"]
    rows = {(r[0], r[1]): (r[2], r[3]) for r in csv_rows(render(report, fmt="csv"))}
    assert rows["risk", "without_response"][0] == "2"
    assert "--detail summary" in rows["risk", "without_response"][1]
    assert "--detail summary" in render(report, fmt="markdown")
    assert "note" not in render(summarize(lines[2:]))  # a complete file has no note


def test_every_format_carries_the_risk_view() -> None:
    report = summarize(LINES, top=2)
    text = render(report)
    assert "Device risk level (DeviceInfoLevel)" in text
    assert "Highest risk: top 2 of 6 scored tokens" in text
    assert (
        "  all    14  passed  suspected attack 1002 in an earlier attempt; device level 4; "
        "passed on edited OCR fields" in text
    )
    data = json.loads(render(report, fmt="json"))["risk"]
    assert data["device_levels"]["4"] == 2
    assert data["attacks"]["1002"] == {
        "meaning": "suspected recording attack",
        "tokens": 3,
        "in_result": 1,
        "earlier_attempt_only": 2,
    }
    assert data["edited_passes"] == 2
    assert [t["token"] for t in data["top"]] == ["all", "retry"]
    assert data["top"][1]["reasons"] == [
        "suspected attack 1002 in an earlier attempt",
        "device level 3",
    ]
    rows = csv_rows(render(report, fmt="csv"))
    figures = {(r[0], r[1]): (r[2], r[3]) for r in rows}
    assert figures["device_level", "not given"] == ("1", "")
    assert figures["attack", "1002"] == ("3", "suspected recording attack")
    assert figures["attack_earlier_only", "1002"][0] == "2"
    assert figures["edited_pass", "total"][0] == "2"
    assert [r[1:3] for r in rows if r[0] == "top_risk"] == [["all", "14"], ["retry", "9"]]
    tables = md_tables(render(report, fmt="markdown"))
    assert ["4", "2", "highest risk"] in tables
    assert [
        "1002",
        "3",
        "suspected recording attack",
        "in the result 1, in an earlier attempt only 2",
    ] in tables
    assert tables.count(["edited", "2", "passed with IsEdit true on the valid card result"]) == 1
