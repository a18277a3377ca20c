"""A token's manifest: what its directory holds, each file with the MD5 and size it was checked
against. Pure: building, reading and writing the JSON document, no I/O.

The manifest is the auditor's index (`poller evidence verify` re-hashes against it) and the
archive's memory across runs: a field listed with the MD5 an answer states is not fetched again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

MANIFEST: Final = "manifest.json"
FORMAT: Final = 1


class ManifestError(ValueError):
    """A manifest that cannot be read: the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored file."""

    field: str  # "CompareResults[1].BestFrame"
    md5: str
    size: int
    stored: str  # the file's name in the token's directory
    fetched_at: str  # RFC 3339 UTC, when it was downloaded and checked


@dataclass(slots=True)
class Manifest:
    """Every file kept for one token, by field path (one entry per field and MD5)."""

    token: str
    entries: dict[tuple[str, str], Entry]

    @classmethod
    def empty(cls, token: str) -> Manifest:
        return cls(token, {})

    def has(self, field: str, md5: str) -> Entry | None:
        return self.entries.get((field, md5))

    def add(self, entry: Entry) -> None:
        self.entries[(entry.field, entry.md5)] = entry

    def names(self) -> set[str]:
        return {e.stored for e in self.entries.values()}

    def to_bytes(self) -> bytes:
        files = sorted(self.entries.values(), key=lambda e: (e.field, e.fetched_at))
        document = {
            "format": FORMAT,
            "token": self.token,
            "files": [
                {
                    "field": e.field,
                    "md5": e.md5,
                    "size": e.size,
                    "stored": e.stored,
                    "fetched_at": e.fetched_at,
                }
                for e in files
            ],
        }
        return json.dumps(document, indent=1, ensure_ascii=False).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"not JSON ({exc})") from None
        if not isinstance(document, Mapping) or not isinstance(document.get("token"), str):
            raise ManifestError("not a manifest: no token")
        files = document.get("files")
        if not isinstance(files, list):
            raise ManifestError("not a manifest: no list of files")
        return cls(document["token"], {(e.field, e.md5): e for e in _entries(files)})


def _entries(files: Iterable[Any]) -> Iterable[Entry]:
    for n, item in enumerate(files):
        if not isinstance(item, Mapping):
            raise ManifestError(f"file {n} is not an object")
        field, md5, size = item.get("field"), item.get("md5"), item.get("size")
        stored, fetched = item.get("stored"), item.get("fetched_at")
        if not (
            isinstance(field, str)
            and isinstance(md5, str)
            and isinstance(size, int)
            and not isinstance(size, bool)
            and isinstance(stored, str)
            and stored
            and "/" not in stored
            and stored not in (".", "..")
            and isinstance(fetched, str)
        ):
            raise ManifestError(f"file {n} lacks a field, md5, size, stored name or fetched_at")
        yield Entry(field, md5.lower(), size, stored, fetched)
