"""Contention: another client spends part of the quota for a while, then stops (issue 14).

One real `poller run` (default settings: `--rate 20`, 5% margin, so a 19/s pace) against a fresh
strict simulator (`--rate 20 --latency-ms 40`, pending tokens off, every arrival logged with its
token). Meanwhile "another client" in this process (asyncio, the poller's own signer through
`FaceIdClient`, the same demo credentials, tokens of its own) sends GetSdkVerificationResult
requests evenly spaced at R req/s, from `start` s after the poller's first request reached the
simulator, for `seconds` s, then stops. Its requests are sent on their due time whatever the
answers are (a task each), as a client that does not know about this poller would.

From the simulator's request log (arrival times on CLOCK_MONOTONIC, one clock for every
process, and tokens: whose each request is) and its counters:

- the poller's requests, and its throttled ones: the simulator's RequestLimitExceeded answers
  (`/__stats` throttled) less the other client's, which it counts from the answers it got. The
  share of the poller's requests that were throttled is held to <= 5%.
- recovery: from the other client's last request until the poller's rate over a trailing 1 s
  window is back at >= 90% of its 19/s pace (>= 17.1 requests in the window) and stays there for
  at least 2 s; held to <= 5 s.
- quota use: the poller's admitted requests / (20 x its span, first to last arrival), beside
  what the other client left it (19/s outside the contention, 20 - R while the other ran; a
  poller that takes slots the other client is then refused can exceed it).
- below target pace: the poller's own summary line.

    python -m bench contention           # this measurement alone (~75 s)
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.model import ACTION, PACED, QUOTA, Section, Sizes, Table, Target
from bench.procs import (
    ChildResult,
    PollerSummary,
    Simulator,
    add_run,
    check_exit,
    parse_summary,
    poller_run,
    run_child,
    scratch,
    simulator,
    write_tokens,
)
from bench.shared import request_log
from poller.api.client import FaceIdClient
from poller.api.reply import TransportFault
from poller.config.credentials import Credentials
from poller.config.settings import Settings
from poller.simulator import DEMO_SECRET_ID, DEMO_SECRET_KEY

LATENCY_MS = 40.0
LOG_SIZE = 200_000
SIMULATOR_FLAGS = (
    "--any-token", "--rate", f"{QUOTA:g}", "--latency-ms", f"{LATENCY_MS:g}",
    "--request-log-size", str(LOG_SIZE),
)  # fmt: skip
OTHER_RATES = (8.0, 15.0)  # the example, and a heavy one (the old pace hit the floor)
RECOVERED = 0.9  # of the paced rate, over a trailing 1 s window ...
STAYS = 2.0  # ... and staying there this long
TARGET_RECOVERY = 5.0  # seconds from the other client's last request
TARGET_THROTTLED = 0.05  # of the poller's requests
STEP = 0.01  # the grid the trailing-window rate is read on, seconds
OTHER_PREFIX = "other-client-"
THROTTLED = "RequestLimitExceeded"


@dataclass(frozen=True, slots=True)
class ContentionCase:
    other_rate: float
    tokens: int  # the poller's
    start: float  # the other client starts this long after the poller's first request ...
    seconds: float  # ... and sends for this long

    @property
    def name(self) -> str:
        return f"other client {self.other_rate:g} req/s"

    @property
    def other_requests(self) -> int:
        return round(self.other_rate * self.seconds)


@dataclass(frozen=True, slots=True)
class OtherClient:
    """What the other client sent and got back (its own view)."""

    sent: int
    throttled: int
    failed: int  # no API answer at all (transport), or an error other than a throttle


@dataclass(frozen=True, slots=True)
class ContentionResult:
    case: ContentionCase
    poller: tuple[float, ...]  # the poller's arrivals at the simulator, monotonic, in order
    other: tuple[float, ...]  # the other client's
    throttled: int  # the poller's requests the simulator answered RequestLimitExceeded
    other_client: OtherClient
    max_in_window: int
    summary: PollerSummary
    child: ChildResult
    simulator_argv: tuple[str, ...]

    @property
    def requests(self) -> int:
        return len(self.poller)

    @property
    def admitted(self) -> int:
        return self.requests - self.throttled

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0

    @property
    def span(self) -> float:
        return self.poller[-1] - self.poller[0] if len(self.poller) > 1 else 0.0

    @property
    def quota_use(self) -> float:
        """The poller's admitted requests over the quota across its whole run."""
        return self.admitted / (QUOTA * self.span) if self.span > 0 else 0.0

    @property
    def other_admitted(self) -> int:
        return len(self.other) - self.other_client.throttled

    @property
    def quota_use_both(self) -> float:
        return (self.admitted + self.other_admitted) / (QUOTA * self.span) if self.span else 0.0

    @property
    def contention(self) -> float:
        """How long the other client was sending, by its arrivals."""
        return self.other[-1] - self.other[0] if len(self.other) > 1 else 0.0

    @property
    def left_use(self) -> float:
        """What the other client's R/s left the poller: its pace outside the contention, the
        rest of the quota (at most its pace) while the other client ran."""
        if self.span <= 0:
            return 0.0
        busy = min(self.contention, self.span)
        spare = min(PACED, QUOTA - self.case.other_rate)
        return (PACED * (self.span - busy) + spare * busy) / (QUOTA * self.span)

    @property
    def recovery(self) -> float | None:
        """Seconds from the other client's last request until the poller is back (None: the
        run ended first)."""
        if not self.other:
            return None
        return recovery_seconds(self.poller, self.other[-1])

    def per_second(self, arrivals: Sequence[float]) -> list[int]:
        """Arrivals in each whole second from the poller's first request."""
        seconds = int(self.span) + 1
        counts = [0] * seconds
        for t in arrivals:
            i = int(t - self.poller[0])
            if 0 <= i < seconds:
                counts[i] += 1
        return counts


