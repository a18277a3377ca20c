"""The archive in a directory: write-once, whole files only, private modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from poller.evidence.local import STALE_PART_SECONDS, LocalStore, is_part
from poller.evidence.store import StoreError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_file_appears_whole_at_commit_and_only_then(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "dest" / "deeper")
    upload = store.begin("tok/a.bin")
    await upload.write(b"hello ")
    assert not (tmp_path / "dest/deeper/tok/a.bin").exists()
    assert [n for n in os.listdir(tmp_path / "dest/deeper/tok") if is_part(n)]
    await upload.write(b"world")
    assert await upload.commit() is True
    assert (tmp_path / "dest/deeper/tok/a.bin").read_bytes() == b"hello world"
    assert os.listdir(tmp_path / "dest/deeper/tok") == ["a.bin"]  # no part left
    assert await store.size("tok/a.bin") == 11
    assert await store.size("tok/b.bin") is None


async def test_directories_are_0700_and_files_0600(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "dest" / "deeper")
    upload = store.begin("tok/a.bin")
    await upload.write(b"x")
    await upload.commit()
    await store.replace("tok/manifest.json", b"{}")
    for directory in ("dest", "dest/deeper", "dest/deeper/tok"):
        assert mode(tmp_path / directory) == 0o700
    for file in ("tok/a.bin", "tok/manifest.json"):
        assert mode(tmp_path / "dest/deeper" / file) == 0o600


async def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    dest = tmp_path / "shared"
    dest.mkdir(mode=0o750)
    os.chmod(dest, 0o750)  # noqa: S103 - the owner's own choice, to be left alone
    store = LocalStore(dest)
    await store.check()
    upload = store.begin("tok/a.bin")
    await upload.write(b"x")
    await upload.commit()
    assert mode(dest) == 0o750
    assert mode(dest / "tok") == 0o700


async def test_write_once_the_first_file_stays(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    first, second = store.begin("t/a"), store.begin("t/a")
    await first.write(b"first")
    await second.write(b"second")
    assert await first.commit() is True
    assert await second.commit() is False
    assert (tmp_path / "t/a").read_bytes() == b"first"
    assert os.listdir(tmp_path / "t") == ["a"]


async def test_discard_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    upload = store.begin("t/a")
    await upload.write(b"partial")
    await upload.discard()
    await upload.discard()
    assert os.listdir(tmp_path / "t") == []


async def test_replace_swaps_the_manifest_atomically(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    await store.replace("t/manifest.json", b"one")
    await store.replace("t/manifest.json", b"two")
    assert b"".join([c async for c in store.read("t/manifest.json")]) == b"two"
    assert os.listdir(tmp_path / "t") == ["manifest.json"]


async def test_keys_leave_out_partial_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for key in ("t1/a", "t2/b"):
        upload = store.begin(key)
        await upload.commit()
    store.begin("t2/c")  # a download in progress
    assert sorted([k async for k in store.keys()]) == ["t1/a", "t2/b"]  # noqa: SIM118 - an async method, not a dict


async def test_stale_partial_files_are_cleaned_fresh_ones_kept(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    old, new = store.begin("t/a"), store.begin("t/b")
    parts = sorted(tmp_path.joinpath("t").iterdir())
    assert len(parts) == 2
    past = os.stat(parts[0]).st_mtime - STALE_PART_SECONDS - 10
    os.utime(parts[0], (past, past))
    assert await store.clean_parts("t") == 1
    assert len(list(tmp_path.joinpath("t").iterdir())) == 1
    await old.discard()
    await new.discard()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
async def test_a_read_only_destination_is_one_sentence(tmp_path: Path) -> None:
    dest = tmp_path / "ro"
    dest.mkdir()
    os.chmod(dest, 0o500)
    with pytest.raises(StoreError, match=r"cannot be written"):
        await LocalStore(dest).check()


async def test_a_file_in_the_way_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=r"cannot be written"):
        await LocalStore(tmp_path / "file" / "sub").check()
