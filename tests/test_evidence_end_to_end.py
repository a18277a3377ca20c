"""The evidence archive end to end (issue 13, SPEC §8): the real `poller run --evidence` against
the simulator, which serves the media behind signed, expiring links and faults on demand.

Each test holds the archive against what the simulator says it served for each token
(`media_files`: field, MD5, size) and its media log (what was downloaded, how often)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from poller.evidence.fields import token_dir
from poller.simulator import RunningSimulator, SimulatorConfig, running_simulator
from tests.e2e import DEMO_ENV, records, start_poller

SCALE = 0.002  # ~25 KB a token instead of ~12 MB: the same files, smaller


def config(**kw: Any) -> SimulatorConfig:
    return SimulatorConfig(rate=200.0, pending_share=0.0, media_scale=SCALE, **kw)


def tokens_file(path: Path, tokens: list[str]) -> str:
    path.write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return str(path)


def args(sim: RunningSimulator, tokens: str, out: Path, dest: Path | str, *extra: str) -> list[str]:
    return [
        "run", "--tokens", tokens, "--output", str(out), "--endpoint", sim.endpoint,
        "--rate", "150", "--evidence", str(dest), *extra,
    ]  # fmt: skip


async def run(*argv: str) -> tuple[int, str, str]:
    proc = await start_poller(*argv, env=DEMO_ENV)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def kept(dest: Path, token: str) -> dict[str, tuple[str, int, str]]:
    """field -> (md5, size, stored name) as the token's manifest lists it."""
    manifest = json.loads((dest / token_dir(token) / "manifest.json").read_text())
    assert manifest["token"] == token
    return {f["field"]: (f["md5"], f["size"], f["stored"]) for f in manifest["files"]}


def assert_archive_matches(sim: RunningSimulator, dest: Path, token: str) -> None:
    """Every FileInfo the simulator serves for `token` is stored whole, as its manifest says."""
    import hashlib

    served = {field: (md5, size) for field, md5, size in sim.media_files(token)}
    listed = kept(dest, token)
    assert {f: (m, s) for f, (m, s, _) in listed.items()} == served
    for md5, size, name in listed.values():
        data = (dest / token_dir(token) / name).read_bytes()
        assert (len(data), hashlib.md5(data).hexdigest()) == (size, md5)  # noqa: S324


async def run_complete(
    sim: RunningSimulator, tmp_path: Path, n: int
) -> tuple[Path, str, list[dict[str, Any]]]:
    """Mint `n` tokens and run them with --evidence: exit 0, each token one final line whose
    evidence is complete and whose archive matches what the simulator served. Returns the
    archive, the run's stderr and the lines."""
    tokens = sim.mint(n)
    out, dest = tmp_path / "out.jsonl", tmp_path / "evidence"
    status, _, err = await run(*args(sim, tokens_file(tmp_path / "t", tokens), out, dest))
    assert status == 0, err
    lines = records(out)
    assert sorted(line["token"] for line in lines) == sorted(tokens)
    for line in lines:
        assert line["final"] is True
        assert line["evidence"]["missing"] == []
        assert_archive_matches(sim, dest, line["token"])
    return dest, err, lines


def media_paths(line: dict[str, Any]) -> dict[str, str]:
    """field -> the media path (no query) its line's response links to."""
    found: dict[str, str] = {}
    for group in ("CardVerifyResults", "CompareResults"):
        for i, attempt in enumerate(line["response"][group]):
            for name, value in attempt.items():
                if isinstance(value, dict) and value.get("Url"):
                    found[f"{group}[{i}].{name}"] = urlsplit(value["Url"]).path
    return found


def private(dest: Path) -> None:
    for root, dirs, files in os.walk(dest):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode) == 0o700
        for f in files:
            assert stat.S_IMODE(os.stat(os.path.join(root, f)).st_mode) == 0o600
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700


