"""Helpers shared by the output stage's tests."""

from __future__ import annotations

from pathlib import Path


def write(path: Path, *parts: bytes) -> Path:
    path.write_bytes(b"".join(parts))
    return path
