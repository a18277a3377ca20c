"""Resume state (poller/output/resume.py): what a re-run reads back from its output."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from poller.api.outcomes import Status
from poller.config.settings import Detail
from poller.output import resume
from poller.output.records import ErrorInfo, build_record, encode_record
from poller.output.resume import (
    ResumeError,
    ResumeState,
    load_resume_state,
)
from tests.output.support import write

T0 = 1704067200.0  # 2024-01-01T00:00:00Z
FINAL_STATUSES = (Status.PASSED, Status.FAILED, Status.EXPIRED, Status.INVALID_TOKEN)


def response(result: str = "0", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Result": result,
        "Description": "成功" if result == "0" else "pending",
        "ChargeCount": 1,
        "Extra": 'pass-through "quoted" text, {"final":true}',
        "CompareResults": [{"ErrorCode": result, "Sim": 93.5, "BestFrame": {"Url": "https://x/y"}}],
        "RequestId": "req-1",
    }
    body.update(extra)
    return body


def line(token: str, status: Status = Status.PASSED, **kw: Any) -> bytes:
    """One line exactly as the poller writes it."""
    final = kw.pop("final", status is not Status.PENDING)
    resp = kw.pop("response", response("0" if status is Status.PASSED else "-999"))
    return encode_record(
        build_record(
            token=token, status=status, final=final, attempts=1, checked_at=T0, response=resp, **kw
        )
    )


@pytest.fixture(params=[resume.CHUNK, 7], ids=["chunk=4MiB", "chunk=7B"])
def chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Every reading test runs twice: once with a 7-byte read size, so lines span reads."""
    size: int = request.param
    monkeypatch.setattr(resume, "CHUNK", size)
    return size


def finals(state: ResumeState, *tokens: str) -> list[bool]:
    return [state.is_final(t) for t in tokens]


# --- empty, missing, not a file ----------------------------------------------------------------


def test_missing_file_is_an_empty_state(out: Path) -> None:
    state = load_resume_state(str(out))
    assert state == ResumeState()
    assert not out.exists()
    assert not Path(f"{out}.torn").exists()


def test_empty_file_is_an_empty_state_and_stays_untouched(out: Path, chunk: int) -> None:
    write(out)
    state = load_resume_state(str(out))
    assert (state.lines, state.torn_bytes, set(state.final_keys)) == (0, 0, set())
    assert out.read_bytes() == b""
    assert not Path(f"{out}.torn").exists()


def test_a_directory_raises_resume_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ResumeError, match=f"cannot read the output file {tmp_path}: "):
        load_resume_state(str(tmp_path))


def test_an_unreadable_file_raises_resume_error(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads any file whatever its mode, so make open() itself refuse, as it would for a user.
    write(out, line("a"))
    real_open = os.open

    def refuse(path: str, flags: int, mode: int = 0o777) -> int:
        if path == str(out):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ResumeError, match=r"cannot read the output file .*out\.jsonl: Permission"):
        load_resume_state(str(out))


def test_a_fifo_is_an_empty_state_and_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert load_resume_state(str(fifo)) == ResumeState()  # the test timeout catches a hang


# --- reading lines -----------------------------------------------------------------------------


def test_mixed_lines_last_line_wins(out: Path, chunk: int) -> None:
    write(
        out,
        line("pending-then-passed", Status.PENDING),
        line("passed"),
        line("failed", Status.FAILED),
        line("pending-then-passed", Status.PASSED),
        line("error-not-final", Status.ERROR, final=False, error=ErrorInfo("InternalError", "x")),
        line(
            "expired", Status.EXPIRED, error=ErrorInfo("InvalidParameterValue.BizTokenExpired", "")
        ),
        line("passed-then-pending", Status.PASSED),
        line("passed-then-pending", Status.PENDING),
        line("still-pending", Status.PENDING),
    )
    state = load_resume_state(str(out))
    assert finals(state, "pending-then-passed", "passed", "failed", "expired") == [True] * 4
    assert finals(state, "error-not-final", "passed-then-pending", "still-pending") == [False] * 3
    assert not state.is_final("never-seen")
    assert (state.lines, state.final, state.not_final, state.unreadable) == (9, 5, 4, 0)
    assert len(state.final_keys) == 4
    assert state.fast_lines == 9
    assert state.torn_bytes == 0
    assert state.torn_saved_to is None


