"""A scripted stand-in for `FaceIdClient` on the virtual-time loop: the engine's own tests.

aioresponses answers at once; these tests need requests that take time (to be "on the wire"
when a stop comes), and to know exactly when each request left, on the loop's clock.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poller.api.client import FaceIdClient
from poller.api.reply import Reply, TransportFault, parse_reply
from poller.config.settings import Settings
from poller.input.tokens import TokenEntry
from poller.output.records import encode_record
from poller.output.sink import JsonlSink, Sink
from poller.pipeline.engine import Engine
from poller.pipeline.pacing import RetryBudget
from tests.helpers import run_virtual


@dataclass(frozen=True)
class Slow:
    """Answer `answer` after `seconds` on the wire."""

    seconds: float
    answer: dict[str, Any] | TransportFault


FakeStep = dict[str, Any] | TransportFault | Slow


class FakeClient(FaceIdClient):
    """Answers each token from its script (the last step repeats); records every request."""

    def __init__(
        self,
        scripts: dict[str, list[FakeStep]],
        default: FakeStep | None = None,
        *,
        pending_codes: tuple[str, ...] = ("-999", "17"),  # the settings' default
    ) -> None:
        # No session, no signing: `query` (inherited) calls get_result and decides the outcome.
        self.pending_codes = pending_codes
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


class InlineOutput:
    """`LineOutput` without the thread: each line is written at once, on the loop.

    For tests on the virtual-time loop only: there, waiting for a real thread lets the loop
    jump its clock to the next timer meanwhile, so stop and grace timings would be off."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.queued = 0
        self.written = 0

    async def write(self, record: Mapping[str, Any]) -> None:
        self.write_nowait(record)

    def write_nowait(self, record: Mapping[str, Any]) -> None:
        self.queued += 1
        self.sink.write_lines(encode_record(record), 1)
        self.written += 1

    async def close(self, patience: float | None = None) -> None:
        self.sink.sync()


def run_engine_virtual(
    tmp_path: Path,
    settings: Settings,
    client: FakeClient,
    tokens: list[str],
    *,
    budget: RetryBudget | None = None,
    during: Callable[[Engine], Coroutine[Any, Any, None]] | None = None,
) -> tuple[Engine, list[dict[str, Any]], float]:
    """Run the engine over `tokens` on the virtual-time loop, with `during(engine)` beside it
    (to stop it, say); returns the engine, the output lines and the loop time it ended."""
    out = tmp_path / "out.jsonl"

    async def main() -> tuple[Engine, float]:
        sink = JsonlSink(str(out))
        engine = Engine(settings, client, sink, budget=budget, output=InlineOutput)
        side = asyncio.create_task(during(engine)) if during is not None else None
        try:
            await engine.run([TokenEntry(t, n, None) for n, t in enumerate(tokens, 1)])
        finally:
            sink.close()
        if side is not None:
            await side
        return engine, asyncio.get_running_loop().time()

    engine, ended = run_virtual(main)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return engine, lines, ended
