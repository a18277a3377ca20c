"""Tests of poller/pipeline."""
