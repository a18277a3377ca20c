"""`python -m bench.resume_probe [--earlier] PATH`: time `load_resume_state(PATH)` (or, with
`--earlier`, the earlier-runs index `load_earlier_results([PATH])`) in a process of its own, so
its peak RSS is the loader's; print `{"seconds": s, "lines": n, "entries": tokens final}`."""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    from poller.output.earlier import load_earlier_results
    from poller.output.resume import load_resume_state

    args = sys.argv[1:]
    started = time.perf_counter()
    if args[0] == "--earlier":
        state = load_earlier_results(args[1:]).state
    else:
        state = load_resume_state(args[0])
    seconds = time.perf_counter() - started
    report = {"seconds": seconds, "lines": state.lines, "entries": len(state.final_keys)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
