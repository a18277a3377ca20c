"""`poller evidence verify DEST`: flags in, one line per problem and a summary out.

Exit 0 when every stored file matches its manifest, 1 when one does not, 2 for a user error
(a DEST that does not exist, say): one sentence, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from poller.evidence.destination import (
    EvidenceUnavailable,
    is_object_store,
    local_path,
    open_store,
)
from poller.evidence.store import StoreError
from poller.evidence.verify import Problem, verify

EXIT_USAGE = 2


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = sub.add_parser(
        "verify",
        help="re-hash every stored file against its manifest; exit 0 if all match, else 1",
        description="Re-hash every file the manifests under DEST list, against them: report "
        "missing or altered files (exit 1), or that all match (exit 0).",
    )
    check.add_argument("dest", metavar="DEST", help="the --evidence directory or object-store URL")
    check.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="RESULTS",
        help="a results file of `poller run --evidence` (repeatable): every token whose latest "
        "line says files were kept must have a manifest listing them (finds a token directory "
        "deleted whole)",
    )
    check.add_argument("-q", "--quiet", action="store_true", help="only problems, no summary")


def run_command(args: argparse.Namespace) -> int:
    dest: str = args.dest
    if not is_object_store(dest):
        try:
            path = local_path(dest)
        except ValueError as exc:
            print(f"poller: error: {exc}.", file=sys.stderr)
            return EXIT_USAGE
        if not os.path.isdir(os.path.expanduser(path)):
            print(f"poller: error: {dest} is not a directory.", file=sys.stderr)
            return EXIT_USAGE
    try:
        return asyncio.run(_verify(dest, quiet=args.quiet, against=args.against))
    except (StoreError, EvidenceUnavailable) as exc:
        print(f"poller: error: {str(exc).rstrip('.')}.", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("poller: interrupted; nothing was changed.", file=sys.stderr)
        return 130


async def _verify(dest: str, *, quiet: bool, against: list[str]) -> int:
    store = open_store(dest)

    def show(problem: Problem) -> None:
        print(problem.line(), flush=True)

    try:
        result = await verify(store, on_problem=show, against=against)
    finally:
        await store.close()
    if not quiet:
        print(result.summary(), file=sys.stderr if not result.ok else sys.stdout)
    return 0 if result.ok else 1
