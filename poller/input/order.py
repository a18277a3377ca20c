"""Expiry order (SPEC §9): the tokens to query, closest to the end of their window first.

A token answers until `issued_at + 72 h`; asked in input order, a long run may reach a token
only after that. `ExpiryOrder` holds the tokens a run will query (after triage: duplicates,
resumed, invalid and too-old tokens are settled as they are read, in input order, exactly as
without it) and hands them back oldest `issued_at` first, then those without an `issued_at` in
input order.

It holds every token to query at once, so it is compact: the tokens' UTF-8 bytes in one
`bytearray`, and three `array`s (end offset, issued_at, input line) instead of an object per
token: about 60 bytes a token at rest, ~146 at the sort's peak (README "Expiry order" has the
measured figures for 5 M tokens). `late_count` is the arithmetic the plan and the run's start
line share: how many tokens pass their window before their turn at a given pace.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator

from poller.input.entries import TokenEntry

__all__ = ["ExpiryOrder", "late_count"]

_NONE = math.nan  # "no issued_at" in the issued array (NaN never compares, so never sorted)


def late_count(issued: Iterable[float | None], start: float, rate: float, max_age: float) -> int:
    """How many of `issued` (issue times, in the order they would be asked; None: unknown)
    pass their window before their turn: the k-th (from 0) leaves at `start + k / rate` and
    is late when `issued_at + max_age` is before that. 0 when `max_age` is 0 (no window)."""
    if max_age <= 0 or rate <= 0:
        return 0
    late = 0
    for k, issued_at in enumerate(issued):
        if issued_at is not None and issued_at + max_age < start + k / rate:
            late += 1
    return late


class ExpiryOrder:
    """Tokens to query, collected in input order and handed back oldest `issued_at` first."""

    __slots__ = ("_blob", "_ends", "_issued", "_lines", "_order")

    def __init__(self) -> None:
        self._blob = bytearray()  # every token's UTF-8 bytes, back to back
        self._ends = array("Q")  # where each token ends in the blob
        self._issued = array("d")  # its issued_at (NaN: none given)
        self._lines = array("Q")  # its input line, for the line's traceability
        self._order: array[int] | None = None

    def add(self, entry: TokenEntry) -> None:
        self._blob += entry.token.encode("utf-8")
        self._ends.append(len(self._blob))
        self._issued.append(_NONE if entry.issued_at is None else entry.issued_at)
        self._lines.append(entry.line)

    def __len__(self) -> int:
        return len(self._ends)

    @property
    def dated(self) -> int:
        """How many carry an issued_at."""
        return sum(1 for t in self._issued if t == t)  # NaN != NaN

    def sort(self) -> None:
        """Fix the order: oldest issued_at first (ties in input order: `sorted` is stable),
        then the undated ones in input order. Seconds for millions: call it off the loop."""
        issued = self._issued
        dated = [i for i in range(len(issued)) if issued[i] == issued[i]]
        dated.sort(key=issued.__getitem__)
        order = array("Q", dated)
        del dated  # the list of ints is the sort's big transient cost: free it before the rest
        order.extend(i for i in range(len(issued)) if issued[i] != issued[i])
        self._order = order

    def issued_in_order(self) -> Iterator[float | None]:
        """The issue times in the order the tokens will be asked (after `sort`)."""
        for i in self._sorted():
            t = self._issued[i]
            yield None if t != t else t

    def __iter__(self) -> Iterator[TokenEntry]:
        """The tokens in expiry order (after `sort`)."""
        ends = self._ends
        for i in self._sorted():
            start = ends[i - 1] if i else 0
            t = self._issued[i]
            yield TokenEntry(
                self._blob[start : ends[i]].decode("utf-8"), self._lines[i], None if t != t else t
            )

    def _sorted(self) -> array[int]:
        if self._order is None:
            raise RuntimeError("ExpiryOrder.sort() must be called before reading it back")
        return self._order

    def nbytes(self) -> int:
        """Bytes held by the arrays and the blob (the figure the README's cost is built on)."""
        arrays = (self._ends, self._issued, self._lines, self._order or array("Q"))
        return len(self._blob) + sum(a.itemsize * len(a) for a in arrays)

    def __repr__(self) -> str:
        state = "sorted" if self._order is not None else "collecting"
        return f"<ExpiryOrder tokens={len(self)} {state} bytes={self.nbytes()}>"
