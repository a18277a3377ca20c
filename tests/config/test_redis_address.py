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
