"""Tests of poller/observability."""
