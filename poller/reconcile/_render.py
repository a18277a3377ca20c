"""A `Reconciliation` as text (people), markdown (a ticket), json (one object) or csv
(`section,key,value,detail` rows, like `poller report --format csv`). Pure."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from poller.output.tables import align, clean, markdown_table
from poller.reconcile._files import Reconciliation
from poller.reconcile._join import MEANINGS, Category, Mismatch


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


_LISTED = [c for c in Category if c is not Category.AGREE]
_SAMPLE_HEADER = ("token", "ours", "theirs", "result", "checked_at")


def render(rec: Reconciliation, fmt: Format | str, *, exit_status: int) -> str:
    fmt = Format(fmt)
    if fmt is Format.JSON:
        return json.dumps(as_dict(rec, exit_status), indent=2, ensure_ascii=False) + "\n"
    if fmt is Format.CSV:
        return _csv(rec, exit_status)
    if fmt is Format.MARKDOWN:
        return _markdown(rec, exit_status)
    return _text(rec, exit_status)


def _mismatch(m: Mismatch, results_files: Sequence[str]) -> dict[str, Any]:
    return {
        "token": m.token,
        "ours": None if m.ours is None else m.ours.value,
        "ours_word": m.ours_word,
        "ours_line": m.ours_line,
        "theirs": None if m.theirs is None else m.theirs.value,
        "final": m.final,
        "result": m.code,
        "checked_at": m.checked_at,
        "results_file": None if m.file is None else results_files[m.file],
        "results_line": m.line,
    }


def as_dict(rec: Reconciliation, exit_status: int) -> dict[str, Any]:
    t = rec.tally
    return {
        "records": {
            "file": rec.records_file,
            "lines": rec.record_lines,
            "tokens": t.records,
            "duplicates": t.duplicate_records,
        },
        "results": {
            "files": list(rec.results_files),
            "lines": rec.result_lines,
            "tokens": t.result_tokens,
            "superseded": t.superseded,
            "unreadable": rec.unreadable,
            "unreadable_at": [{"file": f, "line": n} for f, n in rec.unreadable_at],
        },
        "tokens": rec.tokens,
        "categories": {c.value: rec.counts[c] for c in Category},
        "examples": {
            c.value: [_mismatch(m, rec.results_files) for m in t.samples[c]] for c in _LISTED
        },
        "charges_by_day": dict(t.charges_by_day),
        "exit_status": exit_status,
    }


def _sample_row(m: Mismatch) -> tuple[str, ...]:
    return (
        clean(m.token),
        "-" if m.ours is None else m.ours.value,
        "-" if m.theirs is None else m.theirs.value,
        clean(m.code or "-"),
        clean(m.checked_at or "-"),
    )


def _verdict(rec: Reconciliation, exit_status: int) -> str:
    found = [f"{rec.counts[c]:,} {c.value}" for c in _LISTED if rec.counts[c]]
    if exit_status == 0:
        tail = f" ({', '.join(found)})" if found else ""
        return f"exit 0: nothing disagrees or is missing{tail}"
    return f"exit {exit_status}: " + ", ".join(found)


def _sources(rec: Reconciliation) -> list[str]:
    t = rec.tally
    n = len(rec.results_files)
    lines = [
        f"records: {clean(rec.records_file)}: {t.records:,} tokens"
        + (
            f" ({t.duplicate_records:,} repeated lines: the last one counts)"
            if t.duplicate_records
            else ""
        ),
        f"results: {n} file{'s' if n != 1 else ''}, {rec.result_lines:,} lines, "
        f"{t.result_tokens:,} tokens ({t.superseded:,} superseded lines: the latest counts; "
        f"{rec.unreadable:,} unreadable)",
    ]
    if rec.unreadable_at:
        shown = ", ".join(f"{clean(f)}:{n}" for f, n in rec.unreadable_at)
        lines.append(f"unreadable lines skipped, the first at {shown}")
    return lines


def _text(rec: Reconciliation, exit_status: int) -> str:
    out = ["poller reconcile", *(f"  {line}" for line in _sources(rec)), "", "categories:"]
    out += align([(c.value, f"{rec.counts[c]:,}", MEANINGS[c]) for c in Category], frozenset({1}))
    for c in _LISTED:
        total, kept = rec.counts[c], rec.tally.samples[c]
        if not total:
            continue
        more = f" (the first {len(kept):,} of {total:,})" if total > len(kept) else ""
        out += ["", f"{c.value}{more}:", *align([_SAMPLE_HEADER, *map(_sample_row, kept)])]
    out += ["", "charges per day (UTC, checked_at of each token's latest line):"]
    out += align([(d, f"{n:,}") for d, n in rec.tally.charges_by_day.items()], frozenset({1}))
    out += ["", _verdict(rec, exit_status)]
    return "\n".join(out) + "\n"


_MD_SPECIAL = set("\\`*_{}[]<>()#+-.!|~")


def _md(text: str) -> str:
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in clean(text))


def _markdown(rec: Reconciliation, exit_status: int) -> str:
    out = ["# poller reconcile", "", *(f"- {_md(line)}" for line in _sources(rec)), ""]
    out += ["## Categories", ""]
    out += markdown_table(
        ("category", "tokens", "meaning"),
        [(f"`{c.value}`", f"{rec.counts[c]:,}", _md(MEANINGS[c])) for c in Category],
    )
    for c in _LISTED:
        total, kept = rec.counts[c], rec.tally.samples[c]
        if not total:
            continue
        more = f" (the first {len(kept):,} of {total:,})" if total > len(kept) else ""
        out += ["", f"## `{c.value}`{more}", ""]
        out += markdown_table(_SAMPLE_HEADER, [tuple(map(_md, _sample_row(m))) for m in kept])
    out += ["", "## Charges per day (UTC)", ""]
    out += markdown_table(
        ("day", "charge_count"), [(d, f"{n:,}") for d, n in rec.tally.charges_by_day.items()]
    )
    out += ["", f"**{_md(_verdict(rec, exit_status))}**"]
    return "\n".join(out) + "\n"


def _csv(rec: Reconciliation, exit_status: int) -> str:
    buffer = io.StringIO()
    w = csv.writer(buffer, lineterminator="\n")
    t = rec.tally
    w.writerow(("section", "key", "value", "detail"))
    w.writerow(("records", "file", rec.records_file, ""))
    w.writerow(("records", "tokens", t.records, ""))
    w.writerow(("records", "duplicates", t.duplicate_records, ""))
    for f in rec.results_files:
        w.writerow(("results", "file", f, ""))
    w.writerow(("results", "lines", rec.result_lines, ""))
    w.writerow(("results", "tokens", t.result_tokens, ""))
    w.writerow(("results", "superseded", t.superseded, ""))
    w.writerow(("results", "unreadable", rec.unreadable, ""))
    for c in Category:
        w.writerow(("category", c.value, rec.counts[c], MEANINGS[c]))
    for day, n in t.charges_by_day.items():
        w.writerow(("charges_by_day", day, n, ""))
    w.writerow(("exit_status", "", exit_status, ""))
    return buffer.getvalue()
