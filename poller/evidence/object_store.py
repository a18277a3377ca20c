"""The evidence archive in a bucket: S3 (Tencent COS speaks it), GCS or Azure, through obstore.

Write-once rests on the store, not on a look before the write: `commit` is one PUT with
`If-None-Match: *` (obstore's `mode="create"`), so of two writers racing for a key exactly one
wins and the other learns it (AlreadyExistsError). AWS S3, GCS, Azure, MinIO, R2 and moto
honour it; obstore's S3 `conditional_put` setting defaults to "etag", the one mode that does
this, so nothing needs configuring. A store that ignored the header would overwrite silently:
the tests prove it against a real S3 server for that reason.

Credentials, endpoint and region come from where obstore (Rust's object_store) reads them: the
environment as AWS tools name it (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP ...; GOOGLE_* and AZURE_* likewise), or `options`.
Errors leave as StoreError in one sentence: obstore's own messages run to pages and carry
request URLs, so only a short cause (the store's error code, or a kind) is kept.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
    UnknownConfigurationKeyError,
)
from obstore.store import MemoryStore, from_url

from poller.evidence.store import StoreError

if TYPE_CHECKING:
    from obstore.store import ObjectStore as _Backend

SCHEMES = ("s3", "gs", "az")
# HTTP client settings, shared by every store; obstore takes them apart from the store config
# (given as store config, `allow_http` makes obstore 0.12 panic rather than refuse).
_CLIENT_KEYS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "default_content_type",
        "http1_only",
        "http2_only",
        "pool_idle_timeout",
        "pool_max_idle_per_host",
        "proxy_url",
        "proxy_ca_certificate",
        "proxy_excludes",
        "randomize_addresses",
        "read_timeout",
        "timeout",
        "user_agent",
    }
)
_CODE = re.compile(r"<Code>(\w{1,64})</Code>")
_CAUSES = {
    "NoSuchBucket": "the bucket does not exist",
    "ContainerNotFound": "the container does not exist",
    "SignatureDoesNotMatch": "the secret key was rejected",
    "InvalidAccessKeyId": "the access key is unknown",
    "AccessDenied": "access was denied",
    "ExpiredToken": "the credentials have expired",
}
_READ_CHUNK = 256 * 1024  # streamed media stays in small pieces, not obstore's 10 MB default
# obstore retries a failed request up to 10 times within 3 minutes by default; a run has its
# own retries and a start check must not hang for minutes: a few, within a minute.
_RETRY = {"max_retries": 3, "retry_timeout": timedelta(seconds=60)}
# Where obstore reads an S3 endpoint from; a value that is no URL makes it panic (a Rust
# panic, not an error), so it is checked here first.
_ENDPOINT_KEYS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
PROBE_PREFIX = ".poller-write-check-"


def open_object_store(url: str, *, options: Mapping[str, str] | None = None) -> ObjectStore:
    """A store for `s3://bucket/prefix`, `gs://…`, `az://…`, or `memory://` (tests: a fresh
    empty store each time). `options` override the environment, keyed as obstore names them
    (`endpoint`, `region`, `access_key_id`, `allow_http`, `conditional_put`, …)."""
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname or ''}"
    if parts.query or parts.fragment or parts.username or parts.password:
        raise StoreError(f"The evidence URL {shown} must not carry credentials or a query.")
    if parts.scheme == "memory":
        return ObjectStore(MemoryStore(), url.rstrip("/"))
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise StoreError(f"The evidence URL {shown} is not s3://, gs:// or az:// with a bucket.")
    config: dict[str, Any] = {}
    client: dict[str, Any] = {}
    if parts.scheme == "s3":
        _check_endpoint(options or {})
    for key, value in (options or {}).items():
        name = key.lower()
        if name.removeprefix("aws_") in _CLIENT_KEYS:
            client[name.removeprefix("aws_")] = value
        else:
            config[name] = value
    try:
        backend = from_url(  # type: ignore[call-overload]
            url, config=config or None, client_options=client or None, retry_config=_RETRY
        )
    except UnknownConfigurationKeyError:
        raise StoreError(f"An option given for {url} is not one obstore knows.") from None
    except BaseException as exc:  # noqa: BLE001 - obstore's errors, and its Rust panics
        raise _failure(f"open the evidence store {url}", _unpanicked(exc)) from None
    return ObjectStore(backend, url.rstrip("/"))


class ObjectStore:
    """An EvidenceStore over any obstore store; keys are relative to the URL's prefix."""

    def __init__(self, backend: _Backend, url: str) -> None:
        self._backend = backend
        self.url = url

    def where(self, key: str) -> str:
        return f"{self.url}/{key}"

    def begin(self, key: str) -> ObjectUpload:
        return ObjectUpload(self, key)

    async def check(self) -> None:
        """Fail at start, in one sentence, when the bucket is missing, the credentials are
        wrong or may not write or read: a list request, then a tiny probe object created, read
        back and deleted
        (a credential that may read but not write would otherwise download every file of the
        run and store none). A probe a delete-less credential cannot remove stays under a
        hidden name that `evidence verify` and the archive ignore."""
        try:
            async for _ in obstore.list(self._backend, None, chunk_size=1):
                break
        except BaseException as exc:  # noqa: BLE001 - obstore's errors, and its Rust panics
            raise _failure(f"reach the evidence store {self.url}", _unpanicked(exc)) from None
        probe = f"{PROBE_PREFIX}{secrets.token_hex(8)}"
        try:
            await obstore.put_async(self._backend, probe, b"", mode="create")
        except BaseException as exc:  # noqa: BLE001 - obstore's errors, and its Rust panics
            raise _failure(f"write to the evidence store {self.url}", _unpanicked(exc)) from None
        try:
            # Every token's archive starts with a look-up of its manifest (a HEAD): a key that
            # may write but not read would fail each one.
            await obstore.head_async(self._backend, probe)
        except BaseException as exc:  # noqa: BLE001 - obstore's errors, and its Rust panics
            raise _failure(f"read from the evidence store {self.url}", _unpanicked(exc)) from None
        # May write, may not delete (a write-once policy): then the probe stays, hidden.
        with contextlib.suppress(BaseError, OSError):
            await obstore.delete_async(self._backend, probe)

    async def size(self, key: str) -> int | None:
        try:
            meta = await obstore.head_async(self._backend, key)
        except FileNotFoundError:
            return None  # also a missing bucket, whose HEAD is a bare 404: check() tells them apart
        except BaseException as exc:  # noqa: BLE001 - obstore's errors, and its Rust panics
            raise _failure(f"look up {self.where(key)}", _unpanicked(exc)) from None
        return meta["size"]

    async def read(self, key: str) -> AsyncIterator[bytes]:
        try:
            result = await obstore.get_async(self._backend, key)
            async for chunk in result.stream(min_chunk_size=_READ_CHUNK):
                yield chunk
        except FileNotFoundError:
            raise FileNotFoundError(self.where(key)) from None
        except BaseException as exc:  # noqa: BLE001 - obstore's errors, and its Rust panics
            raise _failure(f"read {self.where(key)}", _unpanicked(exc)) from None

    async def replace(self, key: str, data: bytes) -> None:
        try:
            await obstore.put_async(self._backend, key, data, mode="overwrite", use_multipart=False)
        except BaseException as exc:  # noqa: BLE001 - obstore's errors, and its Rust panics
            raise _failure(f"store {self.where(key)}", _unpanicked(exc)) from None

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        try:
            async for batch in obstore.list(self._backend, prefix or None):
                for meta in batch:
                    if not meta["path"].rsplit("/", 1)[-1].startswith(PROBE_PREFIX):
                        yield meta["path"]
        except BaseException as exc:  # noqa: BLE001 - obstore's errors, and its Rust panics
            where = self.where(prefix) if prefix else self.url
            raise _failure(f"list {where}", _unpanicked(exc)) from None

    async def close(self) -> None:
        """Let go of obstore's store (and its HTTP pool) now, while the interpreter runs: one
        left for the interpreter's exit to free aborted the process now and then (SIGABRT)."""
        if hasattr(self, "_backend"):
            del self._backend
            gc.collect()

    async def _create(self, key: str, data: bytes) -> bool:
        try:
            await obstore.put_async(self._backend, key, data, mode="create")
        except AlreadyExistsError:
            return False
        except PreconditionError:
            # S3's 409 for a create racing another create on the same key: whether ours lost
            # shows once the other settles; absent, the key is still free and we say so.
            if await self.size(key) is not None:
                return False
            raise StoreError(f"{self.where(key)} was being written by another writer.") from None
        except BaseException as exc:  # noqa: BLE001 - obstore's errors, and its Rust panics
            raise _failure(f"store {self.where(key)}", _unpanicked(exc)) from None
        return True


