"""Tests of poller/report."""
