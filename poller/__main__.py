"""`python -m poller` is the `poller` command."""

from poller.cli import entry_point

entry_point()