def in_window(arrivals: Sequence[float], at: float, width: float = 1.0) -> int:
    """Arrivals in the trailing window (at - width, at]."""
    return bisect.bisect_right(arrivals, at) - bisect.bisect_right(arrivals, at - width)


def recovery_seconds(
    arrivals: Sequence[float],
    since: float,
    *,
    floor: float = RECOVERED * PACED,
    stays: float = STAYS,
    step: float = STEP,
) -> float | None:
    """The first moment from `since` on (on a `step` grid) when the trailing 1 s window holds at
    least `floor` of `arrivals` and keeps holding that many for `stays` seconds, as seconds
    after `since`; None if the arrivals end before that is seen."""
    if not arrivals:
        return None
    last = arrivals[-1]
    steps = round(stays / step)
    run = 0  # consecutive grid points at or above the floor
    k = 0
    while True:
        at = since + k * step
        if at > last:
            return None
        if in_window(arrivals, at) >= floor:
            run += 1
            if run > steps:
                return (k - steps) * step
        else:
            run = 0
        k += 1


def _other_tokens(case: ContentionCase) -> list[str]:
    return [f"{OTHER_PREFIX}{case.other_rate:g}-{k:05d}" for k in range(case.other_requests)]


async def _first_arrival(
    sim: Simulator, session: aiohttp.ClientSession, poller: asyncio.Future[ChildResult]
) -> float:
    """The simulator's arrival time (monotonic) of the poller's first request."""
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        async with session.get(sim.endpoint + "/__log") as resp:
            log = await resp.json()
        if log["requests"]:
            return float(log["requests"][0]["arrived"])
        if poller.done():
            break
        await asyncio.sleep(0.01)
    sim.check_alive()
    raise RuntimeError("the poller's first request never reached the simulator")


async def _send_others(sim: Simulator, case: ContentionCase, first: float) -> OtherClient:
    """The other client: evenly spaced requests at `other_rate` from `first + start` on."""
    settings = Settings(
        endpoint=sim.endpoint, credentials=Credentials(DEMO_SECRET_ID, DEMO_SECRET_KEY)
    )
    loop = asyncio.get_running_loop()  # its clock is time.monotonic, as the simulator's log
    throttled = failed = 0

    async def one(client: FaceIdClient, token: str) -> None:
        nonlocal throttled, failed
        try:
            reply = await client.get_result(token)
        except TransportFault:
            failed += 1
            return
        if reply.error is not None:
            if reply.error.code == THROTTLED:
                throttled += 1
            else:
                failed += 1

    tokens = _other_tokens(case)
    async with aiohttp.ClientSession() as session:
        client = FaceIdClient(session, settings)
        tasks = []
        begin = first + case.start
        for k, token in enumerate(tokens):
            due = begin + k / case.other_rate
            await asyncio.sleep(max(due - loop.time(), 0.0))
            tasks.append(asyncio.create_task(one(client, token)))
        await asyncio.gather(*tasks)
    return OtherClient(sent=len(tokens), throttled=throttled, failed=failed)


async def _run_case(
    sim: Simulator, case: ContentionCase, argv: tuple[str, ...]
) -> tuple[ChildResult, OtherClient]:
    poller = asyncio.ensure_future(asyncio.to_thread(run_child, argv, timeout=300))
    try:
        async with aiohttp.ClientSession() as session:
            first = await _first_arrival(sim, session, poller)
        other = await _send_others(sim, case, first)
    finally:
        child = await poller
    return child, other


