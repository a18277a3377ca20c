"""Resuming through the real command: skip what is final, re-ask the rest, set torn lines aside."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from poller.cli import main
from poller.output.lock import OutputLock
from tests.helpers import URL, ScriptedServer, Step, api_error, ok


@pytest.fixture(autouse=True)
def creds(user_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fast and deterministic: no in-run re-checks, one attempt, no backoff.
    monkeypatch.setenv("FACEID_POLLER_MAX_PENDING_WAIT", "0")
    monkeypatch.setenv("FACEID_POLLER_MAX_ATTEMPTS", "1")


def _run(tmp_path: Path, scripts: dict[str, list[Step]], *extra: str) -> tuple[int, ScriptedServer]:
    tokens = tmp_path / "tokens.txt"
    if not tokens.exists():
        tokens.write_text("a\nb\nc\n")
    server = ScriptedServer(scripts)
    with aioresponses() as mocked:
        mocked.post(URL, callback=server, repeat=True)
        code = main(
            ["run", "--tokens", str(tokens), "--output", str(tmp_path / "out.jsonl"), *extra]
        )
    return code, server


def _lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]


def test_second_run_asks_only_what_is_not_final(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first: dict[str, list[Step]] = {
        "a": [ok()],
        "b": [ok("-999")],
        "c": [api_error("InternalError")],
    }
    code, _ = _run(tmp_path, first)
    assert code == 1
    assert [line["final"] for line in _lines(tmp_path)].count(True) == 1
    capsys.readouterr()  # only the second run's log below

    second: dict[str, list[Step]] = {"b": [ok("0")], "c": [ok("2016")]}
    code, server = _run(tmp_path, second)
    assert code == 0
    assert dict(server.calls) == {"b": 1, "c": 1}  # "a" was final: never asked again
    lines = _lines(tmp_path)
    assert len(lines) == 5  # appended, never rewritten
    last = {line["token"]: line for line in lines}
    assert {t: last[t]["status"] for t in "abc"} == {"a": "passed", "b": "passed", "c": "failed"}
    err = capsys.readouterr().err
    # The second run read the first run's three lines, found "a" final, and said so in numbers.
    assert "3 lines read: 1 final, 2 not final, 0 unreadable; tokens already final: 1" in err
    assert "summary: 2 tokens" in err
    assert "skipped: already final 1, final in an earlier run 0, duplicates 0" in err


def test_a_torn_last_line_is_set_aside_and_its_token_asked_again(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    _run(tmp_path, {"a": [ok()], "b": [ok()], "c": [ok()]})
    complete = out.read_bytes().splitlines(keepends=True)
    torn = complete[2][:40]
    out.write_bytes(b"".join(complete[:2]) + torn)  # a crash in the middle of the third line
    torn_token = json.loads(complete[2])["token"]

    code, server = _run(tmp_path, {"a": [ok()], "b": [ok()], "c": [ok()]})
    assert code == 0
    assert dict(server.calls) == {torn_token: 1}
    lines = _lines(tmp_path)  # every line parses: the torn bytes were not merged in
    assert sorted(line["token"] for line in lines) == ["a", "b", "c"]
    side = Path(str(out) + ".torn").read_bytes()
    assert torn in side


def test_fresh_refuses_to_clobber_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(tmp_path, {"a": [ok()], "b": [ok()], "c": [ok()]})
    before = (tmp_path / "out.jsonl").read_bytes()
    code, server = _run(tmp_path, {"a": [ok()]}, "--fresh")
    assert code == 2
    assert not server.calls
    assert (tmp_path / "out.jsonl").read_bytes() == before
    assert "--force" in capsys.readouterr().err

    code, server = _run(tmp_path, {"a": [ok()], "b": [ok()], "c": [ok()]}, "--fresh", "--force")
    assert code == 0
    assert sum(server.calls.values()) == 3
    assert len(_lines(tmp_path)) == 3


def _one_error_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("poller: error: ")
    return lines[0]


def test_fresh_that_cannot_empty_the_output_is_one_sentence_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(tmp_path, {"a": [ok()], "b": [ok()], "c": [ok()]})
    out = tmp_path / "out.jsonl"
    before = out.read_bytes()
    capsys.readouterr()
    tried: list[str] = []

    def read_only(path: str, length: int) -> None:
        tried.append(path)
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(os, "truncate", read_only)
    code, server = _run(tmp_path, {"a": [ok()]}, "--fresh", "--force")
    assert code == 2
    assert tried == [str(out)]  # the failure provoked is the one under test
    assert not server.calls
    assert out.read_bytes() == before
    line = _one_error_sentence(capsys.readouterr().err)
    assert line == (
        f"poller: error: --fresh cannot empty {out}: Read-only file system; nothing was queried."
    )


def _writable(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_WRONLY))
    except OSError as exc:
        if exc.errno != errno.ETXTBSY:
            raise
        return False
    return True


def test_fresh_on_a_running_executable_is_one_sentence_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A real failure that even root gets: truncate(2) on a program being executed is ETXTBSY.
    sleeper = tmp_path / "out.jsonl"
    shutil.copy2("/bin/sleep", sleeper)
    before = sleeper.read_bytes()
    proc = subprocess.Popen([str(sleeper), "60"])
    try:
        if _writable(sleeper):
            pytest.skip("this kernel lets a running program's file be written (no ETXTBSY)")
        code, server = _run(tmp_path, {"a": [ok()]}, "--fresh", "--force")
    finally:
        proc.kill()
        proc.wait()
    assert code == 2
    assert not server.calls
    assert sleeper.read_bytes() == before
    line = _one_error_sentence(capsys.readouterr().err)
    # A program is no output of this poller: refused before --fresh could even try to empty it.
    assert line.startswith(f"poller: error: {sleeper} holds ")
    assert "it is not an output of this poller" in line


def test_a_second_run_on_the_same_output_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with OutputLock(str(tmp_path / "out.jsonl")):
        code, server = _run(tmp_path, {"a": [ok()]})
    assert code == 2
    assert not server.calls
    err = capsys.readouterr().err
    assert "another poller run" in err
    assert str(os.getpid()) in err


def test_dry_run_counts_what_resume_would_skip_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(tmp_path, {"a": [ok()], "b": [ok("-999")], "c": [ok()]})
    out = tmp_path / "out.jsonl"
    out.write_bytes(out.read_bytes() + b'{"token":"zz","sta')  # a torn tail stays untouched
    before = out.read_bytes()
    capsys.readouterr()
    (tmp_path / "tokens.txt").write_text("a\nb\nc\nd\nd\n\x01bad\n")
    code, server = _run(tmp_path, {}, "--dry-run")
    assert code == 0
    assert not server.calls
    assert out.read_bytes() == before
    assert not Path(str(out) + ".torn").exists()
    text = capsys.readouterr().out
    rows = {
        line.strip().rsplit(None, 1)[0]: int(line.strip().rsplit(None, 1)[1])
        for line in text.splitlines()
        if line.startswith("  ") and line.strip()[-1].isdigit() and not line.startswith("    ")
    }
    assert rows["to query"] == 2  # b (pending) and d
    assert rows[f"skipped, already final in {out}"] == 2
    assert rows["duplicates (reported once)"] == 1
    assert rows["invalid (an invalid_token line each)"] == 1
    assert "estimated duration" in text
