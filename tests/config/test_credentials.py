"""Credential lookup (poller/config/credentials.py): environment, config file, SDK profile, in
that order; warnings for readable secrets; and secrets never shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from poller.config.credentials import Credentials
from tests.config.support import (
    ENV_CREDS,
    FAKE_ID,
    FAKE_KEY,
    FAKE_TOKEN,
    Build,
    config_error,
    write_profile,
)

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
