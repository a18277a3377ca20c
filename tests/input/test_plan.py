"""The dry run's plan (poller/input/plan.py): counts per verdict, and what it prints.

`plan_batch` over a real output file is tests/test_job.py; the command is tests/test_cli.py.
"""

from __future__ import annotations

from collections.abc import Iterator

from poller.config.credentials import Credentials
from poller.input.entries import BadEntry, InputItem, TokenEntry
from poller.input.plan import Plan, format_plan, make_plan
from poller.input.triage import Triage, Verdict
from tests.helpers import SECRET_ID, SECRET_KEY, make_settings

NOW = 1_000_000.0


def _items() -> Iterator[InputItem]:
    yield TokenEntry("a", 1)
    yield TokenEntry("b", 2)
    yield TokenEntry("a", 3)  # duplicate
    yield TokenEntry("done", 4)  # final in the output
    yield TokenEntry("old", 5, NOW - 100 * 3600.0)  # expired
    for n in range(6, 13):
        yield BadEntry("", n, f"line {n}: not JSON")


def _triage() -> Triage:
    return Triage(max_token_age=72 * 3600.0, clock=lambda: NOW, already_final={"done"}.__contains__)


def test_the_plan_counts_every_item_under_its_verdict() -> None:
    plan = make_plan(_items(), _triage())
    assert plan.counts == {
        Verdict.QUERY: 2,
        Verdict.DUPLICATE: 1,
        Verdict.ALREADY_FINAL: 1,
        Verdict.EXPIRED: 1,
        Verdict.INVALID: 7,
    }
    assert plan.read == 12


def test_the_plan_keeps_the_first_few_invalid_reasons_in_order() -> None:
    plan = make_plan(_items(), _triage(), keep_reasons=3)
    assert plan.first_invalid == ["line 6: not JSON", "line 7: not JSON", "line 8: not JSON"]
    assert make_plan(_items(), _triage(), keep_reasons=0).first_invalid == []


def test_an_empty_input_plans_nothing() -> None:
    plan = make_plan(iter([]), _triage())
    assert plan.read == 0
    assert plan.counts[Verdict.QUERY] == 0


def test_the_printed_plan_says_what_a_run_would_do_and_how_long_it_takes() -> None:
    plan = Plan()
    plan.counts.update(
        {Verdict.QUERY: 1140, Verdict.DUPLICATE: 2, Verdict.INVALID: 1, Verdict.FINAL_EARLIER: 5}
    )
    plan.first_invalid.append("line 9: token is empty")
    settings = make_settings(rate=20.0, rate_margin=0.05)
    text = format_plan(plan, settings, tokens="t.txt", output="out.jsonl")
    lines = text.splitlines()
    assert lines[0] == "dry run: no request was made"
    assert lines[1] == "input t.txt: 1148 entries read"
    rows = {line.split("  ")[1].strip(): line.split()[-1] for line in lines[2:8]}
    assert rows == {
        "to query": "1140",
        "skipped, already final in out.jsonl": "0",
        "skipped, final in an earlier run (--skip-final-in)": "5",
        "expired, issued over 72 h ago": "0",
        "invalid (an invalid_token line each)": "1",
        "duplicates (reported once)": "2",
    }
    assert "    line 9: token is empty" in lines
    assert "pacing 19.00 req/s (quota 20/s less 5%)" in lines
    # 1140 tokens at 19/s is one minute.
    assert lines[-1].startswith("estimated duration: 1m00s for the first attempts (1140 / 19.00")
    assert f"credentials: secret id {SECRET_ID} from environment" in lines
    assert SECRET_KEY not in text


def test_a_long_plan_counts_in_hours_and_says_when_no_credentials_were_found() -> None:
    plan = Plan()
    plan.counts[Verdict.QUERY] = 19 * 3725  # 1 h 2 min 5 s at 19/s
    text = format_plan(
        plan, make_settings(rate=20.0, credentials=None), tokens="-", output="o.jsonl"
    )
    assert "estimated duration: 1h02m05s" in text
    assert "credentials: none found" in text
    with_creds = make_settings(rate=20.0, credentials=Credentials("AKIDx", "k", source="f.toml"))
    assert "secret id AKIDx from f.toml" in format_plan(plan, with_creds, tokens="-", output="o")


def test_the_plan_names_the_evidence_archive_and_its_fields() -> None:
    plan = Plan()
    plan.counts[Verdict.QUERY] = 10
    everything = make_settings(evidence="/srv/kyc")
    assert "evidence: every field of each answer kept in /srv/kyc" in format_plan(
        plan, everything, tokens="-", output="o"
    )
    lean = make_settings(evidence="s3://b/p", evidence_fields=("BestFrame", "CardImage"))
    text = format_plan(plan, lean, tokens="-", output="o")
    assert "evidence: BestFrame, CardImage of each answer kept in s3://b/p" in text
    assert "evidence" not in format_plan(plan, make_settings(), tokens="-", output="o")
