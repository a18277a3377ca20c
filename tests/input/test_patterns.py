"""File names from a cron line (poller/input/patterns.py): paths, and globs the command expands."""

from __future__ import annotations

from pathlib import Path

import pytest

from poller.input.patterns import NoMatch, expand


def test_globs_expand_in_name_order_and_paths_stay_as_given(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.jsonl", "c.txt"):
        (tmp_path / name).write_text("")
    missing = str(tmp_path / "missing.jsonl")  # no glob characters: reading it reports it
    assert expand([str(tmp_path / "*.jsonl"), "-", missing]) == [
        str(tmp_path / "a.jsonl"),
        str(tmp_path / "b.jsonl"),
        "-",
        missing,
    ]


def test_a_file_whose_name_looks_like_a_glob_is_itself(tmp_path: Path) -> None:
    odd = tmp_path / "night[1].jsonl"
    odd.write_text("")
    assert expand([str(odd)]) == [str(odd)]


def test_a_glob_that_matches_nothing_names_itself(tmp_path: Path) -> None:
    with pytest.raises(NoMatch) as caught:
        expand([str(tmp_path / "nights-*.jsonl")])
    assert caught.value.pattern == str(tmp_path / "nights-*.jsonl")
