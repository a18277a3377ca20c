"""Settings: TOML file, then environment, then flags (flags win) into one frozen object.

Defaults live only in `Settings`' field defaults; config.example.toml mirrors them and a test
keeps the two in step. Every problem a user can cause is a `ConfigError` with one sentence.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from poller.config.credentials import CREDENTIAL_KEYS, Credentials, resolve_credentials
from poller.config.durations import parse_duration
from poller.config.errors import ConfigError
from poller.config.redis_address import parse_address

DEFAULT_ENDPOINT = "https://faceid.intl.tencentcloudapi.com"
REGIONS = ("ap-singapore", "ap-bangkok", "ap-hongkong", "ap-jakarta", "sa-saopaulo")
ENV_PREFIX = "FACEID_POLLER_"
#: SPEC §8's FileInfo fields: those of each CardVerifyResults attempt, then of each
#: CompareResults attempt; all kept by default (`evidence_fields`).
CARD_EVIDENCE_FIELDS: tuple[str, ...] = ("CardVideo", "CardImage", "CardInfoOcrJson")
COMPARE_EVIDENCE_FIELDS: tuple[str, ...] = (
    "LiveData",
    "LiveVideo",
    "ActionVideo",
    "BestFrame",
    "ProfileImage",
    "CardInfoInputJson",
)
EVIDENCE_FIELDS: tuple[str, ...] = CARD_EVIDENCE_FIELDS + COMPARE_EVIDENCE_FIELDS
#: URL schemes of the object stores `evidence` may name (obstore's S3, GCS, Azure).
OBJECT_STORES: frozenset[str] = frozenset({"s3", "gs", "az"})


def evidence_problem(dest: str) -> str | None:
    """Why `dest` cannot be an evidence destination (a scheme no store has, a file:// URL of
    another host), or None. A plain path always can, as far as its text goes."""
    if "://" not in dest:
        return None
    parts = urlsplit(dest)
    scheme = parts.scheme.lower()
    if scheme in OBJECT_STORES:
        return None
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return f"evidence {dest} names another host; use a path on this machine"
        return None
    return (
        f"evidence {scheme or '(none)'}:// is not a store this poller knows; use a directory, "
        "s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"
    )


class Detail(StrEnum):
    """How much of the answer a line keeps (`detail` setting)."""

    FULL = "full"
    # For users who only reconcile codes and charges: no `response`, so no personal data.
    SUMMARY = "summary"


#: The token readers (`input_format` setting, SPEC §3); "" in the setting leaves the choice to
#: the file's extension. Defined here, the lowest stage that names them, so the setting's check,
#: the `--format` flag and the input stage share one list.
InputFormat = Literal["text", "csv", "jsonl"]
INPUT_FORMATS: tuple[InputFormat, ...] = ("text", "csv", "jsonl")

#: The order tokens are asked in (`order` setting, SPEC §9): as the input lists them, or the
#: closest to expiry (oldest `issued_at`) first, which reads the whole input before the first
#: request.
Order = Literal["input", "expiry"]
ORDERS: tuple[Order, ...] = ("input", "expiry")

#: Settings whose value is a duration ("90m", "1h30m", or seconds), not a plain number.
DURATION_FIELDS = frozenset(
    {"stop_after", "shared_quota_timeout", "recovery_hold", "recovery_ramp"}
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of `poller run`. Field comments are the documentation users read."""

    endpoint: str = DEFAULT_ENDPOINT
    region: str = "ap-singapore"
    language: str = ""  # "", "en-US" or "zh-CN" (X-TC-Language)
    # The account's quota for this API in requests/s (20 by default, SPEC §1).
    rate: float = 20.0
    # Pace this fraction under the quota: network jitter bunches arrivals (SPEC §5).
    rate_margin: float = 0.05
    concurrency: int = 32
    max_attempts: int = 6  # total attempts per token, first one included
    # A throttled attempt (RequestLimitExceeded) slows the pace but is no failure: it draws
    # neither on max_attempts nor on the retry budget, only on this larger per-token bound,
    # which keeps a permanently throttled account from looping forever.
    max_throttled_attempts: int = 30
    timeout: float = 10.0  # seconds per request
    backoff_base: float = 0.5  # full-jitter backoff: uniform(0, min(cap, base * 2**n))
    backoff_max: float = 20.0
    # Run-wide retry budget (token bucket): each retry takes 1, each success gives back
    # `retry_refill`; an outage then ends in `error` lines instead of a retry storm.
    retry_budget: float = 200.0
    retry_refill: float = 0.2
    # Circuit breaker (SPEC §2): this many tokens in a row settled by the same non-success
    # outcome (one unlisted error code, or faults that outlasted the retries) stop the run
    # like a fatal error (exit 3). 0 turns it off.
    breaker_threshold: int = 50
    pending_codes: tuple[str, ...] = ("-999", "17")
    # A pending token is asked again after recheck_after seconds, for up to max_pending_wait
    # seconds in all; still pending then, it gets a `pending` line and the next run asks again.
    recheck_after: float = 30.0
    max_pending_wait: float = 120.0
    # Tokens answer for 72 h after issue (SPEC §1): with `issued_at` in the input, older tokens
    # get an `expired` line without a request. 0 turns the local check off.
    max_token_age: float = 72 * 3600.0
    # On SIGINT/SIGTERM, requests in flight get this long to finish and be written.
    grace_period: float = 10.0
    detail: Detail = Detail.FULL
    ca_bundle: str = ""
    max_response_bytes: int = 8 * 1024 * 1024
    input_format: str = ""  # "", "text", "csv" or "jsonl" ("" = by file extension)
    # Results files of earlier runs (paths or globs): a token with a final line in any of them
    # is not asked again and gets no line (SPEC §9). In FACEID_POLLER_SKIP_FINAL_IN the paths
    # are separated by os.pathsep (":" on Linux and macOS, ";" on Windows), as in PATH.
    skip_final_in: tuple[str, ...] = ()
    # Prometheus text metrics for node_exporter's textfile collector, replaced atomically every
    # 15 s and at exit; "" writes none.
    metrics_file: str = ""
    log_format: str = "text"  # stderr log lines: "text", or "json" for log shippers
    # When stderr is not a terminal (cron), one progress line this often, in seconds.
    progress_interval: float = 60.0
    # End the run cleanly this many seconds after it started (SPEC §3 "Stopping", as SIGINT
    # does but exit 1): "90m", "1h30m", "4s". 0 = no deadline.
    stop_after: float = 0.0
    # "input", or "expiry": oldest issued_at first (SPEC §9); reads the whole input first and
    # holds the tokens to query in memory (~60 bytes each, see README "Expiry order").
    order: str = "input"
    # Share the account's quota with every other poller (and your backend) through one schedule
    # in Redis (SPEC §7): "redis://HOST:6379/0", "rediss://" for TLS, "redis://:PASSWORD@HOST/0".
    # "" paces this run alone. The password never appears in logs, errors or repr.
    shared_quota: str = field(default="", repr=False)
    # Take at most this fraction of the quota, leaving the rest to other users of the account
    # (a live backend on the same shared quota, say). 1 takes it all.
    max_share: float = 1.0
    # Redis lost mid-run: no request is sent without a slot; the run waits and reconnects for
    # this many seconds, then stops as a local failure (exit 4) and the rerun resumes.
    shared_quota_timeout: float = 60.0
    # After RequestLimitExceeded the pace is lowered (x0.7), holds this long without a throttle,
    # then climbs back to the full pace over recovery_ramp seconds. A throttle during the climb
    # lowers it again and doubles the hold (up to 2x), so a client that stays is probed gently.
    recovery_hold: float = 1.0
    recovery_ramp: float = 1.5
    # Keep the verification media (SPEC §8) before their 10-minute links expire: a directory,
    # or an object store ("s3://bucket/prefix", "gs://…", "az://…"). "" keeps none.
    evidence: str = ""
    # Which FileInfo fields to keep, in every attempt of CardVerifyResults/CompareResults;
    # everything is about 12 MB a token (CardVideo alone 9.4 MB), BestFrame+CardImage ~0.4 MB.
    evidence_fields: tuple[str, ...] = EVIDENCE_FIELDS
    # Downloads at once (their own connections, never the API's), and tokens whose answers wait
    # for them; a full backlog holds the API workers back (the bandwidth is the limit then).
    evidence_concurrency: int = 16
    evidence_backlog: int = 256
    # Seconds to connect, and without a byte, before a download counts as failed.
    evidence_timeout: float = 30.0
    # Attempts per file on a bad body (MD5, size, cut off), a 5xx or a timeout; with backoff.
    evidence_attempts: int = 4
    # An expired or refused link (403) asks the API again for fresh links (a paced request),
    # at most this many times per token and run; still missing, the line is not final.
    evidence_requeries: int = 2
    credentials: Credentials | None = field(default=None, compare=False)

    @property
    def pacing_rate(self) -> float:
        """The pace under the account's quota: every poller on it together (SPEC §5)."""
        return self.rate * (1.0 - self.rate_margin)

    @property
    def run_rate(self) -> float:
        """This run's own pace at most: its `max_share` of the paced quota."""
        return self.pacing_rate * self.max_share

    @property
    def host(self) -> str:
        """The Host header, with `:port` when the endpoint has one: that is what gets signed."""
        return urlsplit(self.endpoint).netloc


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Settings) if f.name != "credentials")


