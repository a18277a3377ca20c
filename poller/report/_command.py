"""`poller report`: the argparse wiring and the file handling around the pure report functions."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import BinaryIO, Final, TypeVar

from poller.input import patterns
from poller.report._diff import Diff, diff
from poller.report._read import Index, IndexBuilder
from poller.report._render import DEFAULT_LIMIT, Format, render
from poller.report._risk import DEFAULT_TOP
from poller.report._summary import Report, summarize

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2

T = TypeVar("T")


class _ReportError(Exception):
    """A file problem the user can fix: one sentence on stderr, exit 2."""


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number 0 or more, got {text!r}")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the `report` arguments to `parser` (a subcommand parser, or a parser of its own)."""
    parser.description = parser.description or (
        "Summarize results files (the JSON lines `poller run` writes): tokens by status and by "
        "result code with its meaning, charges, pass rate, error codes, the tokens that are "
        "not final yet, and a risk view (device risk levels, suspected attacks, passes on "
        "edited OCR fields, the highest-risk tokens). Per token a line from the API wins over "
        "one written without a request (attempts 0), then the line with the latest "
        "checked_at; between equal ones, the later file in the order given, then the later "
        "line. With --against, also what changed per token since older results. Exit "
        "status: 0 report written, 2 a file could not be read or written, or a pattern "
        "matched no file."
    )
    parser.add_argument(
        "results",
        metavar="RESULTS",
        nargs="+",
        help="results files (JSON lines), or - for stdin; a quoted pattern such as "
        "'results/*.jsonl' is expanded here (sorted by name), so it works the same in cron",
    )
    parser.add_argument(
        "--format",
        choices=[f.value for f in Format],
        default=Format.TEXT.value,
        help="text (default), markdown, json (one object) or csv (section,key,value,detail rows)",
    )
    parser.add_argument(
        "--against",
        metavar="OLDER",
        help="older results (a file or a quoted pattern): report per-token changes from it to "
        "RESULTS",
    )
    parser.add_argument(
        "--output", default="-", metavar="PATH", help="where to write the report (default -)"
    )
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"tokens listed per list in text/markdown (default {DEFAULT_LIMIT}); "
        "json and csv list all",
    )
    parser.add_argument(
        "--top",
        type=_limit,
        default=DEFAULT_TOP,
        metavar="N",
        help=f"how many highest-risk tokens the risk view names, in every format (default "
        f"{DEFAULT_TOP})",
    )


def _reading(path: str, what: str, use: Callable[[BinaryIO], T]) -> T:
    """Apply `use` to the opened file; any OS error, at open or mid-read, is a `_ReportError`."""
    try:
        if path == "-":
            return use(sys.stdin.buffer)
        with open(path, "rb") as stream:
            return use(stream)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise _ReportError(f"cannot read {what} {path!r}: {reason}.") from None


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        # 0600 like the results themselves: the report names tokens.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise _ReportError(f"cannot write the report to {path!r}: {reason}.") from None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def expand(names: list[str], what: str) -> list[str]:
    """The files `names` stand for, in order: a name that exists, or has no pattern characters,
    is itself (a missing one fails when read); a pattern is expanded by name order, and one that
    matches nothing is an error. A file named twice is read once, where it first appears."""
    try:
        paths = patterns.expand(names)
    except patterns.NoMatch as exc:
        raise _ReportError(f"no {what} matches the pattern {exc.pattern!r}.") from None
    seen: set[tuple[int, int]] = set()
    unique: list[str] = []
    for path in paths:
        try:
            stat = os.stat(path) if path != "-" else None
        except OSError:
            stat = None  # reading it reports the problem
        if stat is not None:
            key = (stat.st_dev, stat.st_ino)
            if key in seen:
                continue
            seen.add(key)
        unique.append(path)
    return unique


def _check_paths(results: list[str], older: list[str], output: str) -> None:
    inputs = results + older
    if inputs.count("-") > 1:
        raise _ReportError("standard input (-) can be read only once.")
    if output != "-" and any(p != "-" and _same_file(p, output) for p in inputs):
        raise _ReportError(f"refusing to write the report over its input {output!r}.")


def _load(paths: list[str], what: str) -> Index:
    builder = IndexBuilder()
    for path in paths:
        _reading(path, what, lambda stream, path=path: builder.add(stream, path))  # type: ignore[misc]
    return builder.index()


def build(args: argparse.Namespace) -> tuple[Report, Diff | None]:
    """Read the files named in `args` once each and compute the report (and the diff).

    One results file without --against is streamed (memory does not grow with it); several
    files, or --against, are indexed (token → winning entry) so the latest line wins across
    files."""
    results = expand(list(args.results), "results file")
    older = [] if args.against is None else expand([args.against], "older results file")
    _check_paths(results, older, args.output)
    top = getattr(args, "top", DEFAULT_TOP)
    if not older and len(results) == 1:
        name = results[0]
        report = _reading(name, "results file", lambda s: summarize(s, name, top=top))
        return report, None
    newer = _load(results, "results file")
    report = summarize(newer, top=top)
    if not older:
        return report, None
    return report, diff(_load(older, "older results file"), newer)


def run_command(args: argparse.Namespace) -> int:
    """Run `poller report`: 0 when the report is written, 2 (one sentence on stderr) when a file
    cannot be read or written."""
    try:
        report, changes = build(args)
        _write(args.output, render(report, changes, args.format, limit=args.limit))
    except _ReportError as exc:
        print(f"poller: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `poller report ... | head`: the reader has what it wanted; don't trace back on exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    return EXIT_OK
