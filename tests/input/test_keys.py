"""Tests of poller/input/keys.py."""

from __future__ import annotations

from poller.input.keys import token_key


def test_token_key_is_64_bit_and_tells_tokens_apart() -> None:
    keys = {token_key(f"D2B55F0C-FB5D-4FB6-8765-{i:012X}") for i in range(10_000)}
    assert len(keys) == 10_000
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert token_key("é") == token_key("\u00e9") != token_key("e\u0301")  # no normalisation
    assert token_key("\ud800") != token_key("")  # lone surrogates hash, never raise