@pytest.mark.parametrize(
    "token",
    [
        "é-token",
        "日本語トークン",
        'quote"inside',
        "back\\slash",
        "slash/ok",
        "tab\tand\nnewline",  # written escaped by json.dumps; never accepted as input, but exact
        "\u2028line-separator",
        "emoji-\U0001f600",
        "ÀÉÎ" * 80,
    ],
)
def test_tokens_with_escapes_and_non_ascii_round_trip(out: Path, chunk: int, token: str) -> None:
    write(out, line("before", Status.PENDING), line(token), line("after", Status.PENDING))
    state = load_resume_state(str(out))
    assert finals(state, token, "before", "after") == [True, False, False]
    assert state.fast_lines == 3


def test_escaped_and_raw_spellings_are_the_same_token(out: Path, chunk: int) -> None:
    # `\u00e9` and a raw é name one token: the later non-final line wins over the earlier final.
    write(
        out,
        b'{"token":"caf\\u00e9","status":"passed","final":true,"x":1}\n',
        b'{"token":"caf\xc3\xa9","status":"pending","final":false,"x":1}\n',
        b'{"token":"\\ud83d\\ude00 and \\ud800","status":"passed","final":true,"x":1}\n',
    )
    state = load_resume_state(str(out))
    assert finals(state, "café", "\U0001f600 and \ud800") == [False, True]
    assert state.fast_lines == 3


