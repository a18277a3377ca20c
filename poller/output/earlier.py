"""`--skip-final-in PATH`: the results files of earlier runs, read into one index (SPEC §9).

Once a token's result is final it stays final (SPEC §9's project assumption), so a token with
a final line in any earlier night's output need not be asked again: it gets no line tonight and
is counted apart ("final in an earlier run"). `pending` and `error` lines do not count: those
tokens are asked again. An `expired` line decided locally from `issued_at` (TokenTooOld) counts
only while tonight's input still says the token is too old, as in resume.

The files are read with resume's streaming scanner (poller/output/resume.py: the regex fast
path, one 64-bit key per token in a `KeySet`), read-only: a torn last line is left alone and
not counted. 5 million lines take a few seconds (docs/benchmarks.md, Scale).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from poller.input.patterns import NoMatch, expand
from poller.output.resume import ResumeError, ResumeState, read_results

__all__ = ["EarlierResults", "expand_patterns", "load_earlier_results"]

_WHAT: Final = "the earlier results file"


@dataclass(slots=True)
class EarlierResults:
    """The index over the earlier runs' files: which tokens are settled there."""

    paths: tuple[str, ...] = ()
    state: ResumeState = field(default_factory=ResumeState, repr=False)
    torn_bytes: int = 0  # torn last lines, summed over the files (not counted)
    foreign: list[str] = field(default_factory=list)  # files without one readable result line

    def is_final(self, token: str) -> bool:
        return self.state.is_final(token)

    def was_expired_locally(self, token: str) -> bool:
        return self.state.was_expired_locally(token)

    def summary(self) -> str:
        """One line for the run log."""
        st = self.state
        files = f"{len(self.paths)} file{'s' if len(self.paths) != 1 else ''}"
        text = (
            f"{files}, {st.lines} lines: tokens final there {len(st.final_keys)}, lines not "
            f"final {st.not_final}, unreadable {st.unreadable}"
        )
        if self.torn_bytes:
            text += f"; torn last lines left alone ({self.torn_bytes} bytes)"
        return text


def expand_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    """The files named by `patterns`, in order, each once. A pattern with `*`, `?` or `[` is a
    glob (sorted matches; none is an error: a misspelt directory would silently skip nothing);
    any other pattern is a path that must exist."""
    paths: list[str] = []
    seen: set[str] = set()
    try:
        named = expand(patterns)
    except NoMatch as exc:
        raise ResumeError(
            f"--skip-final-in {exc.pattern} matches no file; check the pattern, or leave it "
            "out to ask every token."
        ) from None
    for path in named:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            paths.append(path)
    return tuple(paths)


def load_earlier_results(patterns: Iterable[str], *, output: str | None = None) -> EarlierResults:
    """Reads every file the patterns name into one index. Raises `ResumeError` (one sentence,
    exit 2 from the command) for a glob that matches nothing, or a file that is missing, a
    directory, or cannot be read.

    `output`, tonight's own output file, is left out when a pattern names it (a glob such as
    `results/*.jsonl` does): resume reads it already, and with `--fresh` its lines are being
    thrown away, so counting them as settled would skip every token and ask nothing."""
    paths = expand_patterns(patterns)
    if output is not None and os.path.exists(output):
        own = os.path.realpath(output)
        paths = tuple(path for path in paths if os.path.realpath(path) != own)
    earlier = EarlierResults(paths)
    for path in paths:
        before = earlier.state.lines - earlier.state.unreadable
        earlier.torn_bytes += read_results(path, earlier.state, what=_WHAT)
        if earlier.state.lines - earlier.state.unreadable == before and earlier.state.lines:
            earlier.foreign.append(path)
    return earlier