def measure(case: ContentionCase, workdir: Path) -> ContentionResult:
    """One poller run with the other client, against its own fresh simulator."""
    tokens = write_tokens(workdir / f"tokens-{case.tokens}.txt", case.tokens)
    mine = set(tokens.read_text(encoding="ascii").split())
    output = workdir / "out.jsonl"
    output.unlink(missing_ok=True)
    with simulator(*SIMULATOR_FLAGS) as sim:
        argv = poller_run(tokens, output, sim.endpoint)
        child, other_client = asyncio.run(_run_case(sim, case, argv))
        sim.check_alive()
        stats = sim.stats()
        log = request_log(sim)
        sim_argv = sim.argv
    check_exit(child)
    if log["dropped"]:
        raise RuntimeError(f"the simulator's request log dropped {log['dropped']} arrivals")
    if int(stats["signature_failures"]):
        raise RuntimeError(f"{stats['signature_failures']} requests failed their signature check")
    if other_client.failed:
        raise RuntimeError(f"{other_client.failed} of the other client's requests failed")
    poller: list[float] = []
    other: list[float] = []
    for entry in log["requests"]:
        if entry["action"] != ACTION:
            continue
        token = entry["token"]
        if token in mine:
            poller.append(float(entry["arrived"]))
        elif isinstance(token, str) and token.startswith(OTHER_PREFIX):
            other.append(float(entry["arrived"]))
        else:
            raise RuntimeError(f"a request for a token of nobody's: {token!r}")
    if len(other) != other_client.sent:
        raise RuntimeError(f"the other client sent {other_client.sent}, {len(other)} arrived")
    return ContentionResult(
        case=case,
        poller=tuple(sorted(poller)),
        other=tuple(sorted(other)),
        throttled=int(stats["throttled"]) - other_client.throttled,
        other_client=other_client,
        max_in_window=int(stats["max_in_window"]),
        summary=parse_summary(child.stderr),
        child=child,
        simulator_argv=sim_argv,
    )


# -- the section -------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return {True: "**met**", False: "**not met**", None: "**not available**"}[ok]


def throttled_target(r: ContentionResult) -> Target:
    ok = r.throttled_share <= TARGET_THROTTLED
    return Target(
        what=f"contention, {r.case.name}: throttled",
        goal=f"<= {TARGET_THROTTLED:.0%} of the poller's requests",
        value=f"{r.throttled_share:.1%} ({r.throttled} of {r.requests})",
        met=ok,
        why="" if ok else f"{r.throttled} of {r.requests} requests throttled",
    )


def recovery_target(r: ContentionResult) -> Target:
    seconds = r.recovery
    goal = (
        f"back at >= {RECOVERED:.0%} of {PACED:g}/s within {TARGET_RECOVERY:g} s of the other "
        "client stopping"
    )
    if seconds is None:
        return Target(
            what=f"contention, {r.case.name}: recovery",
            goal=goal,
            value="not seen",
            met=None,
            why=f"the run ended before {STAYS:g} s at >= {RECOVERED * PACED:.1f}/s were seen",
        )
    ok = seconds <= TARGET_RECOVERY
    return Target(
        what=f"contention, {r.case.name}: recovery",
        goal=goal,
        value=f"{seconds:.2f} s",
        met=ok,
        why="" if ok else f"{seconds:.2f} s > {TARGET_RECOVERY:g} s",
    )


def _series(counts: Sequence[int]) -> str:
    return "`" + " ".join(str(n) for n in counts) + "`"


def case_table(r: ContentionResult) -> Table:
    c = r.case
    throttled, recovery = throttled_target(r), recovery_target(r)
    first = r.poller[0]
    other_from = r.other[0] - first if r.other else 0.0
    other_to = r.other[-1] - first if r.other else 0.0
    s = r.summary
    recovered = f"{RECOVERED * PACED:.1f} req/s (trailing 1 s) for {STAYS:g} s"
    left = f"left to it by the other's R/s: {r.left_use:.3f}; span {r.span:.1f} s"
    rows = [
        ["poller requests (admitted + throttled)", f"{r.requests} ({r.admitted} + {r.throttled})"],
        ["throttled, share of the poller's requests", throttled.value,
         f"<= {TARGET_THROTTLED:.0%}", _verdict(throttled.met)],
        [f"recovery: other client's last request to the poller >= {recovered}", recovery.value,
         f"<= {TARGET_RECOVERY:g} s", _verdict(recovery.met)],
        ["quota use, poller: admitted / (20 x span)", f"{r.quota_use:.3f} ({left})"],
        ["quota use, both clients over the poller's span", f"{r.quota_use_both:.3f}"],
        ["below target pace (poller's summary)", f"{s.below_target:.1f} s"],
        ["slowdowns / throttled (poller's summary)", f"{s.slowdowns} / {s.throttled}"],
        [f"other client: sent at {c.other_rate:g}/s, throttled",
         f"{r.other_client.sent}, {r.other_client.throttled} "
         f"(from {other_from:.1f} s to {other_to:.1f} s)"],
        ["max admitted in any 1 s window", f"{r.max_in_window} / {int(QUOTA)}"],
        ["poller req/s, each second from its first request", _series(r.per_second(r.poller))],
        ["other client req/s, the same seconds", _series(r.per_second(r.other))],
    ]  # fmt: skip
    return Table(
        (f"{c.name} for {c.seconds:g} s", "measured", "target", "verdict"),
        [row + [""] * (4 - len(row)) for row in rows],
    )


