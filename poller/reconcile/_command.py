"""`poller reconcile`: the argparse wiring around `reconcile_files` and the renderers."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Final

from poller.config.settings import load_toml
from poller.errors import PollerError
from poller.reconcile._files import reconcile_files
from poller.reconcile._render import Format, render
from poller.reconcile._vocabulary import (
    Vocabulary,
    VocabularyError,
    from_table,
    parse_mapping,
)

EXIT_USAGE: Final = 2
#: The keys `[reconcile]` may hold in the config file.
CONFIG_KEYS: Final = ("vocabulary", "token_column", "outcome_column")

DESCRIPTION: Final = (
    "Compare your own records (CSV with a header, or JSON Lines: a token and the outcome you "
    "recorded) with poller results files (per token the latest line wins, but a line written "
    "without a request, attempts 0, never beats one from the API). Categories: "
    "passed_not_passed (you recorded passed, Tencent says not passed), disagree, "
    "missing_in_ours, missing_in_results, not_final, agree; plus charges per day. Exit status: "
    "0 nothing disagrees or is missing, 1 something does (not_final too with "
    "--fail-on-not-final), 2 usage or input error."
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the `reconcile` arguments to `parser`."""
    parser.description = DESCRIPTION
    parser.add_argument(
        "--records",
        required=True,
        metavar="OURS",
        help="your records: CSV with a header or JSON Lines (by extension or content), or -",
    )
    parser.add_argument(
        "results", nargs="+", metavar="RESULTS", help="results files (JSON lines); globs allowed"
    )
    parser.add_argument("--token-column", metavar="NAME", help="default: token or SdkToken")
    parser.add_argument(
        "--outcome-column",
        metavar="NAME",
        help="default: the first of outcome, status, result, decision, verdict",
    )
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="WORD=STATUS",
        help="your word for a status, e.g. approved=passed (repeatable; wins over the config "
        "file's [reconcile.vocabulary] and the defaults)",
    )
    parser.add_argument(
        "--config", metavar="PATH", help="TOML file with a [reconcile] table (see README)"
    )
    parser.add_argument(
        "--mismatches",
        metavar="PATH",
        help="write every token that does not agree here as CSV, passed_not_passed first",
    )
    parser.add_argument(
        "--format",
        choices=[f.value for f in Format],
        default=Format.TEXT.value,
        help="the report on stdout: text (default), json, csv or markdown",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=20,
        metavar="N",
        help="tokens shown per category in the report (default 20; all in --mismatches)",
    )
    parser.add_argument(
        "--allow-missing-results",
        action="store_true",
        help="tokens of your records that no results file has yet do not make exit 1 (for a "
        "night that --stop-after cut short: the next run asks them); still reported",
    )
    parser.add_argument(
        "--fail-on-not-final",
        action="store_true",
        help="exit 1 when a token is not final yet too (default: not_final alone exits 0)",
    )


def _settings(args: argparse.Namespace) -> tuple[Vocabulary, str | None, str | None]:
    vocabulary = Vocabulary()
    token_column, outcome_column = args.token_column, args.outcome_column
    if args.config:
        table = load_toml(args.config).get("reconcile", {})
        where = f"config file {args.config}: [reconcile]"
        if not isinstance(table, dict):
            raise VocabularyError(f"{where} must be a table.")
        unknown = sorted(set(table) - set(CONFIG_KEYS))
        if unknown:
            raise VocabularyError(
                f"{where} has unknown key {unknown[0]!r}; known: {', '.join(CONFIG_KEYS)}."
            )
        if "vocabulary" in table:
            vocabulary = vocabulary.with_mappings(
                from_table(
                    table["vocabulary"], f"config file {args.config}: [reconcile.vocabulary]"
                )
            )
        for key in ("token_column", "outcome_column"):
            if key in table and not isinstance(table[key], str):
                raise VocabularyError(f"{where} {key} must be a string.")
        token_column = token_column or table.get("token_column")
        outcome_column = outcome_column or table.get("outcome_column")
    vocabulary = vocabulary.with_mappings(parse_mapping(text) for text in args.map)
    return vocabulary, token_column, outcome_column


def run_command(args: argparse.Namespace) -> int:
    """Run `poller reconcile`: 0 / 1 as the categories say, 2 (one sentence) on a usage or
    input problem."""
    status = EXIT_USAGE
    try:
        if args.limit < 0:
            raise VocabularyError(f"--limit must be 0 or more, got {args.limit}.")
        vocabulary, token_column, outcome_column = _settings(args)
        result = reconcile_files(
            args.records,
            args.results,
            vocabulary=vocabulary,
            token_column=token_column,
            outcome_column=outcome_column,
            mismatches=args.mismatches,
            sample=args.limit,
        )
        status = result.exit_status(
            fail_on_not_final=args.fail_on_not_final,
            allow_missing_results=args.allow_missing_results,
        )
        sys.stdout.write(render(result, args.format, exit_status=status))
        sys.stdout.flush()
    except PollerError as exc:
        print(f"poller: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return status
