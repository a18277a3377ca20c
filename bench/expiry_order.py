"""`python -m bench.expiry_order N`: the memory and time of `--order expiry`'s store for N tokens.

N tokens of 36 characters with an issued_at spread over 72 h go into an `ExpiryOrder`, which
is then sorted. Printed: the bytes its buffers hold, the process's resident memory held after
collecting and its peak while sorting (RSS above the start, from /proc and getrusage: Linux),
and the seconds each step took. The README's figure for 5 M tokens comes from this.
"""

from __future__ import annotations

import random
import resource
import sys
import time

from poller.input.entries import TokenEntry
from poller.input.order import ExpiryOrder


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 1e6


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rng = random.Random(1)
    base = _rss_mb()
    store = ExpiryOrder()
    started = time.perf_counter()
    for i in range(n):
        token = f"{rng.getrandbits(128):032x}{i % 10_000:04d}"  # 36 characters
        store.add(TokenEntry(token, i + 1, 1.7e9 + rng.random() * 259_200))
    collected = time.perf_counter()
    held = _rss_mb() - base
    store.sort()
    done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3 - base  # KiB on Linux
    print(
        f"{n} tokens: buffers {store.nbytes() / 1e6:.0f} MB ({store.nbytes() / n:.0f} B each); "
        f"RSS held {held:.0f} MB ({held * 1e6 / n:.0f} B each), peak while sorting {peak:.0f} MB "
        f"({peak * 1e6 / n:.0f} B each); collect {collected - started:.1f} s (generating the "
        f"tokens included), sort {done - collected:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
