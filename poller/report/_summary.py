"""The figures of one results file: tokens by status, by result code, charges, what is not final."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from poller.api.outcomes import Status
from poller.report._read import Entry, Index, LineReader, LineStats, TokenResult, line_loses
from poller.report._risk import DEFAULT_TOP, RiskView, TopTokens, risk_view

#: The statuses a call ended in an API error for; their `error.code` is broken down.
ERROR_STATUSES: Final = (Status.ERROR, Status.EXPIRED, Status.INVALID_TOKEN)
#: The key for an error-status line without an `error.code`.
NO_ERROR_CODE: Final = "(none)"


def _by_count(counter: Counter[str]) -> dict[str, int]:
    # Largest first; ties by code, so the order is the same from run to run.
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True, slots=True, repr=False)
class Report:
    """The figures of one or more results files, counted per token (the winning line of each
    token: the latest `checked_at`, see poller/report/_read.py)."""

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
    #: Device levels, suspected attacks, edited passes, the highest-risk tokens.
    risk: RiskView

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

    __slots__ = ("counts", "not_final", "top")

    def __init__(self, top: int) -> None:
        self.counts: Counter[Entry] = Counter()
        self.not_final: list[TokenResult] = []
        self.top = TopTokens(top)

    def add(self, token: str, entry: Entry, order: int) -> None:
        self.counts[entry] += 1
        self.top.offer(token, entry, order)
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
            risk=risk_view(self.counts, self.top),
        )


def summarize(
    source: Iterable[bytes] | Index, name: str = "-", *, top: int = DEFAULT_TOP
) -> Report:
    """The figures of a results file, from its lines (streamed) or from an `Index` (one or more
    files); `top` is how many highest-risk tokens the risk view names.

    From lines, memory does not grow with the file: a final line from the API is counted at once
    and its token forgotten; only tokens whose latest line is not final, or was decided locally
    without a request (few), are held until a line replaces them (see poller/report/_read.py for
    which line wins: a held API line is never replaced by a local one). This relies on how the
    poller writes (SPEC §4): a resumed run skips every token that already has a final line, so
    nothing follows a token's final line. A file that breaks this (two separate outputs joined
    with `cat`) counts such a token once per final API line, and a local line after one too; an
    `Index` (built for `--against` and several files anyway) applies the rule to every token.
    """
    tally = _Tally(top)
    if isinstance(source, Index):
        for order, (token, entry) in enumerate(source.entries.items()):
            tally.add(token, entry, order)
        return tally.report(source.source, source.lines)
    reader = LineReader()
    waiting: dict[str, tuple[float, Entry, int]] = {}  # token → its latest not-final line
    superseded = 0
    # The per-line loop, inlined: it runs millions of times.
    counts = tally.counts
    offer = tally.top.offer
    loses = line_loses
    for token, entry, when in reader.entries(source):
        if waiting:
            held = waiting.get(token)
            if held is not None:
                superseded += 1
                if loses(entry, when, held[1], held[0]):
                    continue
                del waiting[token]
        if entry.final and not entry.local:
            counts[entry] += 1
            if entry.attack is not None or entry.device_level >= 3 or entry.edited:
                offer(token, entry, reader.line_no)  # only these can score
        else:
            waiting[token] = (when, entry, reader.line_no)
    for token, (_, entry, order) in waiting.items():
        tally.add(token, entry, order)
    return tally.report(name, reader.stats(superseded, name))
