"""`reconcile_files`: the command's path for a Python caller too. Opens the records and the
results files, runs the join in a temporary directory (removed afterwards, whatever happens),
writes the mismatches file, and hands back a `Reconciliation`."""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Final

from poller.errors import PollerError
from poller.input.patterns import NoMatch
from poller.input.patterns import expand as expand_names
from poller.output.tables import spreadsheet_safe
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

    def exit_status(
        self, *, fail_on_not_final: bool = False, allow_missing_results: bool = False
    ) -> int:
        """1 when any token disagrees or is missing on one side (and, if asked, not final).

        `allow_missing_results`: tokens no results file has yet do not alert, for a night a
        deadline (`--stop-after`) cut short: the next run asks them."""
        alerting = ALERTING | {Category.NOT_FINAL} if fail_on_not_final else ALERTING
        if allow_missing_results:
            alerting = alerting - {Category.MISSING_IN_RESULTS}
        return EXIT_DIFFERENCES if any(self.counts[c] for c in alerting) else EXIT_AGREE


def expand(patterns: Sequence[str]) -> list[str]:
    """Paths as given, a pattern (`results/*.jsonl`) as its sorted matches; one that matches
    nothing is an error (a glob the shell left alone means no file was there)."""
    try:
        return expand_names(patterns)
    except NoMatch as exc:
        raise ReconcileError(f"no results file matches {exc.pattern!r}.") from None


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
    """Every token that does not agree, as CSV (LF line ends, like `--format csv`; token,
    code and word cells `spreadsheet_safe`), the dangerous category first: rows go to one
    scratch file per category (they arrive in token order) and are joined at the end."""

    __slots__ = ("_files", "_names", "_results", "_writers", "rows")

    def __init__(self, workdir: str, results_files: Sequence[str]) -> None:
        self._results = results_files
        self._names = {c: os.path.join(workdir, f"{c.value}.csv") for c in Category}
        self._files = {
            c: open(name, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in write
            for c, name in self._names.items()
        }
        self._writers = {c: csv.writer(f, lineterminator="\n") for c, f in self._files.items()}
        self.rows = 0

    def add(self, m: Mismatch) -> None:
        self.rows += 1
        self._writers[m.category].writerow(
            (
                spreadsheet_safe(m.token),
                m.category.value,
                "" if m.ours is None else m.ours.value,
                "" if m.theirs is None else m.theirs.value,
                spreadsheet_safe(m.code or ""),
                "" if m.final is None else str(m.final).lower(),
                spreadsheet_safe(m.checked_at or ""),
                spreadsheet_safe(m.ours_word) if m.ours_word is not None else "",
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
        csv.writer(out, lineterminator="\n").writerow(MISMATCH_HEADER)
        for category in Category:
            with open(self._names[category], encoding="utf-8", newline="") as part:
                shutil.copyfileobj(part, out, 1 << 20)


class _Replacement:
    """The mismatches file, written to a temporary file in the target's directory (mode 0600,
    like the results: it names tokens) and renamed over the target only when everything
    succeeded: a failed run leaves the previous report as it was, never an empty file that
    reads like "no mismatches". Created before the work, so a directory that cannot be written
    fails at once."""

    __slots__ = ("_temp", "path", "stream", "target")

    def __init__(self, path: str) -> None:
        self.path = path
        # Through a symlink, as writing the file in place did.
        self.target = os.path.realpath(path)
        try:
            if os.path.isdir(self.target):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
            fd, self._temp = tempfile.mkstemp(
                prefix=f".{os.path.basename(self.target)}.",
                suffix=".tmp",
                dir=os.path.dirname(self.target),
            )  # mkstemp creates it with mode 0600
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ReconcileError(f"cannot write the mismatches to {path!r}: {reason}.") from None
        self.stream: IO[str] = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def commit(self) -> None:
        """Close the temporary file and rename it over the target (raises OSError)."""
        self.stream.close()  # a full disk shows at the last flush
        os.replace(self._temp, self.target)

    def discard(self) -> None:
        """Remove the temporary file (after a failure, or after `commit`: then a no-op)."""
        with contextlib.suppress(OSError):
            self.stream.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)


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
    out = None if mismatches is None else _Replacement(mismatches)
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
                    sink.write(out.stream)
                    out.commit()
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
            out.discard()  # after a failure the previous file stays as it was
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
