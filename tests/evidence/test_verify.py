"""`poller evidence verify`: all match, then one flipped byte, a missing file, a bad manifest."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from poller.evidence.local import LocalStore
from poller.evidence.verify import verify


def keep(dest: Path, token: str, files: dict[str, bytes]) -> None:
    (dest / token).mkdir(parents=True, exist_ok=True)
    entries = []
    for name, data in files.items():
        (dest / token / name).write_bytes(data)
        entries.append(
            {
                "field": f"CompareResults[0].{name.split('.')[0]}",
                "md5": hashlib.md5(data).hexdigest(),  # noqa: S324
                "size": len(data),
                "stored": name,
                "fetched_at": "2026-12-01T00:00:00Z",
            }
        )
    manifest = {"format": 1, "token": token, "files": entries}
    (dest / token / "manifest.json").write_text(json.dumps(manifest))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poller", "evidence", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_an_intact_archive_verifies(tmp_path: Path) -> None:
    keep(tmp_path, "t1", {"BestFrame.jpg": b"a" * 100, "LiveVideo.mp4": b"b" * 300})
    keep(tmp_path, "t2", {"BestFrame.jpg": b"c" * 50})
    result = await verify(LocalStore(tmp_path))
    assert result.ok
    assert (result.tokens, result.files, result.bytes) == (2, 3, 450)


async def test_a_flipped_byte_a_missing_file_and_a_bad_manifest_are_found(tmp_path: Path) -> None:
    keep(tmp_path, "t1", {"BestFrame.jpg": b"a" * 100, "LiveVideo.mp4": b"b" * 300})
    keep(tmp_path, "t2", {"BestFrame.jpg": b"c" * 50})
    keep(tmp_path, "t3", {"BestFrame.jpg": b"d" * 50})
    data = bytearray((tmp_path / "t1/LiveVideo.mp4").read_bytes())
    data[7] ^= 0x01
    (tmp_path / "t1/LiveVideo.mp4").write_bytes(bytes(data))
    (tmp_path / "t2/BestFrame.jpg").unlink()
    (tmp_path / "t3/manifest.json").write_text("{")
    (tmp_path / "t3/extra.bin").write_bytes(b"?")
    result = await verify(LocalStore(tmp_path))
    assert not result.ok
    kinds = sorted(
        (p.kind, Path(p.where).relative_to(tmp_path).as_posix()) for p in result.problems
    )
    assert kinds == [
        ("altered", "t1/LiveVideo.mp4"),
        ("manifest", "t3/manifest.json"),
        ("missing", "t2/BestFrame.jpg"),
    ]
    assert result.files == 1


def test_the_command_exits_0_then_1_after_one_flipped_byte(tmp_path: Path) -> None:
    keep(tmp_path, "t1", {"BestFrame.jpg": b"a" * 100})
    done = cli("verify", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "verified 1 files" in done.stdout
    assert "all match" in done.stdout
    path = tmp_path / "t1/BestFrame.jpg"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x80
    path.write_bytes(bytes(data))
    done = cli("verify", str(tmp_path))
    assert done.returncode == 1
    assert f"ALTERED {path}" in done.stdout
    assert "1 altered" in done.stderr


def test_a_missing_destination_is_one_sentence_exit_2(tmp_path: Path) -> None:
    done = cli("verify", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"poller: error: {tmp_path / 'nowhere'} is not a directory."


def test_against_the_results_a_token_directory_deleted_whole_is_found(tmp_path: Path) -> None:
    import shutil

    dest = tmp_path / "dest"
    keep(dest, "t1", {"BestFrame.jpg": b"a" * 10})
    keep(dest, "t2", {"BestFrame.jpg": b"b" * 10, "LiveVideo.mp4": b"c" * 10})
    results = tmp_path / "results.jsonl"
    lines = [
        {"token": "t1", "evidence": {"stored": 1}},
        {"token": "t2", "evidence": {"stored": 2}},
        {"token": "t3", "evidence": None},  # nothing was to be kept
        {"token": "t4", "evidence": {"stored": 0}},  # nothing was kept: not claimed
    ]
    results.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"token": "t5", "evi')
    done = cli("verify", str(dest), "--against", str(results))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 result lines held to it" in done.stdout
    shutil.rmtree(dest / "t2")
    done = cli("verify", str(dest), "--against", str(results))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"MISSING {dest / 't2' / 'manifest.json'}: {results} says 2 files were kept for t2; "
        "there is no manifest"
    ]
