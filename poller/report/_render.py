"""Rendering a report (and a diff) as text, markdown, JSON or CSV. Pure: returns a string.

- text: sections of aligned columns, for a terminal or a cron mail.
- markdown: a heading and a table per section.
- json: one object whose keys are always present (`diff` is null without `--against`); counts
  are numbers, `pass_rate` a number or null; every list is complete.
- csv: one flat table with the header `section,key,value,detail`. A figure is one row
  (`status,passed,12,` or `result,2015,3,comparison failed`); a listed token is one row whose key
  is the token (`not_final,<token>,pending,-999`, `changed,<token>,pending->passed,'-999->0`,
  `new,<token>,passed,0`, `dropped,<token>,failed,2015`). One shape for everything keeps the file
  loadable by any CSV reader and filterable by its first column; every list is complete. A token
  or code cell that starts with =, +, - or @ gets a leading ' so a spreadsheet does not run it
  as a formula (`'-999->0`); a plain negative number (`-999`) is left as it is.

The risk view (poller/report/_risk.py) is in every format: device levels, suspected attacks,
edited passes and the top tokens by score (`top` of them in every format: a ranking, not a list
cut short). When covered tokens have no `response` (`--detail summary` lines), every format says
so next to the figures it leaves unknown instead of showing them as zeros.

Text and markdown list at most `limit` tokens per list and say how many more there are.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import Any, Final

from poller.api.outcomes import Status
from poller.output.tables import Row, align, clean
from poller.output.tables import markdown_table as _table
from poller.output.tables import spreadsheet_safe as _cell
from poller.report._codes import meaning
from poller.report._diff import Change, Diff
from poller.report._read import LineStats, TokenResult
from poller.report._risk import SCORE_RULE, RiskView, reasons
from poller.report._summary import ERROR_STATUSES, Report

DEFAULT_LIMIT: Final = 50
CSV_HEADER: Final = ("section", "key", "value", "detail")


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


def render(
    report: Report, diff: Diff | None = None, fmt: Format | str = Format.TEXT, *, limit: int = 50
) -> str:
    """The report (and the diff, when there is one) in `fmt`; `limit` caps text/markdown lists."""
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    match Format(fmt):
        case Format.JSON:
            return json.dumps(as_dict(report, diff), ensure_ascii=False, indent=2) + "\n"
        case Format.CSV:
            return _csv(report, diff)
        case Format.MARKDOWN:
            return _markdown(report, diff, limit)
        case Format.TEXT:
            return _text(report, diff, limit)


# --- JSON -------------------------------------------------------------------------------------


def _lines_dict(lines: LineStats) -> dict[str, Any]:
    return {
        "read": lines.read,
        "superseded": lines.superseded,
        "unreadable": lines.unreadable,
        "unreadable_lines": list(lines.unreadable_lines),
    }


def _listed(item: TokenResult) -> dict[str, Any]:
    entry = item.entry
    return {
        "token": item.token,
        "status": entry.status.value,
        "final": entry.final,
        "result": entry.result,
        "error_code": entry.error_code,
    }


def _change(change: Change) -> dict[str, Any]:
    return {
        "token": change.token,
        "old_status": change.old.status.value,
        "old_code": change.old.code,
        "new_status": change.new.status.value,
        "new_code": change.new.code,
    }


def as_dict(report: Report, diff: Diff | None = None) -> dict[str, Any]:
    """The JSON object: the same keys every time, plain JSON types only."""
    return {
        "results": report.source,
        "lines": _lines_dict(report.lines),
        "tokens": {
            "total": report.tokens,
            "final": report.final,
            "not_final": len(report.not_final),
        },
        "by_status": {status.value: n for status, n in report.by_status.items()},
        "by_result": {
            code: {"meaning": meaning(code), "tokens": n} for code, n in report.by_result.items()
        },
        "charge_count": report.charge_count,
        "pass_rate": report.pass_rate,
        "error_codes": dict(report.error_codes),
        "not_final": [_listed(item) for item in report.not_final],
        "files": [
            {
                "path": f.source,
                "read": f.read,
                "unreadable": f.unreadable,
                "unreadable_lines": list(f.unreadable_lines),
            }
            for f in report.lines.files
        ],
        "risk": _risk_dict(report.risk),
        "diff": None if diff is None else _diff_dict(diff),
    }


def _risk_dict(risk: RiskView) -> dict[str, Any]:
    return {
        "tokens": risk.tokens,
        "without_response": risk.without_response,
        "note": _risk_note(risk) or None,
        "device_levels": dict(risk.device_levels),
        "attacks": {
            code: {
                "meaning": meaning(code),
                "tokens": n.total,
                "in_result": n.in_result,
                "earlier_attempt_only": n.earlier_only,
            }
            for code, n in risk.attacks.items()
        },
        "edited_passes": risk.edited_passes,
        "passes_without_response": risk.passes_without_response,
        "score": SCORE_RULE,
        "scored": risk.scored,
        "top_limit": risk.top_limit,
        "top": [
            {
                "token": item.token,
                "score": item.score,
                "reasons": list(reasons(item.entry)),
                "status": item.entry.status.value,
                "result": item.entry.result,
                "device_level": item.entry.device_level or None,
            }
            for item in risk.top
        ],
    }


def _diff_dict(diff: Diff) -> dict[str, Any]:
    return {
        "against": diff.older_source,
        "older_lines": _lines_dict(diff.older_lines),
        "tokens": {
            "older": diff.older_tokens,
            "newer": diff.newer_tokens,
            "in_both": diff.in_both,
            "unchanged": diff.unchanged,
            "changed": len(diff.changed),
            "only_in_newer": len(diff.only_in_newer),
            "only_in_older": len(diff.only_in_older),
        },
        "transitions": [
            {"from": old.value, "to": new.value, "tokens": n}
            for (old, new), n in diff.transitions.items()
        ],
        "code_changes": [
            {"status": status.value, "from": old, "to": new, "tokens": n}
            for (status, old, new), n in diff.code_changes.items()
        ],
        "changed": [_change(change) for change in diff.changed],
        "only_in_newer": [_listed(item) for item in diff.only_in_newer],
        "only_in_older": [_listed(item) for item in diff.only_in_older],
    }


# --- CSV --------------------------------------------------------------------------------------


def _codes(old: str | None, new: str | None) -> str:
    return _cell(f"{_show(old)}->{_show(new)}")


def _csv(report: Report, diff: Diff | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(_figure_rows(report, diff))
    return out.getvalue()


def _figure_rows(report: Report, diff: Diff | None) -> Iterable[tuple[str, str, object, str]]:
    lines = report.lines
    yield "lines", "read", lines.read, ""
    yield "lines", "superseded", lines.superseded, ""
    yield "lines", "unreadable", lines.unreadable, _line_numbers(lines)
    yield "tokens", "total", report.tokens, ""
    yield "tokens", "final", report.final, ""
    yield "tokens", "not_final", len(report.not_final), ""
    for status, n in report.by_status.items():
        yield "status", status.value, n, ""
    for code, n in report.by_result.items():
        yield "result", _cell(code), n, meaning(code)
    yield "charges", "total", report.charge_count, ""
    rate = report.pass_rate
    yield (
        "pass_rate",
        "passed/(passed+failed)",
        "" if rate is None else repr(rate),
        _rate_note(report),
    )
    for code, n in report.error_codes.items():
        yield "error_code", _cell(code), n, ""
    for item in report.not_final:
        yield (
            "not_final",
            _cell(item.token),
            item.entry.status.value,
            _cell(_show(item.entry.code)),
        )
    files = report.lines.files
    for f in files:
        shown = ", ".join(str(n) for n in f.unreadable_lines)
        yield (
            "file",
            f.source,
            f.read,
            f"{f.unreadable} unreadable" + (f": {shown}" if shown else ""),
        )
    yield from _risk_rows(report.risk)
    if diff is None:
        return
    yield "diff", "against", diff.older_source, ""
    yield "diff", "older_tokens", diff.older_tokens, ""
    yield "diff", "older_unreadable_lines", diff.older_lines.unreadable, ""
    yield "diff", "in_both", diff.in_both, ""
    yield "diff", "unchanged", diff.unchanged, ""
    yield "diff", "changed", len(diff.changed), ""
    yield "diff", "only_in_newer", len(diff.only_in_newer), ""
    yield "diff", "only_in_older", len(diff.only_in_older), ""
    for (old, new), n in diff.transitions.items():
        yield "transition", f"{old}->{new}", n, ""
    for (status, old_code, new_code), n in diff.code_changes.items():
        yield "code_change", _codes(old_code, new_code), n, status.value
    for change in diff.changed:
        yield (
            "changed",
            _cell(change.token),
            f"{change.old.status}->{change.new.status}",
            _codes(change.old.code, change.new.code),
        )
    for item in diff.only_in_newer:
        yield (
            "new",
            _cell(item.token),
            item.entry.status.value,
            _cell(_show(item.entry.code)),
        )
    for item in diff.only_in_older:
        yield (
            "dropped",
            _cell(item.token),
            item.entry.status.value,
            _cell(_show(item.entry.code)),
        )


def _risk_rows(risk: RiskView) -> Iterable[tuple[str, str, object, str]]:
    yield "risk", "tokens", risk.tokens, "passed and failed tokens"
    yield "risk", "without_response", risk.without_response, _risk_note(risk)
    for level, n in risk.device_levels.items():
        yield "device_level", level, n, ""
    for code, count in risk.attacks.items():
        yield "attack", _cell(code), count.total, meaning(code)
        yield "attack_in_result", _cell(code), count.in_result, ""
        yield "attack_earlier_only", _cell(code), count.earlier_only, ""
    yield "edited_pass", "total", risk.edited_passes, _edited_note(risk)
    yield "risk_score", "scored", risk.scored, SCORE_RULE
    for item in risk.top:
        yield "top_risk", _cell(item.token), item.score, "; ".join(reasons(item.entry))


# --- shared by text and markdown --------------------------------------------------------------


def _show(code: str | None) -> str:
    return code or "-"


def _num(n: int) -> str:
    return f"{n:,}"


def _line_numbers(lines: LineStats) -> str:
    if not lines.unreadable:
        return ""
    if not lines.unreadable_lines:
        return "per file below"
    shown = ", ".join(str(n) for n in lines.unreadable_lines)
    more = lines.unreadable - len(lines.unreadable_lines)
    return f"lines {shown}" + (f" and {more:,} more" if more else "")


def _rate(report: Report) -> str:
    rate = report.pass_rate
    return "n/a" if rate is None else f"{rate:.1%}"


def _rate_note(report: Report) -> str:
    passed = report.by_status[Status.PASSED]
    decided = passed + report.by_status[Status.FAILED]
    if not decided:
        return "no token passed or failed"
    return f"{passed:,} of {decided:,} passed or failed"


def _risk_note(risk: RiskView) -> str:
    if risk.complete:
        return ""
    return (
        f"{risk.without_response:,} of {risk.tokens:,} passed/failed lines have no response "
        "(written with --detail summary): their device level, earlier attempts and OCR edits "
        "are unknown; attacks are counted from their result code only"
    )


def _edited_note(risk: RiskView) -> str:
    if not risk.passes_without_response:
        return "passed with IsEdit true on the valid card result"
    return f"unknown for {risk.passes_without_response:,} passes without a response"


def _level_rows(risk: RiskView) -> list[Row]:
    names = {"4": "highest risk", "1": "lowest risk", "no response": "--detail summary lines"}
    return [(level, _num(n), names.get(level, "")) for level, n in risk.device_levels.items()]


def _attack_rows(risk: RiskView) -> list[Row]:
    return [
        (
            code,
            _num(n.total),
            meaning(code),
            f"in the result {n.in_result:,}, in an earlier attempt only {n.earlier_only:,}",
        )
        for code, n in risk.attacks.items()
    ]


def _top_rows(risk: RiskView, clean: Callable[[str], str]) -> list[Row]:
    return [
        (clean(i.token), str(i.score), i.entry.status.value, "; ".join(reasons(i.entry)))
        for i in risk.top
    ]


def _top_title(risk: RiskView) -> str:
    return (
        f"Highest risk: top {min(risk.top_limit, risk.scored):,} of {risk.scored:,} "
        f"scored tokens (score = {SCORE_RULE})"
    )


def _file_rows(report: Report) -> list[Row]:
    rows: list[Row] = []
    for f in report.lines.files:
        shown = ", ".join(str(n) for n in f.unreadable_lines)
        more = f.unreadable - len(f.unreadable_lines)
        detail = (f"lines {shown}" + (f" and {more:,} more" if more else "")) if shown else ""
        rows.append((f.source, _num(f.read), _num(f.unreadable), detail))
    return rows


def _figures(report: Report) -> list[tuple[str, str, str]]:
    lines = report.lines
    return [
        ("lines read", _num(lines.read), ""),
        ("superseded lines", _num(lines.superseded), "replaced by a later line for the token"),
        ("unreadable lines", _num(lines.unreadable), _line_numbers(lines)),
        ("tokens", _num(report.tokens), ""),
        ("final", _num(report.final), ""),
        ("not final", _num(len(report.not_final)), ""),
        ("pass rate", _rate(report), _rate_note(report)),
        ("charges", _num(report.charge_count), "sum of charge_count"),
    ]


def _diff_figures(diff: Diff) -> list[tuple[str, str, str]]:
    older = diff.older_lines
    older_note = f"{older.unreadable:,} unreadable line(s), {older.superseded:,} superseded"
    return [
        ("tokens in older", _num(diff.older_tokens), older_note),
        ("tokens in newer", _num(diff.newer_tokens), ""),
        ("in both", _num(diff.in_both), ""),
        ("unchanged", _num(diff.unchanged), "same status and code"),
        ("changed", _num(len(diff.changed)), ""),
        ("new", _num(len(diff.only_in_newer)), "only in newer"),
        ("dropped", _num(len(diff.only_in_older)), "only in older"),
    ]


def _status_rows(report: Report) -> list[Row]:
    return [(status.value, _num(n)) for status, n in report.by_status.items()]


def _result_rows(report: Report) -> list[Row]:
    return [(_show(code), _num(n), meaning(code)) for code, n in report.by_result.items()]


def _error_rows(report: Report) -> list[Row]:
    return [(code, _num(n)) for code, n in report.error_codes.items()]


def _token_rows(items: Sequence[TokenResult], clean: Callable[[str], str]) -> list[Row]:
    return [(clean(i.token), i.entry.status.value, clean(_show(i.entry.code))) for i in items]


def _change_rows(changes: Sequence[Change], clean: Callable[[str], str]) -> list[Row]:
    return [
        (
            clean(c.token),
            c.old.status.value,
            clean(_show(c.old.code)),
            c.new.status.value,
            clean(_show(c.new.code)),
        )
        for c in changes
    ]


def _transition_rows(diff: Diff) -> list[Row]:
    return [(old.value, new.value, _num(n)) for (old, new), n in diff.transitions.items()]


def _code_change_rows(diff: Diff, clean: Callable[[str], str]) -> list[Row]:
    return [
        (status.value, clean(_show(old)), clean(_show(new)), _num(n))
        for (status, old, new), n in diff.code_changes.items()
    ]


def _more(total: int, limit: int) -> str:
    return f"... and {total - limit:,} more (raise --limit to list them)" if total > limit else ""


_ERRORS_TITLE: Final = "Error codes (" + ", ".join(s.value for s in ERROR_STATUSES) + ")"


# --- text -------------------------------------------------------------------------------------


def _text(report: Report, diff: Diff | None, limit: int) -> str:
    out = [f"Results report: {clean(report.source)}", ""]
    out += align(_figures(report), right=frozenset({1}))
    out += ["", "By status", *align(_status_rows(report), right=frozenset({1}))]
    out += ["", "By result code", *align(_result_rows(report), right=frozenset({1}))]
    out += ["", _ERRORS_TITLE, *align(_error_rows(report), right=frozenset({1}))]
    out += _text_list(
        f"Not final: {len(report.not_final):,}",
        _token_rows(report.not_final[:limit], clean),
        len(report.not_final),
        limit,
    )
    out += _text_risk(report.risk)
    if len(report.lines.files) > 1:
        out += ["", "Files (path, lines read, unreadable)"]
        rows = [(clean(p), r, u, clean(d)) for p, r, u, d in _file_rows(report)]
        out += align(rows, right=frozenset({1, 2}))
    if diff is not None:
        out += ["", f"Changes against {clean(diff.older_source)}"]
        out += align(_diff_figures(diff), right=frozenset({1}))
        transitions = [(f"{old} -> {new}", n) for old, new, n in _transition_rows(diff)]
        out += ["", "Status transitions", *align(transitions, right=frozenset({1}))]
        code_changes = [
            (status, f"{old} -> {new}", n) for status, old, new, n in _code_change_rows(diff, clean)
        ]
        out += ["", "Code changes (same status)", *align(code_changes, right=frozenset({2}))]
        out += _text_list(
            f"Changed: {len(diff.changed):,} (token, old status, old code, new status, new code)",
            _change_rows(diff.changed[:limit], clean),
            len(diff.changed),
            limit,
        )
        out += _text_list(
            f"New (only in newer): {len(diff.only_in_newer):,}",
            _token_rows(diff.only_in_newer[:limit], clean),
            len(diff.only_in_newer),
            limit,
        )
        out += _text_list(
            f"Dropped (only in older): {len(diff.only_in_older):,}",
            _token_rows(diff.only_in_older[:limit], clean),
            len(diff.only_in_older),
            limit,
        )
    return "\n".join(out) + "\n"


def _text_risk(risk: RiskView) -> list[str]:
    note = _risk_note(risk)
    out = ["", f"Risk view: {risk.tokens:,} passed or failed tokens"]
    if note:
        out.append(f"  note: {note}")
    out += ["", "Device risk level (DeviceInfoLevel)"]
    out += align(_level_rows(risk), right=frozenset({1}))
    out += ["", "Suspected attacks", *align(_attack_rows(risk), right=frozenset({1}))]
    out += ["", "Passes on edited OCR fields"]
    out += align([("edited", _num(risk.edited_passes), _edited_note(risk))], frozenset({1}))
    out += ["", _top_title(risk)]
    out += align(_top_rows(risk, clean)) if risk.top else ["  none"]
    return out


def _text_list(title: str, rows: list[Row], total: int, limit: int) -> list[str]:
    out = ["", title]
    if rows:
        out += align(rows)
    more = _more(total, limit)
    if more:
        out.append("  " + more)
    return out


# --- markdown ---------------------------------------------------------------------------------

_MD_SPECIAL: Final = frozenset("\\`*_[]<>|#~")


def _md(text: str) -> str:
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in clean(text))


def _markdown(report: Report, diff: Diff | None, limit: int) -> str:
    figures = [(name, value, _md(note)) for name, value, note in _figures(report)]
    out = [f"# Results report: {_md(report.source)}", ""]
    out += _table(("figure", "value", "note"), figures, frozenset({1}))
    out += ["", "## By status", ""]
    out += _table(("status", "tokens"), _status_rows(report), frozenset({1}))
    out += ["", "## By result code", ""]
    rows: list[Row] = [(_md(code), n, _md(m)) for code, n, m in _result_rows(report)]
    out += _table(("code", "tokens", "meaning"), rows, frozenset({1}))
    out += ["", "## " + _ERRORS_TITLE, ""]
    rows = [(_md(code), n) for code, n in _error_rows(report)]
    out += _table(("code", "tokens"), rows, frozenset({1}))
    out += _md_list(
        f"Not final: {len(report.not_final):,}",
        ("token", "status", "code"),
        _token_rows(report.not_final[:limit], _md),
        len(report.not_final),
        limit,
    )
    out += _md_risk(report.risk)
    if len(report.lines.files) > 1:
        out += ["", "## Files", ""]
        rows = [(_md(p), r, u, _md(d)) for p, r, u, d in _file_rows(report)]
        out += _table(("path", "lines read", "unreadable", "where"), rows, frozenset({1, 2}))
    if diff is not None:
        out += ["", f"## Changes against {_md(diff.older_source)}", ""]
        rows = [(name, value, _md(note)) for name, value, note in _diff_figures(diff)]
        out += _table(("figure", "tokens", "note"), rows, frozenset({1}))
        out += ["", "## Status transitions", ""]
        out += _table(("from", "to", "tokens"), _transition_rows(diff), frozenset({2}))
        out += ["", "## Code changes (same status)", ""]
        out += _table(
            ("status", "from", "to", "tokens"), _code_change_rows(diff, _md), frozenset({3})
        )
        out += _md_list(
            f"Changed: {len(diff.changed):,}",
            ("token", "old status", "old code", "new status", "new code"),
            _change_rows(diff.changed[:limit], _md),
            len(diff.changed),
            limit,
        )
        out += _md_list(
            f"New (only in newer): {len(diff.only_in_newer):,}",
            ("token", "status", "code"),
            _token_rows(diff.only_in_newer[:limit], _md),
            len(diff.only_in_newer),
            limit,
        )
        out += _md_list(
            f"Dropped (only in older): {len(diff.only_in_older):,}",
            ("token", "status", "code"),
            _token_rows(diff.only_in_older[:limit], _md),
            len(diff.only_in_older),
            limit,
        )
    return "\n".join(out) + "\n"


def _md_risk(risk: RiskView) -> list[str]:
    out = ["", f"## Risk view: {risk.tokens:,} passed or failed tokens", ""]
    note = _risk_note(risk)
    if note:
        out += [f"_Note: {_md(note)}_", ""]
    out += ["### Device risk level (DeviceInfoLevel)", ""]
    rows: list[Row] = [(_md(a), b, _md(c)) for a, b, c in _level_rows(risk)]
    out += _table(("level", "tokens", "note"), rows, frozenset({1}))
    out += ["", "### Suspected attacks", ""]
    rows = [(a, b, _md(c), _md(d)) for a, b, c, d in _attack_rows(risk)]
    out += _table(("code", "tokens", "meaning", "where"), rows, frozenset({1}))
    out += ["", "### Passes on edited OCR fields", ""]
    rows = [("edited", _num(risk.edited_passes), _md(_edited_note(risk)))]
    out += _table(("figure", "tokens", "note"), rows, frozenset({1}))
    out += ["", "### " + _md(_top_title(risk)), ""]
    rows = [(a, b, c, _md(d)) for a, b, c, d in _top_rows(risk, _md)]
    out += _table(("token", "score", "status", "reasons"), rows, frozenset({1}))
    return out


def _md_list(title: str, header: Row, rows: list[Row], total: int, limit: int) -> list[str]:
    out = ["", "## " + title, ""]
    if rows:
        out += _table(header, rows)
    more = _more(total, limit)
    if more:
        out += ["", f"_{more}_"]
    return out
