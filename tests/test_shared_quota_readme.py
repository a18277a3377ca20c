"""The README's `SharedQuota` example ("Several jobs, one account"), run as written.

Only the Redis URL is swapped for the test server's, and `get_sdk_verification_result` (the
reader's own call to Tencent) is a stand-in that records when each call left.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
PACED = 20 * 0.95


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Several jobs, one account", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the section holds one runnable example"
    source = str(blocks[0])
    assert len(source.strip().splitlines()) <= 15  # "a ten-line example", give or take
    return source


async def test_the_readme_example_paces_live_calls_from_the_shared_schedule(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENCENTCLOUD_SECRET_ID", "AKIDreadmeexample000000")
    monkeypatch.setenv("TENCENTCLOUD_SECRET_KEY", "readme-example-key-0000000000000")
    source = readme_example()
    assert '"redis://quota-redis.internal:6379/0"' in source
    source = source.replace("redis://quota-redis.internal:6379/0", redis_url)
    left: list[float] = []
    # Tencent's JSON: everything under "Response"; a throttle's code is one of SPEC §2's kin.
    throttle: dict[str, Any] = {
        "Response": {"Error": {"Code": "RequestLimitExceeded.UinLimitExceeded"}, "RequestId": "r"}
    }
    answers: itertools.chain[dict[str, Any]] = itertools.chain(
        [throttle], itertools.repeat({"Response": {"Result": "0", "RequestId": "r"}})
    )

    async def get_sdk_verification_result(sdk_token: str) -> dict[str, Any]:
        left.append(asyncio.get_running_loop().time())
        return next(answers)

    namespace: dict[str, Any] = {"get_sdk_verification_result": get_sdk_verification_result}
    exec(compile(source, "README example", "exec"), namespace)  # noqa: S102 - our own README
    quota = namespace["quota"]
    async with quota:
        got = await asyncio.gather(
            *(namespace["verification_result"](f"token-{n}") for n in range(12))
        )
        # The throttle travels with the caller's next booking and lowers the shared pace.
        await namespace["verification_result"]("token-next")
    assert len(got) == 12
    assert got.count(throttle) == 1
    assert quota.reservations == 13
    assert quota.slowdowns == 1
    assert quota.pace == pytest.approx(0.7)
    gaps = sorted(b - a for a, b in itertools.pairwise(sorted(left)))
    assert gaps[0] >= 1 / PACED - 0.005  # evenly spaced, never a burst
