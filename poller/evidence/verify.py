"""`poller evidence verify DEST`: the auditor's check that the archive still holds what its
manifests promise: every listed file present, its size and MD5 as when it was fetched.

Reads only; exit 0 when everything matches, 1 when a file is missing or altered or a manifest
is unreadable. Files no manifest lists (a crash between storing a file and writing its
manifest; the next run adopts them) are counted, not failed.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from poller.evidence.fields import token_dir
from poller.evidence.manifest import MANIFEST, Entry, Manifest, ManifestError
from poller.evidence.store import EvidenceStore, StoreError, md5_of, read_all

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
    lines_checked: int = 0  # lines of --against results files held to the archive
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
        if self.lines_checked:
            unlisted += f"; {self.lines_checked} result lines held to it"
        return (
            f"verified {self.files} files ({self.bytes / 1e6:.1f} MB) of {self.tokens} tokens: "
            f"{verdict}{unlisted}"
        )


async def verify(
    store: EvidenceStore,
    *,
    on_problem: Callable[[Problem], None] | None = None,
    against: Iterable[str] = (),
) -> Verified:
    """Re-hash every file every manifest lists, against that manifest; then, for each results
    file in `against`, hold every token's line to the archive: a token whose latest line says
    files were kept must have a manifest listing at least that many (a directory deleted
    whole leaves no trace in the archive itself)."""
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

    listed: dict[str, int] = {}

    async def one(directory: str, names: set[str]) -> None:
        async with slots:
            listed[directory] = await _verify_dir(store, directory, names, result, report)

    await asyncio.gather(*(one(d, names) for d, names in sorted(by_dir.items())))
    for path in against:
        # Manifests only grow, so each line's claim must hold, not only a token's latest:
        # the file is streamed on a thread (millions of lines), nothing kept per token.
        count, short = await asyncio.to_thread(_hold, path, listed)
        result.lines_checked += count
        for token, stored, have in short:
            where = store.where(f"{token_dir(token)}/{MANIFEST}")
            listing = f"the manifest lists {have}" if have else "there is no manifest"
            report(
                Problem(
                    "missing", where, f"{path} says {stored} files were kept for {token}; {listing}"
                )
            )
    return result


def _hold(path: str, listed: dict[str, int]) -> tuple[int, list[tuple[str, int, int]]]:
    """Lines of `path` with files kept, and (token, claimed, listed) for each token whose
    manifest lists fewer (once per token)."""
    count, short, seen = 0, [], set()
    for token, stored in _claims(path):
        count += 1
        have = listed.get(token_dir(token), 0)
        if have < stored and token not in seen:
            seen.add(token)
            short.append((token, stored, have))
    return count, short


def _claims(path: str) -> Iterator[tuple[str, int]]:
    """(token, files its line says were kept) for each line of `path` with evidence.

    A line that is not JSON (a torn last line) is skipped, as the poller's own readers do."""
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(line, dict):
                    continue
                token, evidence = line.get("token"), line.get("evidence")
                if isinstance(token, str) and isinstance(evidence, dict):
                    stored = evidence.get("stored")
                    if isinstance(stored, int) and not isinstance(stored, bool) and stored:
                        yield token, stored
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None


async def _verify_dir(
    store: EvidenceStore,
    directory: str,
    names: set[str],
    result: Verified,
    report: Callable[[Problem], None],
) -> int:
    """Check one token's directory; returns how many files its manifest lists."""
    key = f"{directory}/{MANIFEST}"
    if MANIFEST not in names:
        # Files without their index: a crash between storing them and writing the manifest
        # (the next run over the token writes it), or a manifest deleted.
        result.unlisted += len(names)
        report(Problem("manifest", store.where(key), f"missing; {len(names)} files unlisted"))
        return 0
    result.tokens += 1
    try:
        manifest = Manifest.from_bytes(await read_all(store, key))
    except ManifestError as exc:
        report(Problem("manifest", store.where(key), f"unreadable ({exc})"))
        return 0
    except (OSError, StoreError) as exc:
        report(Problem("manifest", store.where(key), f"cannot be read ({_reason(exc)})"))
        return 0
    if token_dir(manifest.token) != directory:
        report(Problem("manifest", store.where(key), f"names another token ({manifest.token!r})"))
        return 0
    listed = {e.stored for e in manifest.entries.values()}
    result.unlisted += len(names - listed - {MANIFEST})
    for entry in sorted(manifest.entries.values(), key=lambda e: e.stored):
        problem = await _check(store, f"{directory}/{entry.stored}", entry, names)
        if problem is None:
            result.files += 1
            result.bytes += entry.size
        else:
            report(problem)
    return len(manifest.entries)


async def _check(store: EvidenceStore, key: str, entry: Entry, names: set[str]) -> Problem | None:
    where = store.where(key)
    if entry.stored not in names:
        return Problem("missing", where, f"{entry.field} is listed but not stored")
    try:
        md5, size = await md5_of(store, key)
    except FileNotFoundError:
        return Problem("missing", where, f"{entry.field} is listed but not stored")
    except (OSError, StoreError) as exc:
        return Problem("unreadable", where, f"{entry.field} cannot be read ({_reason(exc)})")
    if size != entry.size:
        return Problem("altered", where, f"{size} bytes, the manifest says {entry.size}")
    if md5 != entry.md5:
        return Problem("altered", where, f"MD5 {md5}, the manifest says {entry.md5}")
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc).rstrip(".")
