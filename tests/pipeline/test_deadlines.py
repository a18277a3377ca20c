"""Issue 11 item 2: `--stop-after` (a deadline stop) and `--order expiry`, in the engine.

On the virtual-time loop with a scripted client: the moment of the deadline is exact, and so
is which request left when.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Collection, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

from poller.input.tokens import BadEntry, InputItem, TokenEntry
from poller.output.sink import JsonlSink
from poller.pipeline.engine import DEADLINE, Engine
from poller.pipeline.stats import format_summary
from tests.fake_api import FakeClient, InlineOutput, Slow, run_engine_virtual
from tests.helpers import make_settings, ok, run_virtual

HOUR = 3600.0


def _stop_at(at: float, reason: str = DEADLINE) -> Callable[[Engine], Coroutine[Any, Any, None]]:
    async def during(engine: Engine) -> None:
        await asyncio.sleep(at)
        engine.stop(reason)

    return during


def _run_items(
    tmp_path: Path,
    client: FakeClient,
    items: Sequence[InputItem],
    *,
    countable: bool | None = None,
    stop: tuple[float, str] | None = None,
    **settings: Any,
) -> tuple[Engine, list[dict[str, Any]]]:
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / "out.jsonl"

    async def main() -> Engine:
        sink = JsonlSink(str(out))
        engine = Engine(make_settings(**settings), client, sink, output=InlineOutput)
        side = None
        if stop is not None:
            side = asyncio.create_task(_stop_at(*stop)(engine))
        try:
            await engine.run(items, countable=countable)
        finally:
            sink.close()
        if side is not None:
            await side
        return engine

    engine = run_virtual(main)
    return engine, [json.loads(line) for line in out.read_text().splitlines()]


def test_a_deadline_stop_counts_every_token_it_did_not_reach_and_exits_1(tmp_path: Path) -> None:
    settings = make_settings(rate=2.0, rate_margin=0.0, concurrency=4)
    client = FakeClient({}, default=Slow(0.8, ok()))
    tokens = [f"t{n}" for n in range(50)]
    engine, lines, ended = run_engine_virtual(
        tmp_path, settings, client, tokens, during=_stop_at(3.2)
    )
    # Slots at 0, .5, ... 3.0: seven requests left, none after the deadline; all got lines.
    assert [t for t, _ in client.sent if t > 1000.0 + 3.2] == []
    assert len(lines) == client.calls == 7
    assert sum(line["attempts"] for line in lines) == client.calls
    assert all(line["final"] for line in lines)
    # The other 43 input tokens were never asked, and the count is exact (a list ends).
    stats = engine.stats
    assert (stats.not_reached, stats.not_reached_exact) == (43, True)
    assert stats.stopped_by == "deadline"
    assert stats.exit_status() == 1  # not 0 though every line is final: tokens are left
    summary = format_summary(stats, engine.pacer)
    assert "stopped by the deadline (--stop-after); not reached 43" in summary
    table = format_summary(stats, engine.pacer, terminal=True)
    assert "not reached   43 (the next run asks them)" in table
    assert abs(ended - (1000.0 + 3.0 + 0.8)) < 1e-6  # the last request on the wire finished


def test_tokens_never_read_are_counted_only_when_the_input_can_be_read_to_its_end(
    tmp_path: Path,
) -> None:
    # 2000 tokens: the engine takes a collection 1024 at a time, so at the deadline the second
    # batch is still unread. Read on (countable), it is counted; otherwise "at least".
    items = [TokenEntry(f"t{n}", n + 1) for n in range(2000)]
    for countable, expected, exact in ((True, 1993, True), (False, 1017, False)):
        client = FakeClient({}, default=Slow(0.8, ok()))
        engine, lines = _run_items(
            tmp_path / str(countable),
            client,
            items,
            countable=countable,
            stop=(3.2, DEADLINE),
            rate=2.0,
            rate_margin=0.0,
            concurrency=4,
        )
        assert len(lines) == client.calls == 7
        assert (engine.stats.not_reached, engine.stats.not_reached_exact) == (expected, exact)
        assert engine.stats.not_reached_text == ("" if exact else "at least ") + str(expected)


def test_a_signal_does_not_read_on_to_count_the_rest(tmp_path: Path) -> None:
    # Ctrl-C means now: only the tokens in hand are counted ("at least"), exit 130.
    items = [TokenEntry(f"t{n}", n + 1) for n in range(2000)]
    client = FakeClient({}, default=Slow(0.8, ok()))
    engine, lines = _run_items(
        tmp_path, client, items, stop=(3.2, "SIGINT"), rate=2.0, rate_margin=0.0, concurrency=4
    )
    assert len(lines) == 7
    assert (engine.stats.not_reached, engine.stats.not_reached_exact) == (1017, False)
    assert engine.stats.exit_status() == 130


def test_a_hard_stop_after_the_deadline_still_accounts_for_every_token(tmp_path: Path) -> None:
    # Requests hang on the wire; the grace period (abort) cuts them off: those tokens get
    # `error` lines, every other token is counted as not reached.
    items = [TokenEntry(f"t{n}", n + 1) for n in range(30)]
    client = FakeClient({}, default=Slow(100.0, ok()))
    out = tmp_path / "out.jsonl"

    async def main() -> Engine:
        sink = JsonlSink(str(out))
        engine = Engine(
            make_settings(rate=2.0, rate_margin=0.0, concurrency=4),
            client,
            sink,
            output=InlineOutput,
        )
        loop = asyncio.get_running_loop()
        loop.call_later(3.2, engine.stop, DEADLINE)
        loop.call_later(4.0, engine.abort)
        try:
            await engine.run(items)
        finally:
            sink.close()
        return engine

    engine = run_virtual(main)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert client.calls == 4  # only 4 workers, all stuck on the wire
    assert len(lines) == 4
    assert all(line["status"] == "error" for line in lines)
    assert engine.stats.not_reached + len(lines) == 30
    assert engine.stats.exit_status() == 1


def _dated(now: float) -> list[InputItem]:
    return [
        TokenEntry("undated-1", 1),
        TokenEntry("h10", 2, now - 10 * HOUR),
        TokenEntry("h70", 3, now - 70 * HOUR),
        BadEntry("bad", 4, "line 4: issued_at 'x' is not RFC 3339 or Unix seconds"),
        TokenEntry("h30", 5, now - 30 * HOUR),
        TokenEntry("h10", 6, now - 71 * HOUR),  # a duplicate: the first one's date stands
        TokenEntry("h80", 7, now - 80 * HOUR),  # past 72 h: expired locally, never sent
        TokenEntry("undated-2", 8),
        TokenEntry("h50", 9, now - 50 * HOUR),
        TokenEntry("h30b", 10, now - 30 * HOUR),  # the same age as h30: input order
    ]


def test_expiry_order_asks_the_oldest_first_and_the_undated_last(tmp_path: Path) -> None:
    client = FakeClient({}, default=ok())
    engine, lines = _run_items(tmp_path, client, _dated(time.time()), order="expiry", concurrency=1)
    asked = [token for _, token in client.sent]
    assert asked == ["h70", "h50", "h30", "h30b", "h10", "undated-1", "undated-2"]
    # Exactly one line per distinct token, settled locally or asked; the duplicate once.
    assert sorted(line["token"] for line in lines) == sorted({*asked, "bad", "h80"})
    assert engine.stats.duplicates == 1
    assert engine.stats.expired_local == 1
    assert engine.stats.exit_status() == 1  # the bad entry's line is not final


def test_input_order_is_unchanged_without_the_setting(tmp_path: Path) -> None:
    client = FakeClient({}, default=ok())
    _run_items(tmp_path, client, _dated(time.time()), concurrency=1)
    asked = [token for _, token in client.sent]
    assert asked == ["undated-1", "h10", "h70", "h30", "undated-2", "h50", "h30b"]


def test_a_deadline_in_expiry_order_counts_the_tokens_still_held(tmp_path: Path) -> None:
    now = time.time()
    items = [TokenEntry(f"t{n}", n + 1, now - n * 60.0) for n in range(40)]
    client = FakeClient({}, default=Slow(0.8, ok()))
    engine, lines = _run_items(
        tmp_path,
        client,
        items,
        order="expiry",
        stop=(3.2, DEADLINE),
        rate=2.0,
        rate_margin=0.0,
        concurrency=4,
    )
    # The oldest (t39, issued 39 minutes ago) went first.
    assert [token for _, token in client.sent] == [f"t{n}" for n in range(39, 32, -1)]
    assert len(lines) == 7
    assert (engine.stats.not_reached, engine.stats.not_reached_exact) == (33, True)
    assert engine.stats.exit_status() == 1


# -- found in review: a deadline must not overrun to count the rest ---------------------------


def test_a_count_ahead_makes_not_reached_exact_without_reading_on(tmp_path: Path) -> None:
    client = FakeClient({}, default=Slow(0.8, ok()))
    tokens: list[InputItem] = [TokenEntry(f"t{n}", n + 1) for n in range(5000)]

    async def main() -> Engine:
        sink = JsonlSink(str(tmp_path / "out.jsonl"))
        engine = Engine(
            make_settings(rate=2.0, rate_margin=0.0, concurrency=4), client, sink,
            output=InlineOutput,
        )  # fmt: skip
        engine.planned_query = 5000  # as the count ahead on a copy of the input says
        read: list[int] = []

        class Recording(Collection[InputItem]):
            """In memory, so no reader thread on the virtual clock; says how far it was read."""

            def __len__(self) -> int:
                return len(tokens)

            def __contains__(self, item: object) -> bool:
                return item in tokens

            def __iter__(self) -> Iterator[InputItem]:
                for n, item in enumerate(tokens):
                    read.append(n)
                    yield item

        side = asyncio.create_task(_stop_at(3.2)(engine))
        try:
            await engine.run(Recording(), countable=True)
        finally:
            sink.close()
        await side
        assert len(read) < 5000  # it did not read the rest to count it
        return engine

    engine = run_virtual(main)
    # Slots at 0, .5, ... 3.0: seven tokens asked; the rest known from the count ahead.
    assert engine.stats.asked == client.calls == 7
    assert (engine.stats.not_reached, engine.stats.not_reached_exact) == (4993, True)
