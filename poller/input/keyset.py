"""A set of 64-bit token keys that costs ~12 bytes a key instead of a Python set's ~76.

De-duplication (`triage`), resume (`poller.output.resume`) and the earlier-runs index
(`poller.output.earlier`) each hold one key per token; at 5 million tokens three Python sets
of ints would take over 1 GB. Here the keys are packed into 65,536 bytearray buckets:

- Small sets stay a plain `set` (up to `SMALL_LIMIT` keys, ~5 MB): a nightly run of a few
  thousand tokens pays nothing, and `python -m bench cpu` (8,000 tokens) never leaves it.
- Past that each key goes to the bucket of its low 16 bits (the keys are SipHash values, so
  the buckets fill evenly: ~76 keys each at 5 million), which stores the other 48 bits as 6
  bytes: bucket and bytes together are the whole key, so membership is exact. A lookup is one
  `bytearray.find`, a C scan of a few hundred bytes; a match counts only at a multiple of 6 (a
  key's bytes can also appear straddling two keys). Adding appends: memory grows by the key and
  never doubles for a moment, as a rebuilt table would.

(Two *tokens* sharing a key is the 64-bit hash's business; keys.py gives the odds.)

Measured here for 5 million random keys (one process each, the figure over its start): 6-byte
keys in 65,536 buckets 59 MB and 8.3 s to add them all; 8-byte keys 88 MB and 7.4 s (growing
buffers fragment the small-object allocator: with PYTHONMALLOC=malloc the same took 54 MB);
8-byte keys in 4,096 buckets 61 MB but 15.6 s (longer scans); a Python set ~380 MB. Considered
and not taken: `array('q')` buckets kept sorted for `bisect` (about twice as slow per key as
`find`: each probe makes a Python int), sorted runs merged in batches (a merge in pure Python
re-creates every key as an int, so each merge costs as much as the build), an open-addressing
table (two tables alive while it grows, and rehashing in Python takes seconds), numpy (not
installed, ~100 ms to import, and no faster for one key per call), sortedcontainers (Python
ints inside: a set's ~76 bytes a key).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableSet
from typing import Final

__all__ = ["KeySet"]

#: Keys kept in a plain set before the set moves into the buckets (~5 MB of Python ints).
SMALL_LIMIT: Final = 1 << 16
#: The bucket is the key's low 16 bits; its 6 stored bytes are the other 48 (little-endian).
BUCKET_BITS: Final = 16
_MASK: Final = (1 << BUCKET_BITS) - 1
_WIDTH: Final = 6
_LOW: Final = -(1 << 63)
_HIGH: Final = (1 << 63) - 1


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
        if not isinstance(key, int) or not _LOW <= key <= _HIGH:
            return False
        return (
            _find(self._buckets[key & _MASK], (key >> 16).to_bytes(_WIDTH, "little", signed=True))
            >= 0
        )

    def add(self, key: int) -> None:
        self.add_new(key)

    def add_new(self, key: int) -> bool:
        """Adds `key`; True when it was not there yet (one lookup for "seen? then remember")."""
        small = self._small
        if small is not None:
            if key in small:
                return False
            if not _LOW <= key <= _HIGH:
                raise OverflowError(f"a KeySet holds signed 64-bit keys, not {key}")
            small.add(key)
            if len(small) > self._limit:
                self._spill(small)
            return True
        if not _LOW <= key <= _HIGH:
            raise OverflowError(f"a KeySet holds signed 64-bit keys, not {key}")
        # Inlined `_find`: this is the hot path of de-duplication and of reading results files.
        packed = (key >> 16).to_bytes(_WIDTH, "little", signed=True)
        bucket = self._buckets[key & _MASK]
        at = bucket.find(packed)
        while at > 0 and at % _WIDTH:
            at = bucket.find(packed, at + 1)
        if at >= 0:
            return False
        bucket += packed
        self._count += 1
        return True

    def discard(self, key: int) -> None:
        small = self._small
        if small is not None:
            small.discard(key)
            return
        if not _LOW <= key <= _HIGH:
            return
        bucket = self._buckets[key & _MASK]
        at = _find(bucket, (key >> 16).to_bytes(_WIDTH, "little", signed=True))
        if at >= 0:
            del bucket[at : at + _WIDTH]
            self._count -= 1

    def __len__(self) -> int:
        small = self._small
        return len(small) if small is not None else self._count

    def __iter__(self) -> Iterator[int]:
        if self._small is not None:
            return iter(self._small)
        return (
            int.from_bytes(bucket[at : at + _WIDTH], "little", signed=True) << 16 | low
            for low, bucket in enumerate(self._buckets)
            for at in range(0, len(bucket), _WIDTH)
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
            buckets[key & _MASK] += (key >> 16).to_bytes(_WIDTH, "little", signed=True)
        self._buckets = buckets
        self._count = len(small)
        self._small = None


def _find(bucket: bytearray, packed: bytes) -> int:
    """Where `packed` starts in `bucket` at a key boundary (a multiple of 6), or -1."""
    at = bucket.find(packed)
    while at > 0 and at % _WIDTH:
        at = bucket.find(packed, at + 1)
    return at
