"""The `simulate` subcommand: flags -> SimulatorConfig -> a server that runs until a signal.

The main CLI adds these flags to its own subparser (`configure_parser`) and calls `run_command`;
`python -m poller.simulator` does the same on a parser of its own. A user error (a bad flag
value, a port in use) is one sentence on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path

from .config import (
    DEMO_SECRET_ID,
    DEMO_SECRET_KEY,
    FAULT_KINDS,
    MEDIA_FAULT_KINDS,
    SimulatorConfig,
)
from .server import running_simulator

_DEFAULTS = SimulatorConfig()  # the one place defaults live; the help text quotes them
EXIT_USAGE = 2


class CommandError(Exception):
    """A user error worth one sentence: no traceback."""


def _number(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            return kind(text)
        except ValueError:
            name = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None

    return parse


def _kind_list(known: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        kinds = tuple(part.strip() for part in text.split(",") if part.strip())
        unknown = [kind for kind in kinds if kind not in known]
        if unknown or not kinds:
            raise argparse.ArgumentTypeError(
                f"unknown fault kind(s) {', '.join(unknown) or '(none)'}; "
                f"choose from {','.join(known)}"
            )
        return kinds

    return parse


_fault_list = _kind_list(FAULT_KINDS)
_media_fault_list = _kind_list(MEDIA_FAULT_KINDS)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add every simulator flag to `parser`: a subparser of the main CLI, or a parser of its own."""
    d = _DEFAULTS
    add = parser.add_argument
    integer, number = _number(int), _number(float)
    add("--host", default=d.host, help=f"address to bind (default {d.host})")
    add("--port", type=integer, default=d.port, help="port to bind; 0 = any free port (default)")
    add("--port-file", type=Path, help="write the bound port to this file once listening")
    add("--secret-id", help="accepted SecretId (default $TENCENTCLOUD_SECRET_ID, else demo id)")
    add("--secret-key", help="its SecretKey (default $TENCENTCLOUD_SECRET_KEY, else demo key)")
    add("--seed", type=integer, default=d.seed, help=f"seed of every draw (default {d.seed})")
    add("--rate", type=number, default=d.rate, help=f"quota per action per second ({d.rate:g})")
    add("--pass-share", type=number, default=d.pass_share, help=f"share passing ({d.pass_share})")
    add(
        "--pending-share",
        type=number,
        default=d.pending_share,
        help=f"share of tokens that are pending first (default {d.pending_share})",
    )
    add(
        "--pending-seconds",
        type=number,
        default=d.pending_seconds,
        help=f"how long pending tokens stay pending (default {d.pending_seconds:g})",
    )
    add(
        "--token-ttl-seconds",
        type=number,
        default=d.token_ttl_seconds,
        help=f"token lifetime (default {d.token_ttl_seconds:g} = 72 h)",
    )
    add(
        "--clock-offset",
        type=number,
        default=d.clock_offset,
        help="seconds added to 'now' for token age only (not for signatures)",
    )
    add("--any-token", action="store_true", help="accept any token; outcome from its hash")
    add(
        "--no-auth",
        dest="check_signatures",
        action="store_false",
        help="accept unsigned requests (only for the benchmark's bare-HTTP floor)",
    )
    add("--latency-ms", type=number, default=d.latency_ms, help="median latency (default 0)")
    add(
        "--pre-jitter-ms",
        type=number,
        default=d.pre_jitter_ms,
        help="+- spread of the pre-quota network leg (default 25%% of half the latency)",
    )
    add("--fault-rate", type=number, default=d.fault_rate, help="share of faulted queries (0)")
    add(
        "--faults",
        type=_fault_list,
        default=d.faults,
        help=f"comma list of fault kinds (default all: {','.join(FAULT_KINDS)})",
    )
    add(
        "--unknown-code-share",
        type=number,
        default=d.unknown_code_share,
        help="share of tokens answered with --unknown-code instead of their result (default 0)",
    )
    add(
        "--unknown-code",
        default=d.unknown_code,
        help=f"an API error code the poller's table does not list (default {d.unknown_code})",
    )
    add(
        "--throttle-share",
        type=number,
        default=d.throttle_share,
        help="share of result queries answered RequestLimitExceeded, as if another client "
        "spent the quota (default 0)",
    )
    add(
        "--request-log-size",
        type=integer,
        default=d.request_log_size,
        help="keep the last N request arrivals (time, action, token) for GET /__log (default 0)",
    )
    add(
        "--stall-seconds",
        type=number,
        default=d.stall_seconds,
        help=f"how long a 'stall' fault holds the answer (default {d.stall_seconds:g})",
    )
    add(
        "--media-ttl",
        type=number,
        default=d.media_ttl,
        help=f"seconds a media link stays valid after the answer (default {d.media_ttl:g})",
    )
    add(
        "--media-scale",
        type=number,
        default=d.media_scale,
        help="media sizes as a multiple of Tencent's example, about 12 MB a token "
        f"(default {d.media_scale:g})",
    )
    add(
        "--media-faults",
        type=_media_fault_list,
        default=d.media_faults,
        help=f"comma list of media fault kinds (default all: {','.join(MEDIA_FAULT_KINDS)})",
    )
    add(
        "--media-fault-rate",
        type=number,
        default=d.media_fault_rate,
        help=f"share of faulted media downloads (default {d.media_fault_rate:g})",
    )
    add(
        "--media-fail-first",
        type=integer,
        default=d.media_fail_first,
        help=f"fault the first N downloads of every file (default {d.media_fail_first})",
    )
    add(
        "--media-slow-seconds",
        type=number,
        default=d.media_slow_seconds,
        help="how long a 'slow' media fault stalls halfway through the body "
        f"(default {d.media_slow_seconds:g})",
    )


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> SimulatorConfig:
    """Flags first, then the environment, then the demo pair; raises ValueError on bad values."""
    secret_id = args.secret_id or environ.get("TENCENTCLOUD_SECRET_ID") or DEMO_SECRET_ID
    secret_key = args.secret_key or environ.get("TENCENTCLOUD_SECRET_KEY") or DEMO_SECRET_KEY
    if (secret_id == DEMO_SECRET_ID) != (secret_key == DEMO_SECRET_KEY):
        raise ValueError("give both a secret id and a secret key, or neither for the demo pair")
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        secret_id=secret_id,
        secret_key=secret_key,
        seed=args.seed,
        rate=args.rate,
        pass_share=args.pass_share,
        pending_share=args.pending_share,
        pending_seconds=args.pending_seconds,
        token_ttl_seconds=args.token_ttl_seconds,
        clock_offset=args.clock_offset,
        any_token=args.any_token,
        check_signatures=args.check_signatures,
        latency_ms=args.latency_ms,
        pre_jitter_ms=args.pre_jitter_ms,
        fault_rate=args.fault_rate,
        faults=tuple(args.faults),
        stall_seconds=args.stall_seconds,
        unknown_code_share=args.unknown_code_share,
        unknown_code=args.unknown_code,
        throttle_share=args.throttle_share,
        request_log_size=args.request_log_size,
        media_ttl=args.media_ttl,
        media_scale=args.media_scale,
        media_faults=tuple(args.media_faults),
        media_fault_rate=args.media_fault_rate,
        media_fail_first=args.media_fail_first,
        media_slow_seconds=args.media_slow_seconds,
    )


def run_command(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 on a clean stop, 2 on a user error."""
    try:
        config = config_from_args(args, os.environ)
        asyncio.run(_serve(config, args.port_file))
    except (ValueError, CommandError) as exc:
        print(f"simulate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


async def _serve(config: SimulatorConfig, port_file: Path | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with AsyncExitStack() as stack:
            try:
                sim = await stack.enter_async_context(running_simulator(config))
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise CommandError(
                    f"cannot listen on {config.host}:{config.port}: {reason}"
                ) from None
            print(f"listening on {sim.endpoint}", flush=True)
            if port_file is not None:
                _write_atomically(port_file, f"{sim.port}\n")
            await stop.wait()
            stats = sim.stats()
            print(
                f"simulator stopped: {stats['requests']} requests, {stats['throttled']} throttled, "
                f"{stats['tokens_minted']} tokens minted, max {stats['max_in_window']} "
                "GetSdkVerificationResult in one second",
                file=sys.stderr,
                flush=True,
            )
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _write_atomically(path: Path, text: str) -> None:
    """Temp file + rename: a reader polling for the file never sees it half written."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise CommandError(f"cannot write the port file {path}: {exc.strerror or exc}") from None
