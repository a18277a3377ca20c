"""The shared quota's Redis URL: checked, and shown without its password (pure, no Redis)."""

from __future__ import annotations

import pytest

from poller.config.errors import ConfigError
from poller.config.redis_address import KEY_PREFIX, parse_address, schedule_key


@pytest.mark.parametrize(
    ("url", "shown", "password"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", ""),
        ("redis://:s3cr%40t@quota:6379/2", "redis://quota:6379/2", "s3cr@t"),
        (
            "rediss://app:pw-long-enough@quota.internal:6380",
            "rediss://app@quota.internal:6380",
            "pw-long-enough",
        ),
        ("unix:///run/redis.sock", "unix:///run/redis.sock", ""),
        ("  redis://quota/1 ", "redis://quota/1", ""),
    ],
)
def test_accepted_urls_are_shown_without_their_password(
    url: str, shown: str, password: str
) -> None:
    address = parse_address(url)
    assert address.shown == shown
    assert address.password == password
    assert str(address) == shown
    assert repr(address) == f"RedisAddress({shown!r})"
    if password:
        assert password not in repr(address)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://:pw-hidden-here@quota:6379/0", "must be a redis://, rediss:// (TLS) or unix://"),
        ("redis://:pw-hidden-here@:6379/0", "names no host"),
        ("redis://:pw-hidden-here@quota:port/0", "must be a Redis URL like"),
        ("redis://:pw-hidden-here@quota:6379/zero", "must be a database number"),
        ("unix://", "names no socket path"),
        ("quota:6379", "must be a redis://"),
    ],
)
def test_bad_urls_are_one_sentence_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_address(url)
    message = str(caught.value)
    assert says in message
    assert "pw-hidden-here" not in message
    assert message.endswith(".")
    assert "\n" not in message


def test_the_key_is_a_hash_per_account_and_action() -> None:
    a = schedule_key("AKIDaccountone", "GetSdkVerificationResult")
    assert a.startswith(KEY_PREFIX)
    assert "AKIDaccountone" not in a
    assert a == schedule_key("AKIDaccountone", "GetSdkVerificationResult")
    assert a != schedule_key("AKIDaccounttwo", "GetSdkVerificationResult")
    assert a != schedule_key("AKIDaccountone", "ApplySdkVerificationToken")


def test_a_bad_url_in_the_settings_names_its_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    from poller.config.settings import build_settings

    with pytest.raises(ConfigError) as caught:
        build_settings(
            config_path=None,
            flags={"shared_quota": "http://:pw-hidden-here@quota/0"},
            env={"TENCENTCLOUD_SECRET_ID": "AKIDx", "TENCENTCLOUD_SECRET_KEY": "k" * 32},
        )
    assert "(from --shared-quota)" in str(caught.value)
    assert "pw-hidden-here" not in str(caught.value)


# -- found in review: passwords that urlsplit misreads, a password in the query, port 0 ----------


@pytest.mark.parametrize("password", ["se/cr3tpass", "se#cr3tpass", "se?cr3tpass"])
def test_an_unencoded_password_is_refused_without_showing_it(password: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_address(f"redis://:{password}@127.0.0.1:6379/0")
    message = str(caught.value)
    assert "percent-encoded" in message
    assert "cr3tpass" not in message
    assert "redis://127.0.0.1:6379/0" in message


def test_a_password_in_the_query_is_never_shown_and_is_a_secret() -> None:
    address = parse_address("redis://127.0.0.1:6379/0?password=hunter2secretpw&db=0")
    assert address.shown == "redis://127.0.0.1:6379/0"
    assert "hunter2secretpw" in address.secrets
    assert "hunter2secretpw" not in repr(address)


def test_both_forms_of_an_encoded_password_are_secrets() -> None:
    address = parse_address("redis://:p%40ss%2Fword99@quota:6379/0")
    assert address.password == "p@ss/word99"
    assert {"p%40ss%2Fword99", "p@ss/word99"} <= set(address.secrets)


def test_port_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match="between 1 and 65535"):
        parse_address("redis://127.0.0.1:0/0")


def test_a_share_too_small_to_mean_anything_is_refused() -> None:
    from poller.config.settings import build_settings

    with pytest.raises(ConfigError, match=r"max_share must be between 0\.01 and 1"):
        build_settings(
            config_path=None,
            flags={"max_share": 1e-300},
            env={"TENCENTCLOUD_SECRET_ID": "AKIDx", "TENCENTCLOUD_SECRET_KEY": "k" * 32},
        )
