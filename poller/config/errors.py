"""The error a user's configuration can cause, shared by the settings and the credential lookup."""

from __future__ import annotations

from poller.errors import PollerError

__all__ = ["ConfigError"]


class ConfigError(PollerError):
    """A user-caused settings problem; the message is shown as-is, followed by exit 2."""
