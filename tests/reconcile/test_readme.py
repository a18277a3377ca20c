"""The README's `poller reconcile` section says what the code does: its categories, its default
words, and a config example that works."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from poller.api.outcomes import Status
from poller.reconcile import DEFAULT_WORDS, MEANINGS, Category, Vocabulary
from poller.reconcile._vocabulary import from_table

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("## `poller reconcile`", 1)[1].split("\n## ", 1)[0]


def test_the_category_table_lists_every_category_in_order() -> None:
    rows = re.findall(r"^\| `(\w+)` \|", _section(), flags=re.MULTILINE)
    assert rows == [c.value for c in Category]


def test_every_default_word_is_in_the_readme() -> None:
    section = _section()
    for word in DEFAULT_WORDS:
        assert f"`{word}`" in section, word


def test_the_config_example_parses_and_maps() -> None:
    (block,) = re.findall(r"```toml\n(.*?)```", _section(), flags=re.DOTALL)
    table = tomllib.loads(re.sub(r"^ {2}", "", block, flags=re.MULTILINE))["reconcile"]
    vocabulary = Vocabulary().with_mappings(from_table(table["vocabulary"], "README"))
    assert vocabulary.status_of("greenlit") is Status.PASSED
    assert vocabulary.status_of("on hold") is Status.PENDING


def test_the_not_final_meaning_covers_lines_written_without_asking() -> None:
    # Local lines (attempts 0: TokenTooOld, InvalidInput) land in not_final too: say so.
    (row,) = re.findall(r"^\| `not_final` \|(.*)$", _section(), flags=re.MULTILINE)
    for text in (MEANINGS[Category.NOT_FINAL], row):
        assert "pending" in text
        assert "without asking" in text
        assert "TokenTooOld" in text
        assert "InvalidInput" in text
