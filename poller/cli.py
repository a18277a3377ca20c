"""Command line: argument parsing only; the work happens in the package below."""

from __future__ import annotations

import argparse
import functools
import itertools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

from poller.config.redis_address import parse_address
from poller.config.settings import INPUT_FORMATS, ORDERS, InputFormat, build_settings
from poller.errors import PollerError
from poller.input.plan import format_plan
from poller.input.tokens import (
    InputItem,
    estimate_entries,
    is_regular_file,
    read_tokens,
)
from poller.job import plan_batch, run_batch
from poller.observability.logs import LogFormat, register_secret, setup_logging
from poller.pipeline.stats import RunStats, format_summary

log = logging.getLogger("poller")

EXIT_USAGE = 2


class UserError(PollerError):
    """Something the user can fix; printed as one sentence, exit 2."""


def _add_run_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="query every token in a file and write one JSON line per token",
        description=(
            "Query GetSdkVerificationResult for every token in --tokens and write one JSON "
            "line per token to --output. Settings come from --config (TOML), then "
            "FACEID_POLLER_* environment variables, then these flags (flags win). Credentials: "
            "TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY (and TENCENTCLOUD_TOKEN), else the "
            "config file, else ~/.tencentcloud/credentials. Exit status: 0 every token final, "
            "1 some not final (or --stop-after reached), 2 usage/config/input error, 3 a fatal API "
            "error stopped the run, 4 "
            "the output or input (or the --shared-quota Redis) failed mid-run, "
            "130/143 interrupted."
        ),
    )
    p.add_argument("--tokens", required=True, metavar="PATH", help="token file, or - for stdin")
    p.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        help="input format (default: by extension: .csv, .jsonl/.ndjson, else plain text)",
    )
    p.add_argument("--output", default="-", metavar="PATH", help="JSON-lines output (default -)")
    p.add_argument("--config", metavar="PATH", help="TOML settings file (see config.example.toml)")
    p.add_argument(
        "--endpoint", help="API endpoint (default https://faceid.intl.tencentcloudapi.com)"
    )
    p.add_argument("--region", help="X-TC-Region (default ap-singapore)")
    p.add_argument("--language", help="X-TC-Language: en-US or zh-CN")
    p.add_argument("--rate", type=float, help="the account's quota in requests/s (default 20)")
    p.add_argument(
        "--rate-margin", type=float, help="pace this fraction under the quota (default 0.05)"
    )
    p.add_argument("--concurrency", type=int, help="requests in flight at most (default 32)")
    p.add_argument(
        "--max-attempts", type=int, help="attempts per token, retries included (default 6)"
    )
    p.add_argument(
        "--max-throttled-attempts",
        type=int,
        help="throttled attempts per token (they spare --max-attempts and the retry budget; "
        "default 30)",
    )
    p.add_argument(
        "--breaker-threshold",
        type=int,
        help="stop the run (exit 3) after this many tokens in a row end with the same unknown "
        "code or outlast their retries (default 50; 0 = off)",
    )
    p.add_argument("--timeout", type=float, help="seconds per request (default 10)")
    p.add_argument(
        "--detail",
        choices=("full", "summary"),
        help="summary leaves out `response` (the personal data) from every line",
    )
    p.add_argument(
        "--recheck-after", type=float, help="seconds before asking about a pending token again"
    )
    p.add_argument(
        "--max-pending-wait",
        type=float,
        help="seconds a pending token is re-checked within the run (then a `pending` line)",
    )
    p.add_argument(
        "--max-token-age",
        type=float,
        help="seconds after issued_at a token is expired without a call (default 259200 = 72 h)",
    )
    p.add_argument(
        "--grace-period",
        type=float,
        help="on SIGINT/SIGTERM, seconds in-flight requests get to finish (default 10)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start over instead of resuming from --output (refuses an existing file without "
        "--force)",
    )
    p.add_argument("--force", action="store_true", help="with --fresh: empty an existing output")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="read and check the input and settings, print the plan; make no request",
    )
    p.add_argument(
        "--skip-final-in",
        action="append",
        metavar="PATH",
        help="an earlier run's output (repeatable; a glob is fine): tokens final there are not "
        "asked again and get no line (pending and error lines there are asked again)",
    )
    p.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="write Prometheus text metrics here (atomically, every 15 s and at exit), "
        "e.g. for node_exporter's textfile collector",
    )
    p.add_argument(
        "--log-format", choices=("text", "json"), help="stderr log format (default text)"
    )
    p.add_argument(
        "--progress-interval",
        type=float,
        metavar="SECONDS",
        help="when stderr is not a terminal (cron), one progress line this often (default 60)",
    )
    p.add_argument(
        "--stop-after",
        metavar="DURATION",
        help="end the run cleanly this long after it started (90m, 4s, 1h30m, 2h): as on "
        "SIGINT no new request leaves, those on the wire get --grace-period, whole lines; "
        "exit 1, and the next run on the same output resumes the rest",
    )
    p.add_argument(
        "--shared-quota",
        metavar="URL",
        help="share the account's quota with other pollers and your backend through one "
        "schedule in Redis: redis://HOST:6379/0, rediss:// for TLS, redis://:PASSWORD@HOST/0 "
        "(better in FACEID_POLLER_SHARED_QUOTA or the config file than on a command line)",
    )
    p.add_argument(
        "--max-share",
        type=float,
        metavar="F",
        help="take at most this fraction of the quota (e.g. 0.75), leaving the rest to other "
        "users of the account (default 1)",
    )
    p.add_argument(
        "--shared-quota-timeout",
        metavar="DURATION",
        help="with --shared-quota: how long to wait for a lost Redis before stopping (exit 4; "
        "the next run resumes); no request is sent without a slot meanwhile (default 60s)",
    )
    p.add_argument(
        "--recovery-hold",
        metavar="DURATION",
        help="after RequestLimitExceeded lowers the pace, hold it this long without a throttle "
        "before climbing back (default 1s; doubles, up to 2x, while throttles keep coming)",
    )
    p.add_argument(
        "--recovery-ramp",
        metavar="DURATION",
        help="then climb back to the full pace over this long (default 1.5s)",
    )
    p.add_argument(
        "--evidence",
        metavar="DEST",
        help="keep the verification media (SPEC §8) before their 10-minute links expire: a "
        "directory, or s3://bucket/prefix (gs://, az://); files checked against their MD5 and "
        "size, stored write-once under DEST/<token>/ with a manifest",
    )
    p.add_argument(
        "--evidence-fields",
        metavar="F,F",
        help="which FileInfo fields to keep (default all, ~12 MB a token): CardVideo, "
        "CardImage, CardInfoOcrJson, LiveData, LiveVideo, ActionVideo, BestFrame, "
        "ProfileImage, CardInfoInputJson",
    )
    p.add_argument(
        "--evidence-concurrency",
        type=int,
        metavar="N",
        help="downloads at once, on their own connections (default 16)",
    )
    p.add_argument(
        "--order",
        choices=ORDERS,
        help="input (default), or expiry: oldest issued_at first (undated last, in input "
        "order); reads the whole input first and holds the tokens to query in memory, about "
        "60 bytes each for 36-character tokens (~0.3 GB for 5 M, ~0.7 GB at the sort's peak)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress and no summary; only problems"
    )


