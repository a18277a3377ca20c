"""`--evidence DEST`: a directory or an object-store URL, opened and checked before the run.

A store that cannot be written (a read-only directory, a missing bucket, wrong credentials) is
one sentence and exit 2 before the first request: a run must not spend the quota on answers
whose media it cannot keep.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import urlsplit

from poller.config.settings import Settings
from poller.errors import PollerError
from poller.evidence.archive import Archive
from poller.evidence.download import open_download_session
from poller.evidence.local import LocalStore
from poller.evidence.store import EvidenceStore, StoreError

#: URL schemes that name an object store (obstore's: S3 and S3-compatible such as Tencent COS,
#: Google Cloud Storage, Azure Blob Storage; memory:// for tests).
OBJECT_STORE_SCHEMES: Final = frozenset(
    {"s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "memory"}
)


class EvidenceUnavailable(PollerError):
    """The evidence destination cannot be used: the run does not start (exit 2)."""


def is_object_store(dest: str) -> bool:
    return urlsplit(dest).scheme.lower() in OBJECT_STORE_SCHEMES


def open_store(dest: str) -> EvidenceStore:
    """The store `dest` names: an object store by its URL scheme, else a directory path (a
    `file://` URL too)."""
    if is_object_store(dest):
        from poller.evidence.object_store import open_object_store  # obstore: only when used

        return open_object_store(dest)
    parts = urlsplit(dest)
    if parts.scheme == "file":
        return LocalStore(parts.path)
    if parts.scheme and len(parts.scheme) > 1 and "://" in dest:
        raise EvidenceUnavailable(
            f"evidence {dest.split('://')[0]}:// is not a store this poller knows; use a "
            "directory, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix."
        )
    return LocalStore(dest)


async def check_destination(dest: str) -> None:
    """Open and check `dest` (EvidenceUnavailable if it cannot be written), then let go."""
    store = _opened(dest)
    try:
        await _checked(store, dest)
    finally:
        await store.close()


def _opened(dest: str) -> EvidenceStore:
    try:
        return open_store(dest)
    except StoreError as exc:
        raise EvidenceUnavailable(f"the evidence destination cannot be used: {exc}") from None


async def _checked(store: EvidenceStore, dest: str) -> None:
    try:
        await store.check()
    except StoreError as exc:
        raise EvidenceUnavailable(f"the evidence destination cannot be used: {exc}") from None


@asynccontextmanager
async def open_archive(
    settings: Settings, *, tls: ssl.SSLContext | bool = True
) -> AsyncIterator[Archive | None]:
    """The run's archive (None without --evidence): its store checked, its session open."""
    if not settings.evidence:
        yield None
        return
    store = _opened(settings.evidence)
    try:
        await _checked(store, settings.evidence)
        session = open_download_session(
            concurrency=settings.evidence_concurrency,
            timeout=settings.evidence_timeout,
            tls=tls,
        )
        try:
            yield Archive(
                store,
                session,
                fields=settings.evidence_fields,
                concurrency=settings.evidence_concurrency,
                attempts=settings.evidence_attempts,
                backoff_base=settings.backoff_base,
                backoff_max=settings.backoff_max,
            )
        finally:
            await session.close()
    finally:
        await store.close()
