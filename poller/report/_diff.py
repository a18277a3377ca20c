"""What changed per token between an older and a newer results file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from poller.api.outcomes import Status
from poller.report._read import Entry, Index, LineStats, TokenResult, load

_STATUS_ORDER = {status: i for i, status in enumerate(Status)}


class Change(NamedTuple):
    token: str
    old: Entry
    new: Entry


@dataclass(frozen=True, slots=True, repr=False)
class Diff:
    """Per-token differences. A token in both files is *changed* when its status or its code (the
    Result, or the error code when there is no Result) differs, else *unchanged*; so
    `unchanged + sum(transitions) + sum(code_changes)` is the number of tokens in both."""

    older_source: str
    older_lines: LineStats
    older_tokens: int
    newer_tokens: int
    unchanged: int
    #: (old status, new status) → tokens whose status changed, largest first.
    transitions: Mapping[tuple[Status, Status], int]
    #: (status, old code, new code) → tokens whose status stayed but whose code changed.
    code_changes: Mapping[tuple[Status, str | None, str | None], int]
    #: Every changed token, in the newer file's order.
    changed: tuple[Change, ...]
    #: Tokens only in the newer file (new) and only in the older one (dropped).
    only_in_newer: tuple[TokenResult, ...]
    only_in_older: tuple[TokenResult, ...]

    @property
    def in_both(self) -> int:
        return self.newer_tokens - len(self.only_in_newer)

    def __repr__(self) -> str:
        return (
            f"<Diff against={self.older_source!r} unchanged={self.unchanged} "
            f"changed={len(self.changed)} new={len(self.only_in_newer)} "
            f"dropped={len(self.only_in_older)}>"
        )


def _as_index(source: Index | Iterable[bytes]) -> Index:
    return source if isinstance(source, Index) else load(source)


def diff(older: Index | Iterable[bytes], newer: Index | Iterable[bytes]) -> Diff:
    """Compare two results files (their `Index`, or their lines), token by token."""
    old_index, new_index = _as_index(older), _as_index(newer)
    old_entries = old_index.entries
    transitions: Counter[tuple[Status, Status]] = Counter()
    code_changes: Counter[tuple[Status, str | None, str | None]] = Counter()
    changed: list[Change] = []
    only_new: list[TokenResult] = []
    unchanged = 0
    for token, new in new_index.entries.items():
        old = old_entries.get(token)
        if old is None:
            only_new.append(TokenResult(token, new))
        elif old.status is not new.status:
            transitions[old.status, new.status] += 1
            changed.append(Change(token, old, new))
        elif old.code != new.code:
            code_changes[new.status, old.code, new.code] += 1
            changed.append(Change(token, old, new))
        else:
            unchanged += 1
    new_entries = new_index.entries
    only_old = [TokenResult(t, e) for t, e in old_entries.items() if t not in new_entries]
    return Diff(
        older_source=old_index.source,
        older_lines=old_index.lines,
        older_tokens=len(old_entries),
        newer_tokens=len(new_entries),
        unchanged=unchanged,
        transitions=dict(
            sorted(
                transitions.items(),
                key=lambda item: (-item[1], _STATUS_ORDER[item[0][0]], _STATUS_ORDER[item[0][1]]),
            )
        ),
        code_changes=dict(
            sorted(
                code_changes.items(),
                key=lambda item: (-item[1], _STATUS_ORDER[item[0][0]], str(item[0][1:])),
            )
        ),
        changed=tuple(changed),
        only_in_newer=tuple(only_new),
        only_in_older=tuple(only_old),
    )
