"""A set of 64-bit token keys that costs ~9 bytes a key instead of a Python set's ~76.

De-duplication (`triage`), resume (`poller.output.resume`) and the earlier-runs index
(`poller.output.earlier`) each hold one key per token; at 5 million tokens three Python sets
of ints would take over 1 GB. Here the keys are 8-byte strings packed into buckets:

- Small sets stay a plain `set` (up to `SMALL_LIMIT` keys, ~5 MB): a nightly run of a few
  thousand tokens pays nothing, and `python -m bench cpu` (8,000 tokens) never leaves it.
- Past that the keys move into `1 << BUCKET_BITS` bytearrays, chosen by the key's low bits
  (the keys are SipHash values, so the buckets fill evenly: ~76 keys each at 5 million). A
  lookup is one `bytearray.find` of the key's 8 bytes, a C scan of a few hundred bytes; a
  match counts only at a multiple of 8 (a key's bytes can also appear straddling two keys).
  Adding appends, so memory grows by the key and never doubles for a moment.

Membership is exact: the whole 8 bytes are compared. (Two *tokens* sharing a key is the
64-bit hash's business; keys.py gives the odds.) Measured here at 5 million keys: ~9.3 bytes a
key (bytearrays over-allocate by ~1/8), an add or a lookup ~3.5x a `set`'s time (on a busy
machine: 2.9 against 0.83 us). Considered and not taken: `array('q')` buckets kept sorted
for `bisect` (measured ~2x slower: each probe makes a Python int), sorted runs merged in
batches (a merge in pure Python re-creates every key as an int, so each merge costs as much as
the build), an open-addressing table (doubles while it grows: two tables alive at once, and
rehashing in Python takes seconds), numpy (not installed here, ~100 ms to import, and no
faster for one key per call), sortedcontainers (Python ints inside: the set's ~76 bytes).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, MutableSet
from typing import Final

__all__ = ["KeySet"]

#: Keys kept in a plain set before the set moves into the buckets (~5 MB of Python ints).
SMALL_LIMIT: Final = 1 << 16
#: 65,536 buckets: ~76 keys (608 bytes) each at 5 million keys; ~4 MB when nearly empty.
BUCKET_BITS: Final = 16
_MASK: Final = (1 << BUCKET_BITS) - 1
_ORDER: Final = sys.byteorder


class KeySet(MutableSet[int]):
    """A mutable set of signed 64-bit ints (what `token_key` returns), kept compact.

    A `MutableSet`: `in`, `add`, `discard`, `len`, iteration, equality with any set; and
    `add_new`. Adding a key outside the signed 64-bit range raises `OverflowError`."""

    __slots__ = ("_buckets", "_count", "_limit", "_small")

    def __init__(self, keys: Iterable[int] = (), *, small_limit: int = SMALL_LIMIT) -> None:
        self._small: set[int] | None = set()
        self._buckets: list[bytearray] = []
        self._count = 0  # keys in the buckets (the small set counts itself)
        self._limit = small_limit
        for key in keys:
            self.add_new(key)

    def __contains__(self, key: object) -> bool:
        small = self._small
        if small is not None:
            return key in small
        if not isinstance(key, int):
            return False
        try:
            packed = key.to_bytes(8, _ORDER, signed=True)
        except OverflowError:
            return False
        return _find(self._buckets[key & _MASK], packed) >= 0

    def add(self, key: int) -> None:
        self.add_new(key)

    def add_new(self, key: int) -> bool:
        """Adds `key`; True when it was not there yet (one lookup for "seen? then remember")."""
        small = self._small
        if small is not None:
            if key in small:
                return False
            key.to_bytes(8, _ORDER, signed=True)  # OverflowError now, not at the spill
            small.add(key)
            if len(small) > self._limit:
                self._spill(small)
            return True
        packed = key.to_bytes(8, _ORDER, signed=True)
        bucket = self._buckets[key & _MASK]
        if _find(bucket, packed) >= 0:
            return False
        bucket += packed
        self._count += 1
        return True

    def discard(self, key: int) -> None:
        small = self._small
        if small is not None:
            small.discard(key)
            return
        try:
            packed = key.to_bytes(8, _ORDER, signed=True)
        except OverflowError:
            return
        bucket = self._buckets[key & _MASK]
        at = _find(bucket, packed)
        if at >= 0:
            del bucket[at : at + 8]
            self._count -= 1

    def __len__(self) -> int:
        small = self._small
        return len(small) if small is not None else self._count

    def __iter__(self) -> Iterator[int]:
        if self._small is not None:
            return iter(self._small)
        return (
            int.from_bytes(bucket[at : at + 8], _ORDER, signed=True)
            for bucket in self._buckets
            for at in range(0, len(bucket), 8)
        )

    def __repr__(self) -> str:
        form = "a set" if self._small is not None else f"{len(self._buckets)} buckets"
        return f"KeySet({len(self)} keys in {form}, ~{self.nbytes() / 1e6:.1f} MB)"

    def nbytes(self) -> int:
        """Roughly the memory the keys take: the buckets' allocations, or the set's."""
        if self._small is not None:
            return len(self._small) * 76  # measured: set slots plus the int objects
        return sum(bucket.__sizeof__() for bucket in self._buckets)

    def _spill(self, small: set[int]) -> None:
        """Moves the keys from the small set into the buckets, once and for good."""
        buckets = [bytearray() for _ in range(1 << BUCKET_BITS)]
        for key in small:
            buckets[key & _MASK] += key.to_bytes(8, _ORDER, signed=True)
        self._buckets = buckets
        self._count = len(small)
        self._small = None


def _find(bucket: bytearray, packed: bytes) -> int:
    """Where `packed` starts in `bucket` at a key boundary (a multiple of 8), or -1."""
    at = bucket.find(packed)
    while at & 7 and at > 0:
        at = bucket.find(packed, at + 1)
    return at
