"""Tests of poller/output."""
