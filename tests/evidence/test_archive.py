"""One token's archive pass over aioresponses: verified, write-once, retried, never twice."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import aiohttp
import pytest
from aioresponses import aioresponses

from poller.evidence.archive import Archive, Pass, TokenArchive
from poller.evidence.local import LocalStore
from tests.evidence.conftest import no_sleep
from tests.evidence.media import BASE, answer, blob

FILES = {"BestFrame": blob("best", 500), "CardImage": blob("card", 700)}
BEST = re.compile(re.escape(f"{BASE}/0/BestFrame.bin") + r"\?.*")
CARD = re.compile(re.escape(f"{BASE}/CardImage.bin") + r"\?.*")


def archive(tmp_path: Path, session: aiohttp.ClientSession, **kw: object) -> Archive:
    return Archive(LocalStore(tmp_path), session, sleep=no_sleep, **kw)  # type: ignore[arg-type]


async def keep_all(a: Archive) -> tuple[TokenArchive, Pass]:
    """One pass over an answer offering both FILES, each served once; the manifest saved."""
    with aioresponses() as m:
        m.get(BEST, body=FILES["BestFrame"])
        m.get(CARD, body=FILES["CardImage"])
        token = await a.token("tok")
        result = await token.fetch(answer(FILES), stopping=lambda: False)
        await token.save()
    return token, result


def stored(tmp_path: Path, token: str = "tok") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (tmp_path / token).iterdir()}


async def test_every_file_is_kept_checked_and_listed(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    a = archive(tmp_path, session)
    token, result = await keep_all(a)
    assert result.missing == []
    files = stored(tmp_path)
    assert files["CompareResults.0.BestFrame.bin"] == FILES["BestFrame"]
    assert files["CardVerifyResults.0.CardImage.bin"] == FILES["CardImage"]
    manifest = json.loads(files["manifest.json"])
    listed = {f["field"]: f for f in manifest["files"]}
    assert (
        listed["CompareResults[0].BestFrame"]["md5"]
        == hashlib.md5(  # noqa: S324
            FILES["BestFrame"]
        ).hexdigest()
    )
    assert listed["CompareResults[0].BestFrame"]["size"] == 500
    assert listed["CardVerifyResults[0].CardImage"]["stored"] == "CardVerifyResults.0.CardImage.bin"
    report = token.report()
    assert (report.stored, report.bytes, report.fetched) == (2, 1200, 2)
    assert report.manifest == str(tmp_path / "tok" / "manifest.json")


async def test_altered_bytes_are_retried_and_never_stored(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    bad = bytearray(FILES["BestFrame"])
    bad[10] ^= 1
    a = archive(tmp_path, session)
    with aioresponses() as m:
        m.get(BEST, body=bytes(bad))
        m.get(BEST, body=FILES["BestFrame"][:200])  # short
        m.get(BEST, status=503)
        m.get(BEST, body=FILES["BestFrame"])
        token = await a.token("tok")
        result = await token.fetch(
            answer({"BestFrame": FILES["BestFrame"]}), stopping=lambda: False
        )
    assert result.missing == []
    assert stored(tmp_path)["CompareResults.0.BestFrame.bin"] == FILES["BestFrame"]


async def test_a_file_that_stays_bad_is_missing_with_why_and_nothing_stored(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    bad = bytearray(FILES["BestFrame"])
    bad[0] ^= 1
    a = archive(tmp_path, session, attempts=3)
    with aioresponses() as m:
        for _ in range(3):
            m.get(BEST, body=bytes(bad))
        token = await a.token("tok")
        result = await token.fetch(
            answer({"BestFrame": FILES["BestFrame"]}), stopping=lambda: False
        )
    [missing] = result.missing
    assert missing.field == "CompareResults[0].BestFrame"
    assert "MD5" in missing.reason
    assert "3 attempts" in missing.reason
    assert not missing.relink
    assert stored(tmp_path) == {}


async def test_an_expired_link_asks_for_fresh_links_and_is_not_retried(
    tmp_path: Path, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a = archive(tmp_path, session)
    with aioresponses() as m:
        m.get(BEST, status=403, body="Request has expired")
        token = await a.token("tok")
        result = await token.fetch(
            answer({"BestFrame": FILES["BestFrame"]}), stopping=lambda: False
        )
        assert len([k for k in m.requests if k[0] == "GET"]) == 1
        assert sum(len(v) for v in m.requests.values()) == 1  # no retry of a dead link
    assert result.relink
    assert "403" in result.missing[0].reason
    assert "sign=" not in caplog.text
    assert "sig1" not in caplog.text
    assert "sig1" not in result.missing[0].reason


async def test_a_file_already_kept_is_not_fetched_again(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    a = archive(tmp_path, session)
    await keep_all(a)
    with aioresponses() as m:  # nothing registered: any download would fail the pass
        token = await a.token("tok")
        result = await token.fetch(answer(FILES, sign="fresh"), stopping=lambda: False)
        assert m.requests == {}
    assert result.missing == []
    assert token.report().stored == 2
    assert token.report().fetched == 0


async def test_a_file_stored_before_a_crash_wrote_the_manifest_is_adopted(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "CompareResults.0.BestFrame.bin").write_bytes(FILES["BestFrame"])
    a = archive(tmp_path, session)
    with aioresponses() as m:
        token = await a.token("tok")
        result = await token.fetch(
            answer({"BestFrame": FILES["BestFrame"]}), stopping=lambda: False
        )
        await token.save()
        assert m.requests == {}
    assert result.missing == []
    listed = json.loads((tmp_path / "tok" / "manifest.json").read_bytes())["files"]
    assert [f["stored"] for f in listed] == ["CompareResults.0.BestFrame.bin"]


async def test_other_bytes_under_the_name_stay_and_the_file_goes_beside_them(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "CompareResults.0.BestFrame.bin").write_bytes(b"someone else's")
    a = archive(tmp_path, session)
    with aioresponses() as m:
        m.get(BEST, body=FILES["BestFrame"])
        token = await a.token("tok")
        result = await token.fetch(
            answer({"BestFrame": FILES["BestFrame"]}), stopping=lambda: False
        )
    assert result.missing == []
    md5 = hashlib.md5(FILES["BestFrame"]).hexdigest()  # noqa: S324
    files = stored(tmp_path)
    assert files["CompareResults.0.BestFrame.bin"] == b"someone else's"
    assert files[f"CompareResults.0.BestFrame.{md5}.bin"] == FILES["BestFrame"]


async def test_a_stopping_run_fetches_nothing_new(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    a = archive(tmp_path, session)
    with aioresponses() as m:
        token = await a.token("tok")
        result = await token.fetch(answer(FILES), stopping=lambda: True)
        assert m.requests == {}
    assert len(result.missing) == 2
    assert all("stopping" in m.reason for m in result.missing)


async def test_a_redirect_is_followed_only_to_an_allowed_link(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    a = archive(tmp_path, session, attempts=1)
    mirror = "https://mirror.example.com/best.jpg?sig=m1"
    with aioresponses() as m:
        m.get(BEST, status=302, headers={"Location": mirror})
        m.get(mirror, body=FILES["BestFrame"])
        token = await a.token("tok")
        result = await token.fetch(
            answer({"BestFrame": FILES["BestFrame"]}), stopping=lambda: False
        )
    assert result.missing == []
    with aioresponses() as m:
        m.get(BEST, status=307, headers={"Location": "http://evil.example.com/x?sig=SECRET"})
        token = await a.token("tok2")
        result = await token.fetch(
            answer({"BestFrame": FILES["BestFrame"]}), stopping=lambda: False
        )
    [missing] = result.missing
    assert "redirected to one that is not https" in missing.reason
    assert "SECRET" not in missing.reason
    assert not (tmp_path / "tok2").exists() or stored(tmp_path, "tok2") == {}


async def test_a_redirect_loop_ends(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    a = archive(tmp_path, session, attempts=1)
    with aioresponses() as m:
        m.get(
            BEST, status=302, headers={"Location": f"{BASE}/0/BestFrame.bin?again=1"}, repeat=True
        )
        token = await a.token("tok")
        result = await token.fetch(
            answer({"BestFrame": FILES["BestFrame"]}), stopping=lambda: False
        )
    [missing] = result.missing
    assert "redirected too many times" in missing.reason
