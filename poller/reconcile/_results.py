"""Reading poller results files (SPEC §4) for reconciliation: what Tencent said, line by line.

`poller.report`'s `LineReader` keeps no `checked_at`, and reconciliation needs it (per token a
line from the API beats one the poller decided locally, `attempts` 0; among lines of the same
kind the latest wins by `checked_at`, then file order, then line order) and the date for the
charges per day, so this reader keeps its own few fields. Like the report, it skips what it
cannot read (a line torn by a crash, a foreign line) and counts it: a results file is the
poller's own output, and a torn last line is normal after a crash.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Final, NamedTuple

import orjson

from poller.api.outcomes import Status
from poller.output.records import is_local_line

#: How many unreadable (file, line) places a report names; the rest are only counted.
UNREADABLE_SHOWN: Final = 5

_STATUS_BY_NAME: Final[Mapping[str, Status]] = {status.value: status for status in Status}


class TheirLine(NamedTuple):
    """What reconciliation keeps of one result line. A token's lines sort oldest first by
    `asked` (a local line, false, before an API line: it never replaces Tencent's answer), then
    `order` (`checked_at`, normalized), then the file's position on the command line, then the
    line."""

    # The order of the scratch table's columns: the join inserts these tuples as they are.
    token: str
    order: str
    file: int  # index into the results files
    line: int  # 1-based
    status: Status
    final: bool
    code: str | None
    checked_at: str
    charge_count: int
    #: False for a line decided locally, without a request (`is_local_line`): `TokenTooOld`,
    #: `InvalidInput`.
    asked: bool = True


def order_key(checked_at: object) -> str:
    """A string that sorts like the instant `checked_at` names: `YYYY-MM-DDTHH:MM:SS.ffffff`.

    The poller writes whole seconds with a `Z` (`2026-12-01T17:02:47Z`): that form is cut and
    padded without parsing (the fast path for millions of lines). Any other RFC 3339 form is
    parsed and turned to UTC; a missing or unreadable value is "" and sorts first.
    """
    if not isinstance(checked_at, str):
        return ""
    if len(checked_at) == 20 and checked_at[19] == "Z" and checked_at[10] == "T":
        return checked_at[:19] + ".000000"
    try:
        moment = datetime.fromisoformat(checked_at)
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _code(value: object) -> str | None:
    # The sink writes codes as strings; a number from another writer is read as its JSON text.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


class ResultsReader:
    """Turns the lines of results files into `TheirLine`s, counting and skipping what cannot be
    read. One reader goes over all the files, so the counts are totals."""

    __slots__ = ("read", "unreadable", "unreadable_at")

    def __init__(self) -> None:
        self.read = 0
        self.unreadable = 0
        self.unreadable_at: list[tuple[int, int]] = []  # (file index, line), the first few

    def lines(self, stream: Iterable[bytes], file: int) -> Iterator[TheirLine]:
        parse = self._parse
        for number, raw in zip(itertools.count(1), stream, strict=False):
            if not raw or raw.isspace():
                continue
            self.read += 1
            parsed = parse(raw, file, number)
            if parsed is None:
                self.unreadable += 1
                if len(self.unreadable_at) < UNREADABLE_SHOWN:
                    self.unreadable_at.append((file, number))
                continue
            yield parsed

    @staticmethod
    def _parse(raw: bytes, file: int, number: int) -> TheirLine | None:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        token = obj.get("token")
        name = obj.get("status")
        status = _STATUS_BY_NAME.get(name) if isinstance(name, str) else None
        if not isinstance(token, str) or not token or status is None:
            return None
        final = obj.get("final")
        if not isinstance(final, bool):
            # SPEC §4: only `pending` (and an `error` that outlasted its retries) is not final.
            final = status is not Status.PENDING
        code = _code(obj.get("result"))
        if code is None:
            error = obj.get("error")
            code = _code(error.get("code")) if isinstance(error, dict) else None
        charge = obj.get("charge_count")
        checked_at = obj.get("checked_at")
        return TheirLine(
            token,
            order_key(checked_at),
            file,
            number,
            status,
            final,
            code,
            checked_at if isinstance(checked_at, str) else "",
            charge if isinstance(charge, int) and not isinstance(charge, bool) else 0,
            not is_local_line(obj),
        )

    def __repr__(self) -> str:
        return f"<ResultsReader read={self.read} unreadable={self.unreadable}>"
