"""`poller reconcile`: the user's own records against poller results files (SPEC §9).

`reconcile_files(records, results, ...)` does what the command does and returns a
`Reconciliation`; `categorize` is the pure rule; `render` formats; `configure_parser` and
`run_command` are the command-line edge. The join runs on disk (a scratch SQLite database), so
memory stays flat for millions of tokens on each side.
"""

from poller.reconcile._command import configure_parser, run_command
from poller.reconcile._files import MISMATCH_HEADER, Reconciliation, reconcile_files
from poller.reconcile._join import ALERTING, MEANINGS, Category, Mismatch, categorize
from poller.reconcile._render import Format, render
from poller.reconcile._vocabulary import DEFAULT_WORDS, Vocabulary

__all__ = [
    "ALERTING",
    "DEFAULT_WORDS",
    "MEANINGS",
    "MISMATCH_HEADER",
    "Category",
    "Format",
    "Mismatch",
    "Reconciliation",
    "Vocabulary",
    "categorize",
    "configure_parser",
    "reconcile_files",
    "render",
    "run_command",
]
