"""`GET /media/<folder>/<name>?expires=..&sign=..`: the files behind FileInfo links, served the
way an object store serves presigned links (SPEC §8), with download faults on demand.

Plain GETs: no TC3 signature, no quota (Tencent's media links are not API calls). Every request
is counted per path and outcome, and logged in arrival order, so a test can prove an archive
fetched nothing twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from .config import SimulatorConfig
from .links import BAD_SIGN, EXPIRED, LinkSigner
from .media import MediaFile, folder_of
from .mediafaults import MediaFaultPlan
from .outcomes import TokenPlan, plan_media

OK = "ok"
NOT_FOUND = "not_found"
# Enough for any test; a long benchmark keeps the newest and says how many it dropped.
MEDIA_LOG_LIMIT = 200_000

# (status, Code, Message) of an object store's XML error documents.
_ERRORS: dict[str, tuple[int, str, str]] = {
    BAD_SIGN: (
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
    ),
    EXPIRED: (403, "AccessDenied", "Request has expired"),
    NOT_FOUND: (404, "NoSuchKey", "The specified key does not exist."),
    "5xx": (503, "ServiceUnavailable", "Service is temporarily unavailable, please retry."),
}


class MediaServer:
    """The files of every token whose links were handed out, and the handler that serves them."""

    def __init__(self, config: SimulatorConfig, now: Callable[[], float]) -> None:
        self.config = config
        self.signer = LinkSigner.for_config(config)
        self.faults = MediaFaultPlan(config)
        self._now = now
        # Only tokens whose links went out can be fetched: a link is the only way to a file.
        self._plans: dict[str, TokenPlan] = {}
        self.requests = 0
        self.by_outcome: Counter[str] = Counter()
        self.by_path: dict[str, Counter[str]] = {}
        self.log: deque[tuple[str, str]] = deque(maxlen=MEDIA_LOG_LIMIT)
        self.log_dropped = 0

    def files(self, plan: TokenPlan) -> tuple[MediaFile, ...]:
        return plan_media(plan, self.config.media_scale)

    def hand_out(self, plan: TokenPlan) -> None:
        """An answer carrying `plan`'s links is going out: from now on they can be fetched."""
        self._plans[folder_of(plan.token)] = plan

    def find(self, path: str) -> MediaFile | None:
        _, _, rest = path.partition("/media/")
        folder, _, name = rest.partition("/")
        plan = self._plans.get(folder)
        if plan is None:
            return None
        return next((f for f in self.files(plan) if f.name == name), None)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path  # never the query: it is the link's credential (SPEC §8)
        refusal = self.signer.refusal(path, request.query, self._now())
        if refusal is not None:
            return self._error(path, refusal, refusal)
        found = self.find(path)
        if found is None:
            return self._error(path, NOT_FOUND, NOT_FOUND)
        fault = self.faults.pick(path)
        if fault is None:
            self._record(path, OK)
            return await self._send(request, found, None)
        self._record(path, f"fault:{fault}")
        if fault in ("expired", "5xx"):
            return _xml_error(path, fault)
        return await self._send(request, found, fault)

    def _error(self, path: str, kind: str, outcome: str) -> web.Response:
        self._record(path, outcome)
        return _xml_error(path, kind)

    def _record(self, path: str, outcome: str) -> None:
        self.requests += 1
        self.by_outcome[outcome] += 1
        self.by_path.setdefault(path, Counter())[outcome] += 1
        if len(self.log) == self.log.maxlen:
            self.log_dropped += 1
        self.log.append((path, outcome))

    async def _send(
        self, request: web.Request, file: MediaFile, fault: str | None
    ) -> web.StreamResponse:
        """Stream the file from the shared block: no per-request copy of megabytes."""
        response = web.StreamResponse(
            headers={"Content-Type": file.content_type, "ETag": f'"{file.md5}"'}
        )
        response.content_length = file.size  # the full size, even when the body will be cut
        stop = file.size // 2 if fault == "truncated" else file.size
        flip = file.size // 2 if fault == "altered" else -1
        try:
            await response.prepare(request)
            # A slow body stalls halfway: the client holds part of the file (what a kill or a
            # read timeout then cuts off), not just the headers.
            stall = file.size // 2 if fault == "slow" else -1
            sent = 0
            for chunk in file.chunks():
                piece: bytes | bytearray | memoryview = chunk
                if sent <= stall < sent + len(piece):
                    await response.write(piece[: stall - sent])
                    await asyncio.sleep(self.config.media_slow_seconds)
                    piece, sent = piece[stall - sent :], stall
                if sent + len(piece) > stop:
                    piece = piece[: stop - sent]
                end = sent + len(piece)
                if sent <= flip < end:
                    piece = bytearray(piece)
                    piece[flip - sent] ^= 0xFF
                if piece:
                    await response.write(piece)
                sent = end
                if sent >= stop:
                    break
            if fault == "truncated":
                # Flush what was written, then hang up: the client is owed the other half.
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away (a timeout on a slow body): nothing left to say
        return response

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_outcome": dict(self.by_outcome),
            "by_path": {path: dict(counts) for path, counts in self.by_path.items()},
            "log_dropped": self.log_dropped,
        }

    def reset_stats(self) -> None:
        self.requests = 0
        self.by_outcome.clear()
        self.by_path.clear()
        self.log.clear()
        self.log_dropped = 0

    async def log_handler(self, _request: web.Request) -> web.Response:
        return web.json_response([list(entry) for entry in self.log])

    def __repr__(self) -> str:
        return f"<MediaServer handed_out={len(self._plans)} requests={self.requests}>"


def _xml_error(path: str, kind: str) -> web.Response:
    status, code, message = _ERRORS[kind]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{escape(path)}</Resource></Error>\n"
    )
    return web.Response(status=status, text=body, content_type="application/xml")