async def test_every_file_of_every_answer_is_kept_verified_and_private(tmp_path: Path) -> None:
    async with running_simulator(config(request_log_size=1000)) as sim:
        dest, err, lines = await run_complete(sim, tmp_path, 24)
        tokens = [line["token"] for line in lines]
        for line in lines:
            assert line["status"] == sim.decision(line["token"]).status
            ev = line["evidence"]
            served = sim.media_files(line["token"])
            assert ev["missing"] == []
            assert ev["stored"] == len(served)
            assert ev["bytes"] == sum(size for _, _, size in served)
            assert ev["manifest"] == str(dest / token_dir(line["token"]) / "manifest.json")
            assert_archive_matches(sim, dest, line["token"])
        # Each file downloaded exactly once; the API saw exactly the lines' attempts.
        downloads = Counter(path for path, outcome in sim.media_log() if outcome == "ok")
        assert set(downloads.values()) == {1}
        assert sum(len(sim.media_files(t)) for t in tokens) == len(downloads)
        api = sim.stats()["by_action"]["GetSdkVerificationResult"]
        assert api == sum(line["attempts"] for line in lines) == len(tokens)
        assert "evidence" in err
        assert "files fetched" in err
        private(dest)
        # The auditor's check: all match; then one flipped byte is found (exit 1).
        status, stdout, _ = await run("evidence", "verify", str(dest))
        assert status == 0
        assert "all match" in stdout
        victim = (
            dest / token_dir(tokens[3]) / kept(dest, tokens[3])["CompareResults[0].BestFrame"][2]
        )
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
        status, stdout, err = await run("evidence", "verify", str(dest))
        assert status == 1
        assert stdout.splitlines() == [f"ALTERED {victim}: " + stdout.split(": ", 1)[1].strip()]
        assert "1 altered" in err


async def test_expired_links_are_asked_again_and_the_fresh_files_kept(tmp_path: Path) -> None:
    # Every file's first download answers 403 as an expired link does.
    async with running_simulator(
        config(media_fail_first=1, media_faults=("expired",), request_log_size=1000)
    ) as sim:
        _, _, lines = await run_complete(sim, tmp_path, 8)
        for line in lines:
            assert line["attempts"] == 2
            assert line["evidence"]["requeries"] == 1
        api = sim.stats()["by_action"]["GetSdkVerificationResult"]
        assert api == sum(line["attempts"] for line in lines) == 2 * len(lines)


def any_tokens(n: int) -> list[str]:
    """Tokens any any-token simulator with the same seed answers alike, files and all."""
    return [f"EVIDENCE-{i:04d}-0000-0000-000000000000" for i in range(n)]


async def test_links_that_stay_expired_leave_the_token_not_final_and_the_rerun_completes(
    tmp_path: Path,
) -> None:
    out, dest = tmp_path / "out.jsonl", tmp_path / "evidence"
    tokens = any_tokens(3)
    listed = tokens_file(tmp_path / "t", tokens)
    # Links refused as expired three times over: asked again twice (the default), still dead.
    dead = config(media_fail_first=3, media_faults=("expired",), any_token=True, seed=7)
    async with running_simulator(dead) as sim:
        status, _, _ = await run(*args(sim, listed, out, dest))
        assert status == 1
        first = records(out)
        assert sorted(line["token"] for line in first) == tokens
        for line in first:
            assert line["final"] is False
            assert line["status"] in ("passed", "failed")
            assert line["attempts"] == 3
            missing = line["evidence"]["missing"]
            assert len(missing) == len(sim.media_files(line["token"]))
            assert all("403" in m["reason"] and "2 times" in m["reason"] for m in missing)
    # The next night, links that live: the rerun asks again and completes the archive.
    async with running_simulator(config(any_token=True, seed=7)) as sim:
        status, _, err = await run(*args(sim, listed, out, dest))
        assert status == 0, err
        second = records(out)[len(first) :]
        assert sorted(line["token"] for line in second) == tokens
        for line in second:
            assert line["final"] is True
            assert line["evidence"]["missing"] == []
            assert_archive_matches(sim, dest, line["token"])


async def test_altered_bytes_and_cut_off_bodies_are_retried_never_stored(tmp_path: Path) -> None:
    async with running_simulator(
        config(media_fail_first=2, media_faults=("altered", "truncated"))
    ) as sim:
        dest, _, lines = await run_complete(sim, tmp_path, 6)
        tokens = [line["token"] for line in lines]
        for line in lines:
            assert line["attempts"] == 1  # a bad body is downloaded again, not re-asked
        outcomes = Counter(outcome for _, outcome in sim.media_log())
        files = sum(len(sim.media_files(t)) for t in tokens)
        assert outcomes == {"fault:altered": files, "fault:truncated": files, "ok": files}
        status, _, _ = await run("evidence", "verify", str(dest))
        assert status == 0