LAZY_COMMANDS = {
    "simulate": "serve the embedded FaceID simulator on 127.0.0.1 (for trials, tests, benchmarks)",
    "report": "totals, charges, unfinished tokens and risk view of results files; diff two runs",
    "reconcile": "compare your own records with results files: disagreements, gaps, charges",
    "evidence": "the evidence archive: `verify DEST` re-hashes kept files against their manifests",
}
REPORT_DESCRIPTION = (
    "Read results files (JSON lines written by `poller run`; quoted patterns are expanded) and "
    "report totals by status and result code, total charge_count, the pass rate, the tokens "
    "that are not final and a risk view (device levels, suspected attacks, edited passes, the "
    "--top N riskiest tokens); the line with the latest checked_at wins per token; "
    "--against OLDER shows what changed between two runs."
)


def _run_lazy(name: str, rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"poller {name}", description=LAZY_COMMANDS[name])
    if name == "simulate":
        from poller.simulator import command as simulator_command

        simulator_command.configure_parser(parser)
        return simulator_command.run_command(parser.parse_args(rest))
    if name == "evidence":
        from poller.evidence import command as evidence_command

        evidence_command.configure_parser(parser)
        return evidence_command.run_command(parser.parse_args(rest))
    if name == "reconcile":
        from poller import reconcile as reconcile_command

        reconcile_command.configure_parser(parser)
        return reconcile_command.run_command(parser.parse_args(rest))

    from poller import report as report_command

    parser.description = REPORT_DESCRIPTION
    report_command.configure_parser(parser)
    return report_command.run_command(parser.parse_args(rest))


