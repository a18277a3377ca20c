"""`python -m bench.resume_probe PATH`: time `poller.output.resume.load_resume_state(PATH)`
in a process of its own (so its peak RSS is the loader's), print `{"seconds": s, "entries": n}`."""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    from poller.output.resume import load_resume_state

    started = time.perf_counter()
    state = load_resume_state(sys.argv[1])
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "entries": state.lines}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
