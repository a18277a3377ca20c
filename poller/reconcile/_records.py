"""Reading the user's own records: a token and the outcome they recorded for it, line by line.

CSV with a header, or JSON Lines (one object per line): by the extension (`.csv`; `.jsonl`,
`.ndjson`, `.json`), else by the first non-blank character (`{` is JSON Lines). The token column
is `token` or `SdkToken` unless named; the outcome column the first of `outcome`, `status`,
`result`, `decision`, `verdict` unless named (header names match without regard to case). A
record that cannot be used stops the command with one sentence naming the file and the line:
reconciling around a bad row would report a wrong figure with a straight face.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator, Sequence
from typing import IO, Final, NamedTuple

import orjson

from poller.api.outcomes import Status
from poller.errors import PollerError
from poller.reconcile._vocabulary import Vocabulary

TOKEN_COLUMNS: Final = ("token", "SdkToken")
OUTCOME_COLUMNS: Final = ("outcome", "status", "result", "decision", "verdict")
_STATUSES: Final = ", ".join(s.value for s in Status)


class RecordsError(PollerError):
    """The records cannot be read as asked: one sentence naming the file (and line), exit 2."""


class OurRecord(NamedTuple):
    # The order of the scratch table's columns: the join inserts these tuples as they are.
    token: str
    status: Status
    word: str  # as recorded, for the mismatches file
    line: int  # 1-based


_BOM: Final = b"\xef\xbb\xbf"


def _detect(path: str, head: bytes) -> str:
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "jsonl" if head.removeprefix(_BOM).lstrip().startswith(b"{") else "csv"


def _shown(text: str) -> str:
    """`text` for a one-sentence message: control characters (a newline) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _pick(names: Sequence[str], wanted: str | None, defaults: Sequence[str]) -> str | None:
    """The name in `names` that `wanted` (or else the first default) names, case-insensitively."""
    folded = {name.strip().lower(): name for name in reversed(names)}
    for candidate in (wanted,) if wanted is not None else defaults:
        found = folded.get(candidate.strip().lower())
        if found is not None:
            return found
    return None


