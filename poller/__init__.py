"""faceid-poller."""
