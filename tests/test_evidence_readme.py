"""README "Keeping the evidence" says what the code does: its fields, keys and defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path

from poller.config.settings import EVIDENCE_FIELDS, Settings
from poller.evidence.archive import Report
from poller.evidence.manifest import Entry, Manifest

README = Path(__file__).resolve().parents[1] / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Keeping the evidence")
    return text[start : text.index("\n## ", start + 1)]


def test_every_field_is_in_the_table() -> None:
    table = section().split("| field |", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"`(\w+)`", table)) == set(EVIDENCE_FIELDS)


def test_the_evidence_example_has_the_keys_a_line_has() -> None:
    example = re.search(r'"evidence": (\{.*?\})\n', section(), re.DOTALL)
    assert example is not None
    shown = json.loads(example.group(1))
    report = Report(stored=0, bytes=0, manifest="m", missing=[])
    assert set(shown) == set(report.to_line())


def test_the_manifest_example_has_the_keys_a_manifest_has() -> None:
    manifest = Manifest.empty("t")
    manifest.add(Entry("f", "0" * 32, 1, "s", "2026-12-01T00:00:00Z"))
    written = json.loads(manifest.to_bytes())
    text = section()
    for key in (*written, *written["files"][0]):
        assert f'"{key}"' in text, key


def test_the_defaults_quoted_are_the_settings_defaults() -> None:
    text, defaults = section(), Settings()
    assert f"`evidence_backlog`, {defaults.evidence_backlog} answers" in text
    assert f"default {defaults.evidence_concurrency})" in text
    assert f"`evidence_requeries` ({defaults.evidence_requeries})" in text
    assert f"`evidence_attempts` ({defaults.evidence_attempts})" in text
    assert f"{defaults.evidence_timeout:g} s without a byte" in text
