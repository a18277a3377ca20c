"""`PollerError` (poller/errors.py): the one base of every error the poller raises to callers."""

from __future__ import annotations

import pytest

import poller
from poller import (
    ConfigError,
    FatalRunError,
    InputError,
    LineFormatError,
    LockedError,
    OutputFileError,
    PollerError,
    ResumeError,
)
from poller.output.writer import OutputError


@pytest.mark.parametrize(
    "error",
    [
        ConfigError,
        InputError,
        ResumeError,
        LockedError,
        OutputError,
        OutputFileError,
        FatalRunError,
        LineFormatError,
    ],
)
def test_every_public_error_is_a_poller_error(error: type[Exception]) -> None:
    assert issubclass(error, PollerError)


def test_every_exception_the_package_exports_is_a_poller_error() -> None:
    exported = [getattr(poller, name) for name in poller.__all__]
    errors = [e for e in exported if isinstance(e, type) and issubclass(e, BaseException)]
    assert PollerError in errors
    assert len(errors) >= 8  # the list above but OutputError, which never reaches a caller
    for error in errors:
        assert issubclass(error, PollerError), error.__name__
