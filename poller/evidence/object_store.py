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

import gc
import re
from collections.abc import AsyncIterator, Mapping
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
    for key, value in (options or {}).items():
        name = key.lower()
        if name.removeprefix("aws_") in _CLIENT_KEYS:
            client[name.removeprefix("aws_")] = value
        else:
            config[name] = value
    try:
        backend = from_url(url, config=config or None, client_options=client or None)  # type: ignore[arg-type]
    except UnknownConfigurationKeyError:
        raise StoreError(f"An option given for {url} is not one obstore knows.") from None
    except BaseError as exc:
        raise _failure(f"open the evidence store {url}", exc) from None
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
        """Fail at start, in one sentence, when the bucket is missing or the credentials are
        wrong: one list request, before the run spends quota on answers it could not keep.
        (Listing proves reading; a credential that may list but not write fails at the first
        commit, since a probe object would be debris in a write-once archive.)"""
        try:
            async for _ in obstore.list(self._backend, None, chunk_size=1):
                break
        except (BaseError, OSError) as exc:
            raise _failure(f"reach the evidence store {self.url}", exc) from None

    async def size(self, key: str) -> int | None:
        try:
            meta = await obstore.head_async(self._backend, key)
        except FileNotFoundError:
            return None  # also a missing bucket, whose HEAD is a bare 404: check() tells them apart
        except (BaseError, OSError) as exc:
            raise _failure(f"look up {self.where(key)}", exc) from None
        return meta["size"]

    async def read(self, key: str) -> AsyncIterator[bytes]:
        try:
            result = await obstore.get_async(self._backend, key)
            async for chunk in result.stream(min_chunk_size=_READ_CHUNK):
                yield chunk
        except FileNotFoundError:
            raise FileNotFoundError(self.where(key)) from None
        except (BaseError, OSError) as exc:
            raise _failure(f"read {self.where(key)}", exc) from None

    async def replace(self, key: str, data: bytes) -> None:
        try:
            await obstore.put_async(self._backend, key, data, mode="overwrite", use_multipart=False)
        except (BaseError, OSError) as exc:
            raise _failure(f"store {self.where(key)}", exc) from None

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        try:
            async for batch in obstore.list(self._backend, prefix or None):
                for meta in batch:
                    yield meta["path"]
        except (BaseError, OSError) as exc:
            raise _failure(f"list {self.where(prefix) if prefix else self.url}", exc) from None

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
        except (BaseError, OSError) as exc:
            raise _failure(f"store {self.where(key)}", exc) from None
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
    text = str(exc)
    if "error sending request" in text or "Connect" in text:
        return "no connection to its endpoint"
    if "timed out" in text.lower():
        return "the request timed out"
    return f"obstore raised {type(exc).__name__}"
