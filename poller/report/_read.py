"""Reading a results file (SPEC §4) line by line: what each line says, and what could not be read.

Only the few fields a report needs are kept from a line, as an `Entry`: a tuple of the status, the
final flag, the result code, the charge count and the error code. Many tokens share identical
entries, so the reader hands out one shared tuple per distinct value (a bounded cache): an index of
millions of tokens then costs a dict slot and the token string per token, not a tuple each.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from poller.api.outcomes import Status

#: How many unreadable line numbers a report names; the rest are only counted.
UNREADABLE_SHOWN: Final = 5

# Distinct entries are few (six statuses times a handful of codes and charge counts); the cap only
# matters for a hostile file where every line is different, and then memory stays bounded.
_INTERN_MAX: Final = 4096

_STATUS_BY_NAME: Final[Mapping[str, Status]] = {status.value: status for status in Status}


class Entry(NamedTuple):
    """What a report keeps of one result line."""

    status: Status
    final: bool
    result: str | None
    charge_count: int
    error_code: str | None

    @property
    def code(self) -> str | None:
        """The code that explains the status: `result` when there is one, else `error.code`."""
        return self.result if self.result is not None else self.error_code


class TokenResult(NamedTuple):
    """A token a report lists, with the entry of its last line.

    Not the input stage's `TokenEntry` (a token read from the input, with its line and
    ``issued_at``): a results file holds neither, and a report lists results, not inputs.
    """

    token: str
    entry: Entry


@dataclass(frozen=True, slots=True)
class LineStats:
    """Counts about lines, as opposed to tokens.

    `read` counts non-blank lines. `superseded` counts lines that a later line for the same token
    replaced (resumed runs append such lines: the last one wins). `unreadable` counts torn,
    non-JSON or malformed lines, which are skipped; `unreadable_lines` names the first few
    (1-based).
    """

    read: int = 0
    unreadable: int = 0
    unreadable_lines: tuple[int, ...] = ()
    superseded: int = 0


def _code(value: object) -> str | None:
    # The sink writes codes as strings; a number from another writer is read as its JSON text.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    return None


class LineReader:
    """Turns lines into `(token, Entry)` pairs, counting and skipping what cannot be read.

    A line is unreadable when it is not JSON (a line torn by a crash), not an object, has no
    non-empty string `token`, or has a `status` that is not one of SPEC §4's six: no figure could
    place it. Nothing a line holds makes the reader raise.
    """

    __slots__ = ("_interned", "line_no", "read", "unreadable", "unreadable_lines")

    def __init__(self) -> None:
        self.line_no = 0
        self.read = 0
        self.unreadable = 0
        self.unreadable_lines: list[int] = []
        self._interned: dict[tuple[object, ...], Entry] = {}

    def entries(self, lines: Iterable[bytes]) -> Iterator[tuple[str, Entry]]:
        """(token, entry) for every readable line, in file order."""
        parse = self._parse
        for raw in lines:
            self.line_no += 1
            if not raw or raw.isspace():
                continue
            self.read += 1
            parsed = parse(raw)
            if parsed is None:
                self.unreadable += 1
                if len(self.unreadable_lines) < UNREADABLE_SHOWN:
                    self.unreadable_lines.append(self.line_no)
                continue
            yield parsed

    def stats(self, superseded: int) -> LineStats:
        return LineStats(self.read, self.unreadable, tuple(self.unreadable_lines), superseded)

    def _parse(self, raw: bytes) -> tuple[str, Entry] | None:
        try:
            obj: object = json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
        if not isinstance(obj, dict):
            return None
        token = obj.get("token")
        status_name = obj.get("status")
        if not isinstance(token, str) or not token or not isinstance(status_name, str):
            return None
        status = _STATUS_BY_NAME.get(status_name)
        if status is None:
            return None
        final = obj.get("final")
        if not isinstance(final, bool):
            # SPEC §4: only `pending` (and an `error` that outlasted its retries) is not final.
            final = status is not Status.PENDING
        charge = obj.get("charge_count")
        error = obj.get("error")
        fields = (
            status,
            final,
            _code(obj.get("result")),
            charge if isinstance(charge, int) and not isinstance(charge, bool) else 0,
            _code(error.get("code")) if isinstance(error, dict) else None,
        )
        # Look the plain tuple up first: building the NamedTuple is the slow part of a line.
        entry = self._interned.get(fields)
        if entry is None:
            entry = Entry._make(fields)
            if len(self._interned) < _INTERN_MAX:
                self._interned[fields] = entry
        return token, entry

    def __repr__(self) -> str:
        return (
            f"<LineReader line_no={self.line_no} read={self.read} "
            f"unreadable={self.unreadable} interned={len(self._interned)}>"
        )


@dataclass(frozen=True, slots=True, repr=False)
class Index:
    """Every token of a results file with its last entry, in the order of their last lines."""

    source: str
    lines: LineStats
    entries: Mapping[str, Entry]

    def __repr__(self) -> str:
        return f"<Index source={self.source!r} tokens={len(self.entries)} lines={self.lines}>"


def load(lines: Iterable[bytes], source: str = "-") -> Index:
    """Index a results file: token → last entry. Memory is O(distinct tokens): `--against`
    cannot do without it."""
    reader = LineReader()
    entries: dict[str, Entry] = {}
    superseded = 0
    for token, entry in reader.entries(lines):
        # pop, then insert: the token moves to where its last line is.
        if entries.pop(token, None) is not None:
            superseded += 1
        entries[token] = entry
    return Index(source, reader.stats(superseded), entries)
