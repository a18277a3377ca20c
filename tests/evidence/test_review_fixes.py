"""What a review of the evidence archive broke, each held to its fix (issue 13, review B)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aioresponses import aioresponses

from poller.config.errors import ConfigError
from poller.config.settings import checked
from poller.evidence import destination, local
from poller.evidence.archive import Archive
from poller.evidence.destination import EvidenceUnavailable, check_destination
from poller.evidence.fields import is_allowed_link, wanted
from poller.evidence.local import PART, LocalStore
from poller.evidence.object_store import open_object_store
from poller.evidence.store import StoreError
from poller.evidence.verify import verify
from tests.e2e import DEMO_ENV
from tests.evidence.conftest import no_sleep
from tests.evidence.media import answer, blob
from tests.helpers import make_settings
from tests.s3_server import S3Bucket


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poller", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
        env=env,
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:18950:99/x.jpg?sign=S",
        "https://h:99999/x?sign=S",
        "https://h:-1/x",
        "https://a..b/x",
        "https://h/x?sign=SE\x00C",
        "https://h/x y",
        f"https://{'a' * 300}/x",
    ],
)
def test_a_malformed_link_is_unusable_not_a_crash(url: str) -> None:
    assert not is_allowed_link(url)
    response = {"CompareResults": [{"BestFrame": {"Url": url, "MD5": "a" * 32, "Size": 1}}]}
    found, bad = wanted(response)
    assert found == []
    [unusable] = bad
    assert "not a usable https link" in unusable.reason
    assert "sign=" not in unusable.reason


def test_memory_and_unknown_schemes_are_refused_with_where_they_came_from() -> None:
    for dest in ("memory://x", "s3a://b/p", "ftp://h/p", "file://otherhost/srv"):
        settings = make_settings(evidence=dest)
        with pytest.raises(ConfigError, match="evidence"):
            checked(settings)
    done = cli("run", "--tokens", "-", "--evidence", "memory://x", env=DEMO_ENV)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "memory://" in done.stderr


def test_an_empty_evidence_flag_is_an_error_not_archiving_off() -> None:
    done = cli("run", "--tokens", "-", "--evidence", "")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "poller: error: --evidence needs a destination (a directory or s3://bucket/prefix)."
    )


@pytest.mark.parametrize("endpoint", ["cos.ap-singapore.myqcloud.com", "not-a-url", "://x"])
def test_an_endpoint_without_its_scheme_is_one_sentence_not_a_panic(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    with pytest.raises(StoreError, match=r"AWS_ENDPOINT_URL must be a URL such as https://"):
        open_object_store("s3://bucket/prefix")


async def test_a_store_that_never_answers_fails_the_start_check_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(65536)
        await asyncio.Event().wait()  # answers nothing, ever

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(destination, "CHECK_SECONDS", 0.5)
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secretsecretsecret",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        with pytest.raises(EvidenceUnavailable, match=r"did not answer within 0.5 s"):
            await check_destination("s3://bucket/prefix")
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("key", "cannot"), [("read_only", "write to"), ("write_only", "read from")]
)
def test_credentials_that_cannot_write_or_read_fail_the_start_check(
    tmp_path: Path, s3_bucket: S3Bucket, key: str, cannot: str
) -> None:
    tokens = tmp_path / "t.txt"
    tokens.write_text("tok-1\n")
    limited = getattr(s3_bucket.server, f"{key}_env")()
    env = {**DEMO_ENV, **limited}
    done = cli(
        "run", "--tokens", str(tokens), "--output", str(tmp_path / "o.jsonl"),
        "--endpoint", "http://127.0.0.1:9", "--evidence", s3_bucket.url("ro"), env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"could not {cannot} the evidence store" in done.stderr.lower()
    assert done.stderr.count("\n") == 1
    assert limited["AWS_SECRET_ACCESS_KEY"] not in done.stderr


async def test_the_start_check_leaves_no_probe_behind(s3_bucket: S3Bucket) -> None:
    store = open_object_store(s3_bucket.url("p"), options=s3_bucket.server.options())
    await store.check()
    assert [k async for k in store.keys()] == []  # noqa: SIM118 - an async method
    await store.close()


async def test_verify_reports_unreadable_files_and_missing_manifests(tmp_path: Path) -> None:
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "a.jpg").symlink_to("a.jpg")  # a loop: reading it fails (ELOOP)
    manifest = {
        "format": 1,
        "token": "t1",
        "files": [
            {"field": f"CompareResults[0].{n}", "md5": "0" * 32, "size": 1, "stored": s,
             "fetched_at": "2026-12-01T00:00:00Z"}
            for n, s in (("BestFrame", "a.jpg"), ("LiveVideo", "fifo.mp4"))
        ],
    }  # fmt: skip
    (tmp_path / "t1" / "manifest.json").write_text(json.dumps(manifest))
    os.mkfifo(tmp_path / "t1" / "fifo.mp4")  # would block a plain open() forever
    (tmp_path / "t2").mkdir()
    (tmp_path / "t2" / "orphan.jpg").write_bytes(b"x")
    result = await asyncio.wait_for(verify(LocalStore(tmp_path)), timeout=10)
    kinds = sorted((p.kind, Path(p.where).name) for p in result.problems)
    assert kinds == [
        ("manifest", "manifest.json"),
        ("unreadable", "a.jpg"),
        ("unreadable", "fifo.mp4"),
    ]
    assert not result.ok


async def test_verify_of_a_place_with_no_manifest_is_not_all_match(tmp_path: Path) -> None:
    result = await verify(LocalStore(tmp_path))
    assert not result.ok
    assert "nothing was verified" in result.summary()
    (tmp_path / "empty").mkdir()
    done = cli("evidence", "verify", str(tmp_path / "empty"))
    assert done.returncode == 1
    assert "found no token manifest" in done.stdout + done.stderr
    done = cli("evidence", "verify", f"file://{tmp_path / 'empty'}")
    assert done.returncode == 1


async def test_an_unreadable_manifest_is_set_aside_not_overwritten(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    data = blob("best", 300)
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "manifest.json").write_text("{not json")
    a = Archive(LocalStore(tmp_path), session, sleep=no_sleep)
    with aioresponses() as m:
        m.get(re.compile(r"https://media\.example\.com/.*"), body=data, repeat=True)
        token = await a.token("tok")
        await token.fetch(answer({"BestFrame": data}), stopping=lambda: False)
        await token.save()
    kept = [p for p in (tmp_path / "tok").iterdir() if p.name.startswith("manifest.unreadable-")]
    assert [p.read_text() for p in kept] == ["{not json"]
    assert json.loads((tmp_path / "tok" / "manifest.json").read_text())["token"] == "tok"


async def test_a_full_disk_is_a_store_error_and_the_file_is_not_fetched_again(
    tmp_path: Path, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(_fd: int, _data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local, "_write_all", full)
    data = blob("best", 300)
    a = Archive(LocalStore(tmp_path), session, sleep=no_sleep, attempts=4)
    with aioresponses() as m:
        m.get(re.compile(r"https://media\.example\.com/.*"), body=data, repeat=True)
        token = await a.token("tok")
        result = await token.fetch(answer({"BestFrame": data}), stopping=lambda: False)
        assert sum(len(v) for v in m.requests.values()) == 1
    [missing] = result.missing
    assert "No space left on device" in missing.reason
    assert "could not store" in missing.reason


async def test_a_file_system_without_hard_links_fails_the_start_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted", src, None, dst)

    monkeypatch.setattr(os, "link", no_links)
    with pytest.raises(StoreError, match="refuses hard links"):
        await LocalStore(tmp_path / "dest").check()
    assert not [f for _, _, files in os.walk(tmp_path) for f in files]  # no probe left


async def test_partial_files_of_a_dead_process_are_removed_at_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    live = store.begin("tok/a.jpg")  # this process: alive
    dead_pid = 2**22 + 12345
    while True:
        try:
            os.kill(dead_pid, 0)
            dead_pid += 1
        except ProcessLookupError:
            break
    host = socket.gethostname().replace("-", "_") or "host"
    dead = tmp_path / "tok" / f".b.jpg{PART}{host}-{dead_pid}-abcd1234"
    dead.write_bytes(b"half a file")
    assert await store.clean_parts("tok") == 1
    assert not dead.exists()
    assert len(os.listdir(tmp_path / "tok")) == 1
    await live.discard()


async def test_a_relative_dest_gives_absolute_manifest_paths_and_a_file_is_not_a_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert LocalStore("rel/dest").where("t/manifest.json") == str(
        tmp_path / "rel/dest/t/manifest.json"
    )
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        await LocalStore(tmp_path / "afile").check()


def test_a_dry_run_does_not_create_dest(tmp_path: Path) -> None:
    tokens = tmp_path / "t.txt"
    tokens.write_text("tok-1\n")
    dest = tmp_path / "not" / "yet"
    done = cli("run", "--tokens", str(tokens), "--dry-run", "--evidence", str(dest), env=DEMO_ENV)
    assert done.returncode == 0, done.stderr
    assert f"kept in {dest}" in done.stdout
    assert not (tmp_path / "not").exists()


async def test_verify_finds_a_manifest_that_names_another_token(tmp_path: Path) -> None:
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "manifest.json").write_text(
        json.dumps({"format": 1, "token": "t2", "files": []})
    )
    result = await verify(LocalStore(tmp_path))
    [problem] = result.problems
    assert problem.kind == "manifest"
    assert "names another token ('t2')" in problem.detail
