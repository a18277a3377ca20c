"""The figures of one results file: tokens by status, by result code, charges, what is not final."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from poller.api.outcomes import Status
from poller.report._read import Entry, Index, LineReader, LineStats, TokenResult

#: SPEC §1.4: a non-zero Result mirrors the last CompareResult's ErrorCode. "-999" and "17" are the
#: project's default pending codes; "" stands for a pending line with an empty or missing Result.
CODE_MEANINGS: Final[Mapping[str, str]] = {
    "0": "passed",
    "1001": "liveness engine call failed",
    "1002": "suspected recording attack",
    "1004": "face detection failed",
    "1005": "liveness failed",
    "1201": "too dark/bright",
    "2004": "image size out of range",
    "2012": "several faces",
    "2013": "no or partial face",
    "2014": "quality too low",
    "2015": "comparison failed",
    "2016": "similarity under threshold",
    "2017": "face occluded",
    "-999": "not finished",
    "17": "not finished",
    "": "not finished (no result yet)",
}
UNKNOWN_CODE: Final = "unknown code"

#: The statuses a call ended in an API error for; their `error.code` is broken down.
ERROR_STATUSES: Final = (Status.ERROR, Status.EXPIRED, Status.INVALID_TOKEN)
#: The key for an error-status line without an `error.code`.
NO_ERROR_CODE: Final = "(none)"


def meaning(code: str) -> str:
    return CODE_MEANINGS.get(code, UNKNOWN_CODE)


def _by_count(counter: Counter[str]) -> dict[str, int]:
    # Largest first; ties by code, so the order is the same from run to run.
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True, slots=True, repr=False)
class Report:
    """The figures of one results file, counted per token (the last line of each token wins)."""

    source: str
    lines: LineStats
    tokens: int
    #: All six statuses, in SPEC §4 order, zeros included.
    by_status: Mapping[Status, int]
    #: Result code → tokens, largest first. Pending tokens without a Result count under "".
    by_result: Mapping[str, int]
    #: Sum of `charge_count` over tokens (null counts as 0).
    charge_count: int
    #: `error.code` → tokens, for error / expired / invalid_token tokens, largest first.
    error_codes: Mapping[str, int]
    #: Tokens whose last line is not final, in the order of those lines.
    not_final: tuple[TokenResult, ...]

    @property
    def final(self) -> int:
        return self.tokens - len(self.not_final)

    @property
    def pass_rate(self) -> float | None:
        """passed / (passed + failed); None when neither occurs."""
        passed = self.by_status[Status.PASSED]
        decided = passed + self.by_status[Status.FAILED]
        return passed / decided if decided else None

    def __repr__(self) -> str:
        return (
            f"<Report source={self.source!r} tokens={self.tokens} "
            f"not_final={len(self.not_final)} unreadable={self.lines.unreadable}>"
        )


class _Tally:
    """Counts tokens per distinct entry (there are few), and derives every figure from that."""

    __slots__ = ("counts", "not_final")

    def __init__(self) -> None:
        self.counts: Counter[Entry] = Counter()
        self.not_final: list[TokenResult] = []

    def add(self, token: str, entry: Entry) -> None:
        self.counts[entry] += 1
        if not entry.final:
            self.not_final.append(TokenResult(token, entry))

    def report(self, source: str, lines: LineStats) -> Report:
        by_status: Counter[Status] = Counter()
        by_result: Counter[str] = Counter()
        error_codes: Counter[str] = Counter()
        charges = 0
        for entry, n in self.counts.items():
            by_status[entry.status] += n
            if entry.result is not None:
                by_result[entry.result] += n
            elif entry.status is Status.PENDING:
                by_result[""] += n
            if entry.status in ERROR_STATUSES:
                error_codes[entry.error_code or NO_ERROR_CODE] += n
            charges += entry.charge_count * n
        return Report(
            source=source,
            lines=lines,
            tokens=by_status.total(),
            by_status={status: by_status[status] for status in Status},
            by_result=_by_count(by_result),
            charge_count=charges,
            error_codes=_by_count(error_codes),
            not_final=tuple(self.not_final),
        )


def summarize(source: Iterable[bytes] | Index, name: str = "-") -> Report:
    """The figures of a results file, from its lines (streamed) or from an `Index`.

    From lines, memory does not grow with the file: a final line is counted at once and its token
    forgotten; only tokens whose latest line is not final are held until a later line replaces
    them. This relies on how the poller writes (SPEC §4): a resumed run skips every token that
    already has a final line, so nothing follows a token's final line. A file that breaks this
    (two separate outputs joined with `cat`) counts such a token once per final line; an `Index`
    (built for `--against` anyway) applies "the last line wins" to every token.
    """
    tally = _Tally()
    if isinstance(source, Index):
        for token, entry in source.entries.items():
            tally.add(token, entry)
        return tally.report(source.source, source.lines)
    reader = LineReader()
    waiting: dict[str, Entry] = {}  # token → its latest line, while that line is not final
    superseded = 0
    counts = tally.counts  # the per-line loop, inlined: it runs millions of times
    for token, entry in reader.entries(source):
        if waiting and waiting.pop(token, None) is not None:
            superseded += 1
        if entry.final:
            counts[entry] += 1
        else:
            waiting[token] = entry
    for token, entry in waiting.items():
        tally.add(token, entry)
    return tally.report(name, reader.stats(superseded))
