"""CSV input: a header naming the token column (and maybe ``issued_at``), then one record per
token (SPEC §3). Records may span lines (RFC 4180 quoted fields); a stray quote must not take
the rows below it along.
"""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Iterator
from typing import Any

from poller.input.entries import CONTROL, InputError, InputItem, bad, trim, validated
from poller.input.lines import MAX_LINE_BYTES, Line, decode

__all__ = ["TOKEN_NAMES", "read_csv"]

#: Header names of the token column, compared trimmed and lower-cased.
TOKEN_NAMES = ("sdktoken", "token")


def read_csv(lines: Iterator[Line], name: str) -> Iterator[InputItem]:
    """CSV with a header naming a SdkToken/token column and optionally issued_at.

    The csv module parses records (quoted fields may span lines); we feed it one physical line at
    a time and keep the lines of the record being read, so each record's first line is known.
    Per-line problems found while feeding (invalid UTF-8, over-long lines) are remembered by line
    number and turn the record that contains them into a BadEntry.

    A stray quote opens a field that swallows the lines after it: up to csv's field limit (128
    KiB), or silently to the end of the file. Either way the record is reported as bad on its
    first line, and the lines it swallowed are read again as records of their own: one broken
    row never takes the tokens below it along (issue 9: every token accounted for).
    """
    flags: dict[int, str] = {}
    source = iter(lines)
    replay: deque[tuple[int, str]] = deque()  # swallowed lines to read again, in order
    record: list[tuple[int, str]] = []  # the lines of the record being read

    def feed() -> Iterator[str]:
        while True:
            if replay:
                number, text = replay.popleft()
            else:
                try:
                    number, data, too_long = next(source)
                except StopIteration:
                    return
                if too_long:
                    flags[number] = (
                        f"the line is longer than {MAX_LINE_BYTES} bytes and was skipped"
                    )
                    text = "\n"  # keep line numbers aligned; the record is reported as bad
                else:
                    decoded, problem = decode(data)
                    if problem is not None:
                        flags[number] = problem
                    text = decoded + "\n"
            record.append((number, text))
            yield text

    def take_flags(start: int, end: int) -> str | None:
        found = None
        for number in range(start, end + 1):
            problem = flags.pop(number, None)
            if problem is not None and found is None:
                found = problem if number == start else f"{problem} (on line {number})"
        return found

    def next_record(reader: Any) -> tuple[list[str] | None, str | None, int, int]:
        """(row, error, first line, last line) of the next record; row None at the end."""
        record.clear()
        try:
            row = next(reader)
        except StopIteration:
            return None, None, 0, 0
        except csv.Error as exc:
            return [], str(exc), record[0][0] if record else 0, record[-1][0] if record else 0
        return row, None, record[0][0], record[-1][0]

    reader = csv.reader(feed())
    header: list[str] | None = None
    while header is None:
        row, error, start, end = next_record(reader)
        if row is None:
            return  # empty input, or blank lines only: nothing to poll
        if error is not None:
            raise InputError(
                f"the CSV header of {name} (line {start}) cannot be parsed: {error}"
            ) from None
        problem = take_flags(start, end)
        if problem is not None and "longer than" in problem:
            raise InputError(f"the CSV header of {name} (line {start}) is unusable: {problem}")
        if end > start and any(cell.strip() for cell in row):
            # Column names never span lines: a stray quote would take the rows below along.
            raise InputError(
                f"the CSV header of {name} runs over lines {start}-{end}: a quote in it is not "
                "closed on its own line"
            )
        if any(cell.strip() for cell in row):
            header = row

    names = [trim(cell).lower() for cell in header]
    token_col = next((i for i, n in enumerate(names) if n in TOKEN_NAMES), None)
    issued_col = next((i for i, n in enumerate(names) if n == "issued_at"), None)
    if token_col is None:
        shown = ", ".join(trim(cell) for cell in header)
        # The message must stay one line: show control characters (a quoted newline) escaped.
        shown = CONTROL.sub(lambda m: repr(m.group())[1:-1], shown)
        shown = shown if len(shown) <= 200 else shown[:200] + "…"
        hint = ""
        if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
            hint = "; it looks semicolon- or tab-separated, but only comma-separated CSV is read"
        raise InputError(
            f"{name} has no SdkToken or token column (header: {shown}); name the token column "
            f"SdkToken or token in the first line{hint}"
        )

    width = len(header)
    while True:
        row, error, start, end = next_record(reader)
        if row is None:
            return
        if error is None and end > start:
            error = _stray_quote(record, row, token_col)
        if error is not None:
            swallowed = record[1:]
            take_flags(start, start)
            span = f" (swallowing lines {start + 1}-{end}, read again)" if swallowed else ""
            cell = _first_line_cell(record, token_col)
            yield bad(cell, start, f"line {start}: CSV record cannot be parsed{span}: {error}")
            # Read the swallowed lines again as records of their own, with a fresh parser (the
            # old one is mid-field). Bounded: at most csv's field limit of text.
            replay.extendleft(reversed(swallowed))
            reader = csv.reader(feed())
            continue
        problem = take_flags(start, end)
        if problem is None and not any(cell.strip() for cell in row):
            continue  # a blank line, or an all-empty row such as spreadsheets append
        cell = trim(row[token_col]) if token_col < len(row) else ""
        if problem is not None:
            yield bad(cell, start, f"line {start}: {problem}")
        elif len(row) != width:
            # A differing field count means a missing or extra separator: the token column may
            # hold the wrong value, so the record is refused rather than guessed at.
            yield bad(
                cell,
                start,
                f"line {start}: row has {len(row)} field{'' if len(row) == 1 else 's'} "
                f"but the header has {width}",
            )
        else:
            issued = row[issued_col] if issued_col is not None else None
            yield validated(cell, start, issued)


def _first_line_cell(record: list[tuple[int, str]], token_col: int) -> str:
    """The token cell of a broken record's first line read on its own ("" if unreadable), so
    its bad-record line names the token."""
    try:
        first = next(csv.reader([record[0][1]]), []) if record else []
    except csv.Error:
        return ""
    return trim(first[token_col]).strip() if token_col < len(first) else ""


def _stray_quote(record: list[tuple[int, str]], row: list[str], token_col: int) -> str | None:
    """Why a record that runs over several lines is a stray quote, or None if it reads as a
    proper multi-line quoted field (RFC 4180 allows those, in a note or address column).

    A token never holds a line break; and a field that is proper CSV closes its quote cleanly
    (csv's strict mode): a quote opened by mistake ends at the end of the file, or at the next
    stray quote with text glued after it."""
    cell = row[token_col] if token_col < len(row) else ""
    if "\n" in cell or "\r" in cell:
        return "a quote in the token column runs over several lines (a stray quote?)"
    try:
        for _ in csv.reader(io.StringIO("".join(text for _, text in record)), strict=True):
            pass
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return "a quoted field is never closed"
        return f"a quoted field runs over several lines and does not end cleanly ({exc})"
    return None
