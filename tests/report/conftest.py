"""Fixtures of the report tests: the figures and the diff of the two fixture files, the files."""

from __future__ import annotations

from pathlib import Path

import pytest

from poller.report import (
    Diff,
    Report,
    diff,
    load,
    summarize,
)
from tests.report.support import NEWER, OLDER


@pytest.fixture
def report() -> Report:
    return summarize(iter(NEWER), "newer.jsonl")


@pytest.fixture
def changes() -> Diff:
    return diff(load(OLDER, "older.jsonl"), load(NEWER, "newer.jsonl"))


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    newer, older = tmp_path / "newer.jsonl", tmp_path / "older.jsonl"
    newer.write_bytes(b"".join(NEWER))
    older.write_bytes(b"".join(OLDER))
    return newer, older
