"""JSON Lines input: one object per line, its token in "SdkToken" or "token" (SPEC §3).

Each line is parsed on its own, so a broken object, a non-object or a missing field is one bad
entry for that line and the lines around it are read as usual.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from poller.input.entries import InputItem, bad, trim, validated
from poller.input.issued_at import json_kind
from poller.input.lines import MAX_LINE_BYTES, Line, decode

__all__ = ["read_jsonl"]


def read_jsonl(lines: Iterator[Line]) -> Iterator[InputItem]:
    """One JSON object per non-blank line, with a string "SdkToken" (preferred) or "token"."""
    for number, data, too_long in lines:
        if too_long:
            reason = f"line {number}: line is longer than {MAX_LINE_BYTES} bytes; it was skipped"
            yield bad("", number, reason)
            continue
        text, problem = decode(data)
        if not trim(text):
            continue
        try:
            obj: object = json.loads(text)
        except RecursionError:
            yield bad("", number, f"line {number}: not valid JSON (nested too deeply)")
            continue
        except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
            detail = (
                f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else exc
            )
            yield bad("", number, f"line {number}: not valid JSON ({detail})")
            continue
        if not isinstance(obj, dict):
            yield bad("", number, f"line {number}: expected a JSON object, got {json_kind(obj)}")
            continue
        key = "SdkToken" if "SdkToken" in obj else "token" if "token" in obj else None
        if key is None:
            yield bad("", number, f'line {number}: no "SdkToken" or "token" field')
            continue
        raw = obj[key]
        if not isinstance(raw, str):
            shown = json.dumps(raw) if isinstance(raw, int | float) else ""
            reason = f'line {number}: "{key}" must be a string, got {json_kind(raw)}'
            yield bad(shown, number, reason)
            continue
        if problem is not None:
            yield bad(trim(raw), number, f"line {number}: {problem}")
            continue
        yield validated(raw, number, obj.get("issued_at"))
