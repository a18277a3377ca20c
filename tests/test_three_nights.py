"""Three nights in a row against the simulator, each with its own output file and
`--skip-final-in` over the earlier nights' files (SPEC §9): a night spends requests only on
tokens that are new or still unfinished, and the simulator's own request log proves it.

The simulator's clock is moved an hour between nights, so tokens pending on night 1 have
settled by night 2; tokens answered with a code the poller does not know stay `error` and are
asked every night. One attempt per token and no in-run re-checks make the count exact: a
token asked on a night is exactly one request that night.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from poller.simulator import SimulatorConfig, running_simulator
from tests.e2e import DEMO_ENV, records, run_poller
from tests.model_support import RESULT_ACTION

ENV = {
    **DEMO_ENV,
    "FACEID_POLLER_MAX_ATTEMPTS": "1",  # an `error` stays an error until the next night
    "FACEID_POLLER_MAX_PENDING_WAIT": "0",  # a pending token is not re-checked within a night
    "FACEID_POLLER_BREAKER_THRESHOLD": "0",
    "FACEID_POLLER_RATE": "1000",
}
ENV = {k: v for k, v in ENV.items() if k != "FACEID_POLLER_SKIP_FINAL_IN"}
HOUR = 3600.0


async def test_each_night_asks_only_what_earlier_nights_left_unsettled(tmp_path: Path) -> None:
    shift = [0.0]
    config = SimulatorConfig(
        rate=1000,
        seed=11,
        pending_share=0.3,
        pending_seconds=HOUR / 2,
        unknown_code_share=0.15,
        check_signatures=False,  # its clock moves by hours; the poller's signature cannot
        request_log_size=10_000,
    )
    async with running_simulator(config, clock=lambda: time.time() + shift[0]) as sim:
        batches = [sim.mint(40), sim.mint(20), sim.mint(20)]
        settled: set[str] = set()  # final in some night's file so far
        outputs: list[Path] = []
        seen_requests = 0
        for night, _ in enumerate(batches, start=1):
            tokens = [t for batch in batches[:night] for t in batch]
            path = tmp_path / f"tokens-{night}.txt"
            path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
            out = tmp_path / f"night-{night}.jsonl"
            skip = [arg for earlier in outputs for arg in ("--skip-final-in", str(earlier))]
            if night == 3:
                skip = ["--skip-final-in", str(tmp_path / "night-[12].jsonl")]  # a glob works
            argv = ["run", "--tokens", str(path), "--output", str(out), "--endpoint", sim.endpoint]
            code, _, err = await run_poller(*argv, *skip, env=ENV)
            assert code in (0, 1), err

            log = sim.request_log()[seen_requests:]
            seen_requests += len(log)
            asked = Counter(r.token for r in log if r.action == RESULT_ACTION)
            expected = [t for t in tokens if t not in settled]
            assert asked == Counter(expected), f"night {night}"  # each once, nothing else
            lines = records(out)
            assert sorted(line["token"] for line in lines) == sorted(expected)
            skipped = len(tokens) - len(expected)
            assert f"final in an earlier run {skipped}," in err

            unfinished = {line["token"] for line in lines if not line["final"]}
            assert {line["status"] for line in lines if not line["final"]} <= {"pending", "error"}
            if night == 1:
                assert {line["status"] for line in lines} >= {"pending", "error", "passed"}
                night1_unfinished = unfinished
            settled |= {line["token"] for line in lines if line["final"]}
            outputs.append(out)
            shift[0] += HOUR  # the night passes: pending tokens settle

    night2_asked = {line["token"] for line in records(outputs[1])}
    assert night1_unfinished <= night2_asked  # pending and error lines were asked again
    # Pending ones settled by night 2; unknown codes stay errors and are asked every night.
    night2 = {line["token"]: line for line in records(outputs[1])}
    assert any(night2[t]["final"] for t in night1_unfinished)
    assert all(night2[t]["status"] == "error" for t in night1_unfinished if not night2[t]["final"])
