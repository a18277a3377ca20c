"""Result lines (SPEC §4): building them and encoding them, both pure.

Writing them is poller/output/sink.py's job (the `Sink` protocol and the JSON-lines file).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from poller.api.outcomes import Status
from poller.config.settings import Detail


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str


# The error code of an `expired` line decided locally from `issued_at` (no request was made).
# Such a line is final only while the input still says the token is too old (poller/resume.py).
LOCAL_EXPIRY_CODE: Final = "TokenTooOld"

KEYS: Final = (
    "token",
    "status",
    "final",
    "result",
    "description",
    "charge_count",
    "request_id",
    "error",
    "attempts",
    "checked_at",
    "response",
)


def rfc3339(ts: float) -> str:
    return _rfc3339_second(int(ts // 1))


@functools.lru_cache(maxsize=4)
def _rfc3339_second(second: int) -> str:
    # `checked_at` has whole-second resolution and every line formats one: ~2% of the CPU per
    # token (bench/profiling.md). Lines settle in time order, so a few entries always hit.
    return datetime.fromtimestamp(second, UTC).isoformat().replace("+00:00", "Z")


def _str_or_none(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _int_or_none(value: object) -> int | None:
    # bool is an int subclass; a `true` ChargeCount is a malformed reply, not a charge of 1.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def build_record(
    *,
    token: str,
    status: Status,
    final: bool,
    attempts: int,
    checked_at: float,
    response: Mapping[str, Any] | None = None,
    error: ErrorInfo | None = None,
    request_id: str | None = None,
    detail: Detail = Detail.FULL,
    with_evidence: bool = False,
    evidence: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One output line as a dict; `response` is kept unchanged for passed/failed/pending only.

    `with_evidence` (the run keeps evidence, SPEC §4): the line gets an `evidence` key, null
    when nothing was to be archived."""
    keep_response = response is not None and status in (
        Status.PASSED,
        Status.FAILED,
        Status.PENDING,
    )
    resp: Mapping[str, Any] = response or {}
    line = {
        "token": token,
        "status": status.value,
        "final": final,
        "result": _str_or_none(resp.get("Result")),
        "description": _str_or_none(resp.get("Description")),
        "charge_count": _int_or_none(resp.get("ChargeCount")),
        "request_id": request_id if request_id is not None else _str_or_none(resp.get("RequestId")),
        "error": None if error is None else {"code": error.code, "message": error.message},
        "attempts": attempts,
        "checked_at": rfc3339(checked_at),
        "response": dict(resp) if keep_response and detail is Detail.FULL else None,
    }
    if with_evidence:
        line["evidence"] = None if evidence is None else dict(evidence)
    return line


def is_local_line(record: Mapping[str, Any]) -> bool:
    """True for a line the poller decided without asking Tencent: `attempts` is 0 (a token past
    its 72 h, `TokenTooOld`; a bad input row, `InvalidInput`). Such a line never replaces one
    that came from the API (attempts > 0) when readers pick a token's line across runs. A line
    without an integer `attempts` (another writer) counts as an API line."""
    attempts = record.get("attempts")
    return attempts == 0 and isinstance(attempts, int) and not isinstance(attempts, bool)


def encode_record(record: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON plus newline: one line, whatever the response holds.

    orjson writes it (a tenth of json.dumps' CPU, the largest single cost of a line in the
    benchmarks): compact, keys in order, non-ASCII as UTF-8. It refuses what has no strict
    UTF-8 form, a lone surrogate ("\\ud800" in the API's JSON parses to one), and integers
    beyond 64 bits; json.dumps then writes the line with \\u escapes: still one valid line,
    and it decodes back to the very same strings."""
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return json.dumps(record, separators=(",", ":")).encode("ascii") + b"\n"
