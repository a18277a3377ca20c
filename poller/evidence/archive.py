"""One token's archive pass: keep every wanted file that is not kept yet, verified, write-once.

`Archive` is the run's (its store, its download session and connection limit, its retry rule);
`Archive.token` opens one token's directory and manifest. `TokenArchive.fetch` keeps the files
an answer offers: a file the manifest lists with the MD5 the answer states is not fetched
again; a file a crash stored before its manifest was written is adopted once its bytes check
out; anything else is downloaded, retried with backoff when the body was bad, and reported as
`RELINK` when only a fresh answer (new links) can help. `report` says what the line shows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from poller.evidence.download import DownloadFailed, Kind, download
from poller.evidence.fields import ALL_FIELDS, Wanted, conflict_name, token_dir, wanted
from poller.evidence.local import LocalStore
from poller.evidence.manifest import MANIFEST, Entry, Manifest, ManifestError
from poller.evidence.store import EvidenceStore, StoreError, md5_of, read_all

log = logging.getLogger("poller.evidence")


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(frozen=True, slots=True)
class Missing:
    field: str
    reason: str
    relink: bool = False  # only a fresh answer (new links) can help


@dataclass(slots=True)
class Report:
    """The line's `evidence` object (SPEC §4)."""

    stored: int  # files of this answer held in the archive, verified
    bytes: int
    manifest: str
    missing: list[Missing]
    fetched: int = 0  # of them, downloaded by this run
    fetched_bytes: int = 0
    requeries: int = 0  # answers asked again for fresh links

    @property
    def complete(self) -> bool:
        return not self.missing

    def to_line(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "bytes": self.bytes,
            "manifest": self.manifest,
            "missing": [{"field": m.field, "reason": m.reason} for m in self.missing],
            "fetched": self.fetched,
            "fetched_bytes": self.fetched_bytes,
            "requeries": self.requeries,
        }


@dataclass(slots=True)
class Pass:
    """The outcome of keeping one answer's files."""

    wanted: list[Wanted]
    missing: list[Missing] = field(default_factory=list)

    @property
    def relink(self) -> bool:
        return any(m.relink for m in self.missing)


class Archive:
    """The run's archive: where files go, how they are fetched, how often one is retried."""

    def __init__(
        self,
        store: EvidenceStore,
        session: aiohttp.ClientSession,
        *,
        fields: Iterable[str] = ALL_FIELDS,
        concurrency: int = 8,
        attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.session = session
        self.fields = tuple(fields)
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.clock = clock
        self.sleep = sleep
        self._slots = asyncio.Semaphore(concurrency)

    def offers(self, response: Mapping[str, Any] | None) -> bool:
        """Whether this answer has anything to archive (else the line's `evidence` is null)."""
        if response is None:
            return False
        found, bad = wanted(response, self.fields)
        return bool(found or bad)

    def manifest_where(self, token: str) -> str:
        return self.store.where(f"{token_dir(token)}/{MANIFEST}")

    async def _set_aside(self, key: str) -> str:
        """Copy an unreadable manifest to `manifest.unreadable-<UTC>.json` (write-once)."""
        data = await read_all(self.store, key)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock()))
        base = key.rpartition("/")[0]
        for n in range(100):
            name = f"{base}/manifest.unreadable-{stamp}{f'-{n}' if n else ''}.json"
            upload = self.store.begin(name)
            try:
                await upload.write(data)
                if await upload.commit():
                    return name
            finally:
                await upload.discard()
        raise StoreError(f"cannot set the unreadable manifest {self.store.where(key)} aside")

    async def token(self, token: str) -> TokenArchive:
        directory = token_dir(token)
        manifest = Manifest.empty(token)
        key = f"{directory}/{MANIFEST}"
        try:
            if await self.store.size(key) is not None:
                manifest = Manifest.from_bytes(await read_all(self.store, key))
        except ManifestError as exc:
            # Kept for an auditor to see, under a name of its own, before a readable one is
            # written: the files it lists are still found by name and checked.
            kept = await self._set_aside(key)
            log.warning(
                "the manifest %s is unreadable (%s); kept as %s, a new one is written",
                self.store.where(key),
                exc,
                self.store.where(kept),
            )
        except FileNotFoundError:
            pass
        if isinstance(self.store, LocalStore):
            await self.store.clean_parts(directory)
        return TokenArchive(self, token, directory, manifest)


