"""The files behind a token's FileInfo links (SPEC §8): which exist, their bytes, size and MD5.

An answer must state each file's MD5 when it is rendered, and a benchmark asks for ~20 tokens a
second at ~12 MB each, so hashing whole files per answer is out. Every file is therefore one
shared pseudo-random block repeated, cut to length, followed by a short trailer unique to (token,
field, attempt): the MD5 states of the repeated block are cached at block boundaries, so a file's
digest costs at most one block plus the trailer, and serving streams the one cached block.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

BLOCK_SIZE = 64 * 1024
TRAILER_SIZE = 32
MIN_SIZE = 16  # even at a tiny scale a file has bytes to check
SPREAD = 0.2  # each file's size is its nominal size +-20%, drawn per token

# Not random at import time: the same bytes in every process, so a run can be replayed.
_BLOCK = random.Random("faceid-simulator-media-filler").randbytes(BLOCK_SIZE)
_BLOCK_VIEW = memoryview(_BLOCK)

# (answer field, file name, nominal bytes): the sizes in Tencent's own example (SPEC §8).
CARD_FILES: tuple[tuple[str, str, int], ...] = (
    ("CardVideo", "card.mp4", 9_400_000),
    ("CardImage", "card.jpg", 232_000),
    ("CardInfoOcrJson", "card_ocr.json", 200),
)
COMPARE_FILES: tuple[tuple[str, str, int], ...] = (
    ("LiveData", "live_data.zip", 700_000),
    ("LiveVideo", "live.mp4", 900_000),
    ("ActionVideo", "action.mp4", 900_000),
    ("BestFrame", "best_frame.jpg", 123_000),
    ("ProfileImage", "profile.jpg", 23_000),
    ("CardInfoInputJson", "card_input.json", 200),
)
CONTENT_TYPES = {
    "mp4": "video/mp4",
    "jpg": "image/jpeg",
    "json": "application/json",
    "zip": "application/zip",
}


@dataclass(frozen=True, slots=True)
class MediaFile:
    """One file as an answer states it; `field` is where (e.g. "CompareResults[0].BestFrame")."""

    field: str
    folder: str
    name: str
    size: int
    trailer: bytes
    md5: str

    @property
    def path(self) -> str:
        return f"/media/{self.folder}/{self.name}"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.name.rsplit(".", 1)[-1], "application/octet-stream")

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The file's bytes in pieces of at most BLOCK_SIZE, none of them copied."""
        filler = self.size - len(self.trailer)
        full, rest = divmod(filler, BLOCK_SIZE)
        for _ in range(full):
            yield _BLOCK
        if rest:
            yield _BLOCK_VIEW[:rest]
        yield self.trailer

    def content(self) -> bytes:
        """The whole file at once: for tests, never for serving."""
        return b"".join(self.chunks())


def folder_of(token: str) -> str:
    """The link folder of a token: not the token itself, which the link would otherwise leak."""
    return hashlib.sha256(token.encode()).hexdigest()[:24]


@functools.lru_cache(maxsize=4096)
def media_files(
    token: str, detail_seed: int, *, with_cards: bool, attempts: int, scale: float
) -> tuple[MediaFile, ...]:
    """Every file a settled answer links to, in answer order: one card result's files (unless
    the check mode has none) and each CompareResult's. Cached: a token is polled again and
    again, and its files never change."""
    folder = folder_of(token)
    wanted: list[tuple[str, str, int]] = []
    if with_cards:
        wanted += [(f"CardVerifyResults[0].{f}", name, size) for f, name, size in CARD_FILES]
    for i in range(attempts):
        wanted += [
            (f"CompareResults[{i}].{f}", f"attempt{i + 1}/{name}", size)
            for f, name, size in COMPARE_FILES
        ]
    return tuple(_file(token, detail_seed, folder, *spec, scale) for spec in wanted)


def _file(
    token: str, detail_seed: int, folder: str, field: str, name: str, nominal: int, scale: float
) -> MediaFile:
    rng = random.Random(f"media:{detail_seed}:{field}")
    size = max(MIN_SIZE, round(nominal * scale * rng.uniform(1 - SPREAD, 1 + SPREAD)))
    digest = hashlib.sha256(f"{token}\0{detail_seed}\0{field}".encode()).digest()
    trailer = digest[: min(TRAILER_SIZE, size)]
    return MediaFile(field, folder, name, size, trailer, _md5(size - len(trailer), trailer))


# _PREFIXES[k] is the MD5 state after k whole blocks; grown on demand, only ever appended to.
_PREFIXES = [hashlib.md5()]  # noqa: S324 - the checksum FileInfo states, not security


def _md5(filler: int, trailer: bytes) -> str:
    full, rest = divmod(filler, BLOCK_SIZE)
    while len(_PREFIXES) <= full:
        state = _PREFIXES[-1].copy()
        state.update(_BLOCK)
        _PREFIXES.append(state)
    state = _PREFIXES[full].copy()
    state.update(_BLOCK_VIEW[:rest])
    state.update(trailer)
    return state.hexdigest()