def test_encode_record_lines_take_the_fast_path_without_json_loads(
    out: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = [f"C736CEB2-03D89-014A10-B17B-{i:012d}" for i in range(50)]
    parts = []
    for i, token in enumerate(tokens):
        status = [*FINAL_STATUSES, Status.PENDING][i % 5]
        detail = Detail.SUMMARY if i % 3 == 0 else Detail.FULL
        parts.append(line(token, status, detail=detail))
    write(out, *parts)

    def no_json(*args: object, **kwargs: object) -> object:
        raise AssertionError("json.loads called for a plain ASCII record line")

    monkeypatch.setattr(json, "loads", no_json)
    state = load_resume_state(str(out))
    assert state.fast_lines == state.lines == 50
    assert [state.is_final(t) for t in tokens] == [i % 5 != 4 for i in range(50)]


def test_final_true_inside_the_response_is_not_read_as_final(out: Path, chunk: int) -> None:
    # A pending record whose response text carries `"final":true` in several spellings.
    tricky = response("-999", Extra='{"final":true}', Nested={"final": True, "token": "t"})
    write(
        out,
        line("t", Status.PENDING, response=tricky),
        b'{"token":"u","status":"pending","final":false,"r":{"final":true},"final2":true}\n',
    )
    state = load_resume_state(str(out))
    assert finals(state, "t", "u") == [False, False]
    assert (state.final, state.not_final, state.unreadable) == (0, 2, 0)


def test_lines_in_another_shape_take_the_exact_path(out: Path, chunk: int) -> None:
    write(
        out,
        b'{"final": true, "token": "reordered"}\n',  # other key order and spacing
        b'{"token":"crlf","status":"passed","final":true,"response":null}\r\n',
        b'  {"token":"indented","final":true}  \n',
        b'{"token":"not-final","final":false}\n',
        line("fast-then-slow"),
        b'{"final": false, "token": "fast-then-slow"}\n',  # the later line wins here too
    )
    state = load_resume_state(str(out))
    assert finals(state, "reordered", "crlf", "indented") == [True, True, True]
    assert finals(state, "not-final", "fast-then-slow") == [False, False]
    assert (state.lines, state.final, state.not_final, state.fast_lines) == (6, 4, 2, 1)


def test_unreadable_lines_in_the_middle_are_counted_with_line_numbers(
    out: Path, chunk: int
) -> None:
    write(
        out,
        line("a"),
        b"garbage\n",  # 2
        b'["token","final"]\n',  # 3: JSON, not an object
        b'{"status":"passed","final":true}\n',  # 4: no token
        line("b", Status.PENDING),
        b'{"token":7,"final":true}\n',  # 6: token not a string
        b'{"token":"c","final":"true"}\n',  # 7: final not a bool
        b"\n",  # 8: blank
        b'{"token":"d\xff","status":"passed","final":true,"x":1}\n',  # 9: not UTF-8
        b'{"token":"e","status":"passed","final":true,"x":1\n',  # 10: no closing brace
        b"[" * 100_000 + b"\n",  # 11: nested past the recursion limit
        line("f"),
    )
    state = load_resume_state(str(out))
    assert state.unreadable_lines == [2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert (state.lines, state.final, state.not_final, state.unreadable) == (12, 2, 1, 9)
    assert finals(state, "a", "b", "c", "d\xff", "e", "f") == [
        True,
        False,
        False,
        False,
        False,
        True,
    ]
    assert "9 unreadable (lines 2, 3, 4, 6, 7, 8, 9, 10, 11);" in state.summary()


def test_only_the_first_unreadable_line_numbers_are_kept(out: Path) -> None:
    write(out, b"x\n" * 25, line("a"))
    state = load_resume_state(str(out))
    assert state.unreadable == 25
    assert state.unreadable_lines == list(range(1, resume.UNREADABLE_KEPT + 1))
    assert "25 unreadable (lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ...);" in state.summary()


def test_a_torn_line_that_a_later_run_appended_to_is_not_final(out: Path, chunk: int) -> None:
    # A run without resume support appended after a torn line: the torn record's head is intact
    # and the line ends with `}`, but its token never got a whole record.
    torn = line("torn")[:60]
    write(out, line("a", Status.PENDING), torn + line("b"), line("c", Status.PENDING))
    state = load_resume_state(str(out))
    assert finals(state, "torn", "b") == [False, False]
    assert state.unreadable_lines == [2]


def test_an_oversized_line_is_unreadable_without_being_held(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resume, "CHUNK", 16)
    monkeypatch.setattr(resume, "MAX_LINE", 1000)
    big = b'{"token":"big","status":"passed","final":true,"r":"' + b"x" * 2000 + b'"}\n'
    small_a, small_b = line("a", response=None), line("b", response=None)
    assert len(small_a) < 1000
    write(out, small_a, big, small_b, big[:-1])
    state = load_resume_state(str(out), set_aside=False)
    assert (state.lines, state.unreadable_lines, state.torn_bytes) == (3, [2], len(big) - 1)
    assert finals(state, "a", "big", "b") == [True, False, True]


# --- a torn last line --------------------------------------------------------------------------


def test_torn_last_line_is_set_aside_and_cut(out: Path, chunk: int) -> None:
    whole = line("a") + line("b", Status.PENDING)
    torn = line("torn")[:-40]
    write(out, whole, torn)
    out.chmod(0o640)

    state = load_resume_state(str(out))
    assert state.torn_bytes == len(torn)
    assert state.torn_saved_to == f"{out}.torn"
    assert not state.is_final("torn")
    assert finals(state, "a", "b") == [True, False]
    assert state.lines == 2
    assert out.read_bytes() == whole  # cut back to the last newline, nothing else rewritten
    assert stat.S_IMODE(out.stat().st_mode) == 0o640

    side = Path(f"{out}.torn")
    assert stat.S_IMODE(side.stat().st_mode) == 0o600
    header, saved, rest = side.read_bytes().split(b"\n")
    assert header.startswith(b"# ")
    assert f"{len(torn)} bytes from offset {len(whole)}:".encode() in header
    assert (saved, rest) == (torn, b"")

    again = load_resume_state(str(out))
    assert (again.torn_bytes, again.torn_saved_to, again.lines) == (0, None, 2)
    assert out.read_bytes() == whole


def test_a_second_torn_line_is_appended_to_the_side_file(out: Path) -> None:
    write(out, line("a"), b'{"token":"t1"')
    load_resume_state(str(out))
    with out.open("ab") as fh:
        fh.write(line("b") + b'{"tok')
    state = load_resume_state(str(out))
    assert state.torn_bytes == 5
    lines = Path(f"{out}.torn").read_bytes().split(b"\n")
    assert lines[1::2] == [b'{"token":"t1"', b'{"tok']
    assert lines[-1] == b""
    assert out.read_bytes() == line("a") + line("b")


def test_a_file_that_is_only_a_torn_line_is_cut_to_empty(out: Path) -> None:
    write(out, b'{"token":"x","status":"passed","final":tr')
    state = load_resume_state(str(out))
    assert (state.lines, state.torn_bytes, set(state.final_keys)) == (0, 41, set())
    assert out.read_bytes() == b""


def test_dry_run_leaves_the_file_byte_identical(out: Path, chunk: int) -> None:
    data = line("a") + b"junk\n" + line("torn")[:50]
    write(out, data)
    before = out.stat()
    state = load_resume_state(str(out), set_aside=False)
    assert (state.torn_bytes, state.torn_saved_to) == (50, None)
    assert not state.is_final("torn")
    assert out.read_bytes() == data
    assert out.stat().st_mtime_ns == before.st_mtime_ns
    assert not Path(f"{out}.torn").exists()
    assert "torn last line of 50 bytes left in place" in state.summary()


def test_a_file_that_grew_while_being_read_is_not_cut(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(out, line("a"), b'{"tok')
    real_scan = resume._Scanner.scan

    def scan_then_append(self: resume._Scanner, fd: int) -> tuple[int, int]:
        result = real_scan(self, fd)
        with out.open("ab") as fh:  # someone writing without the lock
            fh.write(b'en":"b"}\n')
        return result

    monkeypatch.setattr(resume._Scanner, "scan", scan_then_append)
    with pytest.raises(ResumeError, match="changed while it was being read"):
        load_resume_state(str(out))
    assert out.read_bytes() == line("a") + b'{"token":"b"}\n'
    assert not Path(f"{out}.torn").exists()


def test_summary_reads_as_one_line(out: Path) -> None:
    write(out, line("a"), line("a"), line("b", Status.PENDING), b"x\n", b'{"t')
    text = load_resume_state(str(out)).summary()
    assert text == (
        "4 lines read: 2 final, 1 not final, 1 unreadable (line 4); tokens already final: 1"
        f"; torn last line of 3 bytes set aside to {out}.torn"
    )


@pytest.mark.parametrize("fast", [True, False])
def test_a_local_expiry_is_remembered_apart_from_final_lines(tmp_path: Path, fast: bool) -> None:
    local = build_record(
        token="tok",
        status=Status.EXPIRED,
        final=True,
        attempts=0,
        checked_at=0.0,
        error=ErrorInfo("TokenTooOld", "issued 80 h ago"),
    )
    api = build_record(
        token="api",
        status=Status.EXPIRED,
        final=True,
        attempts=1,
        checked_at=0.0,
        error=ErrorInfo("InvalidParameterValue.BizTokenExpired", "expired"),
    )
    data = encode_record(local) + encode_record(api)
    if not fast:  # key order changed: the exact (json.loads) path reads these
        data = b"".join(
            json.dumps(dict(reversed(list(r.items())))).encode() + b"\n" for r in (local, api)
        )
    path = tmp_path / "out.jsonl"
    path.write_bytes(data)
    state = load_resume_state(str(path))
    assert state.was_expired_locally("tok")
    assert not state.is_final("tok")
    assert state.is_final("api")
    assert not state.was_expired_locally("api")
    # A later line for the token (it was asked after all) replaces the local expiry.
    path.write_bytes(
        data
        + encode_record(
            build_record(token="tok", status=Status.PASSED, final=True, attempts=1, checked_at=0.0)
        )
    )
    state = load_resume_state(str(path))
    assert state.is_final("tok")
    assert not state.was_expired_locally("tok")


@pytest.mark.parametrize("fast", [True, False])
def test_a_not_final_expired_line_is_no_local_expiry(tmp_path: Path, fast: bool) -> None:
    # Only a final `expired` line with the local code is a local expiry; the fast path reads the
    # status and `final` from the head's groups, the exact path from json.loads: they agree.
    record = build_record(
        token="tok",
        status=Status.EXPIRED,
        final=False,
        attempts=0,
        checked_at=0.0,
        error=ErrorInfo("TokenTooOld", "issued 80 h ago"),
    )
    line = encode_record(record)
    if not fast:
        line = json.dumps(dict(reversed(list(record.items())))).encode() + b"\n"
    path = tmp_path / "out.jsonl"
    path.write_bytes(line)
    state = load_resume_state(str(path))
    assert (state.final, state.not_final, state.fast_lines) == (0, 1, int(fast))
    assert not state.is_final("tok")
    assert not state.was_expired_locally("tok")


def test_a_local_expiry_read_by_the_exact_path_is_undone_by_a_later_fast_final_line(
    out: Path,
) -> None:
    # Regression (issue 11): the fast path keeps "may the local-expiry set hold keys?" in a
    # local; a line read by the exact path (keys in another order) must update it too.
    slow = {"final": True, "status": "expired", "token": "t", "error": {"code": "TokenTooOld"}}
    fast = b'{"token":"t","status":"passed","final":true,"attempts":1}\n'
    write(out, json.dumps(slow).encode() + b"\n", fast)
    state = load_resume_state(str(out))
    assert state.is_final("t")
    assert not state.was_expired_locally("t")
