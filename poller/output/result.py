"""`Result`: one output line (SPEC §4) as a typed, frozen object, for callers in Python.

The line is the contract; `Result` mirrors it field for field, with `status` as the `Status`
enum, `error` as an `ErrorInfo` and `checked_at` as an aware UTC datetime. `from_line` reads a
line's dict (as `json.loads` returns it, or as the engine builds it) and `to_line` gives it back,
so ``Result.from_line(line).to_line() == line`` for every line the poller writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from poller.api.outcomes import Status
from poller.errors import PollerError
from poller.output.records import KEYS, ErrorInfo

__all__ = ["LineFormatError", "Result"]


class LineFormatError(PollerError, ValueError):
    """A dict that is not a result line: a key is missing or holds the wrong kind of value."""


@dataclass(frozen=True, slots=True)
class Result:
    """One token's outcome for this run, as its output line says it.

    `final` is False for `pending`, for an `error` whose retries ran out, and for lines decided
    from the input; such tokens are asked again by the next run. `response` is the API's
    `Response` object, unchanged (passed/failed/pending with detail "full"; else None): it holds
    personal data (SPEC §1.3). It is a plain dict for easy JSON; treat it as read-only."""

    token: str
    status: Status
    final: bool
    result: str | None
    description: str | None
    charge_count: int | None
    request_id: str | None
    error: ErrorInfo | None
    attempts: int
    checked_at: datetime
    response: Mapping[str, Any] | None = field(default=None, hash=False, repr=False)
    # With --evidence (SPEC §4, §8): what was kept of this answer's media (`stored`, `bytes`,
    # `manifest`, `missing`, ...); None when nothing was to be kept. `with_evidence` tells such
    # a null apart from a line of a run that kept no evidence (no `evidence` key at all).
    evidence: Mapping[str, Any] | None = field(default=None, hash=False)
    with_evidence: bool = False

    @classmethod
    def from_line(cls, line: Mapping[str, Any]) -> Result:
        """Read one output line's dict; keys the line format does not know are ignored."""
        missing = [key for key in KEYS if key not in line]
        if missing:
            raise LineFormatError(f"not a result line: no {', '.join(missing)}.")
        error = line["error"]
        response = line["response"]
        evidence = line.get("evidence")
        try:
            return cls(
                token=_str(line, "token"),
                status=Status(line["status"]),
                final=_bool(line, "final"),
                result=_opt_str(line, "result"),
                description=_opt_str(line, "description"),
                charge_count=_opt_int(line, "charge_count"),
                request_id=_opt_str(line, "request_id"),
                error=None if error is None else _error(error),
                attempts=_int(line, "attempts"),
                checked_at=_time(_str(line, "checked_at")),
                response=None if response is None else dict(_mapping(response, "response")),
                evidence=None if evidence is None else dict(_mapping(evidence, "evidence")),
                with_evidence="evidence" in line,
            )
        except ValueError as exc:  # an unknown status, a malformed time
            if isinstance(exc, LineFormatError):
                raise
            raise LineFormatError(f"not a result line: {exc}.") from None

    def to_line(self) -> dict[str, Any]:
        """The output line's dict, keys in the file's order (`json.dumps` it for the line)."""
        line: dict[str, Any] = {
            "token": self.token,
            "status": self.status.value,
            "final": self.final,
            "result": self.result,
            "description": self.description,
            "charge_count": self.charge_count,
            "request_id": self.request_id,
            "error": None
            if self.error is None
            else {"code": self.error.code, "message": self.error.message},
            "attempts": self.attempts,
            "checked_at": self.checked_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "response": None if self.response is None else dict(self.response),
        }
        if self.with_evidence:
            line["evidence"] = None if self.evidence is None else dict(self.evidence)
        return line


def _wrong(key: str, kind: str, value: object) -> LineFormatError:
    return LineFormatError(
        f"not a result line: {key} should be {kind}, not {type(value).__name__}."
    )


def _str(line: Mapping[str, Any], key: str) -> str:
    value = line[key]
    if not isinstance(value, str):
        raise _wrong(key, "a string", value)
    return value


def _opt_str(line: Mapping[str, Any], key: str) -> str | None:
    return None if line[key] is None else _str(line, key)


def _int(line: Mapping[str, Any], key: str) -> int:
    value = line[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(key, "an integer", value)
    return value


def _opt_int(line: Mapping[str, Any], key: str) -> int | None:
    return None if line[key] is None else _int(line, key)


def _bool(line: Mapping[str, Any], key: str) -> bool:
    value = line[key]
    if not isinstance(value, bool):
        raise _wrong(key, "a boolean", value)
    return value


def _mapping(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _wrong(key, "an object", value)
    return value


def _error(value: object) -> ErrorInfo:
    error = _mapping(value, "error")
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        raise LineFormatError("not a result line: error should hold a code and a message.")
    return ErrorInfo(code, message)


def _time(text: str) -> datetime:
    when = datetime.fromisoformat(text)  # 3.11 reads the trailing "Z"
    if when.tzinfo is None:
        raise LineFormatError(f"not a result line: checked_at {text!r} has no time zone.")
    return when.astimezone(UTC)