def run(sizes: Sizes) -> Section:
    started = time.perf_counter()
    cases = [
        ContentionCase(rate, sizes.contention_tokens, sizes.contention_start, sizes.contention_for)
        for rate in OTHER_RATES
    ]
    with scratch("contention") as workdir:
        results = [measure(case, workdir) for case in cases]
    section = Section(
        title="Contention",
        intro=(
            "Another client spends part of the quota for a while, then stops (issue 14). One "
            f"real `poller run` with default settings (`--rate {QUOTA:g}`, 5% margin: a "
            f"{PACED:g}/s pace) on {sizes.contention_tokens} tokens, against a fresh simulator "
            f"(its own process) enforcing a strict sliding 1 s window of {QUOTA:g}/s with "
            f"`--latency-ms {LATENCY_MS:g}`, pending tokens off and every arrival logged with "
            "its token. *Another client* in the bench process sends correctly signed "
            "GetSdkVerificationResult requests with the same demo credentials (the poller's "
            "signer) and tokens of its own, evenly spaced at R req/s from "
            f"{sizes.contention_start:g} s after the poller's first request for "
            f"{sizes.contention_for:g} s, each on its due time whatever the answers, then "
            "stops. *throttled* is the simulator's RequestLimitExceeded answers less the other "
            "client's; *recovery* runs from the other client's last request until the poller's "
            f"arrivals in a trailing 1 s window are back at >= {RECOVERED:.0%} of {PACED:g}/s "
            f"(>= {RECOVERED * PACED:.1f}) and stay there for {STAYS:g} s (read every "
            f"{STEP * 1000:g} ms); *quota use* is the poller's admitted requests / ({QUOTA:g} x "
            "its first-to-last span), beside what the other client's R/s left it at its pace "
            f"({PACED:g} x rest + min({PACED:g}, {QUOTA:g} - R) x contention, over {QUOTA:g} x "
            "span; a poller that takes slots the other client is then refused exceeds it); "
            "*below target pace* is the "
            "poller's summary line. The series count arrivals per whole second from the "
            "poller's first request."
        ),
    )
    for r in results:
        section.tables.append(case_table(r))
        section.targets.extend((throttled_target(r), recovery_target(r)))
    section.notes.append(
        "The recovery depends on where the other client's stop falls in the poller's cycle "
        "(lowered, held, climbing; lowered again before it is whole, with a longer hold): it "
        "cannot tell the other client has gone until its hold is over. While building this, "
        "the same cases with the other client sending for 6 to 10 s in 0.5 s steps (8 s left "
        "out; 420 tokens, one run each) gave recoveries of 1.7 to 5.3 s, three of 16 over "
        "5 s: 5.26 and 5.09 s at 8 req/s for 9 and 9.5 s, 5.15 s at 15 req/s for 10 s; the "
        "poller's throttled share stayed at 0.7% to 4.1%. The same case moves from run to run "
        "too: 8 req/s for 9 s gave 1.31 s on a second run, and the full-size 15 req/s case (8 s "
        "from 5 s) 2.11, 4.88 and 5.14 s in three runs. The rule (poller/quota/pace.py) bounds the "
        "pace's return to 90% at 4.8 s after the *last throttle*, not after the other client's "
        "stop, and the trailing 1 s window gets there later. The 5.14 s run, traced with the "
        "poller's log: lowered at 12.68 s (from the poller's first request) to 8.77 req/s "
        "with a 3 s hold, the other client's last request at 12.94 s, the pace at 90% at "
        "17.31 s by the rule, the window at 18.08 s."
    )
    for r in results:
        title = f"{r.case.name} for {r.case.seconds:g} s (the bench process)"
        add_run(section, title, r.simulator_argv, r.child.argv)
    section.seconds = time.perf_counter() - started
    return section
