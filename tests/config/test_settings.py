"""Settings (poller/config/settings.py): precedence, coercion, validation, secrecy."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import certifi
import pytest

from poller.config.settings import (
    DEFAULT_ENDPOINT,
    ENV_PREFIX,
    FIELD_NAMES,
    REGIONS,
    Detail,
    Settings,
)
from tests.config.support import (
    FAKE_KEY,
    FAKE_TOKEN,
    Build,
    config_error,
)

# -- defaults and precedence ---------------------------------------------------------------------


def test_defaults_with_nothing_given(build: Build) -> None:
    settings, warnings = build()
    assert settings == Settings()
    assert settings.endpoint == DEFAULT_ENDPOINT
    assert settings.rate == 20.0
    assert settings.pending_codes == ("-999", "17")
    assert settings.credentials is None
    assert warnings == []


def test_precedence_defaults_toml_env_flags(build: Build, write_toml: Callable[..., str]) -> None:
    path = write_toml("rate = 10\nconcurrency = 5\ntimeout = 3.5\nregion = 'ap-bangkok'\n")
    env = {ENV_PREFIX + "CONCURRENCY": "7", ENV_PREFIX + "TIMEOUT": "4"}
    flags = {"timeout": 6.0, "rate": None}  # None: the flag was not given
    settings, _ = build(config_path=path, flags=flags, env=env)
    assert settings.rate == 10.0  # TOML over default; the None flag is ignored
    assert settings.concurrency == 7  # env over TOML
    assert settings.timeout == 6.0  # flag over env over TOML
    assert settings.region == "ap-bangkok"  # TOML only
    assert settings.max_attempts == Settings().max_attempts  # default


def test_empty_environment_value_is_ignored(build: Build) -> None:
    settings, _ = build(env={ENV_PREFIX + "RATE": ""})
    assert settings.rate == 20.0


def test_every_field_can_be_set_from_the_environment(build: Build, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    raw = {
        "endpoint": "http://127.0.0.1:8080",
        "region": "ap-jakarta",
        "language": "zh-CN",
        "rate": "18",
        "rate_margin": "0.1",
        "concurrency": "3",
        "max_attempts": "2",
        "max_throttled_attempts": "9",
        "breaker_threshold": "7",
        "timeout": "1.5",
        "backoff_base": "0.25",
        "backoff_max": "4",
        "retry_budget": "10",
        "retry_refill": "0.5",
        "pending_codes": " -999 , 17,,42 ",
        "detail": "summary",
        "ca_bundle": str(bundle),
        "max_response_bytes": "4096",
        "input_format": "csv",
        "recheck_after": "7",
        "max_pending_wait": "70",
        "max_token_age": "3600",
        "grace_period": "2.5",
        "metrics_file": "/var/lib/node_exporter/textfile/faceid_poller.prom",
        "log_format": "json",
        "progress_interval": "300",
        "stop_after": "1h30m",
        "order": "expiry",
        "shared_quota": "rediss://:s3cret-pass@quota.internal:6380/2",
        "max_share": "0.75",
        "shared_quota_timeout": "2m",
        "recovery_hold": "2s",
        "recovery_ramp": "5",
        "evidence": "s3://kyc-evidence/faceid",
        "evidence_fields": "BestFrame, CardImage",
        "evidence_concurrency": "4",
        "evidence_backlog": "64",
        "evidence_timeout": "12.5",
        "evidence_attempts": "3",
        "evidence_requeries": "1",
        # os.pathsep between paths, as in PATH: a path may hold a comma.
        "skip_final_in": os.pathsep.join(["/data/night,1.jsonl", "/data/night-*.jsonl", ""]),
    }
    assert set(raw) == set(FIELD_NAMES)  # a new field must be added here too
    env = {ENV_PREFIX + name.upper(): value for name, value in raw.items()}
    settings, _ = build(env=env)
    assert settings.endpoint == "http://127.0.0.1:8080"
    assert settings.region == "ap-jakarta"
    assert settings.language == "zh-CN"
    assert settings.rate == 18.0
    assert (settings.recheck_after, settings.max_pending_wait) == (7.0, 70.0)
    assert (settings.max_token_age, settings.grace_period) == (3600.0, 2.5)
    assert settings.metrics_file == "/var/lib/node_exporter/textfile/faceid_poller.prom"
    assert settings.log_format == "json"
    assert settings.progress_interval == 300.0
    assert (settings.stop_after, settings.order) == (5400.0, "expiry")
    assert settings.skip_final_in == ("/data/night,1.jsonl", "/data/night-*.jsonl")
    assert settings.rate_margin == 0.1
    assert settings.concurrency == 3
    assert settings.max_attempts == 2
    assert settings.max_throttled_attempts == 9
    assert settings.breaker_threshold == 7
    assert settings.timeout == 1.5
    assert settings.backoff_base == 0.25
    assert settings.backoff_max == 4.0
    assert settings.retry_budget == 10.0
    assert settings.retry_refill == 0.5
    assert settings.pending_codes == ("-999", "17", "42")
    assert settings.detail is Detail.SUMMARY
    assert settings.ca_bundle == str(bundle)
    assert settings.max_response_bytes == 4096
    assert settings.input_format == "csv"
    assert settings.shared_quota == "rediss://:s3cret-pass@quota.internal:6380/2"
    assert (settings.max_share, settings.shared_quota_timeout) == (0.75, 120.0)
    assert (settings.recovery_hold, settings.recovery_ramp) == (2.0, 5.0)
    assert "s3cret-pass" not in repr(settings)
    assert settings.evidence == "s3://kyc-evidence/faceid"
    assert settings.evidence_fields == ("BestFrame", "CardImage")
    assert (settings.evidence_concurrency, settings.evidence_backlog) == (4, 64)
    assert settings.evidence_timeout == 12.5
    assert (settings.evidence_attempts, settings.evidence_requeries) == (3, 1)


def test_toml_types_are_coerced(build: Build, write_toml: Callable[..., str]) -> None:
    path = write_toml(
        "rate = 15\nconcurrency = 8.0\npending_codes = ['-999', 17]\ndetail = 'summary'\n"
    )
    settings, _ = build(config_path=path)
    assert settings.rate == 15.0
    assert isinstance(settings.rate, float)
    assert settings.concurrency == 8
    assert isinstance(settings.concurrency, int)
    assert settings.pending_codes == ("-999", "17")
    assert settings.detail is Detail.SUMMARY


def test_flag_values_are_coerced(build: Build) -> None:
    settings, _ = build(flags={"concurrency": "9", "pending_codes": "1,2", "detail": "summary"})
    assert settings.concurrency == 9
    assert settings.pending_codes == ("1", "2")
    assert settings.detail is Detail.SUMMARY


def test_skip_final_in_is_a_list_of_paths_from_toml_or_repeated_flags(
    build: Build, write_toml: Callable[..., str]
) -> None:
    path = write_toml("skip_final_in = ['night-1.jsonl', 'nights/*.jsonl']\n")
    settings, _ = build(config_path=path)
    assert settings.skip_final_in == ("night-1.jsonl", "nights/*.jsonl")
    settings, _ = build(config_path=path, flags={"skip_final_in": ["a.jsonl", "b.jsonl"]})
    assert settings.skip_final_in == ("a.jsonl", "b.jsonl")  # flags win, whole
    assert Settings().skip_final_in == ()


def test_empty_pending_codes_list_is_allowed(build: Build, write_toml: Callable[..., str]) -> None:
    settings, _ = build(config_path=write_toml("pending_codes = []\n"))
    assert settings.pending_codes == ()


# -- bad values: one sentence naming the key and where it came from ------------------------------


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("rate = 'fast'", "rate"),
        ("rate = true", "rate"),
        ("rate = [20]", "rate"),
        ("rate = nan", "rate"),
        ("rate = inf", "rate"),
        ("timeout = -inf", "timeout"),
        ("concurrency = 1.5", "concurrency"),
        ("concurrency = true", "concurrency"),
        ("concurrency = '4x'", "concurrency"),
        ("max_attempts = inf", "max_attempts"),
        ("max_response_bytes = {a = 1}", "max_response_bytes"),
        ("pending_codes = 17", "pending_codes"),
        ("pending_codes = [true]", "pending_codes"),
        ("pending_codes = [[1]]", "pending_codes"),
        ("pending_codes = [1.5]", "pending_codes"),
        ("skip_final_in = 17", "skip_final_in"),
        ("skip_final_in = ['a.jsonl', 1]", "skip_final_in"),
        ("detail = 'everything'", "detail"),
        ("detail = 1", "detail"),
        ("endpoint = 443", "endpoint"),
        ("region = ['ap-singapore']", "region"),
        ("language = 1979-05-27", "language"),
    ],
)
def test_bad_toml_type(build: Build, write_toml: Callable[..., str], toml: str, key: str) -> None:
    path = write_toml(toml + "\n")
    message = config_error(build, config_path=path)
    assert message.startswith(f"{key} (from config file {path}) must be ")
    assert message.endswith(".")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("rate", "fast", "a finite number"),
        ("rate", "nan", "a finite number"),
        ("rate", "1e999", "a finite number"),
        ("concurrency", "2.5", "a whole number"),
        ("max_attempts", "", None),  # empty: ignored, not an error
        ("detail", "FULL", "'full' or 'summary'"),
    ],
)
def test_bad_environment_value(build: Build, name: str, raw: str, expected: str | None) -> None:
    var = ENV_PREFIX + name.upper()
    if expected is None:
        settings, _ = build(env={var: raw})
        assert getattr(settings, name) == getattr(Settings(), name)
        return
    message = config_error(build, env={var: raw})
    assert message == f"{name} (from environment {var}) must be {expected}, got {raw!r}."


def test_bad_flag_value_names_the_flag(build: Build) -> None:
    message = config_error(build, flags={"max_attempts": "many"})
    assert message == "max_attempts (from --max-attempts) must be a whole number, got 'many'."


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("rate", 0, "rate must be above 0"),
        ("rate", -1, "rate must be above 0"),
        ("rate_margin", 1, "rate_margin must be at least 0 and below 1"),
        ("rate_margin", -0.01, "rate_margin must be at least 0 and below 1"),
        ("concurrency", 0, "concurrency must be between 1 and 1024"),
        ("concurrency", 1025, "concurrency must be between 1 and 1024"),
        ("max_attempts", 0, "max_attempts must be between 1 and 100"),
        ("max_attempts", 101, "max_attempts must be between 1 and 100"),
        ("timeout", 0, "timeout must be above 0"),
        ("backoff_base", -1, "backoff_base must be at least 0"),
        ("backoff_max", -1, "backoff_max must be at least 0"),
        ("retry_budget", -1, "retry_budget must be at least 0"),
        ("retry_refill", -0.5, "retry_refill must be at least 0"),
        ("max_response_bytes", 1023, "max_response_bytes must be at least 1024"),
        ("input_format", "xml", "input_format must be text, csv or jsonl"),
        ("region", "us-east-1", "region 'us-east-1' is not one of"),
        ("language", "fr-FR", "language 'fr-FR' must be"),
        ("ca_bundle", "/nonexistent/ca.pem", "ca_bundle /nonexistent/ca.pem is not a readable"),
    ],
)
@pytest.mark.parametrize("source", ["toml", "env", "flag"])
def test_out_of_range_values_name_key_and_origin(
    build: Build,
    write_toml: Callable[..., str],
    name: str,
    value: object,
    fragment: str,
    source: str,
) -> None:
    if source == "toml":
        path = write_toml(f"{name} = {value!r}\n".replace("'", '"'))
        message = config_error(build, config_path=path)
        origin = f"config file {path}"
    elif source == "env":
        var = ENV_PREFIX + name.upper()
        message = config_error(build, env={var: str(value)})
        origin = f"environment {var}"
    else:
        message = config_error(build, flags={name: value})
        origin = "--" + name.replace("_", "-")
    assert message.startswith(fragment)
    assert message.endswith(f"(from {origin}).")
    assert message.count(".") >= 1
    assert "\n" not in message


def test_limits_are_inclusive(build: Build) -> None:
    settings, _ = build(
        flags={
            "rate_margin": 0,
            "concurrency": 1024,
            "max_attempts": 100,
            "max_response_bytes": 1024,
            "backoff_base": 0,
            "retry_budget": 0,
        }
    )
    assert (settings.concurrency, settings.max_attempts, settings.max_response_bytes) == (
        1024,
        100,
        1024,
    )


@pytest.mark.parametrize("region", REGIONS)
def test_every_listed_region_is_accepted(build: Build, region: str) -> None:
    settings, _ = build(flags={"region": region})
    assert settings.region == region


@pytest.mark.parametrize("language", ["", "en-US", "zh-CN"])
def test_languages(build: Build, language: str) -> None:
    settings, _ = build(flags={"language": language})
    assert settings.language == language


# -- unknown keys and unreadable files -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("rte", "rate"),
        ("concurency", "concurrency"),
        ("secret_kye", "secret_key"),
        ("max_attempt", "max_attempts"),
    ],
)
def test_unknown_key_suggests_nearest(
    build: Build, write_toml: Callable[..., str], key: str, suggestion: str
) -> None:
    path = write_toml(f'{key} = "{FAKE_KEY}"\n')
    message = config_error(build, config_path=path)
    assert message == f"config file {path}: unknown key {key!r} (did you mean {suggestion!r}?)."


def test_unknown_key_without_a_near_match(build: Build, write_toml: Callable[..., str]) -> None:
    path = write_toml("[poller]\nrate = 3\n")
    message = config_error(build, config_path=path)
    assert message == f"config file {path}: unknown key 'poller'."


def test_toml_syntax_error(build: Build, write_toml: Callable[..., str]) -> None:
    path = write_toml(f'secret_key = "{FAKE_KEY}"\nrate = = 3\n')
    message = config_error(build, config_path=path)
    assert message.startswith(f"config file {path} is not valid TOML: ")
    assert "line 2" in message


def test_toml_not_utf8(build: Build, tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'region = "\xe9"\n')
    message = config_error(build, config_path=str(path))
    assert message.startswith(f"config file {path} is not valid TOML")


def test_missing_config_file(build: Build, tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert config_error(build, config_path=str(path)) == f"config file {path} does not exist."


def test_config_path_is_a_directory(build: Build, tmp_path: Path) -> None:
    message = config_error(build, config_path=str(tmp_path))
    assert message == f"config file {tmp_path} is a directory, not a TOML file."


def test_config_path_through_a_file_is_a_config_error(build: Build, tmp_path: Path) -> None:
    # ENOTDIR is neither "missing" nor "a directory": still one sentence, never a traceback.
    afile = tmp_path / "plain"
    afile.write_text("", encoding="utf-8")
    message = config_error(build, config_path=str(afile / "config.toml"))
    assert message.startswith(f"config file {afile / 'config.toml'} cannot be read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file regardless")
def test_unreadable_config_file(build: Build, write_toml: Callable[..., str]) -> None:
    path = write_toml("rate = 3\n", mode=0o000)
    message = config_error(build, config_path=path)
    assert message == f"config file {path} cannot be read (permission denied)."


# -- endpoint ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        ("https://faceid.intl.tencentcloudapi.com", "faceid.intl.tencentcloudapi.com"),
        ("https://faceid.intl.tencentcloudapi.com/", "faceid.intl.tencentcloudapi.com"),
        ("https://example.com:8443", "example.com:8443"),
        ("http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("http://127.0.0.1", "127.0.0.1"),
        ("http://localhost:9000", "localhost:9000"),
        ("http://LOCALHOST:9000", "LOCALHOST:9000"),
        ("http://[::1]:8080", "[::1]:8080"),
        ("HTTPS://faceid.intl.tencentcloudapi.com", "faceid.intl.tencentcloudapi.com"),
    ],
)
def test_good_endpoints_and_host(build: Build, endpoint: str, host: str) -> None:
    settings, _ = build(flags={"endpoint": endpoint})
    assert settings.endpoint == endpoint
    assert settings.host == host


@pytest.mark.parametrize(
    ("endpoint", "fragment"),
    [
        ("faceid.intl.tencentcloudapi.com", "must be an https:// URL"),
        ("ftp://faceid.intl.tencentcloudapi.com", "must be an https:// URL"),
        ("https://", "must be an https:// URL"),
        ("https://:443", "must be an https:// URL"),
        ("http://faceid.intl.tencentcloudapi.com", "plain http://"),
        ("http://10.0.0.1:8080", "plain http://"),
        ("http://0.0.0.0:8080", "plain http://"),
        ("http://localhost.example.com", "plain http://"),
        ("http://[2001:db8::1]:80", "plain http://"),
        ("https://example.com/v1", "must not have a path, query or fragment"),
        ("https://example.com/?a=1", "must not have a path, query or fragment"),
        ("https://example.com?", "must not have a path, query or fragment"),
        ("https://example.com/#top", "must not have a path, query or fragment"),
        ("https://user:pw@example.com", "must not hold a user name or password"),
        ("https://example.com:notaport", "has an invalid port"),
        ("https://example.com:99999", "has an invalid port"),
    ],
)
def test_bad_endpoints(build: Build, endpoint: str, fragment: str) -> None:
    message = config_error(build, flags={"endpoint": endpoint})
    assert fragment in message
    assert message.endswith("(from --endpoint).")


def test_pacing_rate_is_rate_times_one_minus_margin(build: Build) -> None:
    settings, _ = build(flags={"rate": 20, "rate_margin": 0.05})
    assert settings.pacing_rate == pytest.approx(19.0)
    settings, _ = build(flags={"rate": 50, "rate_margin": 0})
    assert settings.pacing_rate == 50.0


# -- secrets never shown -------------------------------------------------------------------------


def test_config_errors_never_show_secrets(build: Build, write_toml: Callable[..., str]) -> None:
    # Each of these files holds the fake key and is wrong in some other way.
    bodies = [
        f'secret_key = "{FAKE_KEY}"\nrate = "fast"\n',
        f'secret_key = "{FAKE_KEY}"\nsecret_ky = "{FAKE_KEY}"\n',
        f'secret_key = "{FAKE_KEY}"\n',
        f'secret_key = "{FAKE_KEY}\n',
        f'secret_id = "x"\nsecret_key = "{FAKE_KEY}"\nregion = "mars"\n',
        f'secret_id = "x"\nsecret_key = "{FAKE_KEY}"\nsession_token = ["{FAKE_TOKEN}"]\n',
    ]
    for n, body in enumerate(bodies):
        path = write_toml(body, name=f"c{n}.toml")
        config_error(build, config_path=path)  # asserts neither secret is in the message


def test_an_unknown_setting_from_python_suggests_the_nearest(build: Build) -> None:
    # Flags come from argparse (always valid) or from a Python caller, who can mistype.
    message = config_error(build, flags={"endpont": "https://example.com"})
    assert message == "unknown setting 'endpont' (did you mean 'endpoint'?)."


def test_the_reconcile_table_may_share_the_config_file(
    build: Build, write_toml: Callable[..., str]
) -> None:
    path = write_toml(
        'rate = 12\n[reconcile]\noutcome_column = "kyc"\n[reconcile.vocabulary]\nok = "passed"\n'
    )
    settings, _ = build(config_path=path)
    assert settings.rate == 12
