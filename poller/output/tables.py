"""Cells and tables for the reports that read result lines back (`poller report`, `poller
reconcile`): both print text, markdown and CSV, and both show values from files that can hold
anything, so the same escaping rules serve both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

Row = Sequence[str]

_FORMULA_START: Final = ("=", "+", "-", "@")


def clean(text: str) -> str:
    """`text` with terminal escapes, newlines and other unprintable characters escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula: one that starts with =, +, - or @ gets a
    leading ' (a plain negative number such as the code -999, or a lone -, is left alone)."""
    if text.startswith(_FORMULA_START):
        rest = text[1:]
        if not (text[0] == "-" and (not rest or (rest.isascii() and rest.isdigit()))):
            return "'" + text
    return text


def align(rows: Sequence[Row], right: frozenset[int] = frozenset()) -> list[str]:
    """Rows as lines of columns padded to a common width, two spaces apart, indented by two."""
    if not rows:
        return ["  none"]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append(("  " + "  ".join(cells)).rstrip())
    return out


def markdown_table(
    header: Row, rows: Sequence[Row], right: frozenset[int] = frozenset()
) -> list[str]:
    """A markdown table (cells already escaped), or `_none_` when there are no rows."""
    if not rows:
        return ["_none_"]
    rule = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