RUN_FLAGS = (
    "endpoint",
    "region",
    "language",
    "rate",
    "rate_margin",
    "concurrency",
    "max_attempts",
    "max_throttled_attempts",
    "breaker_threshold",
    "timeout",
    "detail",
    "input_format",
    "recheck_after",
    "max_pending_wait",
    "max_token_age",
    "grace_period",
    "metrics_file",
    "skip_final_in",
    "log_format",
    "progress_interval",
    "stop_after",
    "order",
    "shared_quota",
    "max_share",
    "shared_quota_timeout",
    "recovery_hold",
    "recovery_ramp",
    "evidence",
    "evidence_fields",
    "evidence_concurrency",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poller",
        description="Fetch Tencent Cloud FaceID verification results in bulk.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_parser(sub)
    # `simulate` and `report` load their modules (aiohttp.web, the renderers) only when used,
    # so `poller run` starts faster: the rest of their command line is parsed by them.
    for name, text in LAZY_COMMANDS.items():
        lazy = sub.add_parser(name, help=text, add_help=False)
        lazy.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _open_input(path: str, fmt: InputFormat | None) -> Iterator[InputItem]:
    """Open the input and read its first item now, so a whole-file problem is exit 2."""
    items = read_tokens(path, fmt)
    first = next(items, None)
    return items if first is None else itertools.chain([first], items)


def cmd_run(args: argparse.Namespace) -> int:
    # Until the run installs its own handlers, SIGTERM (a scheduler stopping the job while it
    # loads a resume file, say) ends it like Ctrl-C does: one sentence, not a silent kill.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run_command(args)
    finally:
        # Put back what was there, unless the run left SIGTERM ignored for its exit.
        if signal.getsignal(signal.SIGTERM) is _terminate:
            signal.signal(signal.SIGTERM, previous)


def _run_command(args: argparse.Namespace) -> int:
    if args.evidence is not None and not args.evidence.strip():
        # `--evidence "$DEST"` with DEST unset: a night that keeps nothing must not look fine.
        raise UserError("--evidence needs a destination (a directory or s3://bucket/prefix).")
    flags = {name: getattr(args, name) for name in RUN_FLAGS}
    settings, warnings = build_settings(config_path=args.config, flags=flags, env=os.environ)
    # Checked by the settings to be one of the two.
    setup_logging(args.verbose, args.quiet, cast(LogFormat, settings.log_format))
    if settings.credentials is not None:
        # Defence in depth: even a log call that should never carry a secret cannot leak it.
        register_secret(settings.credentials.secret_key)
        if settings.credentials.session_token:
            register_secret(settings.credentials.session_token)
    if settings.shared_quota:
        for secret in parse_address(settings.shared_quota).secrets:
            register_secret(secret)
    for warning in warnings:
        log.warning("warning: %s", warning)
    input_format = cast(InputFormat | None, settings.input_format or None)
    items = _open_input(args.tokens, input_format)
    # The bar's total comes from a second read of the input, so only where a second read
    # cannot take tokens away from the run: a regular file. Anything else has no total.
    count_entries: Callable[[], int | None] | None = None
    # A second read of the input, for the deadline line at the start and to count what a
    # --stop-after deadline leaves: again only a regular file.
    reread: Callable[[], Iterator[InputItem]] | None = None
    if is_regular_file(args.tokens):
        count_entries = functools.partial(estimate_entries, args.tokens, input_format)
        reread = functools.partial(read_tokens, args.tokens, input_format)
    if args.dry_run:
        plan = plan_batch(items, args.output, settings, fresh=args.fresh)
        if sys.stdout is None:  # started with `>&-`: the plan would vanish without a word
            raise UserError("standard output is closed, so the plan cannot be shown.")
        print(format_plan(plan, settings, tokens=args.tokens, output=args.output))
        return 0
    # The lock, --fresh, resuming and the sink are the library's path too (poller/job.py).
    # (Named `engine` for the summary line below: it carries the run's stats and pacer.)
    engine = run_batch(
        items,
        args.output,
        settings,
        fresh=args.fresh,
        force=args.force,
        progress=not args.quiet,
        handle_signals=True,
        count_entries=count_entries,
        reread=reread,
    )
    stats: RunStats = engine.stats
    if not args.quiet:
        # A person at a terminal gets a table; cron (and grep) the one `summary:` line.
        summary = format_summary(stats, engine.pacer, terminal=sys.stderr.isatty())
        print(summary, file=sys.stderr)
    if stats.fatal is not None and stats.fatal.breaker:
        print(
            f"poller: error: the circuit breaker stopped the run: {stats.fatal.message}.",
            file=sys.stderr,
        )
    elif stats.fatal is not None:
        print(
            f"poller: error: the run stopped on {stats.fatal.code}: {stats.fatal.message} "
            "(every other token would fail the same way).",
            file=sys.stderr,
        )
    if stats.local_error is not None:
        kept = (
            "the lines written so far are kept and the next run resumes from them"
            if engine.resumable
            else "the lines already written are all there is of this run"
        )
        print(f"poller: error: the run stopped: {stats.local_error}; {kept}.", file=sys.stderr)
    skipped = stats.skipped_final or stats.final_earlier or stats.duplicates
    if stats.tokens == 0 and not (skipped or stats.stopped_by):
        # An empty night is legal, but from cron it looks just like a failed export.
        log.warning("warning: the input held no tokens: nothing was queried")
    return stats.exit_status()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if sys.stderr is None:
        # Started with stderr closed (`2>&-`): `print(file=sys.stderr)` would fall back to
        # stdout and put the summary into the JSON lines. Messages go nowhere instead.
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    if argv and argv[0] in LAZY_COMMANDS:
        # Their own parsers take everything after the command word, --help included.
        return _run_lazy(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        parser.error(f"unknown command {args.command}")
    except PollerError as exc:  # ConfigError, InputError, ResumeError, OutputFileError, ...
        print(f"poller: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyboardInterrupt, _Terminated) as exc:
        # A signal outside the run's own handling (while reading a huge resume file, or a
        # FIFO whose writer has not opened it yet): lines are written whole, so whatever is
        # in the output stays usable.
        print(
            "poller: interrupted; lines already written are kept and the next run resumes.",
            file=sys.stderr,
        )
        return 143 if isinstance(exc, _Terminated) else 130
    return EXIT_USAGE


class _Terminated(BaseException):
    """SIGTERM before (or after) the run's own signal handling: exit 143 in one sentence."""


def _terminate(_signum: int, _frame: object) -> None:
    raise _Terminated


def _exit(code: int) -> None:
    """Exit; with a reader thread still blocked on the input (a stop while stdin waits for
    data) or a writer thread stuck on a reader that stopped reading (a hard stop), skip
    interpreter finalisation, which would deadlock on that thread's I/O lock."""
    alive = {t.name for t in threading.enumerate() if t.is_alive()}
    if alive & {"poller-reader", "poller-writer"}:
        if "poller-writer" not in alive:  # a stuck writer holds stdout's lock: leave it be
            sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def entry_point() -> None:
    _exit(main())


if __name__ == "__main__":
    entry_point()
