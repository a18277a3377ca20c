"""A scripted stand-in for `FaceIdClient` on the virtual-time loop: the engine's own tests.

aioresponses answers at once; these tests need requests that take time (to be "on the wire"
when a stop comes), and to know exactly when each request left, on the loop's clock.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from poller.client import FaceIdClient, Reply, TransportFault, parse_reply


@dataclass(frozen=True)
class Slow:
    """Answer `answer` after `seconds` on the wire."""

    seconds: float
    answer: dict[str, Any] | TransportFault


FakeStep = dict[str, Any] | TransportFault | Slow


class FakeClient(FaceIdClient):
    """Answers each token from its script (the last step repeats); records every request."""

    def __init__(self, scripts: dict[str, list[FakeStep]], default: FakeStep | None = None) -> None:
        # No session, no signing: the engine only calls get_result.
        self.scripts = {token: deque(steps) for token, steps in scripts.items()}
        self.default = default
        self.calls = 0
        self.by_token: dict[str, int] = defaultdict(int)
        self.sent: list[tuple[float, str]] = []  # (loop time the request left, token)
        self.on_wire = 0

    async def get_result(self, token: str) -> Reply:
        loop = asyncio.get_running_loop()
        self.calls += 1
        self.by_token[token] += 1
        self.sent.append((loop.time(), token))
        script = self.scripts.get(token)
        if script:
            step = script.popleft() if len(script) > 1 else script[0]
        elif self.default is not None:
            step = self.default
        else:
            raise AssertionError(f"unexpected request for token {token!r}")
        self.on_wire += 1
        try:
            if isinstance(step, Slow):
                await asyncio.sleep(step.seconds)
                step = step.answer
            if isinstance(step, TransportFault):
                raise step
            return parse_reply(200, json.dumps(step).encode())
        finally:
            self.on_wire -= 1

    def __repr__(self) -> str:
        return f"<FakeClient calls={self.calls}>"
