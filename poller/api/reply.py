"""What came back from one request, parsed: a well-formed answer (`Reply`) or a transport fault.

Pure, so hostile bodies are tested without a network (tests/api/test_reply.py and the fuzz
tests); what an answer *means* is decided in poller/api/outcomes.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

# Real replies nest about 6 levels (Response > CardVerifyResults > [] > NormalCardInfo > ...).
# json.loads accepts nearly 1000 levels, but a reply that deep cannot be written back out
# (orjson writes at most 254 levels, json.dumps ~990; the output line adds one).
MAX_DEPTH = 100


@dataclass(frozen=True, slots=True)
class ApiError:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A well-formed answer: the `Response` object, and its `Error` when it is an API error."""

    response: dict[str, Any]
    error: ApiError | None

    @property
    def request_id(self) -> str | None:
        rid = self.response.get("RequestId")
        return rid if isinstance(rid, str) else None


class TransportFault(Exception):
    """Anything that is not a well-formed API answer; always worth another attempt."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def parse_reply(status: int, body: bytes) -> Reply:
    """Look for `Response.Error` whatever the Content-Type says (SPEC §1.2); else a fault."""
    if status != 200:
        snippet = body[:80].decode("utf-8", "replace").strip().replace("\n", " ")
        raise TransportFault(f"Transport.HTTP{status}", f"HTTP {status}: {snippet!r}")
    data = _loads(body)
    # Nesting n levels takes n opening brackets, so a body with at most MAX_DEPTH of them (a
    # real reply has ~22) needs no walk: counting bytes in C spares the walk's 4% of a run's
    # CPU (py-spy, `make bench`).
    if _opening_brackets(body) > MAX_DEPTH and _deeper_than(data, MAX_DEPTH):
        raise TransportFault("Transport.BadBody", f"the JSON body nests over {MAX_DEPTH} levels")
    response = data.get("Response") if isinstance(data, dict) else None
    if not isinstance(response, dict):
        raise TransportFault("Transport.BadBody", "the JSON body has no Response object")
    error = response.get("Error")
    if error is None:
        return Reply(response, None)
    if not isinstance(error, dict):
        raise TransportFault("Transport.BadBody", "Response.Error is not an object")
    code, message = error.get("Code"), error.get("Message")
    if not isinstance(code, str) or not code:
        raise TransportFault("Transport.BadBody", "Response.Error has no Code")
    return Reply(response, ApiError(code, message if isinstance(message, str) else ""))


def _loads(body: bytes) -> Any:
    """The parsed body, or a `Transport.BadBody` fault.

    The standard library, not orjson: it keeps integers beyond 64 bits exact (orjson turns them
    into floats, and the `response` of a line is the API's, unchanged: SPEC §4) and reads a
    UTF-8 BOM and lone surrogates such as "\\ud800", which orjson refuses. NaN, Infinity and a
    number too large for a float (`1e400`) are refused: none could be written back as JSON."""
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        # RecursionError: a deeply nested body must end as a fault, never as a crash.
        raise TransportFault(
            "Transport.BadBody", f"the body is not complete JSON ({len(body)} bytes)"
        ) from None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists/objects nest more than `limit` levels, counted one level at a time.

    Only containers go on to the next level, and the walk never goes past `limit` levels
    whatever the body holds."""
    depth = 0
    level = [value] if isinstance(value, (dict, list)) else []
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, (dict, list))
        ]
    return False


def _opening_brackets(body: bytes) -> int:
    return body.count(b"[") + body.count(b"{")


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON: accepting them would put non-JSON into the output lines.
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # `1e400`: no JSON form, a line would hold Infinity or null
        raise ValueError(f"{text} is too large for a float")
    return value
