"""Tests of poller/config."""
