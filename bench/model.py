"""What every measurement hands back: tables, targets (met or not, and why), the commands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# The API the benchmarks ask, and the pace the poller keeps under its quota by default.
ACTION = "GetSdkVerificationResult"
QUOTA = 20.0
MARGIN = 0.05  # the poller's default --rate-margin
PACED = QUOTA * (1.0 - MARGIN)


@dataclass(frozen=True, slots=True)
class Target:
    """One figure held against its goal. `met` is None when it could not be measured."""

    what: str
    goal: str
    value: str
    met: bool | None
    why: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "not met", None: "not available"}[self.met]


@dataclass(frozen=True, slots=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(slots=True)
class Section:
    title: str
    intro: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # how long the measurement took, for the run-time line


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each measurement is: the full run, or `--quick` for a smoke test."""

    quota_seconds: float  # how long each paced run should last
    cpu_tokens: int
    scale_tokens: int  # the Scale input, the output resumed from and the earlier file alike
    startup_runs: int
    shared_tokens: int  # per shared-quota case, split between its pollers
    shared_reservations: int  # timed `SharedQuota.reserve()` calls
    contention_tokens: int  # the poller's, per contention case
    contention_start: float  # the other client starts this long after the poller's first request
    contention_for: float  # ... and sends for this long
    evidence_full_tokens: int  # per all-fields case: its run is as long as the archive takes
    evidence_seconds: float  # the lean case, at the paced rate
    evidence_scale: float  # the simulator's --media-scale (1 = Tencent's example sizes)

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            quota_seconds=16.0,
            cpu_tokens=8_000,
            scale_tokens=5_000_000,
            startup_runs=5,
            shared_tokens=400,
            shared_reservations=2_000,
            contention_tokens=570,
            contention_start=5.0,
            contention_for=8.0,
            evidence_full_tokens=480,
            evidence_seconds=40.0,
            evidence_scale=1.0,
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            quota_seconds=3.0,
            cpu_tokens=500,
            scale_tokens=100_000,
            startup_runs=2,
            shared_tokens=60,
            shared_reservations=500,
            contention_tokens=200,
            contention_start=2.0,
            contention_for=3.0,
            evidence_full_tokens=60,
            evidence_seconds=3.0,
            evidence_scale=0.01,
        )


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"
