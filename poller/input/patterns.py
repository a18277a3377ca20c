"""File names as a user gives them on a cron line: a path, or a quoted glob the command expands
itself (`'results/*.jsonl'`), so it works the same with or without a shell."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable


class NoMatch(ValueError):
    """A glob that matches no file: a misspelt directory must not silently read nothing. Each
    command says it in its own sentence."""

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.pattern = pattern


def expand(names: Iterable[str]) -> list[str]:
    """The files `names` stand for, in order: "-", a name that exists, or one without glob
    characters is itself (a missing one fails when it is read); a glob is its matches in name
    order. Raises `NoMatch` for a glob that matches nothing."""
    paths: list[str] = []
    for name in names:
        if name == "-" or not glob.has_magic(name) or os.path.lexists(name):
            paths.append(name)
            continue
        matched = sorted(glob.glob(name))
        if not matched:
            raise NoMatch(name)
        paths += matched
    return paths