async def test_a_sigkill_mid_download_leaves_nothing_partial_and_the_rerun_completes(
    tmp_path: Path,
) -> None:
    out, dest = tmp_path / "out.jsonl", tmp_path / "evidence"
    tokens = any_tokens(10)
    listed = tokens_file(tmp_path / "t", tokens)
    # A third of the downloads stall halfway through their body for a minute.
    slow = config(
        any_token=True,
        seed=11,
        media_fault_rate=0.3,
        media_faults=("slow",),
        media_slow_seconds=60.0,
    )
    async with running_simulator(slow) as sim:
        proc = await start_poller(*args(sim, listed, out, dest), env=DEMO_ENV)
        async with asyncio.timeout(60):  # until files are stored and bodies hang halfway
            while not (  # noqa: ASYNC110 - polling another process's files
                any(not p.name.startswith(".") for p in dest.glob("*/*Results.*"))
                and any(o == "fault:slow" for _, o in sim.media_log())
                and any(p.stat().st_size for p in dest.glob("*/.*.part-*"))
            ):
                await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    served = {t: {f: (m, s) for f, m, s in sim.media_files(t)} for t in tokens}
    # Nothing partial under a final name: every stored file is whole and one a token has.
    before: dict[str, set[str]] = {}
    import hashlib

    for token in tokens:
        directory = dest / token_dir(token)
        names = {p.name for p in directory.iterdir()} if directory.exists() else set()
        before[token] = {n for n in names if not n.startswith(".") and n != "manifest.json"}
        offered = {(m, s) for m, s in served[token].values()}
        for name in before[token]:
            data = (directory / name).read_bytes()
            assert (hashlib.md5(data).hexdigest(), len(data)) in offered, name  # noqa: S324
    assert any(before.values())
    # The rerun, links healthy: complete, and what was stored is not downloaded again.
    async with running_simulator(config(any_token=True, seed=11)) as sim:
        status, _, err = await run(*args(sim, listed, out, dest))
        assert status == 0, err
        fetched = [path for path, outcome in sim.media_log() if outcome == "ok"]
        assert len(fetched) == len(set(fetched))
        lines = {line["token"]: line for line in records(out) if line["final"]}
        assert set(lines) == set(tokens)
        for token in tokens:
            assert_archive_matches(sim, dest, token)
            paths = media_paths(lines[token])
            stored = {f: n for f, (_, _, n) in kept(dest, token).items()}
            again = {f for f, n in stored.items() if n in before[token] and paths[f] in fetched}
            assert not again, f"{token}: fetched again although stored: {again}"
    status, _, _ = await run("evidence", "verify", str(dest))
    assert status == 0


async def test_no_signed_query_string_in_any_output_at_vv(tmp_path: Path) -> None:
    async with running_simulator(
        config(media_fault_rate=0.5, media_faults=("expired", "5xx", "altered", "truncated"))
    ) as sim:
        tokens = sim.mint(6)
        out, dest = tmp_path / "out.jsonl", tmp_path / "evidence"
        status, stdout, err = await run(
            *args(sim, tokens_file(tmp_path / "t", tokens), out, dest), "-vv"
        )
        assert status in (0, 1), err
        lines = records(out)
        signs = set()
        for line in lines:
            for group in ("CardVerifyResults", "CompareResults"):
                for attempt in line["response"][group]:
                    for value in attempt.values():
                        if isinstance(value, dict) and value.get("Url"):
                            signs.add(urlsplit(value["Url"]).query.split("sign=")[1])
        assert signs
        everything = (
            err
            + stdout
            + "".join(json.dumps(line["evidence"]) + json.dumps(line["error"]) for line in lines)
        )
        everything += "".join(p.read_text() for p in dest.glob("*/manifest.json"))
        assert "sign=" not in everything
        assert not [s for s in signs if s in everything]
        assert "not kept: the link answered HTTP" in err  # -vv logged each failed download
