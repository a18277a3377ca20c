"""`reconcile_files`: the command's path for a Python caller too. Opens the records and the
results files, runs the join in a temporary directory (removed afterwards, whatever happens),
writes the mismatches file, and hands back a `Reconciliation`."""

from __future__ import annotations

import contextlib
import csv
import glob
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Final

from poller.errors import PollerError
from poller.reconcile._join import ALERTING, Category, Mismatch, Tally, join
from poller.reconcile._records import OurRecord, RecordsReader
from poller.reconcile._results import ResultsReader, TheirLine
from poller.reconcile._vocabulary import Vocabulary

EXIT_AGREE: Final = 0
EXIT_DIFFERENCES: Final = 1

MISMATCH_HEADER: Final = (
    "token",
    "category",
    "ours",
    "theirs",
    "result",
    "final",
    "checked_at",
    "ours_word",
    "ours_line",
    "results_file",
    "results_line",
)


class ReconcileError(PollerError):
    """A file the command cannot read or write: one sentence, exit 2."""


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The whole answer: where it came from, line counts, and the join's tally."""

    records_file: str
    results_files: tuple[str, ...]
    record_lines: int
    result_lines: int
    unreadable: int
    unreadable_at: tuple[tuple[str, int], ...]
    tally: Tally

    @property
    def counts(self) -> Mapping[Category, int]:
        return self.tally.counts

    @property
    def tokens(self) -> int:
        return sum(self.tally.counts.values())

    def exit_status(self, *, fail_on_not_final: bool = False) -> int:
        """1 when any token disagrees or is missing on one side (and, if asked, not final)."""
        alerting = ALERTING | {Category.NOT_FINAL} if fail_on_not_final else ALERTING
        return EXIT_DIFFERENCES if any(self.counts[c] for c in alerting) else EXIT_AGREE


def expand(patterns: Sequence[str]) -> list[str]:
    """Paths as given, a pattern (`results/*.jsonl`) as its sorted matches; one that matches
    nothing is an error (a glob the shell left alone means no file was there)."""
    paths: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern) and not os.path.exists(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise ReconcileError(f"no results file matches {pattern!r}.")
            paths.extend(matches)
        else:
            paths.append(pattern)
    return paths


def _open(path: str, what: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ReconcileError(f"cannot read {what} {path!r}: {reason}.") from None


def _read_results(paths: Sequence[str], reader: ResultsReader) -> Iterator[TheirLine]:
    for index, path in enumerate(paths):
        with _open(path, "results file") as stream:
            try:
                yield from reader.lines(stream, index)
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                raise ReconcileError(f"cannot read results file {path!r}: {reason}.") from None


def _read_records(path: str, reader: RecordsReader) -> Iterator[OurRecord]:
    if path == "-":
        yield from reader.records(sys.stdin.buffer)
        return
    with _open(path, "records file") as stream:
        try:
            yield from reader.records(stream)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ReconcileError(f"cannot read records file {path!r}: {reason}.") from None


class MismatchesFile:
    """Every token that does not agree, as CSV, the dangerous category first: rows go to one
    scratch file per category (they arrive in token order) and are joined at the end."""

    __slots__ = ("_files", "_names", "_results", "_writers", "rows")

    def __init__(self, workdir: str, results_files: Sequence[str]) -> None:
        self._results = results_files
        self._names = {c: os.path.join(workdir, f"{c.value}.csv") for c in Category}
        self._files = {
            c: open(name, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in write
            for c, name in self._names.items()
        }
        self._writers = {c: csv.writer(f) for c, f in self._files.items()}
        self.rows = 0

    def add(self, m: Mismatch) -> None:
        self.rows += 1
        self._writers[m.category].writerow(
            (
                m.token,
                m.category.value,
                "" if m.ours is None else m.ours.value,
                "" if m.theirs is None else m.theirs.value,
                m.code or "",
                "" if m.final is None else str(m.final).lower(),
                m.checked_at or "",
                m.ours_word if m.ours_word is not None else "",
                m.ours_line or "",
                "" if m.file is None else self._results[m.file],
                m.line or "",
            )
        )

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def write(self, out: IO[str]) -> None:
        """Join the scratch files into `out`, header first."""
        self.close()
        csv.writer(out).writerow(MISMATCH_HEADER)
        for category in Category:
            with open(self._names[category], encoding="utf-8", newline="") as part:
                shutil.copyfileobj(part, out, 1 << 20)


def _create(path: str) -> IO[str]:
    """Open the mismatches file before the work, so a path that cannot be written fails at
    once; mode 0600, like the results: it names tokens."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        return os.fdopen(fd, "w", encoding="utf-8", newline="")
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ReconcileError(f"cannot write the mismatches to {path!r}: {reason}.") from None


def reconcile_files(
    records: str,
    results: Sequence[str],
    *,
    vocabulary: Vocabulary | None = None,
    token_column: str | None = None,
    outcome_column: str | None = None,
    mismatches: str | None = None,
    sample: int = 20,
) -> Reconciliation:
    """Reconcile the records file `records` (or - for stdin) with the results files (patterns
    allowed). Raises a `PollerError` with one sentence for anything the user must fix."""
    paths = expand(results)
    if not paths:
        raise ReconcileError("name at least one results file.")
    if mismatches is not None:
        inputs = [records, *paths]
        if any(p != "-" and _same_file(p, mismatches) for p in inputs):
            raise ReconcileError(f"refusing to write the mismatches over an input {mismatches!r}.")
    record_reader = RecordsReader(
        records,
        vocabulary or Vocabulary(),
        token_column=token_column,
        outcome_column=outcome_column,
    )
    result_reader = ResultsReader()
    out = None if mismatches is None else _create(mismatches)
    scratch = tempfile.gettempdir()
    try:
        with tempfile.TemporaryDirectory(prefix="poller-reconcile-") as workdir:
            sink = None if out is None else MismatchesFile(workdir, paths)
            try:
                tally = join(
                    _read_records(records, record_reader),
                    _read_results(paths, result_reader),
                    workdir,
                    on_mismatch=None if sink is None else sink.add,
                    sample=sample,
                )
                if sink is not None and out is not None:
                    sink.write(out)
                    out.close()  # inside: a full disk shows at the last flush
            finally:
                if sink is not None:
                    sink.close()
    except OSError as exc:  # reads are wrapped where they happen: this is a write
        reason = (exc.strerror or str(exc)).lower()
        target = f"the mismatches to {mismatches!r} or " if mismatches is not None else ""
        raise ReconcileError(
            f"cannot write {target}the scratch files in {scratch!r}: {reason}."
        ) from None
    except sqlite3.Error as exc:  # e.g. "database or disk is full"
        raise ReconcileError(f"the scratch database in {scratch!r} failed: {exc}.") from None
    finally:
        if out is not None:
            with contextlib.suppress(OSError):  # already reported above
                out.close()
    return Reconciliation(
        records_file=records,
        results_files=tuple(paths),
        record_lines=record_reader.read,
        result_lines=result_reader.read,
        unreadable=result_reader.unreadable,
        unreadable_at=tuple((paths[f], n) for f, n in result_reader.unreadable_at),
        tally=tally,
    )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
