"""`python -m bench.resume_probe PATH`: time `poller.resume.load_resume_state(PATH)` in a process
of its own (so its peak RSS is the loader's), print `{"seconds": s, "entries": n}`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> int:
    from poller.resume import load_resume_state  # type: ignore[import-not-found,unused-ignore]

    path = Path(sys.argv[1])
    started = time.perf_counter()
    state = load_resume_state(path)
    seconds = time.perf_counter() - started
    try:
        entries: int | None = len(state)
    except TypeError:
        entries = None
    print(json.dumps({"seconds": seconds, "entries": entries}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
