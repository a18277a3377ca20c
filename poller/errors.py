"""The one base of every error the poller raises to its callers.

A scheduler task (Airflow, Dagster, a notebook) can catch `PollerError` and know it holds one
sentence meant for a person, never a secret; anything else escaping is a bug.
"""

from __future__ import annotations


class PollerError(Exception):
    """Base of the poller's own errors: bad settings, bad input, a failed output, a fatal API
    answer. `str(error)` is one sentence for the user."""