# Tables of the config file that belong to other commands: one file can serve the nightly job.
OTHER_COMMANDS_TABLES = frozenset({"reconcile"})


def _suggest(key: str, valid: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: Settings that are lists of paths: in the environment they split on os.pathsep, like PATH
#: (a path may hold a comma), and a number is no path.
PATH_LISTS: tuple[str, ...] = ("skip_final_in",)


def _kind(default: object, name: str = "") -> str:
    if isinstance(default, Detail):
        return "'full' or 'summary'"
    if isinstance(default, float):
        return "a finite number"
    if isinstance(default, int):
        return "a whole number"
    if name in PATH_LISTS:
        return "a list of paths (strings)"
    if name == "evidence_fields":
        return "a list of field names (strings)"
    if isinstance(default, tuple):
        return "a list of codes (strings)"
    return "a string"


def _coerce(name: str, value: Any, origin: str) -> Any:
    """Turn a TOML, environment or flag value into the field's type, or say what is wrong."""
    default = getattr(Settings(), name)
    where = f"{name} (from {origin})"
    if name in DURATION_FIELDS:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}.") from None
    try:
        if isinstance(default, bool):
            raise TypeError
        if isinstance(default, Detail):
            return Detail(str(value))
        if isinstance(default, float):
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
            # "inf"/"nan" parse as floats but mean nothing as a rate, a timeout or a budget.
            if not math.isfinite(number):
                raise ValueError
            return number
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if name in PATH_LISTS:
            if isinstance(value, str):
                value = [v for v in value.split(os.pathsep) if v.strip()]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise TypeError
            return tuple(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list | tuple):
                raise TypeError
            # A code is a string; a bare integer is accepted as its decimal form, a bool is not.
            if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
                raise TypeError
            return tuple(str(v) for v in value)
        if not isinstance(value, str):
            raise TypeError
        return value
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where} must be {_kind(default, name)}, got {value!r}.") from None


