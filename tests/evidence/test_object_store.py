"""The object store against a real S3 server (moto on loopback): write-once, replace, listing,
reading back, and failures that say what is wrong in one sentence without the secret."""

from __future__ import annotations

from datetime import timedelta

import pytest
from obstore.store import S3Store

from poller.evidence.object_store import ObjectStore, open_object_store
from poller.evidence.store import EvidenceStore, StoreError
from tests.s3_server import REGION, S3Bucket

VIDEO = bytes(range(256)) * 4096  # 1 MiB, more than one read chunk


def opened(bucket: S3Bucket, prefix: str = "evidence") -> ObjectStore:
    return open_object_store(bucket.url(prefix), options=bucket.server.options())


async def read_all(store: EvidenceStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(key)])


async def all_keys(store: EvidenceStore, prefix: str = "") -> set[str]:
    return {key async for key in store.keys(prefix)}


def one_sentence(message: str) -> None:
    assert message.endswith(".")
    assert ". " not in message, message
    assert "\n" not in message, message
    assert "http" not in message, message  # no request URL
    assert "<" not in message, message  # no XML body


async def test_commit_stores_the_whole_file_once(s3_bucket: S3Bucket) -> None:
    store = opened(s3_bucket)
    upload = store.begin("tok1/CardVideo.mp4")
    for start in range(0, len(VIDEO), 100_000):
        await upload.write(VIDEO[start : start + 100_000])
    assert await store.size("tok1/CardVideo.mp4") is None  # nothing visible before commit
    assert await upload.commit() is True
    assert await store.size("tok1/CardVideo.mp4") == len(VIDEO)
    assert await read_all(store, "tok1/CardVideo.mp4") == VIDEO

    second = store.begin("tok1/CardVideo.mp4")
    await second.write(b"another attempt")
    assert await second.commit() is False  # create-only: If-None-Match honoured by the server
    assert await read_all(store, "tok1/CardVideo.mp4") == VIDEO
    await second.discard()  # safe after commit


async def test_discard_leaves_nothing(s3_bucket: S3Bucket) -> None:
    store = opened(s3_bucket)
    upload = store.begin("tok1/BestFrame.jpg")
    await upload.write(b"jpeg bytes")
    await upload.discard()
    await upload.discard()
    assert await store.size("tok1/BestFrame.jpg") is None
    assert await all_keys(store) == set()
    with pytest.raises(FileNotFoundError):
        await read_all(store, "tok1/BestFrame.jpg")


async def test_replace_overwrites(s3_bucket: S3Bucket) -> None:
    store = opened(s3_bucket)
    await store.replace("tok1/manifest.json", b'{"v": 1}')
    await store.replace("tok1/manifest.json", b'{"v": 2}')
    assert await read_all(store, "tok1/manifest.json") == b'{"v": 2}'


async def test_keys_are_relative_to_the_prefix_and_stay_inside_it(s3_bucket: S3Bucket) -> None:
    store, neighbour = opened(s3_bucket, "evidence"), opened(s3_bucket, "evidence-old")
    for key in ("tok1/a.jpg", "tok1/manifest.json", "tok2/a.jpg"):
        await store.replace(key, b"x")
    await neighbour.replace("tok1/z.jpg", b"x")
    await store.replace("tok10/a.jpg", b"x")
    assert await all_keys(store) == {
        "tok1/a.jpg",
        "tok1/manifest.json",
        "tok2/a.jpg",
        "tok10/a.jpg",
    }
    assert await all_keys(store, "tok1") == {"tok1/a.jpg", "tok1/manifest.json"}
    assert await all_keys(neighbour) == {"tok1/z.jpg"}


async def test_where_is_the_url_a_user_opens(s3_bucket: S3Bucket) -> None:
    store = open_object_store(f"s3://{s3_bucket.name}/evidence/", options={})
    assert store.where("tok1/a.jpg") == f"s3://{s3_bucket.name}/evidence/tok1/a.jpg"


