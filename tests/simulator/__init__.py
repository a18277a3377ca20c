"""Tests of poller/simulator."""
