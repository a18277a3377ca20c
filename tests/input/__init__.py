"""Tests of poller/input."""
