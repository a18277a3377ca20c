"""How the user's own words for an outcome map onto the six statuses of SPEC §4 (pure).

Defaults cover the usual export vocabulary; `--map WORD=STATUS` and the TOML table
`[reconcile.vocabulary]` add to them or override them. A record may also hold a result code
(SPEC §1.4): "0" is passed, the pending codes ("-999", "17", the poller's default
`pending_codes`) are pending, any other whole number is failed. An explicit mapping wins over
that rule, so `--map 17=failed` is possible.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from poller.api.outcomes import Status
from poller.errors import PollerError

_STATUS_BY_NAME: Final[Mapping[str, Status]] = {status.value: status for status in Status}

DEFAULT_WORDS: Final[Mapping[str, Status]] = {
    **dict.fromkeys(
        ("passed", "pass", "approved", "accepted", "success", "succeeded", "ok", "verified"),
        Status.PASSED,
    ),
    **dict.fromkeys(("failed", "fail", "failure", "rejected", "declined", "denied"), Status.FAILED),
    **dict.fromkeys(("pending", "in_progress", "processing"), Status.PENDING),
    "expired": Status.EXPIRED,
    **dict.fromkeys(("invalid", "invalid_token"), Status.INVALID_TOKEN),
}
# The poller's default `pending_codes` (SPEC §1.4): the user has not finished.
PENDING_CODES: Final = frozenset({"-999", "17"})

_CODE: Final = re.compile(r"[+-]?[0-9]+")


class VocabularyError(PollerError):
    """A mapping that cannot be used: one sentence, exit 2."""


def normalize(word: str) -> str:
    """Case, surrounding blanks and "-" / " " versus "_" do not matter: `In Progress` is
    `in_progress`."""
    return word.strip().lower().replace("-", "_").replace(" ", "_")


def parse_status(name: str, where: str) -> Status:
    status = _STATUS_BY_NAME.get(name.strip().lower())
    if status is None:
        choices = ", ".join(s.value for s in Status)
        raise VocabularyError(f"{where}: {name!r} is not a status; use one of {choices}.")
    return status


def parse_mapping(text: str) -> tuple[str, Status]:
    """One `--map WORD=STATUS` argument."""
    word, sep, status = text.rpartition("=")
    if not sep:
        raise VocabularyError(f"--map {text!r} must look like WORD=STATUS, e.g. approved=passed.")
    return normalize(word), parse_status(status, f"--map {text!r}")


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Word → status. `status_of` answers None for a word it does not know."""

    words: Mapping[str, Status] = field(default_factory=lambda: dict(DEFAULT_WORDS))

    def with_mappings(self, pairs: Iterable[tuple[str, Status]]) -> Vocabulary:
        """A copy where `pairs` (already normalized words) add to or override the words."""
        return Vocabulary({**self.words, **dict(pairs)})

    def status_of(self, word: str) -> Status | None:
        status = self.words.get(normalize(word))
        bare = word.strip()
        if status is not None or not _CODE.fullmatch(bare):
            return status
        code = str(int(bare))
        if code == "0":
            return Status.PASSED
        return Status.PENDING if code in PENDING_CODES else Status.FAILED

    def __repr__(self) -> str:
        return f"<Vocabulary words={len(self.words)}>"


def from_table(table: object, where: str) -> list[tuple[str, Status]]:
    """The pairs of a TOML table `{word = "status", ...}` (e.g. `[reconcile.vocabulary]`)."""
    if not isinstance(table, dict):
        raise VocabularyError(f'{where} must be a table of word = "status" pairs.')
    pairs = []
    for word, status in table.items():
        if not isinstance(status, str):
            raise VocabularyError(f"{where}: the value of {word!r} must be a status string.")
        pairs.append((normalize(str(word)), parse_status(status, f"{where}.{word}")))
    return pairs