def load_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a TOML file.") from None
    except PermissionError:
        raise ConfigError(f"config file {path} cannot be read (permission denied).") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror}).") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}.") from None
    return data


def _check(s: Settings, origins: Mapping[str, str]) -> None:
    """Validate values; every message names the key and where its value came from."""

    def fail(name: str, message: str) -> ConfigError:
        return ConfigError(f"{message} (from {origins.get(name, 'the default')}).")

    try:
        url = urlsplit(s.endpoint)
    except ValueError:  # e.g. "https://[::1" (an unclosed IPv6 bracket)
        raise fail("endpoint", f"endpoint {s.endpoint!r} is not a valid URL") from None
    if url.scheme not in ("https", "http") or not url.hostname:
        raise fail("endpoint", f"endpoint {s.endpoint!r} must be an https:// URL")
    # "?" and "#" are checked on the raw text: urlsplit reports an empty query for "https://h?".
    if url.path not in ("", "/") or "?" in s.endpoint or "#" in s.endpoint:
        raise fail("endpoint", f"endpoint {s.endpoint!r} must not have a path, query or fragment")
    if "@" in url.netloc:
        # user:password@ would end up in the signed Host header (and in logs).
        raise fail("endpoint", f"endpoint {s.endpoint!r} must not hold a user name or password")
    try:
        url.port  # noqa: B018  (raises ValueError for a non-numeric or out-of-range port)
    except ValueError:
        raise fail("endpoint", f"endpoint {s.endpoint!r} has an invalid port") from None
    if url.scheme == "http" and not is_loopback(url.hostname):
        raise fail(
            "endpoint",
            f"endpoint {s.endpoint!r} uses plain http://, allowed only for a loopback address "
            "(the simulator); use https://",
        )
    if s.region not in REGIONS:
        raise fail("region", f"region {s.region!r} is not one of {', '.join(REGIONS)}")
    if s.language not in ("", "en-US", "zh-CN"):
        raise fail("language", f"language {s.language!r} must be 'en-US', 'zh-CN' or empty")
    checks: list[tuple[str, bool, str]] = [
        ("rate", s.rate > 0, "rate must be above 0 requests per second"),
        ("rate_margin", 0 <= s.rate_margin < 1, "rate_margin must be at least 0 and below 1"),
        ("concurrency", 1 <= s.concurrency <= 1024, "concurrency must be between 1 and 1024"),
        ("max_attempts", 1 <= s.max_attempts <= 100, "max_attempts must be between 1 and 100"),
        (
            "max_throttled_attempts",
            1 <= s.max_throttled_attempts <= 1000,
            "max_throttled_attempts must be between 1 and 1000",
        ),
        ("breaker_threshold", s.breaker_threshold >= 0, "breaker_threshold must be at least 0"),
        ("timeout", s.timeout > 0, "timeout must be above 0 seconds"),
        ("backoff_base", s.backoff_base >= 0, "backoff_base must be at least 0"),
        ("backoff_max", s.backoff_max >= 0, "backoff_max must be at least 0"),
        ("retry_budget", s.retry_budget >= 0, "retry_budget must be at least 0"),
        ("retry_refill", s.retry_refill >= 0, "retry_refill must be at least 0"),
        (
            "max_response_bytes",
            s.max_response_bytes >= 1024,
            "max_response_bytes must be at least 1024",
        ),
        ("recheck_after", s.recheck_after > 0, "recheck_after must be above 0 seconds"),
        ("max_pending_wait", s.max_pending_wait >= 0, "max_pending_wait must be at least 0"),
        (
            "max_token_age",
            s.max_token_age >= 0,
            "max_token_age must be at least 0 seconds (0 turns the local check off)",
        ),
        ("grace_period", s.grace_period >= 0, "grace_period must be at least 0 seconds"),
        (
            "input_format",
            s.input_format in ("", *INPUT_FORMATS),
            f"input_format must be {', '.join(INPUT_FORMATS[:-1])} or {INPUT_FORMATS[-1]}",
        ),
        ("log_format", s.log_format in ("text", "json"), "log_format must be text or json"),
        (
            "progress_interval",
            s.progress_interval > 0,
            f"progress_interval must be above 0 seconds, got {s.progress_interval:g}",
        ),
        ("stop_after", s.stop_after >= 0, "stop_after must be at least 0 (0 = no deadline)"),
        ("order", s.order in ORDERS, f"order must be {' or '.join(ORDERS)}, got {s.order!r}"),
        ("max_share", 0.01 <= s.max_share <= 1, "max_share must be between 0.01 and 1"),
        (
            "shared_quota_timeout",
            s.shared_quota_timeout > 0,
            "shared_quota_timeout must be above 0 seconds",
        ),
        ("recovery_hold", s.recovery_hold <= 600, "recovery_hold must be at most 10 minutes"),
        ("recovery_ramp", s.recovery_ramp <= 600, "recovery_ramp must be at most 10 minutes"),
        (
            "evidence_concurrency",
            1 <= s.evidence_concurrency <= 256,
            "evidence_concurrency must be between 1 and 256",
        ),
        (
            "evidence_backlog",
            1 <= s.evidence_backlog <= 100_000,
            "evidence_backlog must be between 1 and 100000",
        ),
        ("evidence_timeout", s.evidence_timeout > 0, "evidence_timeout must be above 0 seconds"),
        (
            "evidence_attempts",
            1 <= s.evidence_attempts <= 100,
            "evidence_attempts must be between 1 and 100",
        ),
        (
            "evidence_requeries",
            0 <= s.evidence_requeries <= 20,
            "evidence_requeries must be between 0 and 20",
        ),
    ]
    for name, ok, message in checks:
        if not ok:
            raise fail(name, message)
    if s.shared_quota:
        try:
            parse_address(s.shared_quota)
        except ConfigError as exc:
            raise fail("shared_quota", str(exc).rstrip(".")) from None
    unknown = [f for f in s.evidence_fields if f not in EVIDENCE_FIELDS]
    if unknown or not s.evidence_fields:
        named = (
            f"{', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not a "
            "field to keep"
            if unknown
            else "names no field"
        )
        raise fail(
            "evidence_fields",
            f"evidence_fields {named}; choose from {', '.join(EVIDENCE_FIELDS)}",
        )
    if s.evidence and s.evidence != s.evidence.strip():
        raise fail("evidence", "evidence must not start or end with spaces")
    if s.evidence and (problem := evidence_problem(s.evidence)):
        raise fail("evidence", problem)
    if s.ca_bundle and not os.path.isfile(s.ca_bundle):
        raise fail("ca_bundle", f"ca_bundle {s.ca_bundle} is not a readable file")
    if s.ca_bundle:
        try:  # load it now: a file that holds no certificate must fail before any work starts
            ssl.create_default_context().load_verify_locations(cafile=s.ca_bundle)
        except (ssl.SSLError, OSError):
            raise fail("ca_bundle", f"ca_bundle {s.ca_bundle} holds no PEM certificate") from None


