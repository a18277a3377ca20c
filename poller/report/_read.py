"""Reading results files (SPEC §4) line by line: what each line says, and what could not be read.

Only the few fields a report needs are kept from a line, as an `Entry`: the status, the final
flag, the result code, the charge count, the error code, and the small facts the risk view needs
from the `response` (is there one, `DeviceInfoLevel`, a suspected-attack code, `IsEdit` of the
valid card result). The response itself is dropped as soon as the line is read. Many tokens share
identical entries, so the reader hands out one shared tuple per distinct value (a bounded cache):
an index of millions of tokens then costs a dict slot and the token string per token, not a tuple
each.

Which line of a token wins (`IndexBuilder`, and `summarize` for one file): a line that came
from the API (`attempts` > 0) over one the poller decided locally without a request (`attempts`
0: `TokenTooOld`, `InvalidInput`; `poller.output.records.is_local_line`), whatever their times;
among lines of the same kind, the one with the latest `checked_at`; between equal `checked_at`,
the one read last: a later file (in the order given) over an earlier one, a later line over an
earlier one in the same file. A line without a readable `checked_at` counts as older than every
dated line. For one file the poller wrote this is simply "the last line wins" (it writes in time
order) but for local lines, and for several files it makes the order the files are named in
matter only for lines written in the same second.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, NamedTuple

from poller.api.outcomes import Status
from poller.output.records import is_local_line
from poller.report._codes import ATTACK_CODES

#: How many unreadable line numbers a report names; the rest are only counted.
UNREADABLE_SHOWN: Final = 5

# Distinct entries are few (six statuses times a handful of codes and charge counts); the cap only
# matters for a hostile file where every line is different, and then memory stays bounded.
# The risk facts multiply them by ~20 (levels, attack, edited), hence the room.
_INTERN_MAX: Final = 16_384
# `checked_at` strings → seconds. Lines settle in time order, so a small cache that starts over
# when full keeps hitting; a file has one distinct value per second of its run.
_WHEN_MAX: Final = 4096
#: The `checked_at` of a line without a readable one: older than every dated line.
UNDATED: Final = float("-inf")

_LEVELS: Final[Mapping[object, int]] = {"1": 1, "2": 2, "3": 3, "4": 4, 1: 1, 2: 2, 3: 3, 4: 4}

_STATUS_BY_NAME: Final[Mapping[str, Status]] = {status.value: status for status in Status}


class Entry(NamedTuple):
    """What a report keeps of one result line.

    The last five fields are the risk facts. `response` says whether the line had a `response`
    object (`--detail summary` lines and expired/invalid/error lines have none); without one,
    only `attack` from the result code can be known. `device_level` is `DeviceInfoLevel` 1..4, or
    0 when it is empty, missing or anything else. `attack` is a suspected-attack code
    (`ATTACK_CODES`): the line's result when it is one, else the last CompareResult whose
    `ErrorCode` is one (`attack_earlier` is then true: an earlier attempt, not the outcome).
    `edited` is `IsEdit` of the last CardVerifyResult (the valid one, SPEC §1.3). `local` is true
    for a line written without asking Tencent (`attempts` 0): it never replaces an API line.
    """

    status: Status
    final: bool
    result: str | None
    charge_count: int
    error_code: str | None
    response: bool = False
    device_level: int = 0
    attack: str | None = None
    attack_earlier: bool = False
    edited: bool = False
    local: bool = False

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
class FileLines:
    """Line counts of one file of several (`unreadable_lines`: the first few, 1-based)."""

    source: str
    read: int = 0
    unreadable: int = 0
    unreadable_lines: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class LineStats:
    """Counts about lines, as opposed to tokens.

    `read` counts non-blank lines. `superseded` counts lines that a later line for the same token
    replaced, or that lost to a line already read (resumed runs append such lines, and several
    files may hold a token: the latest `checked_at` wins). `unreadable` counts torn, non-JSON or
    malformed lines, which are skipped; `unreadable_lines` names the first few (1-based) when
    one file was read; with several files, `files` has them per file.
    """

    read: int = 0
    unreadable: int = 0
    unreadable_lines: tuple[int, ...] = ()
    superseded: int = 0
    #: One per file read, in the order read.
    files: tuple[FileLines, ...] = ()


def _code(value: object) -> str | None:
    # The sink writes codes as strings; a number from another writer is read as its JSON text.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    return None


def _seconds(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return UNDATED
    if moment.tzinfo is None:  # SPEC §4 says UTC; a writer that left the zone out meant it
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _risk_facts(
    response: dict[str, object], result: str | None
) -> tuple[bool, int, str | None, bool, bool]:
    """`Entry`'s risk fields from a line's `response` (never raises on odd shapes)."""
    level = response.get("DeviceInfoLevel")
    device_level = _LEVELS.get(level, 0) if isinstance(level, str | int) else 0
    attack = result if result in ATTACK_CODES else None
    earlier = False
    if attack is None:
        compares = response.get("CompareResults")
        if isinstance(compares, list):
            for compare in reversed(compares):
                if isinstance(compare, dict):
                    code = _code(compare.get("ErrorCode"))
                    if code in ATTACK_CODES:
                        attack, earlier = code, True
                        break
    edited = False
    cards = response.get("CardVerifyResults")
    if isinstance(cards, list) and cards and isinstance(cards[-1], dict):
        edited = cards[-1].get("IsEdit") is True
    return True, device_level, attack, earlier, edited


_NO_RESPONSE: Final = (False, 0, None, False, False)


class LineReader:
    """Turns lines into `(token, Entry)` pairs, counting and skipping what cannot be read.

    A line is unreadable when it is not JSON (a line torn by a crash), not an object, has no
    non-empty string `token`, or has a `status` that is not one of SPEC §4's six: no figure could
    place it. Nothing a line holds makes the reader raise.
    """

    __slots__ = ("_interned", "_when", "line_no", "read", "unreadable", "unreadable_lines")

    def __init__(self) -> None:
        self.line_no = 0
        self.read = 0
        self.unreadable = 0
        self.unreadable_lines: list[int] = []
        self._interned: dict[tuple[object, ...], Entry] = {}
        self._when: dict[object, float] = {}

    def entries(self, lines: Iterable[bytes]) -> Iterator[tuple[str, Entry, float]]:
        """(token, entry, checked_at in seconds) for every readable line, in file order."""
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

    def stats(self, superseded: int, source: str = "-") -> LineStats:
        shown = tuple(self.unreadable_lines)
        files = (FileLines(source, self.read, self.unreadable, shown),)
        return LineStats(self.read, self.unreadable, shown, superseded, files)

    def file_lines(self, source: str) -> FileLines:
        return FileLines(source, self.read, self.unreadable, tuple(self.unreadable_lines))

    def _parse(self, raw: bytes) -> tuple[str, Entry, float] | None:
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
        result = _code(obj.get("result"))
        response = obj.get("response")
        if isinstance(response, dict):
            risk = _risk_facts(response, result)
        elif result in ATTACK_CODES:
            risk = (False, 0, result, False, False)
        else:
            risk = _NO_RESPONSE
        fields = (
            status,
            final,
            result,
            charge if isinstance(charge, int) and not isinstance(charge, bool) else 0,
            _code(error.get("code")) if isinstance(error, dict) else None,
            *risk,
            is_local_line(obj),
        )
        # Look the plain tuple up first: building the NamedTuple is the slow part of a line.
        entry = self._interned.get(fields)
        if entry is None:
            entry = Entry._make(fields)
            if len(self._interned) < _INTERN_MAX:
                self._interned[fields] = entry
        checked_at = obj.get("checked_at")
        when = self._when.get(checked_at) if isinstance(checked_at, str) else UNDATED
        if when is None:
            when = _seconds(checked_at)  # type: ignore[arg-type]  # a str: checked just above
            if len(self._when) >= _WHEN_MAX:
                self._when.clear()
            self._when[checked_at] = when
        return token, entry, when

    def __repr__(self) -> str:
        return (
            f"<LineReader line_no={self.line_no} read={self.read} "
            f"unreadable={self.unreadable} interned={len(self._interned)}>"
        )


@dataclass(frozen=True, slots=True, repr=False)
class Index:
    """Every token of one or more results files with its winning entry, in the order the winning
    lines were read (see the module docstring for which line wins)."""

    source: str
    lines: LineStats
    entries: Mapping[str, Entry]

    def __repr__(self) -> str:
        return f"<Index source={self.source!r} tokens={len(self.entries)} lines={self.lines}>"


def line_loses(entry: Entry, when: float, held: Entry, held_when: float) -> bool:
    """Whether a line read now loses to the line already held for its token: a local line to an
    API line always; an API line to a local line never; else an older `checked_at` loses."""
    if entry.local is not held.local:
        return entry.local
    return when < held_when


class IndexBuilder:
    """Reads files one after another into one index: `add` each in order, then `index()`.

    Memory is O(distinct tokens): per token a slot in two dicts (its entry, shared with other
    tokens, and its `checked_at` seconds), never a response.
    """

    __slots__ = ("_entries", "_files", "_superseded", "_when")

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._when: dict[str, float] = {}
        self._files: list[FileLines] = []
        self._superseded = 0

    def add(self, lines: Iterable[bytes], source: str = "-") -> None:
        reader = LineReader()
        entries, when_of = self._entries, self._when
        loses = line_loses
        superseded = 0
        for token, entry, when in reader.entries(lines):
            held = when_of.get(token)
            if held is not None:
                superseded += 1
                if loses(entry, when, entries[token], held):
                    continue
                del entries[token]  # then insert: the token moves to where its winning line is
            entries[token] = entry
            when_of[token] = when
        self._superseded += superseded
        self._files.append(reader.file_lines(source))

    def index(self, source: str | None = None) -> Index:
        files = tuple(self._files)
        name = source if source is not None else " + ".join(f.source for f in files) or "-"
        read = sum(f.read for f in files)
        unreadable = sum(f.unreadable for f in files)
        shown = files[0].unreadable_lines if len(files) == 1 else ()
        lines = LineStats(read, unreadable, shown, self._superseded, files)
        return Index(name, lines, self._entries)

    def __repr__(self) -> str:
        return (
            f"<IndexBuilder files={len(self._files)} tokens={len(self._entries)} "
            f"superseded={self._superseded}>"
        )


def load(lines: Iterable[bytes], source: str = "-") -> Index:
    """Index a results file: token → winning entry. Memory is O(distinct tokens): `--against`
    and several files cannot do without it."""
    builder = IndexBuilder()
    builder.add(lines, source)
    return builder.index(source)
