"""`python -m poller.simulator`: the simulator on its own, without the main CLI."""

from __future__ import annotations

import argparse
import sys

from .command import configure_parser, run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m poller.simulator",
        description="A local stand-in for Tencent Cloud FaceID (GetSdkVerificationResult and "
        "ApplySdkVerificationToken), for tests and benchmarks.",
    )
    configure_parser(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
