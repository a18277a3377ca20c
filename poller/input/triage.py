"""What to do with each input item before any request: the decision `run` and `--dry-run` share.

Pure apart from the set of tokens seen so far, so the dry run's plan and the real run's
behaviour cannot drift apart. That set is a `KeySet` (~9 bytes a token past 65,536 tokens), so
a 5-million-token input streams in bounded memory (docs/benchmarks.md, Scale).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from poller.input.entries import BadEntry, InputItem
from poller.input.keys import token_key
from poller.input.keyset import KeySet


class Verdict(Enum):
    QUERY = "query"
    DUPLICATE = "duplicate"  # seen earlier in this input: one line per token
    ALREADY_FINAL = "already_final"  # a final line exists in the output (resume)
    FINAL_EARLIER = "final_earlier"  # a final line exists in an earlier run's file (SPEC §9)
    INVALID = "invalid"  # rejected locally (empty, too long, control characters, bad line)
    EXPIRED = "expired"  # issued_at older than max_token_age: it cannot answer any more


class Triage:
    __slots__ = (
        "_already_final",
        "_clock",
        "_expired_before",
        "_expired_earlier",
        "_final_earlier",
        "_max_age",
        "_seen",
    )

    def __init__(
        self,
        *,
        max_token_age: float,
        clock: Callable[[], float],
        already_final: Callable[[str], bool] | None = None,
        expired_before: Callable[[str], bool] | None = None,
        final_earlier: Callable[[str], bool] | None = None,
        expired_earlier: Callable[[str], bool] | None = None,
    ) -> None:
        self._max_age = max_token_age
        self._clock = clock
        self._already_final = already_final or (lambda _token: False)
        # Tokens an earlier run wrote `expired` from their issued_at alone (no request): that
        # line stands while the input still says so; a corrected issued_at or max_token_age
        # gets the token asked instead of blocked for good.
        self._expired_before = expired_before or (lambda _token: False)
        # The same two questions about the files of earlier runs (--skip-final-in): a token
        # settled there gets no line tonight. The output's own answer is asked first, so a
        # token in both counts once, as already final in the output.
        self._final_earlier = final_earlier or (lambda _token: False)
        self._expired_earlier = expired_earlier or (lambda _token: False)
        # 64-bit keys in a compact set: ~9 bytes a token instead of ~120 for the strings.
        self._seen = KeySet()

    def __call__(self, item: InputItem) -> Verdict:
        if isinstance(item, BadEntry) and not item.token:
            # Lines with no readable token (broken JSON, an empty CSV cell) are not duplicates
            # of each other, and share no key a resumed run could recognise: each is reported
            # on every run, with its own line number.
            return Verdict.INVALID
        if not self._seen.add_new(token_key(item.token)):
            return Verdict.DUPLICATE
        if self._already_final(item.token):
            return Verdict.ALREADY_FINAL
        if self._final_earlier(item.token):
            return Verdict.FINAL_EARLIER
        if isinstance(item, BadEntry):
            return Verdict.INVALID
        if self.age(item.issued_at) is not None:
            if self._expired_before(item.token):
                return Verdict.ALREADY_FINAL
            if self._expired_earlier(item.token):
                return Verdict.FINAL_EARLIER
            return Verdict.EXPIRED
        return Verdict.QUERY

    def age(self, issued_at: float | None) -> float | None:
        """The token's age when it is past the query window, else None."""
        if issued_at is None or self._max_age <= 0:
            return None
        age = self._clock() - issued_at
        return age if age > self._max_age else None
