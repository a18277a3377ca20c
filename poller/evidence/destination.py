"""`--evidence DEST`: a directory or an object-store URL, opened and checked before the run.

A store that cannot be written (a read-only directory, a missing bucket, wrong credentials) is
one sentence and exit 2 before the first request: a run must not spend the quota on answers
whose media it cannot keep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import unquote, urlsplit

from poller.api.session import ssl_context
from poller.config.settings import OBJECT_STORES, Settings, evidence_problem
from poller.errors import PollerError
from poller.evidence.archive import Archive
from poller.evidence.download import open_download_session
from poller.evidence.local import LocalStore
from poller.evidence.store import EvidenceStore, StoreError

# How long the start check may take: a store that accepts connections and never answers
# must not hold the run (and the night) at its start.
CHECK_SECONDS: Final = 30.0


class EvidenceUnavailable(PollerError):
    """The evidence destination cannot be used: the run does not start (exit 2)."""


def is_object_store(dest: str) -> bool:
    """s3://, gs://, az:// (obstore's S3, which Tencent COS speaks, GCS and Azure). Never
    memory://: an archive that vanished with the process would let every token be final with
    nothing kept."""
    return urlsplit(dest).scheme.lower() in OBJECT_STORES


def open_store(dest: str) -> EvidenceStore:
    """The store `dest` names: an object store by its URL scheme, else a directory path (a
    `file://` URL too)."""
    if is_object_store(dest):
        from poller.evidence.object_store import open_object_store  # obstore: only when used

        return open_object_store(dest)
    try:
        return LocalStore(local_path(dest))
    except ValueError as exc:
        raise EvidenceUnavailable(f"{exc}.") from None


def local_path(dest: str) -> str:
    """The directory a non-object-store DEST names: a path, or a `file://` URL (ValueError for
    a scheme this poller does not know, or a file:// URL naming another host)."""
    problem = evidence_problem(dest)
    if problem:
        raise ValueError(problem)
    parts = urlsplit(dest)
    return unquote(parts.path) if parts.scheme == "file" else dest


async def check_destination(dest: str) -> None:
    """Open and check `dest` (EvidenceUnavailable if it cannot be written), then let go;
    a directory that does not exist yet is not created (the run creates it)."""
    store = _opened(dest)
    try:
        await _checked(store, dest, create=False)
    finally:
        await store.close()


def _opened(dest: str) -> EvidenceStore:
    try:
        return open_store(dest)
    except StoreError as exc:
        raise EvidenceUnavailable(f"the evidence destination cannot be used: {exc}") from None


async def _checked(store: EvidenceStore, dest: str, *, create: bool = True) -> None:
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            if isinstance(store, LocalStore):
                await store.check(create=create)
            else:
                await store.check()
    except StoreError as exc:
        raise EvidenceUnavailable(
            f"the evidence destination cannot be used: {str(exc).rstrip('.')}."
        ) from None
    except TimeoutError:
        raise EvidenceUnavailable(
            f"the evidence destination {dest} did not answer within {CHECK_SECONDS:g} s."
        ) from None


@asynccontextmanager
async def open_archive(settings: Settings) -> AsyncIterator[Archive | None]:
    """The run's archive (None without --evidence): its store checked, its session open.

    Its TLS context (the system's CA store, plus `ca_bundle`) is loaded only here, when there
    is an archive: a run without one must not pay for it (open_session skips it for http)."""
    if not settings.evidence:
        yield None
        return
    tls = ssl_context(settings)
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
