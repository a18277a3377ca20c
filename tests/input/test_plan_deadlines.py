"""The plan's deadline line (issue 11): how long the queries take at the pace, and how many
tokens would pass their window before their turn, in input and in expiry order."""

from __future__ import annotations

from collections.abc import Iterator

from poller.input.entries import InputItem, TokenEntry
from poller.input.plan import Deadlines, format_plan, make_plan
from poller.input.triage import Triage
from tests.helpers import make_settings

T = 1_000_000.0


def _fixture() -> Iterator[InputItem]:
    yield TokenEntry("a", 1, T - 50)
    yield TokenEntry("b", 2)  # undated: takes a slot, cannot be counted late
    yield TokenEntry("c", 3, T - 99)
    yield TokenEntry("d", 4, T - 10)
    yield TokenEntry("e", 5, T - 98)
    yield TokenEntry("f", 6, T - 101)  # already past 100 s: expired, not queried
    yield TokenEntry("c", 7, T - 10)  # a duplicate: no slot
    yield TokenEntry("g", 8, T - 97.5)
    yield TokenEntry("h", 9, T - 99.5)


def test_the_late_tokens_match_a_hand_count() -> None:
    deadlines = Deadlines(start=T, rate=1.0, max_age=100.0)
    triage = Triage(max_token_age=100.0, clock=lambda: T)
    plan = make_plan(_fixture(), triage, deadlines=deadlines)
    # Slots (one a second from T): a0 b1 c2 d3 e4 g5 h6. A token is late when issued_at + 100
    # is before its slot: c (T+1 < T+2), e (T+2 < T+4), g (T+2.5 < T+5), h (T+0.5 < T+6).
    assert (deadlines.to_query, deadlines.dated) == (7, 6)
    assert deadlines.late_in_input_order() == 4
    # Oldest first: h0 c1 e2 g3 a4 d5 (b after them). h T+0.5 >= T; c T+1 >= T+1 (just in
    # time); e T+2 >= T+2; g T+2.5 < T+3 late; a, d in time.
    assert deadlines.late_in_expiry_order() == 1
    assert deadlines.duration == 7.0
    assert plan.deadlines is deadlines


def test_the_plan_prints_the_deadline_line_only_when_the_input_has_dates() -> None:
    settings = make_settings(rate=1.0, rate_margin=0.0, max_token_age=100.0)
    deadlines = Deadlines(start=T, rate=1.0, max_age=100.0)
    plan = make_plan(_fixture(), Triage(max_token_age=100.0, clock=lambda: T), deadlines=deadlines)
    text = format_plan(plan, settings, tokens="in.csv", output="out.jsonl")
    assert (
        "deadlines: 7 tokens to query take 7s at 1.00 req/s; of the 6 with an issued_at, 4 "
        "would pass their 0.0278 h before their turn in input order, 1 in expiry order "
        "(--order expiry)"
    ) in text
    undated = Deadlines(start=T, rate=1.0, max_age=100.0)
    plan = make_plan(
        iter([TokenEntry("x", 1)]), Triage(max_token_age=100.0, clock=lambda: T), deadlines=undated
    )
    assert "deadlines" not in format_plan(plan, settings, tokens="in.txt", output="o")


def test_the_plan_says_how_much_a_deadline_leaves_time_for() -> None:
    settings = make_settings(rate=1.0, rate_margin=0.0, stop_after=4.0)
    plan = make_plan(
        iter([TokenEntry(f"t{n}", n) for n in range(10)]), Triage(max_token_age=0, clock=lambda: T)
    )
    text = format_plan(plan, settings, tokens="in.txt", output="o")
    assert "stop after 4s: about 4 of the 10 first attempts fit" in text
