"""The evidence archive in a bucket (issue 13): `poller run --evidence s3://…` against the
simulator and a real S3-compatible server (moto, on loopback, authentication on), then
`poller evidence verify s3://…`. The same contract as a directory: every file whole and checked,
write-once, a manifest per token, nothing fetched twice, no signed query string anywhere."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from urllib.parse import urlsplit

import boto3

from poller.evidence.fields import token_dir
from poller.simulator import SimulatorConfig, running_simulator
from tests.e2e import DEMO_ENV, records, start_poller
from tests.s3_server import S3Bucket


async def run(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await start_poller(*argv, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def bucket_objects(bucket: S3Bucket, prefix: str) -> dict[str, bytes]:
    env = bucket.server.env()
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_REGION", "us-east-1"),
    )
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket.name, Prefix=prefix):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket.name, Key=item["Key"])["Body"].read()
            found[item["Key"][len(prefix) + 1 :]] = body
    return found


def put_object(bucket: S3Bucket, key: str, data: bytes) -> None:
    env = bucket.server.env()
    boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_REGION", "us-east-1"),
    ).put_object(Bucket=bucket.name, Key=key, Body=data)


async def test_a_run_keeps_every_file_in_the_bucket_and_verify_checks_them(
    tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    # Faults on 30% of downloads: enough attempts and re-asks that every file gets through.
    env = {
        **DEMO_ENV,
        **s3_bucket.server.env(),
        "FACEID_POLLER_EVIDENCE_ATTEMPTS": "12",
        "FACEID_POLLER_EVIDENCE_REQUERIES": "8",
    }
    dest = s3_bucket.url("kyc/faceid")
    config = SimulatorConfig(
        rate=200.0,
        pending_share=0.0,
        media_scale=0.002,
        media_fault_rate=0.3,
        media_faults=("expired", "altered", "5xx", "truncated"),
    )
    async with running_simulator(config) as sim:
        tokens = sim.mint(8)
        listed = tmp_path / "tokens.txt"
        listed.write_text("".join(f"{t}\n" for t in tokens))
        out = tmp_path / "out.jsonl"
        argv = ["run", "--tokens", str(listed), "--output", str(out), "--endpoint", sim.endpoint]
        status, stdout, err = await run(*argv, "--rate", "150", "--evidence", dest, "-vv", env=env)
        assert status == 0, err
        objects = bucket_objects(s3_bucket, "kyc/faceid")
        for line in records(out):
            token = line["token"]
            assert line["final"] is True
            assert line["evidence"]["missing"] == []
            assert line["evidence"]["manifest"] == f"{dest}/{token_dir(token)}/manifest.json"
            manifest = json.loads(objects[f"{token_dir(token)}/manifest.json"])
            listed_files = {f["field"]: f for f in manifest["files"]}
            assert {(f, e["md5"], e["size"]) for f, e in listed_files.items()} == set(
                sim.media_files(token)
            )
            for entry in listed_files.values():
                data = objects[f"{token_dir(token)}/{entry['stored']}"]
                assert hashlib.md5(data).hexdigest() == entry["md5"]  # noqa: S324
                assert len(data) == entry["size"]
        # No object but whole files and manifests (no partial upload, no temporary name).
        assert all(not key.rsplit("/", 1)[1].startswith(".") for key in objects)
        # No signed query string in any output stream at -vv.
        signs = {
            urlsplit(value["Url"]).query
            for line in records(out)
            for group in ("CardVerifyResults", "CompareResults")
            for attempt in line["response"][group]
            for value in attempt.values()
            if isinstance(value, dict) and value.get("Url")
        }
        assert signs
        assert not [q for q in signs if q in err + stdout]
        assert "sign=" not in err + stdout

        # A rerun over the same tokens: everything is kept, nothing downloaded again.
        fetched_before = len([o for _, o in sim.media_log() if o == "ok"])
        out2 = tmp_path / "again.jsonl"
        argv2 = ["run", "--tokens", str(listed), "--output", str(out2), "--endpoint", sim.endpoint]
        status, _, err = await run(*argv2, "--rate", "150", "--evidence", dest, env=env)
        assert status == 0, err
        assert len([o for _, o in sim.media_log() if o == "ok"]) == fetched_before
        assert all(line["evidence"]["fetched"] == 0 for line in records(out2))

    status, stdout, err = await run("evidence", "verify", dest, env=env)
    assert status == 0, err
    assert "all match" in stdout
    # An object altered behind the archive's back is found.
    token = tokens[0]
    manifest = json.loads(objects[f"{token_dir(token)}/manifest.json"])
    victim = manifest["files"][0]["stored"]
    key = f"kyc/faceid/{token_dir(token)}/{victim}"
    altered = bytearray(objects[f"{token_dir(token)}/{victim}"])
    altered[0] ^= 0xFF
    put_object(s3_bucket, key, bytes(altered))
    status, stdout, _ = await run("evidence", "verify", dest, env=env)
    assert status == 1
    assert stdout.startswith(f"ALTERED {dest}/{token_dir(token)}/{victim}:")


async def test_a_bucket_that_does_not_exist_stops_the_run_before_any_request(
    tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    env = {**DEMO_ENV, **s3_bucket.server.env()}
    async with running_simulator(SimulatorConfig(rate=200.0)) as sim:
        listed = tmp_path / "tokens.txt"
        listed.write_text("".join(f"{t}\n" for t in sim.mint(2)))
        out = tmp_path / "out.jsonl"
        argv = ["run", "--tokens", str(listed), "--output", str(out), "--endpoint", sim.endpoint]
        status, _, err = await run(*argv, "--evidence", "s3://no-such-bucket/x", env=env)
        assert status == 2
        assert err.count("\n") == 1
        assert "no-such-bucket" in err
        assert "Traceback" not in err
        assert env["AWS_SECRET_ACCESS_KEY"] not in err
        assert sim.stats()["by_action"].get("GetSdkVerificationResult", 0) == 0
        assert not out.exists() or out.read_text() == ""