class ObjectUpload:
    """Bytes held in memory until `commit`: an object appears whole in one PUT or not at all,
    and nothing half-written can stand under a key (the largest file, CardVideo, is ~10 MB)."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self._store = store
        self._key = key
        self._chunks: list[bytes] | None = []

    async def write(self, chunk: bytes) -> None:
        if self._chunks is None:
            raise RuntimeError(f"the upload of {self._key} was already committed or discarded")
        self._chunks.append(chunk)

    async def commit(self) -> bool:
        if self._chunks is None:
            raise RuntimeError(f"the upload of {self._key} was already committed or discarded")
        data = b"".join(self._chunks)
        self._chunks = None
        return await self._store._create(self._key, data)

    async def discard(self) -> None:
        self._chunks = None


class _Panic(Exception):
    """obstore panicked (Rust): a BaseException we turn into a sentence, never let escape."""


def _unpanicked(exc: BaseException) -> BaseException:
    """`exc`, unless it is a Rust panic (then `_Panic`); re-raises what is not obstore's to
    catch: a cancellation, Ctrl-C, an exit."""
    if isinstance(exc, (BaseError, OSError)):
        return exc
    if "Panic" in type(exc).__name__:
        return _Panic()
    raise exc


def _check_endpoint(options: Mapping[str, str]) -> None:
    given = {
        k.upper() if k.upper().startswith("AWS_") else f"AWS_{k.upper()}": v
        for k, v in options.items()
    }
    for key in _ENDPOINT_KEYS:
        value = given.get(key, os.environ.get(key))
        if not value:
            continue
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise StoreError(
                f"{key} must be a URL such as https://cos.ap-singapore.myqcloud.com "
                "(with its https://)."
            )
        return


def _failure(what: str, exc: BaseException) -> StoreError:
    return StoreError(f"Could not {what}: {_cause(exc)}.")


def _cause(exc: BaseException) -> str:
    """A few words for why, from the store's error code or obstore's error kind: never the
    message itself (request URLs, response bodies, and with presigning, signatures)."""
    code = _CODE.search(str(exc))
    if code:
        return _CAUSES.get(code[1], f"the store answered {code[1]}")
    if isinstance(exc, PermissionDeniedError):
        return "access was denied (check the credentials and the bucket's permissions)"
    if isinstance(exc, UnauthenticatedError):
        return "the credentials were rejected"
    if isinstance(exc, FileNotFoundError):
        return "the bucket does not exist"
    if isinstance(exc, _Panic):
        return "obstore failed on its settings (check AWS_ENDPOINT_URL and the other AWS_* values)"
    text = str(exc)
    if "HTTP scheme is not allowed" in text or "allow_http" in text.lower():
        return "the endpoint is plain http:// (set AWS_ALLOW_HTTP=true if that is meant)"
    if "credential" in text.lower() or "169.254.169.254" in text:
        return "no credentials were found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    if "timed out" in text.lower():
        return "the request timed out"
    if "error sending request" in text or "Connect" in text:
        return "no connection to its endpoint"
    if "path" in text.lower() and ("invalid" in text.lower() or "empty" in text.lower()):
        return "the prefix is not a valid object path (no empty parts such as //)"
    return f"obstore raised {type(exc).__name__}"
