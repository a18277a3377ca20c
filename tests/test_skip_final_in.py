"""`--skip-final-in` through the command and through `run_batch` (the same path, poller/job.py):
tokens final in an earlier night's file are not asked and get no line; the dry run counts them;
a pattern that names nothing stops before any request with one sentence (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from poller import run_batch
from poller.cli import main
from poller.input.triage import Verdict
from poller.job import plan_batch
from tests.helpers import URL, ScriptedServer, Step, api_error, make_settings, ok


def _night(tmp_path: Path, name: str, lines: list[tuple[str, str, bool]]) -> Path:
    path = tmp_path / name
    path.write_text(
        "".join(
            json.dumps({"token": t, "status": s, "final": f, "attempts": 1}) + "\n"
            for t, s, f in lines
        )
    )
    return path


def _lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_run_batch_skips_what_an_earlier_night_settled(tmp_path: Path) -> None:
    night1 = _night(
        tmp_path,
        "night-1.jsonl",
        [("a", "passed", True), ("b", "pending", False), ("c", "error", False)],
    )
    scripts: dict[str, list[Step]] = {
        "b": [ok("0")],
        "c": [ok("2016")],
        "d": [api_error("InternalError")],
    }
    server = ScriptedServer(scripts)
    settings = make_settings(max_attempts=1, max_pending_wait=0.0, skip_final_in=(str(night1),))
    out = tmp_path / "night-2.jsonl"
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        summary = run_batch(["a", "b", "c", "d", "a"], out, settings)
    assert dict(server.calls) == {"b": 1, "c": 1, "d": 1}
    assert sorted(line["token"] for line in _lines(out)) == ["b", "c", "d"]
    assert (summary.final_earlier, summary.stats.duplicates, summary.exit_status) == (1, 1, 1)
    assert summary.earlier is not None
    assert summary.earlier.paths == (str(night1),)


def test_the_dry_run_counts_the_tokens_final_in_an_earlier_run(
    tmp_path: Path, user_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _night(
        tmp_path,
        "night-1.jsonl",
        [("a", "passed", True), ("b", "failed", True), ("c", "pending", False)],
    )
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("a\nb\nc\nd\n")
    pattern = str(tmp_path / "night-*.jsonl")
    argv = ["run", "--tokens", str(tokens), "--output", str(tmp_path / "night-2.out"), "--dry-run"]
    assert main([*argv, "--skip-final-in", pattern]) == 0
    rows = dict(
        (label.strip(), int(n))
        for label, n in (row.rsplit(None, 1) for row in capsys.readouterr().out.splitlines()[2:7])
    )
    assert rows["to query"] == 2
    assert rows["skipped, final in an earlier run (--skip-final-in)"] == 2
    settings = make_settings(skip_final_in=(pattern,))
    plan = plan_batch(["a", "b", "c", "d"], tmp_path / "night-2.out", settings)
    assert (plan.counts[Verdict.FINAL_EARLIER], plan.counts[Verdict.QUERY]) == (2, 2)


@pytest.mark.parametrize("via", ["flag", "env"])
def test_a_pattern_that_names_nothing_stops_before_any_request(
    tmp_path: Path,
    user_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    via: str,
) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("a\n")
    out = tmp_path / "out.jsonl"
    pattern = str(tmp_path / "nights" / "*.jsonl")
    argv = ["run", "--tokens", str(tokens), "--output", str(out)]
    if via == "flag":
        argv += ["--skip-final-in", pattern]
    else:
        monkeypatch.setenv("FACEID_POLLER_SKIP_FINAL_IN", pattern)
    server = ScriptedServer({})
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        assert main(argv) == 2
    assert not server.calls
    assert not out.exists()
    err = capsys.readouterr().err
    assert err == (
        f"poller: error: --skip-final-in {pattern} matches no file; check the pattern, or "
        "leave it out to ask every token.\n"
    )


def test_the_output_itself_named_by_skip_final_in_is_left_out(tmp_path: Path) -> None:
    """Found in review: `--fresh --force` with the output also in --skip-final-in (a glob over
    results/*.jsonl names tonight's file too) skipped every token, asked nothing, exit 0."""
    from poller.output.earlier import load_earlier_results

    night = tmp_path / "tonight.jsonl"
    other = tmp_path / "night1.jsonl"
    line = '{"token":"a","status":"passed","final":true,"attempts":1}\n'
    night.write_text(line)
    other.write_text(line.replace('"a"', '"b"'))
    earlier = load_earlier_results([str(tmp_path / "*.jsonl")], output=str(night))
    assert earlier.paths == (str(other),)
    assert not earlier.is_final("a")
    assert earlier.is_final("b")


def test_a_skip_file_without_result_lines_is_named(tmp_path: Path) -> None:
    from poller.output.earlier import load_earlier_results

    notes = tmp_path / "notes.txt"
    notes.write_text("not results\nat all\n")
    assert load_earlier_results([str(notes)]).foreign == [str(notes)]
