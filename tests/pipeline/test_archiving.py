"""The archive stage in the engine: lines wait for their media, expired links are re-asked
(paced, counted in `attempts`), and a token is final only when everything was kept."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from poller.config.settings import Detail
from poller.evidence.archive import Archive
from poller.evidence.download import open_download_session
from poller.evidence.local import LocalStore
from poller.evidence.store import StoreError
from poller.input.tokens import TokenEntry
from poller.output.sink import JsonlSink
from poller.pipeline.engine import Engine
from tests.evidence.media import BASE, answer, blob
from tests.fake_api import FakeClient
from tests.helpers import api_error, make_settings, ok

FILES = {"BestFrame": blob("best", 400), "CardImage": blob("card", 600)}
BEST = re.compile(re.escape(f"{BASE}/0/BestFrame.bin") + r"\?.*")
CARD = re.compile(re.escape(f"{BASE}/CardImage.bin") + r"\?.*")


def reply(sign: str) -> dict[str, Any]:
    return {"Response": answer(FILES, sign=sign)}


async def run(
    tmp_path: Path, client: FakeClient, tokens: list[str], **overrides: Any
) -> tuple[Engine, list[dict[str, Any]]]:
    settings = make_settings(evidence=str(tmp_path / "dest"), **overrides)
    session = open_download_session(concurrency=4, timeout=5.0, tls=False)
    archive = Archive(
        LocalStore(tmp_path / "dest"), session, fields=settings.evidence_fields, attempts=2
    )
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out))
    try:
        engine = Engine(settings, client, sink, archive=archive)
        await engine.run([TokenEntry(t, n, None) for n, t in enumerate(tokens, 1)])
    finally:
        sink.close()
        await session.close()
    return engine, [json.loads(line) for line in out.read_text().splitlines()]


async def test_an_expired_link_is_renewed_by_asking_again(tmp_path: Path) -> None:
    client = FakeClient({"t1": [reply("old"), reply("new")]})
    with aioresponses() as m:
        m.get(BEST, status=403)  # the first answer's link has expired
        m.get(BEST, body=FILES["BestFrame"])
        m.get(CARD, body=FILES["CardImage"], repeat=True)
        engine, lines = await run(tmp_path, client, ["t1"])
    [line] = lines
    assert line["final"] is True
    assert line["status"] == "passed"
    assert line["attempts"] == 2 == client.calls == engine.stats.requests
    assert "sign=new" in line["response"]["CompareResults"][0]["BestFrame"]["Url"]
    ev = line["evidence"]
    assert ev["missing"] == []
    assert ev["stored"] == 2
    assert ev["requeries"] == 1
    assert ev["bytes"] == 1000
    assert (tmp_path / "dest/t1/CompareResults.0.BestFrame.bin").read_bytes() == FILES["BestFrame"]
    assert engine.stats.evidence_requeries == 1
    assert engine.stats.evidence_incomplete == 0


async def test_links_that_stay_dead_are_asked_a_bounded_number_of_times(tmp_path: Path) -> None:
    client = FakeClient({"t1": [reply("s")]})
    with aioresponses() as m:
        m.get(BEST, status=403, repeat=True)
        m.get(CARD, body=FILES["CardImage"], repeat=True)
        engine, lines = await run(tmp_path, client, ["t1"], evidence_requeries=2)
    [line] = lines
    assert line["final"] is False
    assert line["status"] == "passed"
    assert line["attempts"] == 3 == client.calls  # the answer, then asked again twice
    [missing] = line["evidence"]["missing"]
    assert missing["field"] == "CompareResults[0].BestFrame"
    assert "403" in missing["reason"]
    assert "2 times" in missing["reason"]
    assert line["evidence"]["stored"] == 1
    assert engine.stats.exit_status() == 1


async def test_lines_without_files_have_a_null_evidence(tmp_path: Path) -> None:
    client = FakeClient(
        {"plain": [ok()], "gone": [api_error("InvalidParameterValue.BizTokenExpired")]}
    )
    with aioresponses():
        _, lines = await run(tmp_path, client, ["plain", "gone"])
    assert {line["token"]: line["evidence"] for line in lines} == {"plain": None, "gone": None}
    assert all(line["final"] for line in lines)


async def test_summary_detail_still_archives_and_leaves_the_response_out(tmp_path: Path) -> None:
    client = FakeClient({"t1": [reply("s")]})
    with aioresponses() as m:
        m.get(BEST, body=FILES["BestFrame"])
        m.get(CARD, body=FILES["CardImage"])
        _, lines = await run(tmp_path, client, ["t1"], detail=Detail.SUMMARY)
    [line] = lines
    assert line["response"] is None
    assert line["evidence"]["stored"] == 2
    assert line["final"] is True


async def test_many_tokens_each_once_and_requests_equal_attempts(tmp_path: Path) -> None:
    tokens = [f"t{n}" for n in range(40)]
    client = FakeClient({t: [reply(f"{t}-a"), reply(f"{t}-b")] for t in tokens})
    with aioresponses() as m:
        m.get(BEST, body=FILES["BestFrame"], repeat=True)
        m.get(CARD, body=FILES["CardImage"], repeat=True)
        engine, lines = await run(tmp_path, client, tokens, evidence_backlog=3)
    assert sorted(line["token"] for line in lines) == sorted(tokens)
    assert sum(line["attempts"] for line in lines) == client.calls == engine.stats.requests
    assert all(line["final"] and line["evidence"]["stored"] == 2 for line in lines)
    assert engine.stats.evidence_waiting == 0  # every answer handed over got its line


class BrokenStore(LocalStore):
    """A store whose reads fail: a bucket that went away under the run."""

    async def size(self, key: str) -> int | None:
        raise StoreError("the evidence store s3://gone/x could not be read")


async def test_a_store_that_fails_leaves_the_token_not_final_and_the_run_going(
    tmp_path: Path,
) -> None:
    client = FakeClient({"t1": [reply("s")], "t2": [ok()]})
    settings = make_settings(evidence=str(tmp_path / "dest"))
    session = open_download_session(concurrency=2, timeout=5.0, tls=False)
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out))
    try:
        archive = Archive(BrokenStore(tmp_path / "dest"), session)
        engine = Engine(settings, client, sink, archive=archive)
        with aioresponses():
            await engine.run([TokenEntry("t1", 1, None), TokenEntry("t2", 2, None)])
    finally:
        sink.close()
        await session.close()
    lines = {line["token"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert set(lines) == {"t1", "t2"}
    assert lines["t1"]["final"] is False
    reasons = {m["reason"] for m in lines["t1"]["evidence"]["missing"]}
    assert reasons == {"the archive failed: the evidence store s3://gone/x could not be read"}
    assert lines["t2"]["final"] is True
    assert engine.stats.exit_status() == 1


async def test_a_fresh_answer_without_the_link_leaves_the_file_missing(tmp_path: Path) -> None:
    fresh = reply("new")
    fresh["Response"]["CompareResults"][0]["BestFrame"] = {"Url": "", "MD5": "", "Size": 0}
    client = FakeClient({"t1": [reply("old"), fresh]})
    with aioresponses() as m:
        m.get(BEST, status=403)
        m.get(CARD, body=FILES["CardImage"], repeat=True)
        _, lines = await run(tmp_path, client, ["t1"])
    [line] = lines
    assert line["final"] is False
    [missing] = line["evidence"]["missing"]
    assert missing["field"] == "CompareResults[0].BestFrame"
    assert "403" in missing["reason"]
    assert "the fresh answer offers no link for it" in missing["reason"]


async def test_a_changed_verdict_on_asking_again_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    changed = reply("new")
    changed["Response"]["Result"] = "2016"
    client = FakeClient({"t1": [reply("old"), changed]})
    with aioresponses() as m:
        m.get(BEST, status=403)
        m.get(BEST, body=FILES["BestFrame"])
        m.get(CARD, body=FILES["CardImage"], repeat=True)
        _, lines = await run(tmp_path, client, ["t1"])
    assert lines[0]["status"] == "failed"
    assert "the answer changed from passed (Result 0) to failed (Result 2016)" in caplog.text


class StopOnFirstFile(LocalStore):
    """Calls `stop` the first time a file is stored: a signal in the middle of the archive."""

    stop: Any = None

    def begin(self, key: str) -> Any:
        return _Signalling(self, super().begin(key))


class _Signalling:
    def __init__(self, store: StopOnFirstFile, upload: Any) -> None:
        self.store, self.upload = store, upload

    async def write(self, chunk: bytes) -> None:
        await self.upload.write(chunk)

    async def commit(self) -> bool:
        stored = bool(await self.upload.commit())
        if self.store.stop is not None:
            self.store.stop("SIGTERM")
            self.store.stop = None
        return stored

    async def discard(self) -> None:
        await self.upload.discard()


async def test_a_stop_lets_the_downloads_in_hand_finish(tmp_path: Path) -> None:
    tokens = [f"t{n}" for n in range(12)]
    client = FakeClient({t: [reply(t)] for t in tokens})
    settings = make_settings(evidence=str(tmp_path / "dest"), concurrency=4)
    session = open_download_session(concurrency=4, timeout=5.0, tls=False)
    store = StopOnFirstFile(tmp_path / "dest")
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out))
    try:
        engine = Engine(settings, client, sink, archive=Archive(store, session))
        store.stop = engine.stop
        with aioresponses() as m:
            m.get(BEST, body=FILES["BestFrame"], repeat=True)
            m.get(CARD, body=FILES["CardImage"], repeat=True)
            await engine.run([TokenEntry(t, n, None) for n, t in enumerate(tokens, 1)])
    finally:
        sink.close()
        await session.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines  # the tokens answered before the stop
    assert len(lines) == client.calls  # each token sent has its line
    assert engine.stats.evidence_waiting == 0
    assert all(line["final"] and line["evidence"]["missing"] == [] for line in lines)
    assert engine.stats.stopped_by == "SIGTERM"


async def test_an_archive_that_keeps_nothing_stops_the_run(tmp_path: Path) -> None:
    tokens = [f"t{n}" for n in range(30)]
    client = FakeClient({t: [reply(t)] for t in tokens})
    with aioresponses() as m:
        m.get(BEST, status=503, repeat=True)
        m.get(CARD, status=503, repeat=True)
        engine, lines = await run(
            tmp_path, client, tokens, breaker_threshold=3, concurrency=1, evidence_backlog=1
        )
    assert engine.stats.local_error is not None
    assert "kept no file of 3 tokens in a row" in engine.stats.local_error
    assert engine.stats.exit_status() == 4
    assert len(lines) == client.calls < len(tokens)
    assert all(line["final"] is False for line in lines)


class StalledManifest(LocalStore):
    """Stores files, then never finishes writing a manifest: a hard stop lands there."""

    reached: asyncio.Event | None = None

    async def replace(self, key: str, data: bytes) -> None:
        assert self.reached is not None
        self.reached.set()
        await asyncio.Event().wait()


async def test_a_hard_stop_before_the_manifest_leaves_the_token_not_final(tmp_path: Path) -> None:
    client = FakeClient({"t1": [reply("s")]})
    settings = make_settings(evidence=str(tmp_path / "dest"))
    session = open_download_session(concurrency=2, timeout=5.0, tls=False)
    store = StalledManifest(tmp_path / "dest")
    store.reached = asyncio.Event()
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out))
    try:
        engine = Engine(settings, client, sink, archive=Archive(store, session))

        async def abort_at_the_manifest() -> None:
            assert store.reached is not None
            await store.reached.wait()
            engine.abort()

        with aioresponses() as m:
            m.get(BEST, body=FILES["BestFrame"])
            m.get(CARD, body=FILES["CardImage"])
            side = asyncio.create_task(abort_at_the_manifest())
            await engine.run([TokenEntry("t1", 1, None)])
            await side
    finally:
        sink.close()
        await session.close()
    [line] = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["final"] is False
    assert line["evidence"]["stored"] == 2
    assert line["evidence"]["missing"] == [
        {"field": "manifest.json", "reason": "not written: the run was stopped at once"}
    ]


async def test_a_store_that_fails_every_token_trips_the_breaker(tmp_path: Path) -> None:
    tokens = [f"t{n}" for n in range(20)]
    client = FakeClient({t: [reply(t)] for t in tokens})
    settings = make_settings(
        evidence=str(tmp_path / "dest"), breaker_threshold=3, concurrency=1, evidence_backlog=1
    )
    session = open_download_session(concurrency=2, timeout=5.0, tls=False)
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out))
    try:
        engine = Engine(settings, client, sink, archive=Archive(BrokenStore(tmp_path), session))
        with aioresponses():
            await engine.run([TokenEntry(t, n, None) for n, t in enumerate(tokens, 1)])
    finally:
        sink.close()
        await session.close()
    lines = out.read_text().splitlines()
    assert engine.stats.exit_status() == 4
    assert "kept no file of 3 tokens in a row" in (engine.stats.local_error or "")
    assert len(lines) == client.calls < len(tokens)
