"""Property tests for the token readers: arbitrary bytes never crash, valid tokens round-trip."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.input.tokens import (
    BAD_TOKEN_CHARS,
    BadEntry,
    InputError,
    InputFormat,
    InputItem,
    TokenEntry,
    check_token,
    read_tokens,
)

FORMATS: list[InputFormat] = ["text", "csv", "jsonl"]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Byte soup biased towards what breaks parsers: separators, quotes, braces, NUL, CR, a BOM and
# bytes that are invalid UTF-8, mixed with plausible fragments.
FRAGMENTS = st.sampled_from(
    [
        b"\n", b"\r\n", b"\r", b",", b'"', b"{", b"}", b"#", b" ", b"\t", b"\x00", b"\xff",
        b"\xef\xbb\xbf", b"\xc3", b"\xe2\x80\xa8", b"SdkToken", b"token", b"issued_at",
        b'{"SdkToken": "', b'", "issued_at": ', b"2024-01-01T00:00:00Z", b"1704067200", b"tok",
    ]
)  # fmt: skip
HOSTILE_BYTES = st.one_of(
    st.binary(max_size=600),
    st.lists(st.one_of(FRAGMENTS, st.binary(max_size=8)), max_size=80).map(b"".join),
)


def _check_items(items: list[InputItem]) -> None:
    last = 0
    for item in items:
        assert isinstance(item, TokenEntry | BadEntry)
        assert item.line > last, "line numbers must increase strictly"
        last = item.line
        if isinstance(item, TokenEntry):
            assert check_token(item.token) is None
            assert item.token == item.token.strip()
            assert item.issued_at is None or item.issued_at >= 0
        else:
            assert item.reason.startswith(f"line {item.line}: ")
            assert len(item.token) <= BAD_TOKEN_CHARS + 1
            item.token.encode("utf-8")  # always writable to the output file
            item.reason.encode("utf-8")


@FUZZ
@given(data=HOSTILE_BYTES, fmt=st.sampled_from(FORMATS))
def test_arbitrary_bytes_never_crash_the_reader(data: bytes, fmt: InputFormat) -> None:
    error: InputError | None = None
    try:
        items = list(read_tokens("-", fmt, stdin=io.BytesIO(data)))
    except InputError as exc:
        error, items = exc, []
    if error is not None:  # a whole-input refusal is one line of text for the user
        assert str(error)
        assert "\n" not in str(error)
        return
    _check_items(items)
    assert all(item.line <= data.count(b"\n") + 1 for item in items)


@FUZZ
@given(data=HOSTILE_BYTES)
def test_arbitrary_bytes_with_a_sniffed_stdin_format(data: bytes) -> None:
    try:
        items = list(read_tokens("-", stdin=io.BytesIO(data)))
    except InputError:
        return
    _check_items(items)


# Any Unicode but control characters and surrogates (check_token refuses those), trimmed, not a
# comment (text would skip it), not starting with "{" or naming a header (irrelevant here, the
# format is explicit, but keeps the cases meaningful).
VALID_TOKENS = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
).filter(lambda t: check_token(t) is None and t == t.strip().strip("\ufeff") and t[:1] != "#")


def _encode(fmt: InputFormat, tokens: list[str]) -> bytes:
    if fmt == "text":
        return "".join(f"{t}\n" for t in tokens).encode()
    if fmt == "jsonl":
        return "".join(
            json.dumps({"SdkToken": t}, ensure_ascii=False) + "\n" for t in tokens
        ).encode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["SdkToken", "issued_at"])
    writer.writerows([t, ""] for t in tokens)
    return out.getvalue().encode()


@FUZZ
@given(tokens=st.lists(VALID_TOKENS, max_size=30), fmt=st.sampled_from(FORMATS))
def test_valid_tokens_round_trip_in_order(tokens: list[str], fmt: InputFormat) -> None:
    items = list(read_tokens("-", fmt, stdin=io.BytesIO(_encode(fmt, tokens))))
    assert all(isinstance(item, TokenEntry) for item in items), items
    assert [item.token for item in items] == tokens
