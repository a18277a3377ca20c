"""Property tests for load_resume_state: hostile tails never crash it, the fast path agrees with
a whole-line json.loads, and the read size never changes the answer."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.api.outcomes import Status
from poller.input.keys import token_key
from poller.output import resume
from poller.output.records import build_record, encode_record
from poller.output.resume import ResumeState, load_resume_state

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Tokens as encode_record can write them: any text but lone surrogates (strict UTF-8 output).
TOKENS = st.one_of(
    st.sampled_from(["a", "b", "é", 'q"uote', "back\\slash", "日本", "\u2028"]),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
RECORDS = st.builds(
    lambda token, status, final, resp: encode_record(
        build_record(
            token=token, status=status, final=final, attempts=1, checked_at=0.0, response=resp
        )
    ),
    TOKENS,
    st.sampled_from(Status),
    st.booleans(),
    st.none() | st.dictionaries(st.sampled_from(["Result", "final", "token", "X"]), JSON_VALUES),
)
# Byte soup biased towards what breaks a line reader: newlines, braces, record heads, broken
# UTF-8, deep nesting.
FRAGMENTS = st.sampled_from(
    [
        b"\n", b"\r\n", b"{", b"}", b"[", b'"', b"\\", b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80",
        b'{"token":"', b'","status":"passed","final":true,', b'"final":false,', b"[" * 3000,
        b'{"token":"x","final":true}', b"null", b"\\u00e9", b"\\ud800",
    ]
)  # fmt: skip
HOSTILE = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(FRAGMENTS, RECORDS, st.binary(max_size=6)), max_size=40).map(b"".join),
)


@contextmanager
def scratch_file(data: bytes) -> Iterator[Path]:
    # Hypothesis runs many examples per test: a function-scoped tmp_path would be shared.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.jsonl"
        path.write_bytes(data)
        yield path


def oracle(data: bytes) -> tuple[set[int], int, int, int]:
    """SPEC §4 read literally: every complete line through json.loads, the last line wins."""
    final_of: dict[str, bool] = {}
    final = not_final = unreadable = 0
    for raw in data.split(b"\n")[:-1]:  # what follows the last newline is the torn line
        try:
            obj: Any = json.loads(raw)
        except (ValueError, RecursionError):
            obj = None
        if not (
            isinstance(obj, dict)
            and isinstance(obj.get("token"), str)
            and isinstance(obj.get("final"), bool)
        ):
            unreadable += 1
            continue
        final_of[obj["token"]] = obj["final"]
        final, not_final = final + obj["final"], not_final + (not obj["final"])
    keys = {token_key(t) for t, f in final_of.items() if f}
    return keys, final, not_final, unreadable


def load_with_chunk(path: Path, size: int, *, set_aside: bool) -> ResumeState:
    # Not monkeypatch: it is function-scoped, and this runs once per example.
    with mock.patch.object(resume, "CHUNK", size):
        return load_resume_state(str(path), set_aside=set_aside)


def comparable(state: ResumeState) -> tuple[object, ...]:
    return (state.final_keys, state.lines, state.final, state.not_final, state.unreadable,
            state.unreadable_lines, state.torn_bytes)  # fmt: skip


@FUZZ
@given(records=st.lists(RECORDS, max_size=8), tail=HOSTILE)
def test_hostile_bytes_after_a_valid_file_never_crash(records: list[bytes], tail: bytes) -> None:
    data = b"".join(records) + tail
    with scratch_file(data) as path:
        dry = load_with_chunk(path, 5, set_aside=False)
        assert path.read_bytes() == data
        state = load_with_chunk(path, resume.CHUNK, set_aside=True)

        assert comparable(dry) == comparable(state), "the read size changed the answer"
        assert state.lines == state.final + state.not_final + state.unreadable
        assert state.lines == data.count(b"\n")
        assert state.fast_lines <= state.lines
        assert state.unreadable_lines == sorted(set(state.unreadable_lines))
        assert len(state.final_keys) <= state.final
        cut = data.rfind(b"\n") + 1
        assert state.torn_bytes == len(data) - cut
        assert path.read_bytes() == data[:cut]
        side = Path(f"{path}.torn")
        if state.torn_bytes:
            assert state.torn_saved_to == str(side)
            _header, saved, end = side.read_bytes().split(b"\n")
            assert (saved, end) == (data[cut:], b"")
        else:
            assert state.torn_saved_to is None
            assert not side.exists()
        # The first len(records) lines are whole records: the fast path takes each one whose
        # response holds no second record head (a `"token"` key opening a nested object).
        assert state.fast_lines >= sum(1 for r in records if r.count(resume._SECOND_HEAD) == 1)


@FUZZ
@given(records=st.lists(RECORDS, max_size=12), chunk=st.integers(1, 64))
def test_fast_path_agrees_with_json_loads_on_written_records(
    records: list[bytes], chunk: int
) -> None:
    data = b"".join(records)
    with scratch_file(data) as path:
        state = load_with_chunk(path, chunk, set_aside=False)
    keys, final, not_final, unreadable = oracle(data)
    assert (set(state.final_keys), state.final, state.not_final, state.unreadable) == (
        keys,
        final,
        not_final,
        unreadable,
    )
    assert unreadable == 0
    assert state.fast_lines == sum(1 for r in records if r.count(resume._SECOND_HEAD) == 1)


@FUZZ
@given(
    lines=st.lists(
        st.one_of(
            RECORDS,
            st.binary(max_size=40).filter(lambda b: b"\n" not in b).map(lambda b: b + b"\n"),
            st.lists(FRAGMENTS.filter(lambda f: b"\n" not in f), max_size=6).map(
                lambda parts: b"".join(parts) + b"\n"
            ),
        ),
        max_size=12,
    )
)
def test_any_complete_lines_agree_with_json_loads(lines: list[bytes]) -> None:
    """Mixed records and junk: where the fast path declines, json.loads decides; the two never
    disagree on lines whose head is not followed by a cut-and-spliced record."""
    data = b"".join(lines)
    with scratch_file(data) as path:
        state = load_resume_state(str(path), set_aside=False)
    keys, final, not_final, unreadable = oracle(data)
    assert state.lines == final + not_final + unreadable == data.count(b"\n")
    if any(_fast_path_disagrees(raw) for raw in data.split(b"\n")):
        return  # a documented limit of the fast path (see resume._SECOND_HEAD); counts above hold
    assert (set(state.final_keys), state.final, state.not_final, state.unreadable) == (
        keys,
        final,
        not_final,
        unreadable,
    )


def _fast_path_disagrees(raw: bytes) -> bool:
    """A line the fast path trusts (a record head, a `}` at the end, no second head) whose
    verdict differs from a whole-line json.loads: junk spliced into the middle of a record."""
    m = resume._HEAD.match(raw)
    if m is None or not raw.endswith(b"}") or raw.find(resume._SECOND_HEAD, m.end()) >= 0:
        return False
    try:
        obj = json.loads(raw)
        token = json.loads(b'"' + m.group(1) + b'"')
    except (ValueError, RecursionError):
        return True
    verdict = (token, raw[: m.end()].endswith(b"true,"))
    return not isinstance(obj, dict) or (obj.get("token"), obj.get("final")) != verdict


def test_oracle_and_fuzz_cover_the_torn_and_escaped_cases() -> None:
    # Guard against a vacuous oracle: it must see a final token and refuse junk.
    data = encode_record({"token": "é", "status": "passed", "final": True}) + b"junk\n{"
    assert oracle(data) == ({token_key("é")}, 1, 0, 1)
    assert _fast_path_disagrees(b'{"token":"x","status":"passed","final":true,oops}')
    assert not _fast_path_disagrees(data.split(b"\n")[0])
