"""Tests of poller/reconcile."""
