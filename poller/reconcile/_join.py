"""The join: our records against the latest result line per token, on disk, in one pass each.

Both sides go into a throw-away SQLite database (the standard library's `sqlite3`, journal and
sync off: it is scratch space, never a store), then come back sorted by token and are merged
like two sorted files. SQLite sorts by memcmp of UTF-8, which is code-point order, the order
Python compares `str` in, so the merge and the sort agree. Memory stays flat whatever the size:
SQLite's page cache and sorter are bounded (`CACHE_KB`), and the merge holds one token per side.
Measured (bench/reconcile.py): see docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, NamedTuple

from poller.api.outcomes import Status
from poller.reconcile._records import OurRecord
from poller.reconcile._results import TheirLine

# SQLite's page cache, in KiB; each of the two sorts (both open during the merge) may hold as
# much again. Measured on 1 M x 1 M (bench/reconcile.py): 16 MiB -> 96 MB peak RSS, 64 MiB ->
# 254 MB, for no gain in time worth the memory (the sorts spill to temporary files either way).
CACHE_KB: Final = 16384

_STATUS_BY_NAME: Final[Mapping[str, Status]] = {status.value: status for status in Status}


class Category(StrEnum):
    """Where a token lands, in the order reports list them: the dangerous one first."""

    PASSED_NOT_PASSED = "passed_not_passed"
    DISAGREE = "disagree"
    MISSING_IN_OURS = "missing_in_ours"
    MISSING_IN_RESULTS = "missing_in_results"
    NOT_FINAL = "not_final"
    AGREE = "agree"


MEANINGS: Final[Mapping[Category, str]] = {
    Category.PASSED_NOT_PASSED: "we recorded passed, Tencent says not passed",
    Category.DISAGREE: "other disagreements",
    Category.MISSING_IN_OURS: "Tencent settled a token our records lack",
    Category.MISSING_IN_RESULTS: "our records hold a token no results file has",
    Category.NOT_FINAL: (
        "no final answer from Tencent: its latest line is pending or error (ask again), or "
        "the poller wrote a line without asking (TokenTooOld, InvalidInput)"
    ),
    Category.AGREE: "our records and Tencent agree",
}

#: The categories that make the exit status 1 (alerting). `not_final` joins them only with
#: `--fail-on-not-final`: inside the 3-day window an unfinished token is normal.
ALERTING: Final = frozenset(
    {
        Category.PASSED_NOT_PASSED,
        Category.DISAGREE,
        Category.MISSING_IN_OURS,
        Category.MISSING_IN_RESULTS,
    }
)


def categorize(
    ours: Status | None, theirs: Status | None, final: bool, *, asked: bool = True
) -> Category:
    """The category of one token: `ours` is what the records say (None: no record), `theirs`
    and `final` what its winning result line says (None: no line), `asked` false when that line
    was decided locally without a request (then no line came from the API: Tencent never
    answered, so nothing can agree or disagree)."""
    if theirs is None:
        return Category.MISSING_IN_RESULTS
    if not asked or not final or theirs in (Status.PENDING, Status.ERROR):
        return Category.NOT_FINAL
    if ours is None:
        return Category.MISSING_IN_OURS
    if ours is theirs:
        return Category.AGREE
    return Category.PASSED_NOT_PASSED if ours is Status.PASSED else Category.DISAGREE


class Mismatch(NamedTuple):
    """A token that does not agree, with both sides as far as they exist."""

    token: str
    category: Category
    ours: Status | None
    ours_word: str | None
    ours_line: int | None
    theirs: Status | None
    final: bool | None
    code: str | None
    checked_at: str | None
    file: int | None  # index into the results files
    line: int | None


@dataclass(slots=True)
class Tally:
    """What the join found: tokens per category, the first few of each, charges per day."""

    counts: dict[Category, int] = field(default_factory=lambda: dict.fromkeys(Category, 0))
    samples: dict[Category, list[Mismatch]] = field(
        default_factory=lambda: {c: [] for c in Category if c is not Category.AGREE}
    )
    charges_by_day: dict[str, int] = field(default_factory=dict)
    records: int = 0  # distinct tokens in our records
    duplicate_records: int = 0  # record lines a later line for the same token replaced
    result_tokens: int = 0
    superseded: int = 0  # result lines a later line for the same token replaced


_OURS_SQL: Final = "INSERT INTO ours VALUES (?, ?, ?, ?)"
_THEIRS_SQL: Final = "INSERT INTO theirs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _connect(workdir: str) -> sqlite3.Connection:
    con = sqlite3.connect(os.path.join(workdir, "reconcile.sqlite3"), isolation_level=None)
    for pragma in (
        "journal_mode = OFF",
        "synchronous = OFF",
        "locking_mode = EXCLUSIVE",
        "temp_store = FILE",
        f"cache_size = -{CACHE_KB}",
    ):
        con.execute(f"PRAGMA {pragma}")
    con.execute("CREATE TABLE ours (token TEXT, status TEXT, word TEXT, line INTEGER)")
    con.execute(
        "CREATE TABLE theirs (token TEXT, ord TEXT, file INTEGER, line INTEGER, status TEXT, "
        "final INTEGER, code TEXT, checked_at TEXT, charge INTEGER, asked INTEGER)"
    )
    return con


def _latest(rows: Iterable[Any]) -> Iterator[tuple[Any, int]]:
    """(the last row, how many rows) per token of rows sorted by token (column 0)."""
    it = iter(rows)
    prev = next(it, None)
    if prev is None:
        return
    count = 1
    for row in it:
        if row[0] != prev[0]:
            yield prev, count
            count = 0
        prev = row
        count += 1
    yield prev, count


def join(
    records: Iterable[OurRecord],
    results: Iterable[TheirLine],
    workdir: str,
    *,
    on_mismatch: Callable[[Mismatch], None] | None = None,
    sample: int = 20,
) -> Tally:
    """Reconcile `records` with `results` using scratch space in `workdir` (left behind:
    the caller removes the directory). The last record per token counts; of the result lines,
    one from the API beats one decided locally (`asked` false), then the latest (by
    `checked_at`, then file, then line) counts. Every token that does not agree
    goes to `on_mismatch`, in token order; the first `sample` of each category are kept."""
    con = _connect(workdir)
    try:
        con.execute("BEGIN")
        # executemany pulls from the iterators lazily, one row at a time, never a list of
        # them; the rows are the readers' own tuples (their fields are the columns, in order).
        con.executemany(_OURS_SQL, records)
        con.executemany(_THEIRS_SQL, results)
        con.execute("COMMIT")
        ours = con.execute("SELECT token, status, word, line FROM ours ORDER BY token, line")
        theirs = con.execute(
            "SELECT token, status, final, code, checked_at, file, line, charge, ord, asked "
            "FROM theirs ORDER BY token, asked, ord, file, line"
        )
        return _merge(_latest(ours), _latest(theirs), on_mismatch, sample)
    finally:
        con.close()


def _merge(
    ours: Iterator[tuple[Any, int]],
    theirs: Iterator[tuple[Any, int]],
    on_mismatch: Callable[[Mismatch], None] | None,
    sample: int,
) -> Tally:
    tally = Tally()
    counts, samples, charges = tally.counts, tally.samples, tally.charges_by_day
    statuses = _STATUS_BY_NAME
    agree = Category.AGREE
    a = next(ours, None)
    b = next(theirs, None)
    while a is not None or b is not None:
        mine = their = None
        if b is None or (a is not None and a[0][0] < b[0][0]):
            mine, a = a, next(ours, None)
        elif a is None or b[0][0] < a[0][0]:
            their, b = b, next(theirs, None)
        else:
            mine, a = a, next(ours, None)
            their, b = b, next(theirs, None)
        token = ""
        our_status = their_status = None
        final = asked = False
        if mine is not None:
            row, n = mine
            token, our_status = row[0], statuses[row[1]]
            tally.records += 1
            tally.duplicate_records += n - 1
        if their is not None:
            row, n = their
            token, their_status, final, asked = row[0], statuses[row[1]], bool(row[2]), row[9]
            tally.result_tokens += 1
            tally.superseded += n - 1
            day = row[8][:10] or "unknown"
            charges[day] = charges.get(day, 0) + row[7]
        category = categorize(our_status, their_status, final, asked=bool(asked))
        counts[category] += 1
        if category is agree:
            continue
        m = Mismatch(
            token,
            category,
            our_status,
            None if mine is None else mine[0][2],
            None if mine is None else mine[0][3],
            their_status,
            None if their is None else final,
            None if their is None else their[0][3],
            None if their is None else their[0][4],
            None if their is None else their[0][5],
            None if their is None else their[0][6],
        )
        kept = samples[category]
        if len(kept) < sample:
            kept.append(m)
        if on_mismatch is not None:
            on_mismatch(m)
    tally.charges_by_day = dict(sorted(charges.items()))
    return tally
