"""The per-token manifest: written and read back, and refused when it is not one."""

from __future__ import annotations

import pytest

from poller.evidence.manifest import Entry, Manifest, ManifestError


def test_a_manifest_reads_back_what_was_written() -> None:
    manifest = Manifest.empty("tok-1")
    manifest.add(
        Entry("CompareResults[0].BestFrame", "a" * 32, 12, "b.jpg", "2026-12-01T00:00:00Z")
    )
    manifest.add(
        Entry("CardVerifyResults[0].CardVideo", "b" * 32, 9, "v.mp4", "2026-12-01T00:00:01Z")
    )
    again = Manifest.from_bytes(manifest.to_bytes())
    assert again.token == "tok-1"
    assert again.entries == manifest.entries
    assert again.has("CompareResults[0].BestFrame", "a" * 32) is not None
    assert again.has("CompareResults[0].BestFrame", "c" * 32) is None


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b"[]",
        b'{"token": "t"}',
        b'{"token": "t", "files": [1]}',
        b'{"token": "t", "files": [{"field": "f", "md5": "x", "size": "1", "stored": "s",'
        b' "fetched_at": "t"}]}',
        b'{"token": "t", "files": [{"field": "f", "md5": "x", "size": 1, "stored": "../s",'
        b' "fetched_at": "t"}]}',
    ],
)
def test_what_is_not_a_manifest_is_refused(data: bytes) -> None:
    with pytest.raises(ManifestError):
        Manifest.from_bytes(data)
