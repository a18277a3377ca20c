"""KeySet (poller/input/keyset.py): a compact set of 64-bit keys that behaves like a `set`.

Every test runs in both forms: the small plain set, and the packed buckets a big input spills
into (forced here with a tiny `small_limit`, so no test needs millions of keys).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poller.input.keys import token_key
from poller.input.keyset import BUCKET_BITS, KeySet

LOW, HIGH = -(1 << 63), (1 << 63) - 1
KEYS = st.integers(LOW, HIGH)
# Keys that share a bucket (the same low bits) and share bytes, to reach the straddling case.
CROWDED = st.sampled_from([0, 1, -1, 1 << 16, 1 << 40, 0x0101010101010101, LOW, HIGH])
OPS = st.lists(st.tuples(st.sampled_from(["add", "discard", "in"]), KEYS | CROWDED), max_size=200)


@given(ops=OPS, small_limit=st.sampled_from([0, 3, 1 << 16]))
def test_it_agrees_with_a_plain_set_over_any_sequence_of_operations(
    ops: list[tuple[str, int]], small_limit: int
) -> None:
    keys = KeySet(small_limit=small_limit)
    model: set[int] = set()
    for op, key in ops:
        if op == "add":
            assert keys.add_new(key) is (key not in model)
            model.add(key)
        elif op == "discard":
            keys.discard(key)
            model.discard(key)
        else:
            assert (key in keys) is (key in model)
        assert len(keys) == len(model)
    assert set(keys) == model
    assert keys == KeySet(model)
    other = 1 << 62
    if other not in model:
        assert keys != KeySet([*model, other])


@pytest.mark.parametrize("small_limit", [0, 1 << 16])
def test_a_key_whose_bytes_straddle_two_stored_keys_is_not_found(small_limit: int) -> None:
    # Two keys in bucket 0 (low 16 bits 0), stored as the 6 little-endian bytes of key >> 16:
    # every 6-byte window across their boundary is some other key of bucket 0.
    a = int.from_bytes(bytes([0, 0, 0, 0xAA, 0xBB, 0xCC]), "little", signed=True) << 16
    b = int.from_bytes(bytes([0x11, 0x22, 0x33, 0, 0, 0]), "little", signed=True) << 16
    keys = KeySet([a, b], small_limit=small_limit)
    assert a in keys
    assert b in keys
    stored = bytes([0, 0, 0, 0xAA, 0xBB, 0xCC, 0x11, 0x22, 0x33, 0, 0, 0])
    for shift in range(1, 6):
        inside = int.from_bytes(stored[shift : shift + 6], "little", signed=True) << 16
        assert inside not in keys
        assert keys.add_new(inside)
        assert inside in keys
    assert len(keys) == 7


def test_a_big_set_spills_into_buckets_and_costs_a_tenth_of_a_set() -> None:
    keys = KeySet(small_limit=1000)
    tokens = [f"token-{i}" for i in range(5000)]
    for token in tokens:
        keys.add(token_key(token))
    assert "buckets" in repr(keys)
    assert all(token_key(token) in keys for token in tokens)
    assert token_key("token-5000") not in keys
    assert len(keys) == 5000
    # Bucket headers dominate at this size; per key the packed form is 8 bytes plus slack.
    per_key_beyond_headers = (keys.nbytes() - (1 << BUCKET_BITS) * bytearray().__sizeof__()) / 5000
    assert per_key_beyond_headers < 12


@pytest.mark.parametrize("small_limit", [0, 1 << 16])
def test_a_key_beyond_64_bits_is_refused_and_never_found(small_limit: int) -> None:
    keys = KeySet([5], small_limit=small_limit)
    with pytest.raises(OverflowError):
        keys.add(1 << 63)
    assert (1 << 63) not in keys
    assert "five" not in keys  # type: ignore[comparison-overlap]  # a str is never a key
    keys.discard(1 << 70)
    assert len(keys) == 1
