"""`poller evidence verify DEST`: the auditor's check that the archive still holds what its
manifests promise: every listed file present, its size and MD5 as when it was fetched.

Reads only; exit 0 when everything matches, 1 when a file is missing or altered or a manifest
is unreadable. Files no manifest lists (a crash between storing a file and writing its
manifest; the next run adopts them) are counted, not failed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from poller.evidence.manifest import MANIFEST, Entry, Manifest, ManifestError
from poller.evidence.store import EvidenceStore, StoreError

_AT_ONCE = 8


@dataclass(slots=True)
class Problem:
    kind: str  # "missing", "altered", "unreadable", "manifest"
    where: str
    detail: str

    def line(self) -> str:
        return f"{self.kind.upper()} {self.where}: {self.detail}"


@dataclass(slots=True)
class Verified:
    tokens: int = 0
    files: int = 0
    bytes: int = 0
    unlisted: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """All listed files match, and there was something to check: an auditor pointed at
        the wrong place (a typo in the prefix, a parent of DEST) must not read "all match"."""
        return not self.problems and self.tokens > 0

    def summary(self) -> str:
        counts: dict[str, int] = defaultdict(int)
        for p in self.problems:
            counts[p.kind] += 1
        if not self.problems and not self.tokens:
            return "found no token manifest: nothing was verified (is this the --evidence DEST?)"
        verdict = (
            "all match"
            if self.ok
            else ", ".join(
                f"{n} {'manifest problems' if kind == 'manifest' else kind}"
                for kind, n in sorted(counts.items())
            )
        )
        unlisted = f"; {self.unlisted} files no manifest lists" if self.unlisted else ""
        return (
            f"verified {self.files} files ({self.bytes / 1e6:.1f} MB) of {self.tokens} tokens: "
            f"{verdict}{unlisted}"
        )


async def verify(
    store: EvidenceStore, *, on_problem: Callable[[Problem], None] | None = None
) -> Verified:
    """Re-hash every file every manifest lists, against that manifest."""
    by_dir: dict[str, set[str]] = defaultdict(set)
    async for key in store.keys():
        directory, _, name = key.rpartition("/")
        if directory and "/" not in directory:
            by_dir[directory].add(name)
    result = Verified()
    slots = asyncio.Semaphore(_AT_ONCE)

    def report(problem: Problem) -> None:
        result.problems.append(problem)
        if on_problem is not None:
            on_problem(problem)

    async def one(directory: str, names: set[str]) -> None:
        async with slots:
            await _verify_dir(store, directory, names, result, report)

    await asyncio.gather(*(one(d, names) for d, names in sorted(by_dir.items())))
    return result


async def _verify_dir(
    store: EvidenceStore,
    directory: str,
    names: set[str],
    result: Verified,
    report: Callable[[Problem], None],
) -> None:
    key = f"{directory}/{MANIFEST}"
    if MANIFEST not in names:
        # Files without their index: a crash between storing them and writing the manifest
        # (the next run over the token writes it), or a manifest deleted.
        result.unlisted += len(names)
        report(Problem("manifest", store.where(key), f"missing; {len(names)} files unlisted"))
        return
    result.tokens += 1
    try:
        manifest = Manifest.from_bytes(b"".join([c async for c in store.read(key)]))
    except ManifestError as exc:
        report(Problem("manifest", store.where(key), f"unreadable ({exc})"))
        return
    except (OSError, StoreError) as exc:
        report(Problem("manifest", store.where(key), f"cannot be read ({_reason(exc)})"))
        return
    listed = {e.stored for e in manifest.entries.values()}
    result.unlisted += len(names - listed - {MANIFEST})
    for entry in sorted(manifest.entries.values(), key=lambda e: e.stored):
        problem = await _check(store, f"{directory}/{entry.stored}", entry, names)
        if problem is None:
            result.files += 1
            result.bytes += entry.size
        else:
            report(problem)


async def _check(store: EvidenceStore, key: str, entry: Entry, names: set[str]) -> Problem | None:
    where = store.where(key)
    if entry.stored not in names:
        return Problem("missing", where, f"{entry.field} is listed but not stored")
    digest = hashlib.md5()  # noqa: S324 - the checksum the manifest records
    size = 0
    try:
        async for chunk in store.read(key):
            digest.update(chunk)
            size += len(chunk)
    except FileNotFoundError:
        return Problem("missing", where, f"{entry.field} is listed but not stored")
    except (OSError, StoreError) as exc:
        return Problem("unreadable", where, f"{entry.field} cannot be read ({_reason(exc)})")
    if size != entry.size:
        return Problem("altered", where, f"{size} bytes, the manifest says {entry.size}")
    if digest.hexdigest() != entry.md5:
        return Problem("altered", where, f"MD5 {digest.hexdigest()}, the manifest says {entry.md5}")
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc).rstrip(".")
