"""The layout is the architecture: each stage imports only the stages beneath it.

Read bottom to top, the ranks below are the pipeline: configuration, tokens in, the API, lines
out, the work that joins them, then what watches it and what assembles a run. A module that
imports a stage above its own would hide a cycle the directory listing cannot show.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "poller"

# Lower imports nothing higher; equal ranks may import each other only within one package.
RANKS: dict[str, int] = {
    "poller.errors": 0,
    "poller.config": 1,
    "poller.input": 2,
    "poller.api": 3,
    "poller.simulator": 4,  # an edge: a stand-in for Tencent, it borrows the signer only
    "poller.output": 4,
    "poller.quota": 4,  # the shared schedule in Redis: below the pipeline that paces by it
    "poller.evidence": 4,  # the media behind an answer's links, kept: the pipeline archives by it
    "poller.pipeline": 5,
    "poller.observability": 6,
    "poller.report": 6,  # an edge: reads output files, never runs the pipeline
    "poller.reconcile": 6,  # an edge: the user's records against output files
    "poller.job": 7,
    "poller.polling": 7,
    "poller.cli": 8,
    "poller.demo": 8,
    "poller.__main__": 9,
    "poller": 9,  # the public names in poller/__init__.py
}
# Edges the pipeline never reaches into: only the command line and the demo wire them in.
EDGES = ("poller.simulator", "poller.report", "poller.reconcile")


def _unit(module: str) -> str:
    """The ranked unit a dotted module name belongs to (its longest ranked prefix)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in RANKS:
            return name
    raise AssertionError(f"{module} is in no stage of RANKS: give it one")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Every poller module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "poller")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "poller":
                continue
            for alias in node.names:  # `from poller import report` imports poller.report
                sub = f"{base}.{alias.name}"
                found.add(sub if _is_module(sub) else base)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_stage_above_its_own(path: Path) -> None:
    me = _unit(_module_name(path))
    for target in _imports(path):
        them = _unit(target)
        if them == me:
            continue
        assert RANKS[them] < RANKS[me], f"{_module_name(path)} ({me}) imports {target} ({them})"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_pipeline_never_reaches_into_the_edges(path: Path) -> None:
    me = _unit(_module_name(path))
    if me in EDGES or RANKS[me] >= RANKS["poller.cli"]:
        return
    for target in _imports(path):
        them = _unit(target)
        assert them == me or them not in EDGES, f"{_module_name(path)} imports {target}"


def test_the_layout_knows_every_module() -> None:
    for path in MODULES:
        _unit(_module_name(path))  # raises for a module outside every stage
