"""The public Python API (poller/__init__.py): its names, `poll`, the README example.

`Result`'s own tests are tests/output/test_result.py; the errors' common base, tests/test_errors.py.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import poller
from poller import (
    ConfigError,
    Credentials,
    FatalRunError,
    InputError,
    PollerError,
    Result,
    Status,
    poll,
)
from poller.config.settings import Settings
from poller.polling import Poll
from poller.simulator import DEMO_SECRET_ID, DEMO_SECRET_KEY, SimulatorConfig, running_simulator
from tests.fake_api import FakeClient, Slow
from tests.helpers import api_error, make_settings, ok, run_virtual

README = Path(__file__).resolve().parents[1] / "README.md"


# -- the surface -------------------------------------------------------------------------------


def test_the_package_exports_only_its_public_names() -> None:
    assert sorted(poller.__all__) == sorted(set(poller.__all__))
    for name in poller.__all__:
        assert hasattr(poller, name), name
    # Internals stay in their modules: a library user never needs the engine or the signer.
    for internal in ("Engine", "run_job", "sign", "read_tokens", "OutputLock"):
        assert internal not in poller.__all__


# -- poll against the simulator -----------------------------------------------------------------


async def test_poll_yields_what_the_simulator_decided_for_every_token() -> None:
    config = SimulatorConfig(rate=200.0, seed=5, pending_share=0.0)
    async with running_simulator(config) as sim:
        tokens = sim.mint(40)
        settings = make_settings(
            endpoint=sim.endpoint,
            credentials=Credentials(DEMO_SECRET_ID, DEMO_SECRET_KEY),
            rate=200.0,
        )
        results: list[Result] = []
        async with poll([*tokens, tokens[0], " bad\x01token "], settings) as run:
            async for result in run:
                results.append(result)
        stats = run.stats
        assert stats is not None
        sent = sim.stats()["by_action"]["GetSdkVerificationResult"]
    by_token = {r.token: r for r in results}
    assert len(results) == len(by_token) == 41  # the duplicate is reported once, not yielded
    for token in tokens:
        decided, got = sim.decision(token), by_token[token]
        assert got.status.value == decided.status
        assert got.result == decided.result
        assert got.final
        assert got.response is not None
        assert got.response["Result"] == decided.result
    bad = by_token["bad\x01token"]
    assert (bad.status, bad.final, bad.attempts) == (Status.INVALID_TOKEN, False, 0)
    assert bad.error is not None
    assert bad.error.message.startswith("token 42: token contains a control character")
    assert sent == stats.requests == sum(r.attempts for r in results)
    assert stats.duplicates == 1
    assert stats.exit_status() == 1  # the bad token is not final


# -- poll on virtual time (a scripted client): stopping early, backpressure ----------------------


def _tasks_left() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


def test_breaking_out_early_sends_nothing_more_and_leaves_no_task() -> None:
    settings = make_settings(rate=50.0, rate_margin=0.0, concurrency=4, grace_period=5.0)
    client = FakeClient({}, default=Slow(0.5, ok()))
    tokens = [f"t{n}" for n in range(500)]

    async def main() -> tuple[float, float, int, list[Result]]:
        loop = asyncio.get_running_loop()
        got: list[Result] = []
        async with Poll(tokens, settings, client=client) as run:
            async for result in run:
                got.append(result)
                if len(got) == 10:
                    break
            stopped_at = loop.time()
        left = len(_tasks_left())
        return stopped_at, loop.time(), left, got

    stopped_at, ended, left, got = run_virtual(main)
    assert len(got) == 10
    assert left == 0  # no engine, worker or session task outlives the block
    assert client.calls < 50  # far from the 500 tokens: the run really stopped
    assert max(when for when, _ in client.sent) <= stopped_at  # nothing left after the stop
    # The requests on the wire at the stop finished (0.5 s), well within the grace period.
    assert stopped_at < ended <= stopped_at + 0.5 + 1e-6
    assert client.on_wire == 0


def test_a_plain_async_for_that_breaks_is_stopped_when_the_iterator_goes() -> None:
    settings = make_settings(rate=50.0, rate_margin=0.0, concurrency=4)
    client = FakeClient({}, default=Slow(0.5, ok()))

    async def main() -> tuple[int, int]:
        run = Poll([f"t{n}" for n in range(500)], settings, client=client)
        async for _result in run:
            break
        # The abandoned generator is finalised by the loop (its aclose runs as a task).
        for _ in range(100):
            if not _tasks_left():
                break
            await asyncio.sleep(0.1)
        return len(_tasks_left()), client.calls

    left, calls = run_virtual(main)
    assert left == 0
    assert calls < 50


def test_a_slow_consumer_holds_the_run_back() -> None:
    settings = make_settings(rate=1000.0, rate_margin=0.0, concurrency=8)
    client = FakeClient({}, default=ok())
    buffer = 4

    async def main() -> tuple[int, int, int]:
        async with Poll(
            [f"t{n}" for n in range(2000)], settings, buffer=buffer, client=client
        ) as run:
            results = aiter(run)
            await anext(results)
            await asyncio.sleep(60)  # virtual time: the consumer is busy for a minute
            held = client.calls
            rest = [result async for result in results]
        return held, len(rest), client.calls

    held, rest, calls = run_virtual(main)
    # One taken, `buffer` waiting, one line per worker waiting for room: nothing more was asked.
    assert held <= 1 + buffer + settings.concurrency
    assert rest == 1999
    assert calls == 2000


def test_a_fatal_error_is_raised_after_the_results_that_settled() -> None:
    settings = make_settings(concurrency=1)
    client = FakeClient({"a": [ok()]}, default=api_error("AuthFailure.SecretIdNotFound", "no"))

    async def main() -> list[Result]:
        got: list[Result] = []

        async def consume() -> None:
            async for result in Poll(["a", "b", "c"], settings, client=client):
                got.append(result)

        with pytest.raises(FatalRunError, match="no") as caught:
            await consume()
        assert isinstance(caught.value, PollerError)
        return got

    got = run_virtual(main)
    # The token that met the fatal answer gets its line too; no other token was asked.
    assert [(r.token, r.status) for r in got] == [("a", Status.PASSED), ("b", Status.ERROR)]
    assert got[1].error is not None
    assert got[1].error.code == "AuthFailure.SecretIdNotFound"
    assert client.calls == 2


def test_poll_needs_credentials_and_token_strings() -> None:
    with pytest.raises(ConfigError, match="no credentials"):
        poll(["a"], Settings())
    settings = make_settings()

    async def main() -> None:
        with pytest.raises(InputError, match="not one string"):
            async for _ in Poll("abc", settings, client=FakeClient({})):
                pass
        with pytest.raises(InputError, match="not NoneType"):
            Poll(None, settings, client=FakeClient({}))  # type: ignore[arg-type]
        # Checked as it is read, like a file's line: the run stops there, in one sentence.
        with pytest.raises(PollerError, match="token 2 is not a string but an int"):
            async for _ in Poll(["a", 7], settings, client=FakeClient({})):  # type: ignore[list-item]
                pass

    run_virtual(main)


def test_a_poll_gives_its_results_once() -> None:
    settings = make_settings()

    async def main() -> None:
        run = Poll(["a"], settings, client=FakeClient({}, default=ok()))
        assert [r.token async for r in run] == ["a"]
        with pytest.raises(PollerError, match="once"):
            aiter(run)

    run_virtual(main)


# -- the README's example runs -------------------------------------------------------------------


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the section holds one runnable example"
    return str(blocks[0])


def test_the_readme_example_runs_against_the_simulator(tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(_readme_example(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^passed \d+, failed \d+$", out, flags=re.MULTILINE), out
    assert "exit status 0" in out
    assert "second run skipped 20" in out
    assert DEMO_SECRET_KEY not in out + done.stderr


def test_a_poll_that_cannot_start_raises_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found in review: an engine that could not be built left the consumer waiting forever."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("cannot build the engine")

    monkeypatch.setattr("poller.polling.Engine", broken)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="cannot build the engine"):
            async for _ in Poll(["a"], make_settings(), client=FakeClient({})):
                pass

    run_virtual(main)


def test_poll_skips_what_earlier_runs_settled(tmp_path: Path) -> None:
    earlier = tmp_path / "night1.jsonl"
    earlier.write_text(
        '{"token":"a","status":"passed","final":true,"attempts":1}\n'
        '{"token":"b","status":"pending","final":false,"attempts":1}\n'
    )
    settings = make_settings(skip_final_in=(str(earlier),))
    client = FakeClient({}, default=ok())

    async def main() -> list[str]:
        async with Poll(["a", "b", "c"], settings, client=client) as run:
            tokens = [result.token async for result in run]
            assert run.stats is not None
            assert run.stats.final_earlier == 1
        return sorted(tokens)

    assert asyncio.run(main()) == ["b", "c"]  # "a" was final: no request, no result
    assert sorted(client.by_token) == ["b", "c"]


def test_poll_stops_at_its_deadline_and_counts_what_it_did_not_reach() -> None:
    settings = make_settings(rate=2.0, rate_margin=0.0, concurrency=4, stop_after=3.2)
    client = FakeClient({}, default=Slow(0.8, ok()))

    async def main() -> tuple[int, int, str | None]:
        async with Poll([f"t{n}" for n in range(50)], settings, client=client) as run:
            got = [result async for result in run]
            assert run.stats is not None
            return len(got), run.stats.not_reached, run.stats.stopped_by

    got, not_reached, stopped_by = run_virtual(main)
    assert (got, not_reached, stopped_by) == (7, 43, "deadline")  # slots at 0, .5 .. 3.0
    assert client.calls == 7
