"""Every simulator knob in one frozen object, with its default and the reason for it.

The CLI, the tests and the poller's end-to-end suite all build a `SimulatorConfig`; keeping the
defaults here (and nowhere else) means `python -m poller.simulator --help` and a test that says
`SimulatorConfig()` describe the same server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Obviously fake: the simulator must never be mistaken for a place where real keys belong.
DEMO_SECRET_ID = "AKIDSIMULATORDEMO0000000000000000000"
DEMO_SECRET_KEY = "SimulatorDemoKeyNotASecret000000"

API_VERSION = "2018-03-01"
SERVICE = "faceid"
# The regions the international FaceID endpoint answers for (SPEC §1).
REGIONS = frozenset({"ap-singapore", "ap-bangkok", "ap-hongkong", "ap-jakarta", "sa-saopaulo"})
ACTION_RESULT = "GetSdkVerificationResult"
ACTION_APPLY = "ApplySdkVerificationToken"
ACTIONS = (ACTION_RESULT, ACTION_APPLY)

FAULT_KINDS = ("internal", "html502", "503", "truncated", "reset", "stall")
# Faults of the media downloads behind FileInfo links (SPEC §8), apart from the API's own.
MEDIA_FAULT_KINDS = ("truncated", "altered", "expired", "5xx", "slow")

# An error code missing from SPEC §2's table: what Tencent might start answering one day.
UNKNOWN_CODE = "FailedOperation.SomethingNew"

# A token can be queried for 3 days after it was issued (SPEC §1).
TOKEN_TTL_SECONDS = 72 * 3600.0
# The real service accepts a timestamp within 5 minutes of its clock (SPEC §1.1 step 5).
MAX_SKEW_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulated FaceID service behaves. All times are seconds unless named `_ms`."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = let the OS pick a free port
    secret_id: str = DEMO_SECRET_ID
    secret_key: str = DEMO_SECRET_KEY
    seed: int = 0
    # Published quota of GetSdkVerificationResult: 20 requests per second per account (SPEC §1).
    rate: float = 20.0
    # Share of tokens whose settled Result is "0"; the others fail with a SPEC §1.4 code.
    pass_share: float = 0.8
    # Independently of that, this share is still pending (Result "-999") for pending_seconds
    # after issue, then settles as drawn.
    pending_share: float = 0.05
    pending_seconds: float = 5.0
    token_ttl_seconds: float = TOKEN_TTL_SECONDS
    # Added to "now" for token age and pending only, never for the signature timestamp check,
    # so a test can age tokens without tripping AuthFailure.SignatureExpire.
    clock_offset: float = 0.0
    # Accept any non-empty token; its outcome comes from a hash of the token (no minting).
    any_token: bool = False
    # False (`--no-auth`) accepts unsigned requests: only for the benchmark's bare-HTTP floor,
    # which must get the same answers as the poller without paying for signing.
    check_signatures: bool = True
    # Median total latency. A bounded pre-count leg (half of it, +-pre_jitter_ms) happens before
    # the quota window counts the request; the heavy-tailed rest happens after (SPEC §5).
    latency_ms: float = 0.0
    pre_jitter_ms: float | None = None  # None = +-25% of the pre-count leg
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULT_KINDS
    stall_seconds: float = 15.0
    max_skew_seconds: float = MAX_SKEW_SECONDS
    # How long a stopping server waits for in-flight (e.g. stalled) requests before cancelling.
    shutdown_timeout: float = 1.0
    extra_credentials: tuple[tuple[str, str], ...] = field(default=())
    # This share of tokens (chosen by a hash of seed and token, so the same tokens on every
    # request and every restart) is answered with `unknown_code`, an API error code SPEC §2's
    # table does not list, instead of its result: how a client meets a code Tencent adds.
    unknown_code_share: float = 0.0
    unknown_code: str = UNKNOWN_CODE
    # This share of GetSdkVerificationResult requests is answered RequestLimitExceeded before the
    # quota window counts them, as when another client of the account spends the quota.
    throttle_share: float = 0.0
    # Keep the last N API request arrivals (monotonic time, action, SdkToken) for `GET /__log`
    # and `RunningSimulator.request_log()`; 0 keeps none. A test holds them against the
    # moment it sent a signal (time.monotonic() is one clock for every process on the host).
    request_log_size: int = 0
    # The media behind FileInfo links (SPEC §8) is served by the simulator itself. Each answer
    # signs fresh links valid for media_ttl seconds (Tencent's are valid for about 10 minutes).
    media_ttl: float = 600.0
    # Sizes are Tencent's example sizes (about 12 MB a token) times this: tests shrink it.
    media_scale: float = 1.0
    # Download faults, drawn from their own seeded stream: media_fault_rate of the downloads
    # fault, and the first media_fail_first downloads of every file fault whatever the rate.
    media_faults: tuple[str, ...] = MEDIA_FAULT_KINDS
    media_fault_rate: float = 0.0
    media_fail_first: int = 0
    # How long a "slow" media fault holds the body back: longer than a sane client timeout.
    media_slow_seconds: float = 5.0

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, f"port must be 0..65535, got {self.port}")
        _check(bool(self.secret_id), "secret id must not be empty")
        _check(bool(self.secret_key), "secret key must not be empty")
        _check(
            math.isfinite(self.rate) and self.rate >= 1,
            f"rate must be a number >= 1 request per second, got {self.rate}",
        )
        for name in (
            "pass_share",
            "pending_share",
            "fault_rate",
            "unknown_code_share",
            "throttle_share",
            "media_fault_rate",
        ):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"{name.replace('_', '-')} must be in 0..1, got {value}")
        for name in (
            "pending_seconds",
            "token_ttl_seconds",
            "latency_ms",
            "stall_seconds",
            "media_slow_seconds",
        ):
            value = getattr(self, name)
            _check(
                math.isfinite(value) and value >= 0,
                f"{name.replace('_', '-')} must be >= 0, got {value}",
            )
        _check(math.isfinite(self.clock_offset), "clock-offset must be a finite number")
        if self.pre_jitter_ms is not None:
            _check(self.pre_jitter_ms >= 0, f"pre-jitter-ms must be >= 0, got {self.pre_jitter_ms}")
        unknown = sorted(set(self.faults) - set(FAULT_KINDS))
        _check(
            not unknown,
            f"unknown fault kind(s) {', '.join(unknown)}; choose from {', '.join(FAULT_KINDS)}",
        )
        _check(bool(self.faults), f"faults must name at least one of {', '.join(FAULT_KINDS)}")
        _check(
            bool(self.unknown_code.strip()) and not any(ord(c) < 32 for c in self.unknown_code),
            "unknown-code must be a non-empty code without control characters",
        )
        _check(
            self.request_log_size >= 0,
            f"request-log-size must be >= 0, got {self.request_log_size}",
        )
        for name in ("media_ttl", "media_scale"):
            value = getattr(self, name)
            _check(
                math.isfinite(value) and value > 0,
                f"{name.replace('_', '-')} must be a number > 0, got {value}",
            )
        unknown = sorted(set(self.media_faults) - set(MEDIA_FAULT_KINDS))
        _check(
            not unknown,
            f"unknown media fault kind(s) {', '.join(unknown)}; "
            f"choose from {', '.join(MEDIA_FAULT_KINDS)}",
        )
        _check(
            bool(self.media_faults),
            f"media-faults must name at least one of {', '.join(MEDIA_FAULT_KINDS)}",
        )
        _check(
            self.media_fail_first >= 0,
            f"media-fail-first must be >= 0, got {self.media_fail_first}",
        )

    @property
    def capacity(self) -> int:
        """Admitted requests per sliding second: a fractional rate rounds down, never up."""
        return max(1, math.floor(self.rate))

    @property
    def credentials(self) -> dict[str, str]:
        """SecretId -> SecretKey of every account the simulator knows."""
        known = dict(self.extra_credentials)
        known[self.secret_id] = self.secret_key
        return known


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