async def test_settings_come_from_the_aws_environment(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_bucket.server.env().items():
        monkeypatch.setenv(name, value)
    store = open_object_store(s3_bucket.url())
    await store.check()
    assert await store.begin("tok1/a.jpg").commit() is True
    assert await all_keys(store) == {"tok1/a.jpg"}


async def test_options_may_be_named_as_the_environment_names_them(s3_bucket: S3Bucket) -> None:
    named = {f"AWS_{k.upper()}": v for k, v in s3_bucket.server.options().items()}
    store = open_object_store(s3_bucket.url(), options=named)
    await store.check()
    assert await store.begin("tok1/a.jpg").commit() is True


async def test_a_wrong_secret_fails_in_one_sentence_without_the_secret(
    s3_bucket: S3Bucket,
) -> None:
    options = s3_bucket.server.options() | {"secret_access_key": "wrong-secret-0123456789"}
    store = open_object_store(s3_bucket.url(), options=options)
    for attempt in (store.check(), store.replace("tok1/m.json", b"{}"), store.size("tok1/m.json")):
        with pytest.raises(StoreError) as failed:
            await attempt
        message = str(failed.value)
        one_sentence(message)
        assert s3_bucket.url() in message
        assert "wrong-secret" not in message
        assert s3_bucket.server.access_key_id not in message
    with pytest.raises(StoreError, match="the secret key was rejected"):
        await store.check()


async def test_a_missing_bucket_fails_in_one_sentence(s3_bucket: S3Bucket) -> None:
    store = open_object_store("s3://no-such-bucket/evidence", options=s3_bucket.server.options())
    with pytest.raises(StoreError) as failed:
        await store.check()
    assert str(failed.value) == (
        "Could not reach the evidence store s3://no-such-bucket/evidence: "
        "the bucket does not exist."
    )
    with pytest.raises(StoreError, match="the bucket does not exist") as failed:
        await store.begin("tok1/a.jpg").commit()
    one_sentence(str(failed.value))


async def test_an_unreachable_endpoint_fails_in_one_sentence() -> None:
    # Built directly to turn obstore's retries off (ten, with backoff, by default).
    backend = S3Store(
        "evidence",
        endpoint="http://127.0.0.1:9",
        region=REGION,
        access_key_id="id",
        secret_access_key="secret",
        client_options={"allow_http": True, "connect_timeout": timedelta(seconds=2)},
        retry_config={"max_retries": 0},
    )
    store = ObjectStore(backend, "s3://evidence")
    with pytest.raises(StoreError) as failed:
        await store.check()
    assert str(failed.value) == (
        "Could not reach the evidence store s3://evidence: no connection to its endpoint."
    )


def test_urls_it_cannot_use_are_refused_without_echoing_them() -> None:
    with pytest.raises(StoreError, match=r"^The evidence URL ftp://host is not"):
        open_object_store("ftp://host/x")
    with pytest.raises(StoreError) as failed:
        open_object_store("s3://bucket/x?X-Amz-Signature=abc123")
    assert "abc123" not in str(failed.value)
    with pytest.raises(StoreError, match="not one obstore knows"):
        open_object_store("s3://bucket/x", options={"no_such_option": "1"})


async def test_memory_store_needs_no_server() -> None:
    store = open_object_store("memory://evidence")
    upload = store.begin("tok1/a.jpg")
    await upload.write(b"a")
    assert await upload.commit() is True
    again = store.begin("tok1/a.jpg")
    await again.write(b"b")
    assert await again.commit() is False
    await store.replace("tok1/manifest.json", b"{}")
    assert await read_all(store, "tok1/a.jpg") == b"a"
    assert await all_keys(store) == {"tok1/a.jpg", "tok1/manifest.json"}
    assert await store.size("tok2/a.jpg") is None
    assert store.where("tok1/a.jpg") == "memory://evidence/tok1/a.jpg"
    await store.check()
    await store.close()