def is_loopback(host: str) -> bool:
    """Plain http is allowed to these only (the simulator, a test server): never a network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_settings(
    *,
    config_path: str | None,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    home: Path | None = None,
    need_credentials: bool = True,
) -> tuple[Settings, list[str]]:
    """Merge defaults < TOML < FACEID_POLLER_* environment < flags; returns settings + warnings."""
    warnings: list[str] = []
    file_values = load_toml(config_path) if config_path else {}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    valid = FIELD_NAMES + CREDENTIAL_KEYS
    for key, value in file_values.items():
        if key in OTHER_COMMANDS_TABLES:
            continue  # another command's table in the same file (`poller reconcile`)
        if key not in valid:
            raise ConfigError(
                f"config file {config_path}: unknown key {key!r}{_suggest(key, valid)}."
            )
        if key in FIELD_NAMES:
            origins[key] = f"config file {config_path}"
            values[key] = _coerce(key, value, origins[key])
    for name in FIELD_NAMES:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            origins[name] = f"environment {ENV_PREFIX}{name.upper()}"
            values[name] = _coerce(name, raw, origins[name])
    for name, value in flags.items():
        if name not in FIELD_NAMES:
            raise ConfigError(f"unknown setting {name!r}{_suggest(name, FIELD_NAMES)}.")
        if value is not None:
            origins[name] = f"--{name.replace('_', '-')}"
            values[name] = _coerce(name, value, origins[name])
    creds = resolve_credentials(env, file_values, config_path, home or Path.home(), warnings)
    if need_credentials and creds is None:
        raise ConfigError(
            "no credentials: set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY, put "
            "secret_id/secret_key in the config file, or create ~/.tencentcloud/credentials."
        )
    settings = Settings(**values, credentials=creds)
    _check(settings, origins)
    return settings, warnings


def checked(settings: Settings) -> Settings:
    """A `Settings` made by hand in Python, held to the rules `build_settings` applies.

    A value of the wrong type is converted where a TOML value would be (codes as one
    comma-separated string, a whole number for a float) or refused; then every value is
    checked, so a plain-http endpoint to another host or a concurrency of 0 fails here with a
    sentence instead of leaking a signature or hanging the run. Returns the converted copy."""
    origin = "the Settings given"
    # Every field, even one equal to its default: "full" == Detail.FULL, 32.0 == 32, yet the
    # code tests `is Detail.FULL` and `range(concurrency)`.
    values = {name: _coerce(name, getattr(settings, name), origin) for name in FIELD_NAMES}
    result = dataclasses.replace(settings, **values)
    _check(result, dict.fromkeys(FIELD_NAMES, origin))
    return result
