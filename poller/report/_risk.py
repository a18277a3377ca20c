"""The risk view: tokens by device risk level, suspected attacks, passes on edited OCR fields, and
the highest-risk tokens by a simple score.

It covers the tokens whose winning line is `passed` or `failed` (the verification ended; a pending
one has nothing to judge yet). Everything but the attack codes in `result` comes from the line's
`response`, which `--detail summary` lines leave out: such tokens are counted as
`without_response` and shown as "no response" rather than as level "not given" or "not edited".

The score (`score`) adds one weight per finding. The weights are powers of two, so one finding
outweighs every lower one together and the order reads as a rule:
suspected attack (8) > device level 4 (4) > edited OCR fields on a pass (2) > device level 3 (1).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from poller.api.outcomes import Status
from poller.report._codes import ATTACK_CODES
from poller.report._read import Entry

DEFAULT_TOP: Final = 10

ATTACK_WEIGHT: Final = 8
LEVEL_4_WEIGHT: Final = 4
EDITED_PASS_WEIGHT: Final = 2
LEVEL_3_WEIGHT: Final = 1
SCORE_RULE: Final = (
    f"{ATTACK_WEIGHT} suspected attack + {LEVEL_4_WEIGHT} device level 4 + "
    f"{EDITED_PASS_WEIGHT} edited OCR fields on a pass + {LEVEL_3_WEIGHT} device level 3"
)

#: Keys of `RiskView.device_levels`, in order.
LEVEL_KEYS: Final = ("1", "2", "3", "4", "not given", "no response")

_JUDGED: Final = (Status.PASSED, Status.FAILED)


def score(entry: Entry) -> int:
    """The documented score of one token (0 for a token the risk view does not cover)."""
    if entry.status not in _JUDGED:
        return 0
    points = ATTACK_WEIGHT if entry.attack is not None else 0
    if entry.device_level == 4:
        points += LEVEL_4_WEIGHT
    elif entry.device_level == 3:
        points += LEVEL_3_WEIGHT
    if entry.edited and entry.status is Status.PASSED:
        points += EDITED_PASS_WEIGHT
    return points


def reasons(entry: Entry) -> tuple[str, ...]:
    """What the score counted, highest weight first."""
    found = []
    if entry.attack is not None:
        where = "an earlier attempt" if entry.attack_earlier else "the result"
        found.append(f"suspected attack {entry.attack} in {where}")
    if entry.device_level == 4:
        found.append("device level 4")
    if entry.edited and entry.status is Status.PASSED:
        found.append("passed on edited OCR fields")
    if entry.device_level == 3:
        found.append("device level 3")
    return tuple(found)


class RiskyToken(NamedTuple):
    token: str
    score: int
    entry: Entry


class AttackCount(NamedTuple):
    """Tokens with a suspected-attack code: as the result, or in an earlier attempt only."""

    in_result: int
    earlier_only: int

    @property
    def total(self) -> int:
        return self.in_result + self.earlier_only


@dataclass(frozen=True, slots=True, repr=False)
class RiskView:
    #: passed + failed tokens, and those of them whose line has no `response`.
    tokens: int
    without_response: int
    #: LEVEL_KEYS → tokens ("no response" = `without_response`); zeros included.
    device_levels: Mapping[str, int]
    #: Every ATTACK_CODES code → its counts, zeros included.
    attacks: Mapping[str, AttackCount]
    #: Passed tokens whose valid card result has IsEdit true; passes without a response are
    #: `passes_without_response` (unknown, not "not edited").
    edited_passes: int
    passes_without_response: int
    #: Tokens with a score above 0, and the `top_limit` highest: score, then the order of their
    #: winning lines.
    scored: int
    top: tuple[RiskyToken, ...]
    top_limit: int

    @property
    def complete(self) -> bool:
        """Whether every covered token had a response (else some figures are unknown)."""
        return self.without_response == 0

    def __repr__(self) -> str:
        return (
            f"<RiskView tokens={self.tokens} without_response={self.without_response} "
            f"scored={self.scored} top={len(self.top)}>"
        )


class TopTokens:
    """The `limit` highest-scoring tokens seen so far (a bounded heap), and how many scored."""

    __slots__ = ("_heap", "limit", "scored")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"top must be 0 or more, not {limit}")
        self.limit = limit
        self.scored = 0
        # (score, -order, token, entry): the smallest is the first to drop out.
        self._heap: list[tuple[int, int, str, Entry]] = []

    def offer(self, token: str, entry: Entry, order: int) -> None:
        """Consider `token`; `order` is where its winning line was read (earlier ranks first)."""
        points = score(entry)
        if not points:
            return
        self.scored += 1
        if not self.limit:
            return
        item = (points, -order, token, entry)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:
            heapq.heapreplace(self._heap, item)

    def ranked(self) -> tuple[RiskyToken, ...]:
        best = sorted(self._heap, reverse=True)
        return tuple(RiskyToken(token, points, entry) for points, _, token, entry in best)

    def __repr__(self) -> str:
        return f"<TopTokens limit={self.limit} scored={self.scored} held={len(self._heap)}>"


def risk_view(counts: Mapping[Entry, int], top: TopTokens) -> RiskView:
    """The view from the per-entry token counts (entries are few) and the top tokens."""
    levels: Counter[str] = Counter()
    in_result: Counter[str] = Counter()
    earlier: Counter[str] = Counter()
    tokens = without = edited = passes_without = 0
    for entry, n in counts.items():
        if entry.status not in _JUDGED:
            continue
        tokens += n
        if entry.attack is not None:
            (earlier if entry.attack_earlier else in_result)[entry.attack] += n
        if not entry.response:
            without += n
            levels["no response"] += n
            if entry.status is Status.PASSED:
                passes_without += n
            continue
        levels[str(entry.device_level) if entry.device_level else "not given"] += n
        if entry.edited and entry.status is Status.PASSED:
            edited += n
    return RiskView(
        tokens=tokens,
        without_response=without,
        device_levels={key: levels[key] for key in LEVEL_KEYS},
        attacks={code: AttackCount(in_result[code], earlier[code]) for code in ATTACK_CODES},
        edited_passes=edited,
        passes_without_response=passes_without,
        scored=top.scored,
        top=top.ranked(),
        top_limit=top.limit,
    )
