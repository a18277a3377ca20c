"""Job orchestration (poller/job.py): `run_batch` is `poller run`'s path — lock, fresh, resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from poller import (
    BatchSummary,
    ConfigError,
    InputError,
    LockedError,
    OutputFileError,
    PollerError,
    ResumeError,
    Settings,
    run_batch,
)
from poller.input.from_python import as_items
from poller.input.tokens import BadEntry, TokenEntry
from poller.input.triage import Verdict
from poller.job import plan_batch
from poller.output.lock import OutputLock
from tests.helpers import SECRET_KEY, URL, ScriptedServer, Step, api_error, make_settings, ok


def _settings() -> Settings:
    return make_settings(max_attempts=1, max_pending_wait=0.0)


def _batch(
    out: Path, scripts: dict[str, list[Step]], tokens: list[str], **kwargs: Any
) -> tuple[BatchSummary, ScriptedServer]:
    server = ScriptedServer(scripts)
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        summary = run_batch(tokens, out, _settings(), **kwargs)
    return summary, server


def _lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_a_second_batch_skips_the_tokens_already_final(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    first, server = _batch(
        out, {"a": [ok()], "b": [ok("-999")], "c": [api_error("InternalError")]}, ["a", "b", "c"]
    )
    assert (first.exit_status, first.tokens, first.not_final) == (1, 3, 2)
    assert first.resumable
    assert dict(server.calls) == {"a": 1, "b": 1, "c": 1}

    second, server = _batch(out, {"b": [ok("0")], "c": [ok("2016")]}, ["a", "b", "c"])
    assert dict(server.calls) == {"b": 1, "c": 1}  # "a" was final: never asked again
    assert (second.exit_status, second.skipped_final, second.requests) == (0, 1, 2)
    assert second.by_status == {"passed": 1, "failed": 1}
    assert second.resumed is not None
    assert second.resumed.lines == 3
    assert len(_lines(out)) == 5  # appended, never rewritten


def test_a_held_lock_is_a_locked_error_and_a_poller_error(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with OutputLock(str(out)), pytest.raises(LockedError) as caught:
        _batch(out, {}, ["a"])
    assert isinstance(caught.value, ResumeError)
    assert isinstance(caught.value, PollerError)
    assert not out.exists()  # nothing was opened, nothing asked


def test_fresh_refuses_results_without_force_and_empties_them_with_it(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    _batch(out, {"a": [ok()]}, ["a"])
    with pytest.raises(OutputFileError, match="already holds results"):
        _batch(out, {}, ["a"], fresh=True)
    summary, server = _batch(out, {"a": [ok("2016")]}, ["a"], fresh=True, force=True)
    assert dict(server.calls) == {"a": 1}  # asked again: the old line is gone
    assert [line["result"] for line in _lines(out)] == ["2016"]
    assert summary.skipped_final == 0


def test_run_batch_refuses_settings_without_credentials(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no credentials"):
        run_batch(["a"], tmp_path / "out.jsonl", Settings())


def test_run_batch_says_how_to_call_it_from_a_running_loop(tmp_path: Path) -> None:
    async def inside() -> None:
        run_batch(["a"], tmp_path / "out.jsonl", _settings())

    with pytest.raises(PollerError, match=r"asyncio\.to_thread"):
        asyncio.run(inside())


def test_the_summary_repr_shows_counts_and_no_secret(tmp_path: Path) -> None:
    summary, _ = _batch(tmp_path / "out.jsonl", {"a": [ok()]}, ["a"])
    text = repr(summary)
    assert "exit_status=0" in text
    assert "tokens=1" in text
    assert SECRET_KEY not in text


def test_tokens_from_python_are_trimmed_and_checked_like_a_file() -> None:
    checked = as_items([" a\n", "\ufeffb", "", TokenEntry("c", 9, 5.0), "x" * 300])
    assert isinstance(checked, Collection)  # a collection stays one: no reader thread
    assert len(checked) == 5
    items = list(checked)
    assert items[:3] == [
        TokenEntry("a", 1),
        TokenEntry("b", 2),
        BadEntry("", 3, "token 3: token is empty"),
    ]
    assert items[3] == TokenEntry("c", 9, 5.0)  # an entry passes through
    bad = items[4]
    assert isinstance(bad, BadEntry)
    assert bad.reason.startswith("token 5: token is longer than 256 characters")
    assert not isinstance(as_items(iter(["a"])), Collection)  # read lazily, on a thread
    with pytest.raises(InputError, match="not one string"):
        as_items("abc")


def test_the_plan_counts_what_the_output_already_holds(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    _batch(out, {"a": [ok()], "b": [ok("-999")]}, ["a", "b"])
    before = out.read_bytes()
    plan = plan_batch(["a", "b", "b", ""], out, _settings())
    assert plan.counts[Verdict.ALREADY_FINAL] == 1
    assert plan.counts[Verdict.QUERY] == 1
    assert plan.counts[Verdict.DUPLICATE] == 1
    assert plan.counts[Verdict.INVALID] == 1
    assert out.read_bytes() == before
    assert plan_batch(["a"], out, _settings(), fresh=True).counts[Verdict.QUERY] == 1


# -- found in review (issue 10) ------------------------------------------------------------------


def test_a_token_source_that_fails_keeps_the_lines_of_the_tokens_it_gave(tmp_path: Path) -> None:
    """A generator over a database cursor dies mid-way: the tokens it gave were asked and keep
    their lines (requests = lines = attempts), and the run ends as a local failure (exit 4)."""

    def cursor() -> Any:
        yield from ("a", "b", "c")
        raise RuntimeError("connection reset by the database")

    out = tmp_path / "out.jsonl"
    summary, server = _batch(out, {t: [ok()] for t in "abc"}, cursor())
    assert summary.exit_status == 4
    assert summary.stats.local_error is not None
    assert "RuntimeError: connection reset by the database" in summary.stats.local_error
    lines = _lines(out)
    assert sorted(line["token"] for line in lines) == sorted(server.calls)
    assert sum(line["attempts"] for line in lines) == sum(server.calls.values())


@pytest.mark.parametrize(
    "content",
    [b"sw-1\nsw-2\n", b"root:x:0:0:root:/root:/bin/bash\n", b"token,issued_at\nab,1\n"],
    ids=["a-token-export", "a-system-file", "a-csv"],
)
def test_a_file_that_holds_no_result_line_is_refused_not_appended_to(
    tmp_path: Path, content: bytes
) -> None:
    out = tmp_path / "not-results.txt"
    out.write_bytes(content)
    with pytest.raises(OutputFileError, match="none is a result line"):
        _batch(out, {"a": [ok()]}, ["a"])
    assert out.read_bytes() == content  # untouched


def test_an_output_whose_first_line_was_torn_is_still_resumed(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    _batch(out, {"a": [ok()]}, ["a"])
    out.write_bytes(b'{"token":"x","sta\n' + out.read_bytes())  # a crash tore the first line
    summary, server = _batch(out, {"b": [ok()]}, ["a", "b"])
    assert dict(server.calls) == {"b": 1}  # "a" is still known to be final
    assert summary.exit_status == 0


def test_results_can_go_to_any_sink(tmp_path: Path) -> None:
    class Lines:
        def __init__(self) -> None:
            self.data = b""
            self.lines_written = 0
            self.synced = False

        def write_lines(self, data: bytes, count: int) -> None:
            self.data += data
            self.lines_written += count

        def sync(self) -> None:
            self.synced = True

        def close(self) -> None:
            raise AssertionError("the caller closes its own sink")

    sink = Lines()
    server = ScriptedServer({"a": [ok()], "b": [ok("2016")]})
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        summary = run_batch(["a", "b"], sink, _settings())
    assert summary.exit_status == 0
    assert not summary.resumable  # no file, no lock, no resume
    records = [json.loads(line) for line in sink.data.splitlines()]
    assert {(r["token"], r["status"]) for r in records} == {("a", "passed"), ("b", "failed")}
    assert sink.lines_written == 2
    assert sink.synced
    with pytest.raises(OutputFileError, match="a path or a Sink"):
        run_batch(["a"], None, _settings())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"endpoint": "http://example.com"}, "plain http://"),
        ({"endpoint": "ftp://x"}, "must be an https:// URL"),
        ({"concurrency": 0}, "concurrency must be between 1 and 1024"),
        ({"rate": 0.0}, "rate must be above 0"),
        ({"timeout": "soon"}, "timeout"),
    ],
)
def test_settings_built_by_hand_are_checked_like_the_commands(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    from dataclasses import replace

    settings = replace(_settings(), **change)
    with pytest.raises(ConfigError, match=message):
        run_batch(["a"], tmp_path / "out.jsonl", settings)
    assert not (tmp_path / "out.jsonl").exists()


def test_hand_built_pending_codes_as_one_string_are_codes_not_a_substring_test() -> None:
    from dataclasses import replace

    from poller.config.settings import checked

    settings = checked(replace(_settings(), pending_codes="-999, 17"))  # type: ignore[arg-type]
    assert settings.pending_codes == ("-999", "17")


def test_signals_are_handled_only_from_the_main_thread(tmp_path: Path) -> None:
    async def from_a_thread() -> None:
        await asyncio.to_thread(
            run_batch, ["a"], tmp_path / "out.jsonl", _settings(), handle_signals=True
        )

    with pytest.raises(PollerError, match="only in the main thread"):
        asyncio.run(from_a_thread())


# -- found in the second review (issue 10) -------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"tok-one-no-newline",
        b'{"token":"app-tok-1","status":"created"}\n{"token":"app-tok-2","status":"created"}\n',
    ],
    ids=["one-line-without-newline", "an-app-export-with-token-and-status"],
)
def test_a_foreign_file_is_refused_even_when_it_looks_close(tmp_path: Path, content: bytes) -> None:
    out = tmp_path / "export.txt"
    out.write_bytes(content)
    with pytest.raises(OutputFileError, match="not an output of this poller"):
        _batch(out, {"a": [ok()]}, ["a"])
    with pytest.raises(OutputFileError, match="not an output of this poller"):
        _batch(out, {"a": [ok()]}, ["a"], fresh=True, force=True)  # never emptied either
    with pytest.raises(OutputFileError, match="not an output of this poller"):
        plan_batch(["a"], out, _settings())  # the dry run says what the run would
    assert out.read_bytes() == content
    assert not Path(f"{out}.torn").exists()


def test_a_crash_in_the_very_first_write_is_still_resumed(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"token":"a","status":"pas')  # the only line, torn
    summary, server = _batch(out, {"a": [ok()]}, ["a"])
    assert summary.exit_status == 0
    assert dict(server.calls) == {"a": 1}


def test_hand_built_settings_equal_to_a_default_are_still_converted(tmp_path: Path) -> None:
    from dataclasses import replace

    settings = replace(_settings(), detail="full", concurrency=32.0)  # type: ignore[arg-type]
    out = tmp_path / "out.jsonl"
    server = ScriptedServer({"a": [ok()]})
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        summary = run_batch(["a"], out, settings)
    assert summary.exit_status == 0
    assert _lines(out)[0]["response"] is not None  # "full" kept the response


def test_a_wrong_value_deep_in_a_list_fails_before_any_request(tmp_path: Path) -> None:
    tokens: list[Any] = [f"t{n}" for n in range(3000)]
    tokens[1500] = 12345
    with pytest.raises(InputError, match="token 1501 is not a string but an int"):
        _batch(tmp_path / "out.jsonl", {}, tokens)
    assert not (tmp_path / "out.jsonl").exists() or not _lines(tmp_path / "out.jsonl")
