"""The work queue: fairness between fresh tokens and re-checks, and knowing when it is over."""

from __future__ import annotations

import asyncio

from poller.pipeline.workqueue import Job, WorkQueue
from tests.helpers import run_virtual


def test_rechecks_never_starve_fresh_tokens_nor_the_reverse() -> None:
    async def main() -> list[str]:
        q = WorkQueue(100)
        for n in range(10):
            await q.put(Job(f"fresh-{n}"))
        for n in range(10):
            await q.schedule_recheck(Job(f"recheck-{n}"), 0.0)
        await q.close_input()
        order = []
        while (job := await q.get()) is not None:
            order.append(job.token)
            await q.task_done()
        return order

    order = run_virtual(main)
    assert len(order) == 20
    # Strict alternation while both kinds are waiting: neither kind starves the other.
    kinds = [token.split("-")[0] for token in order]
    assert kinds == ["fresh", "recheck"] * 10


def test_a_recheck_waits_until_it_is_due() -> None:
    async def main() -> tuple[float, str]:
        loop = asyncio.get_running_loop()
        q = WorkQueue(10)
        await q.schedule_recheck(Job("later"), 5.0)
        await q.close_input()
        start = loop.time()
        job = await q.get()
        assert job is not None
        return loop.time() - start, job.token

    waited, token = run_virtual(main)
    assert token == "later"
    assert waited == 5.0


def test_the_run_is_not_over_while_a_token_is_in_flight() -> None:
    """A token in a worker's hands may still come back pending and need a re-check."""

    async def main() -> list[str]:
        q = WorkQueue(10)
        await q.put(Job("a"))
        await q.close_input()
        first = await q.get()
        assert first is not None
        seen: list[str] = []

        async def other_worker() -> None:
            while (job := await q.get()) is not None:
                seen.append(job.token)
                await q.task_done()

        task = asyncio.create_task(other_worker())
        await asyncio.sleep(1.0)
        assert not task.done()  # the other worker waits: "a" may come back
        await q.schedule_recheck(first, 2.0)
        await q.task_done()
        await task
        return seen

    assert run_virtual(main) == ["a"]


def test_bounded_put_waits_for_room() -> None:
    async def main() -> tuple[bool, bool]:
        q = WorkQueue(2)
        await q.put(Job("1"))
        await q.put(Job("2"))
        third = asyncio.create_task(q.put(Job("3")))
        await asyncio.sleep(0.1)
        blocked = not third.done()
        await q.get()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return blocked, third.done()

    blocked, done_after = run_virtual(main)
    assert blocked
    assert done_after


def test_stop_returns_the_waiting_rechecks_and_ends_the_run() -> None:
    async def main() -> tuple[list[str], Job | None, bool]:
        q = WorkQueue(10)
        await q.put(Job("fresh"))
        await q.schedule_recheck(Job("p1"), 10.0)
        await q.schedule_recheck(Job("p2"), 20.0)
        waiting = await q.stop()
        return [j.token for j in waiting], await q.get(), await q.put(Job("late"))

    waiting, got, accepted = run_virtual(main)
    assert waiting == ["p1", "p2"]
    assert got is None
    assert accepted is False
