"""`poller` with a proposed fix applied in-process, to measure it before anyone edits the poller.

    python -m bench.variant no-trust-env run --tokens ...

`no-trust-env`: the poller's session uses `trust_env=True`, and aiohttp then re-reads the proxy
variables and tries ~/.netrc on every request, half of it in a thread-pool hop. This variant
turns it off (the loopback simulator needs no proxy) so the CPU table can show what resolving
the proxy once at start-up would save. Diagnostic only: `make bench` labels its row so.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

VARIANTS = ("no-trust-env",)


def _no_trust_env() -> None:
    import aiohttp

    original = aiohttp.ClientSession.__init__

    def init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        kwargs["trust_env"] = False
        original(self, *args, **kwargs)

    aiohttp.ClientSession.__init__ = init  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in VARIANTS:
        print(f"usage: python -m bench.variant {{{','.join(VARIANTS)}}} POLLER-ARGS...")
        return 2
    _no_trust_env()
    from poller.cli import main as poller_main

    return poller_main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
