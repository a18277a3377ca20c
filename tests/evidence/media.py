"""Answers with FileInfo links for the evidence tests: bytes, their MD5, and a response."""

from __future__ import annotations

import hashlib
from typing import Any

BASE = "https://media.example.com/f"


def blob(name: str, size: int = 300) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def info(url: str, data: bytes) -> dict[str, Any]:
    return {"Url": url, "MD5": hashlib.md5(data).hexdigest(), "Size": len(data)}  # noqa: S324


def answer(files: dict[str, bytes], *, sign: str = "sig1", attempts: int = 1) -> dict[str, Any]:
    """A passed answer: `files` maps a SPEC §8 field to its bytes; card fields go in the card
    result, the others in each of `attempts` compare results (the same bytes each time)."""
    card: dict[str, Any] = {"IsPass": True}
    compares: list[dict[str, Any]] = [{"ErrorCode": "0"} for _ in range(attempts)]
    for name, data in files.items():
        if name.startswith("Card") and name != "CardInfoInputJson":
            card[name] = info(f"{BASE}/{name}.bin?sign={sign}&expires=1", data)
        else:
            for i, compare in enumerate(compares):
                compare[name] = info(f"{BASE}/{i}/{name}.bin?sign={sign}&expires=1", data)
    return {
        "Result": "0",
        "Description": "Success",
        "ChargeCount": 1,
        "CardVerifyResults": [card],
        "CompareResults": compares,
        "RequestId": "req-1",
    }
