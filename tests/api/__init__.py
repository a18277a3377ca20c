"""Tests of poller/api."""
