"""Which files an answer offers for the archive (SPEC §8): pure, so tested without a network.

An answer lists FileInfo objects (`Url`, `MD5`, `Size`) in every attempt of `CardVerifyResults`
and `CompareResults`. `wanted` picks those of the chosen fields, each under a field path that
names its attempt (`CompareResults[1].BestFrame`) and a stored name that is safe in any file
system and object store (`CompareResults.1.BestFrame.jpg`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

from poller.config.settings import (
    CARD_EVIDENCE_FIELDS,
    COMPARE_EVIDENCE_FIELDS,
    EVIDENCE_FIELDS,
    is_loopback,
)

ALL_FIELDS: Final = EVIDENCE_FIELDS
_GROUPS: Final = (
    ("CardVerifyResults", CARD_EVIDENCE_FIELDS),
    ("CompareResults", COMPARE_EVIDENCE_FIELDS),
)

_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_SUFFIX = re.compile(r"\.([A-Za-z0-9]{1,8})$")
# A token names its directory; anything but these is percent-encoded (and "." / ".." are).
_SAFE = "-_"


@dataclass(frozen=True, slots=True)
class Wanted:
    """One file to keep: where it is in the answer, how it is checked, where it goes."""

    field: str  # "CompareResults[1].BestFrame"
    md5: str  # lower-case hex
    size: int
    stored: str  # "CompareResults.1.BestFrame.jpg"
    url: str = dataclasses.field(repr=False)  # signed: its query string is a credential


@dataclass(frozen=True, slots=True)
class Unusable:
    """A FileInfo of a chosen field that cannot be fetched as given (why, in `reason`)."""

    field: str
    reason: str


def wanted(
    response: Mapping[str, Any], fields: Iterable[str] = ALL_FIELDS
) -> tuple[list[Wanted], list[Unusable]]:
    """The files of the chosen `fields` in `response`, and those it describes unusably.

    A FileInfo with an empty Url is not offered (the SDK leaves fields it did not record
    empty) and is neither; one with a Url that is not https (or http to a loopback address),
    or without a usable MD5 or Size, cannot be checked, so it is `Unusable`."""
    chosen = frozenset(fields)
    found: list[Wanted] = []
    bad: list[Unusable] = []
    for group, names in _GROUPS:
        attempts = response.get(group)
        if not isinstance(attempts, list):
            continue
        for index, attempt in enumerate(attempts):
            if not isinstance(attempt, Mapping):
                continue
            for name in names:
                if name not in chosen:
                    continue
                info = attempt.get(name)
                if not isinstance(info, Mapping):
                    continue
                path = f"{group}[{index}].{name}"
                url = info.get("Url")
                if not isinstance(url, str) or not url:
                    continue
                item = _check(path, url, info.get("MD5"), info.get("Size"))
                if isinstance(item, Unusable):
                    bad.append(item)
                else:
                    found.append(item)
    return found, bad


def _check(path: str, url: str, md5: object, size: object) -> Wanted | Unusable:
    if not is_allowed_link(url):
        return Unusable(path, f"the link is not a usable https link ({shown_url(url)})")
    if not isinstance(md5, str) or not _MD5.fullmatch(md5):
        return Unusable(path, "the answer gives no MD5 to check the file against")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return Unusable(path, "the answer gives no size to check the file against")
    return Wanted(path, md5.lower(), size, stored_name(path, url), url)


def stored_name(path: str, url: str) -> str:
    """`CompareResults[1].BestFrame` + the link's file suffix → `CompareResults.1.BestFrame.jpg`."""
    base = path.replace("[", ".").replace("]", "")
    match = _SUFFIX.search(urlsplit(url).path)
    return f"{base}.{match.group(1).lower()}" if match else f"{base}.bin"


def conflict_name(stored: str, md5: str) -> str:
    """The name for a file whose stored name already holds other bytes: write-once means the
    first stays; the newcomer is kept beside it under its MD5."""
    stem, dot, suffix = stored.rpartition(".")
    return f"{stem}.{md5}.{suffix}" if dot else f"{stored}.{md5}"


def token_dir(token: str) -> str:
    """The token's directory name: the token itself when it is plain (every real SdkToken is),
    else percent-encoded, so no token can climb out of DEST or name a hidden file. A very long
    token is cut and given a hash, within every file system's 255-byte name limit."""
    if not token:
        return "%"  # never a token's quoted form ("%" alone is no escape): no collision
    # "~" (which quote leaves) is escaped too: it marks a cut name below, and must not be
    # what a token itself can spell.
    name = quote(token, safe=_SAFE + ".").replace("~", "%7E")
    if not name or set(name) == {"."} or name.startswith("."):
        name = quote(token, safe=_SAFE).replace(".", "%2E").replace("~", "%7E")
    if len(name) > 200:
        name = f"{name[:150]}~{hashlib.sha256(token.encode()).hexdigest()[:32]}"
    return name


def is_allowed_link(url: str) -> bool:
    """https anywhere; plain http only to a loopback address (the simulator)."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return False
    if not host or ".." in host or host.startswith(".") or len(host) > 253:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and is_loopback(host)


def shown_url(url: str) -> str:
    """The link as logs and errors may show it: scheme, host and path; the query string (its
    signature, a credential for the file) and any user info are left out."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable link)"
    scheme = parts.scheme or "?"
    return f"{scheme}://{host}{port}{parts.path}" + ("?…" if parts.query else "")
