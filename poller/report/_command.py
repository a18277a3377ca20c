"""`poller report`: the argparse wiring and the file handling around the pure report functions."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import BinaryIO, Final, TypeVar

from poller.report._diff import Diff, diff
from poller.report._read import Index, load
from poller.report._render import DEFAULT_LIMIT, Format, render
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
        "Summarize a results file (the JSON lines `poller run` writes): tokens by status and by "
        "result code with its meaning, charges, pass rate, error codes and the tokens that are "
        "not final yet. The last line for a token wins. With --against, also what changed per "
        "token since an older results file. Exit status: 0 report written, 2 a file could not "
        "be read or written."
    )
    parser.add_argument(
        "results", metavar="RESULTS", help="results file (JSON lines), or - for stdin"
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
        help="an older results file: report per-token changes from it to RESULTS",
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


def _check_paths(args: argparse.Namespace) -> None:
    inputs = [p for p in (args.results, args.against) if p is not None]
    if inputs.count("-") > 1:
        raise _ReportError("only one of RESULTS and --against can be - (standard input).")
    if args.output != "-" and any(p != "-" and _same_file(p, args.output) for p in inputs):
        raise _ReportError(f"refusing to write the report over its input {args.output!r}.")


def build(args: argparse.Namespace) -> tuple[Report, Diff | None]:
    """Read the files named in `args` once each and compute the report (and the diff)."""
    _check_paths(args)
    if args.against is None:
        report = _reading(args.results, "results file", lambda s: summarize(s, args.results))
        return report, None
    older: Index = _reading(args.against, "older results file", lambda s: load(s, args.against))
    newer: Index = _reading(args.results, "results file", lambda s: load(s, args.results))
    return summarize(newer), diff(older, newer)


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
