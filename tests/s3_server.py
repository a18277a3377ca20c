"""A real S3-compatible server (moto) on a free loopback port, for the object-store evidence tests.

A subprocess, not moto's in-process ThreadedMotoServer: moto keeps its state, and the count of
requests it lets through unsigned, in module globals, which would leak between tests in this
process. Authentication is on (INITIAL_NO_AUTH_ACTION_COUNT): the first nine requests, unsigned,
make an IAM user with S3 rights and its key; every request after is checked against that key,
so a wrong secret is refused as AWS would refuse it. When moto cannot start the tests *fail*.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.redis_server import free_port

REGION = "us-east-1"
# create_user, put_user_policy, create_access_key: for the full user, the read-only one and
# the write-only one
_BOOTSTRAP_REQUESTS = 9
_ALLOW_S3 = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}
# A credential that may list, write and delete but not read: the start check must catch it.
_WRITE_ONLY_S3 = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:PutObject", "s3:DeleteObject"],
            "Resource": "*",
        }
    ],
}
# A credential that may list and read but not write: the start check must catch it.
_READ_ONLY_S3 = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}
    ],
}


class S3Server:
    """One moto server process; a context manager (started on entry, stopped on exit)."""

    def __init__(self, directory: Path) -> None:
        self.log = directory / "moto.log"
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.access_key_id = ""
        self.read_only_key: tuple[str, str] = ("", "")
        self.write_only_key: tuple[str, str] = ("", "")
        self.secret_access_key = ""
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_BOOTSTRAP_REQUESTS)
        with self.log.open("wb") as log:  # the child keeps its own handle; werkzeug logs a lot
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_serving()
            self._make_user()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _wait_until_serving(self) -> None:
        # A bounded poll of moto's own status page (not counted as a request to authenticate),
        # not a sleep standing in for it; an HTTP answer, not an open port, since another
        # process that took the port first would accept connections and never answer.
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"moto's S3 server exited at start: {self._log_tail()}", pytrace=False)
            try:
                status = f"{self.endpoint}/moto-api/data.json"  # always http://127.0.0.1
                with urllib.request.urlopen(status, timeout=1):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"moto's S3 server did not answer within 30 s: {self._log_tail()}", False)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:].strip()

    def _client(self, service: str, key_id: str, secret: str) -> Any:
        import boto3  # here, not at the top: conftest imports this module for every test
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 1}),
        )

    def _make_user(self) -> None:
        iam = self._client("iam", "bootstrap", "bootstrap")  # unsigned window: any key passes
        keys = []
        users = (("poller", _ALLOW_S3), ("reader", _READ_ONLY_S3), ("writer", _WRITE_ONLY_S3))
        for user, policy in users:
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys.append((key["AccessKeyId"], key["SecretAccessKey"]))
        (self.access_key_id, self.secret_access_key), self.read_only_key, self.write_only_key = keys

    def create_bucket(self, name: str) -> None:
        s3 = self._client("s3", self.access_key_id, self.secret_access_key)
        s3.create_bucket(Bucket=name)

    def env(self) -> dict[str, str]:
        """The environment a child `poller` reads the store from, as AWS tools name it."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
        }

    def read_only_env(self) -> dict[str, str]:
        """`env()` with a key that may list and read the buckets, never write."""
        key_id, secret = self.read_only_key
        return {**self.env(), "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}

    def write_only_env(self) -> dict[str, str]:
        """`env()` with a key that may list, write and delete, never read."""
        key_id, secret = self.write_only_key
        return {**self.env(), "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}

    def options(self) -> dict[str, str]:
        """The same settings as `open_object_store(..., options=...)` takes them."""
        return {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "endpoint": self.endpoint,
            "region": REGION,
            "allow_http": "true",
        }


@dataclass(frozen=True)
class S3Bucket:
    """A fresh, empty bucket on the session's server."""

    server: S3Server
    name: str

    def url(self, prefix: str = "evidence") -> str:
        return f"s3://{self.name}/{prefix}" if prefix else f"s3://{self.name}"

    @classmethod
    def create(cls, server: S3Server) -> S3Bucket:
        name = f"evidence-{uuid.uuid4().hex[:16]}"
        server.create_bucket(name)
        return cls(server, name)