class TokenArchive:
    """One token's directory and manifest, while the run keeps its files."""

    def __init__(self, archive: Archive, token: str, directory: str, manifest: Manifest) -> None:
        self._a = archive
        self.token = token
        self.directory = directory
        self.manifest = manifest
        self._dirty = False
        self.fetched = 0
        self.fetched_bytes = 0
        self.requeries = 0
        self._last: Pass | None = None

    @property
    def unsaved(self) -> bool:
        """Files were added to the manifest since it was last written."""
        return self._dirty

    def holds(self, field: str) -> bool:
        """Some file of `field` is kept (whatever answer offered it)."""
        return any(e.field == field for e in self.manifest.entries.values())

    @property
    def manifest_key(self) -> str:
        return f"{self.directory}/{MANIFEST}"

    async def fetch(self, response: Mapping[str, Any], *, stopping: Callable[[], bool]) -> Pass:
        """Keep every wanted file of `response` not kept yet; what could not be, in `missing`."""
        found, bad = wanted(response, self._a.fields)
        result = Pass(found, [Missing(u.field, u.reason) for u in bad])
        self._last = result
        outcomes = await asyncio.gather(*(self._keep(item, stopping) for item in found))
        result.missing.extend(m for m in outcomes if m is not None)
        return result

    async def _keep(self, item: Wanted, stopping: Callable[[], bool]) -> Missing | None:
        try:
            if await self._already(item):
                return None
            if stopping():
                return Missing(item.field, "not fetched: the run was stopping")
            return await self._download(item)
        except StoreError as exc:
            return Missing(item.field, f"the archive could not store it: {exc}")

    async def _already(self, item: Wanted) -> bool:
        """Kept earlier (listed, still there), or stored by a run a crash cut off (adopted)."""
        entry = self.manifest.has(item.field, item.md5)
        if entry is not None and await self._a.store.size(self._key(entry.stored)) == item.size:
            return True
        for name in (item.stored, conflict_name(item.stored, item.md5)):
            if await self._holds(name, item):
                self._adopt(item, name)
                return True
        return False

    async def _holds(self, name: str, item: Wanted) -> bool:
        key = self._key(name)
        if await self._a.store.size(key) != item.size:
            return False
        return await md5_of(self._a.store, key) == (item.md5, item.size)

    def _adopt(self, item: Wanted, name: str, fetched_at: float | None = None) -> None:
        at = self._a.clock() if fetched_at is None else fetched_at
        self.manifest.add(Entry(item.field, item.md5, item.size, name, _rfc3339(at)))
        self._dirty = True

    def _key(self, name: str) -> str:
        return f"{self.directory}/{name}"

    async def _name_for(self, item: Wanted) -> str:
        """Where the download goes: its stored name, or beside it if other bytes hold that."""
        if await self._a.store.size(self._key(item.stored)) is None:
            return item.stored
        return conflict_name(item.stored, item.md5)

    async def _download(self, item: Wanted) -> Missing | None:
        name = await self._name_for(item)
        a = self._a

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, DownloadFailed) and exc.kind is Kind.RETRY

        retrying = AsyncRetrying(
            stop=stop_after_attempt(a.attempts),
            wait=wait_random_exponential(multiplier=a.backoff_base, max=a.backoff_max),
            retry=retry_if_exception(retryable),
            sleep=a.sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._download_once(item, name)
        except DownloadFailed as failed:
            tries = (
                ""
                if failed.kind is not Kind.RETRY
                else f" ({a.attempts} attempt{'s' if a.attempts != 1 else ''})"
            )
            log.debug("token %s: %s not kept: %s%s", self.token, item.field, failed.reason, tries)
            return Missing(item.field, failed.reason + tries, relink=failed.kind is Kind.RELINK)
        return None

    async def _download_once(self, item: Wanted, name: str) -> None:
        a = self._a
        async with a._slots:
            upload = a.store.begin(self._key(name))
            try:
                size = await download(a.session, item, upload)
                stored = await upload.commit()
            finally:
                await upload.discard()
        if not stored:
            # Another run stored this name meanwhile: keep theirs if it is these bytes.
            if await self._holds(name, item):
                self._adopt(item, name)
                return
            raise DownloadFailed(Kind.REFUSED, f"{name} already holds other bytes")
        self._adopt(item, name)
        self.fetched += 1
        self.fetched_bytes += size

    async def save(self) -> None:
        """Write the manifest if anything was added (atomically; replaces the old one)."""
        if self._dirty:
            await self._a.store.replace(self.manifest_key, self.manifest.to_bytes())
            self._dirty = False

    def report(
        self, missing: list[Missing] | None = None, offered: list[Wanted] | None = None
    ) -> Report:
        """The line's `evidence` for the last answer fetched; `missing` and `offered` override
        its lists (for a pass a hard stop cut short)."""
        last = self._last or Pass([])
        gone = last.missing if missing is None else missing
        absent = {m.field for m in gone}
        kept = [w for w in (last.wanted if offered is None else offered) if w.field not in absent]
        return Report(
            stored=len(kept),
            bytes=sum(w.size for w in kept),
            manifest=self._a.store.where(self.manifest_key),
            missing=list(gone),
            fetched=self.fetched,
            fetched_bytes=self.fetched_bytes,
            requeries=self.requeries,
        )