class RecordsReader:
    """Streams `OurRecord`s from one open binary stream; `read` counts the records."""

    __slots__ = ("_name", "_outcome_column", "_seen", "_token_column", "_vocabulary", "read")

    def __init__(
        self,
        name: str,
        vocabulary: Vocabulary,
        *,
        token_column: str | None = None,
        outcome_column: str | None = None,
    ) -> None:
        self._name = name
        self._vocabulary = vocabulary
        self._token_column = token_column
        self._outcome_column = outcome_column
        # An export uses a handful of distinct words: look each up once (a third of the time
        # to read a million CSV records went to normalizing the same few words).
        self._seen: dict[str, Status] = {}
        self.read = 0

    def records(self, stream: IO[bytes]) -> Iterator[OurRecord]:
        head = stream.peek(4096)[:4096] if hasattr(stream, "peek") else b""
        if _detect(self._name, head) == "csv":
            yield from self._csv(stream)
        else:
            yield from self._jsonl(stream)

    def _fail(self, line: int, message: str) -> RecordsError:
        return RecordsError(f"records file {self._name} line {line}: {message}.")

    def _record(self, token: object, outcome: object, line: int) -> OurRecord:
        if not isinstance(token, str) or not token.strip():
            raise self._fail(line, "the token is empty or not a string")
        if isinstance(outcome, bool) or outcome is None:
            word = "" if outcome is None else str(outcome).lower()
        elif isinstance(outcome, int | str):
            word = str(outcome)
        else:
            raise self._fail(
                line, f"the outcome {_shown(repr(outcome))[:80]} is neither a word nor a code"
            )
        status = self._seen.get(word)
        if status is None:
            status = self._vocabulary.status_of(word)
            if status is not None and len(self._seen) < 1024:
                self._seen[word] = status
        if status is None:
            bare = word.strip()
            hint = (
                f"map it with --map '{bare}=STATUS' (a status is one of {_STATUSES})"
                if bare.isprintable()
                else "it holds a control character, so correct the record"
            )
            raise self._fail(
                line, f"the outcome {_shown(repr(word))} is not in the vocabulary; {hint}"
            )
        self.read += 1
        return OurRecord(token.strip(), status, word, line)

    def _decoded(self, stream: IO[bytes]) -> Iterator[str]:
        # Decoded line by line (not by a TextIOWrapper, which decodes whole chunks ahead) so
        # that a byte that is not UTF-8 is reported on its own line.
        for number, raw in zip(itertools.count(1), stream, strict=False):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail(number, "the text is not UTF-8") from None
            yield text.removeprefix("\ufeff") if number == 1 else text

    def _csv(self, stream: IO[bytes]) -> Iterator[OurRecord]:
        reader = csv.reader(self._decoded(stream))
        try:
            header = next(reader, None)
            if header is None:
                raise RecordsError(f"records file {self._name} is empty: it has no header line.")
            token_name = _pick(header, self._token_column, TOKEN_COLUMNS)
            outcome_name = _pick(header, self._outcome_column, OUTCOME_COLUMNS)
            shown = _shown(", ".join(header))
            if token_name is None:
                wanted = self._token_column or " or ".join(TOKEN_COLUMNS)
                raise RecordsError(
                    f"records file {self._name} has no {wanted} column (header: {shown}); "
                    "name the token column with --token-column."
                )
            if outcome_name is None:
                wanted = self._outcome_column or ", ".join(OUTCOME_COLUMNS)
                raise RecordsError(
                    f"records file {self._name} has no outcome column ({wanted}; header: "
                    f"{shown}); name it with --outcome-column."
                )
            t, o = header.index(token_name), header.index(outcome_name)
            need = max(t, o) + 1
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # a blank line
                if len(row) < need:
                    raise self._fail(
                        reader.line_num, f"the row has {len(row)} fields, the header {len(header)}"
                    )
                yield self._record(row[t], row[o], reader.line_num)
        except csv.Error as exc:
            raise self._fail(reader.line_num, f"not valid CSV ({exc})") from None

    def _jsonl(self, stream: IO[bytes]) -> Iterator[OurRecord]:
        tk, ok = "", ""  # the field names the last line used: almost always this line's too
        for number, raw in zip(itertools.count(1), stream, strict=False):
            if number == 1:
                raw = raw.removeprefix(_BOM)  # as the CSV reader does
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise self._fail(number, self._why_not_json(raw)) from None
            if not isinstance(obj, dict):
                raise self._fail(number, "not a JSON object")
            if tk not in obj or ok not in obj:
                tk, ok = self._json_keys(list(obj), number)
            yield self._record(obj[tk], obj[ok], number)

    @staticmethod
    def _why_not_json(raw: bytes) -> str:
        """What is wrong with a line orjson refused, in words."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return "the text is not UTF-8"
        try:
            json.loads(text)
        except (ValueError, RecursionError):
            return "not a JSON object (a torn or garbled line)"
        # The standard library reads it: a \\u escape (four hex digits) names half a pair.
        return (
            "a string holds a lone surrogate escape (\\ud800-\\udfff without its pair), "
            "which is not a character"
        )

    def _json_keys(self, keys: Sequence[str], number: int) -> tuple[str, str]:
        tk = _pick(keys, self._token_column, TOKEN_COLUMNS)
        if tk is None:
            wanted = self._token_column or " or ".join(TOKEN_COLUMNS)
            raise self._fail(number, f'no "{wanted}" field (name it with --token-column)')
        ok = _pick(keys, self._outcome_column, OUTCOME_COLUMNS)
        if ok is None:
            wanted = self._outcome_column or ", ".join(OUTCOME_COLUMNS)
            raise self._fail(number, f"no outcome field ({wanted}); name it with --outcome-column")
        return tk, ok

    def __repr__(self) -> str:
        return f"<RecordsReader name={self._name!r} read={self.read}>"
