"""`poller report`: figures from a results file (SPEC §4), and what changed since an older one.

Pure functions do the work and never touch a file: `summarize(lines)` streams a results file into
a `Report`, `load(lines)` indexes one (token → last entry), `diff(older, newer)` compares two, and
`render(report, diff, fmt)` formats the result (the format choices are described in
`poller.report._render`). `configure_parser` and `run_command` are the command-line edge.

Memory: the plain summary keeps only the tokens whose latest line is not final, which is exact for
any file the poller wrote (a resumed run never adds a line after a token's final line). With
`--against` both files are indexed (token → last entry, the entry tuples shared), and the summary
is taken from that index, so "the last line wins" holds for every token even in joined files.
"""

from poller.report._codes import ATTACK_CODES, CODE_MEANINGS, meaning
from poller.report._command import configure_parser, run_command
from poller.report._diff import Change, Diff, diff
from poller.report._read import (
    Entry,
    FileLines,
    Index,
    IndexBuilder,
    LineStats,
    TokenResult,
    load,
)
from poller.report._render import CSV_HEADER, DEFAULT_LIMIT, Format, as_dict, render
from poller.report._risk import DEFAULT_TOP, SCORE_RULE, RiskView, RiskyToken, reasons, score
from poller.report._summary import Report, summarize

__all__ = [
    "ATTACK_CODES",
    "CODE_MEANINGS",
    "CSV_HEADER",
    "DEFAULT_LIMIT",
    "DEFAULT_TOP",
    "SCORE_RULE",
    "Change",
    "Diff",
    "Entry",
    "FileLines",
    "Format",
    "Index",
    "IndexBuilder",
    "LineStats",
    "Report",
    "RiskView",
    "RiskyToken",
    "TokenResult",
    "as_dict",
    "configure_parser",
    "diff",
    "load",
    "meaning",
    "reasons",
    "render",
    "run_command",
    "score",
    "summarize",
]
