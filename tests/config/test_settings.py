"""Settings (poller/settings.py): precedence, coercion, validation, credentials, secrecy."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import certifi
import pytest

from poller.config.settings import (
    DEFAULT_ENDPOINT,
    ENV_PREFIX,
    FIELD_NAMES,
    REGIONS,
    ConfigError,
    Credentials,
    Detail,
    Settings,
    build_settings,
)

FAKE_ID = "AKIDfakeIDforSettingsTests"
FAKE_KEY = "zzFAKEsecretKEYmustNEVERappear42"
FAKE_TOKEN = "zzFAKEsessionTOKENmustNEVERappear42"
ENV_CREDS = {"TENCENTCLOUD_SECRET_ID": FAKE_ID, "TENCENTCLOUD_SECRET_KEY": FAKE_KEY}

Build = Callable[..., tuple[Settings, list[str]]]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty home directory, so the real ~/.tencentcloud/credentials never leaks in."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[..., str]:
    def write(text: str, name: str = "config.toml", mode: int = 0o600) -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        return str(path)

    return write


@pytest.fixture
def build(home: Path) -> Build:
    def run(
        config_path: str | None = None,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        need_credentials: bool = False,
    ) -> tuple[Settings, list[str]]:
        return build_settings(
            config_path=config_path,
            flags=flags or {},
            env=env if env is not None else {},
            home=home,
            need_credentials=need_credentials,
        )

    return run


def write_profile(home: Path, text: str, mode: int = 0o600) -> Path:
    folder = home / ".tencentcloud"
    folder.mkdir(exist_ok=True)
    path = folder / "credentials"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def config_error(build: Build, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        build(**kwargs)
    message = str(info.value)
    assert FAKE_KEY not in message
    assert FAKE_TOKEN not in message
    return message


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


# -- credentials (SPEC §3) -----------------------------------------------------------------------


def creds_toml(
    write_toml: Callable[..., str],
    mode: int = 0o600,
    token: str | None = None,
    sid: str = "ID-FILE",
) -> str:
    text = f'secret_id = "{sid}"\nsecret_key = "{FAKE_KEY}-file"\n'
    if token is not None:
        text += f'session_token = "{token}"\n'
    return write_toml(text, mode=mode)


def test_environment_credentials_win(
    build: Build, write_toml: Callable[..., str], home: Path
) -> None:
    write_profile(home, "[default]\nsecret_id = ID-PROFILE\nsecret_key = k\n")
    path = creds_toml(write_toml)
    env = {**ENV_CREDS, "TENCENTCLOUD_TOKEN": FAKE_TOKEN}
    settings, warnings = build(config_path=path, env=env, need_credentials=True)
    assert settings.credentials == Credentials(FAKE_ID, FAKE_KEY, FAKE_TOKEN, "environment")
    assert warnings == []


def test_environment_needs_both_halves(build: Build, write_toml: Callable[..., str]) -> None:
    path = creds_toml(write_toml)
    settings, _ = build(
        config_path=path, env={"TENCENTCLOUD_SECRET_ID": FAKE_ID}, need_credentials=True
    )
    assert settings.credentials is not None
    assert settings.credentials.secret_id == "ID-FILE"  # half a pair in env falls through


def test_config_file_credentials_win_over_profile(
    build: Build, write_toml: Callable[..., str], home: Path
) -> None:
    write_profile(home, "[default]\nsecret_id = ID-PROFILE\nsecret_key = k\n")
    path = creds_toml(write_toml, token=FAKE_TOKEN)
    settings, warnings = build(config_path=path, need_credentials=True)
    assert settings.credentials == Credentials("ID-FILE", FAKE_KEY + "-file", FAKE_TOKEN, path)
    assert warnings == []


def test_environment_token_is_not_mixed_with_file_keys(
    build: Build, write_toml: Callable[..., str]
) -> None:
    path = creds_toml(write_toml)
    settings, _ = build(config_path=path, env={"TENCENTCLOUD_TOKEN": FAKE_TOKEN})
    assert settings.credentials is not None
    assert settings.credentials.session_token is None


def test_profile_credentials(build: Build, home: Path) -> None:
    path = write_profile(
        home,
        f"[other]\nsecret_id = NO\nsecret_key = NO\n[default]\nsecret_id = ID-P\n"
        f"secret_key = {FAKE_KEY}%x\n",
    )
    settings, warnings = build(need_credentials=True)
    # "%" is data: configparser's interpolation must be off.
    assert settings.credentials == Credentials("ID-P", FAKE_KEY + "%x", None, str(path))
    assert warnings == []


@pytest.mark.parametrize(
    "text",
    [
        "[other]\nsecret_id = a\nsecret_key = b\n",
        "[default]\nsecret_id = a\n",
        "[default]\nsecret_id = a\nsecret_key =\n",
    ],
)
def test_profile_without_a_default_pair_is_no_credentials(
    build: Build, home: Path, text: str
) -> None:
    write_profile(home, text)
    settings, _ = build()
    assert settings.credentials is None


def test_invalid_profile_file(build: Build, home: Path) -> None:
    path = write_profile(home, f"secret_key = {FAKE_KEY}\n")
    message = config_error(build)
    assert message == f"credentials file {path} is not a valid INI file."


def test_no_credentials_names_the_three_ways(build: Build) -> None:
    message = config_error(build, need_credentials=True)
    assert "TENCENTCLOUD_SECRET_ID" in message
    assert "TENCENTCLOUD_SECRET_KEY" in message
    assert "secret_id/secret_key in the config file" in message
    assert "~/.tencentcloud/credentials" in message


def test_no_credentials_is_fine_when_not_needed(build: Build) -> None:
    settings, _ = build(need_credentials=False)
    assert settings.credentials is None


@pytest.mark.parametrize(
    "text",
    [
        'secret_id = "ID"\n',
        f'secret_key = "{FAKE_KEY}"\n',
        f'secret_id = ""\nsecret_key = "{FAKE_KEY}"\n',
    ],
)
def test_config_file_with_half_a_pair(
    build: Build, write_toml: Callable[..., str], text: str
) -> None:
    path = write_toml(text)
    message = config_error(build, config_path=path)
    assert message == f"config file {path} must set both secret_id and secret_key as strings."


@pytest.mark.parametrize("key", ["secret_id", "secret_key", "session_token"])
@pytest.mark.parametrize("value", ["0", "12345", "true", "['x']"])
def test_config_file_secret_of_wrong_type(
    build: Build, write_toml: Callable[..., str], key: str, value: str
) -> None:
    path = write_toml(f"{key} = {value}\n")
    message = config_error(build, config_path=path, env=ENV_CREDS)
    assert message == f"config file {path}: {key} must be a string."
    assert value not in message.replace(key, "").replace(str(path), "")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_config_file_with_secret_warns(
    build: Build, write_toml: Callable[..., str], mode: int
) -> None:
    path = creds_toml(write_toml, mode=mode)
    settings, warnings = build(config_path=path)
    assert settings.credentials is not None
    assert warnings == [
        f"{path} holds a secret key and can be read by other users; run: chmod 600 {path}"
    ]
    assert FAKE_KEY not in warnings[0]


def test_readable_config_file_warns_even_when_environment_wins(
    build: Build, write_toml: Callable[..., str]
) -> None:
    path = creds_toml(write_toml, mode=0o644)
    settings, warnings = build(config_path=path, env=ENV_CREDS)
    assert settings.credentials is not None
    assert settings.credentials.source == "environment"
    assert len(warnings) == 1
    assert path in warnings[0]


def test_readable_config_file_with_only_a_session_token_warns(
    build: Build, write_toml: Callable[..., str]
) -> None:
    path = write_toml(f'session_token = "{FAKE_TOKEN}"\n', mode=0o644)
    _, warnings = build(config_path=path, env=ENV_CREDS)
    assert len(warnings) == 1
    assert FAKE_TOKEN not in warnings[0]


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o620])
def test_private_config_file_does_not_warn(
    build: Build, write_toml: Callable[..., str], mode: int
) -> None:
    path = creds_toml(write_toml, mode=mode)
    _, warnings = build(config_path=path)
    assert warnings == []


def test_readable_config_file_without_secrets_does_not_warn(
    build: Build, write_toml: Callable[..., str]
) -> None:
    path = write_toml("rate = 5\n", mode=0o644)
    _, warnings = build(config_path=path)
    assert warnings == []


def test_readable_profile_warns_and_private_one_does_not(build: Build, home: Path) -> None:
    path = write_profile(home, f"[default]\nsecret_id = ID\nsecret_key = {FAKE_KEY}\n", 0o644)
    _, warnings = build(need_credentials=True)
    assert warnings == [
        f"{path} holds a secret key and can be read by other users; run: chmod 600 {path}"
    ]
    path.chmod(0o600)
    _, warnings = build(need_credentials=True)
    assert warnings == []


# -- secrets never shown -------------------------------------------------------------------------


def test_repr_of_settings_and_credentials_hides_secrets(
    build: Build, write_toml: Callable[..., str]
) -> None:
    env = {**ENV_CREDS, "TENCENTCLOUD_TOKEN": FAKE_TOKEN}
    settings, _ = build(env=env, need_credentials=True)
    assert settings.credentials is not None
    for text in (
        repr(settings),
        str(settings),
        repr(settings.credentials),
        str(settings.credentials),
    ):
        assert FAKE_KEY not in text
        assert FAKE_TOKEN not in text
    assert FAKE_ID in repr(settings.credentials)  # the id is not a secret and helps debugging


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
