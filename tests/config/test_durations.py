"""`--stop-after DURATION` (poller/config/durations.py) and the `stop_after`/`order` settings."""

from __future__ import annotations

import pytest

from poller.config.durations import format_duration, parse_duration
from poller.config.errors import ConfigError
from tests.config.support import Build


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90m", 5400.0),
        ("4s", 4.0),
        ("1h30m", 5400.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("0.5h", 1800.0),
        ("1h0m5s", 3605.0),
        (" 2H ", 7200.0),
        ("5400", 5400.0),  # a bare number is seconds
        (30, 30.0),
        (1.5, 1.5),
        ("0", 0.0),
    ],
)
def test_durations_people_write(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "h", "90x", "30m1h", "1h1h", "-5m", "-1", "1.h", "inf", "nan", True, None, [1]]
)
def test_anything_else_is_refused_with_the_forms_that_work(text: object) -> None:
    with pytest.raises(ValueError, match="not a duration such as 90m, 4s, 1h30m or 2h"):
        parse_duration(text)


def test_a_duration_reads_back_as_people_write_it() -> None:
    assert [format_duration(s) for s in (4, 90, 5400, 7200, 90061)] == [
        "4s",
        "1m30s",
        "1h30m",
        "2h00m",
        "25h01m01s",
    ]


def test_stop_after_comes_from_toml_env_or_flag_as_a_duration(
    build: Build, write_toml: object
) -> None:
    settings, _ = build(env={"FACEID_POLLER_STOP_AFTER": "90m"})
    assert settings.stop_after == 5400.0
    settings, _ = build(env={"FACEID_POLLER_STOP_AFTER": "90m"}, flags={"stop_after": "4s"})
    assert settings.stop_after == 4.0
    settings, _ = build(flags={"order": "expiry"})
    assert settings.order == "expiry"


def test_a_bad_duration_or_order_is_one_sentence_naming_where_it_came_from(build: Build) -> None:
    with pytest.raises(ConfigError, match=r"stop_after \(from --stop-after\): '1x' is not a"):
        build(flags={"stop_after": "1x"})
    with pytest.raises(ConfigError, match=r"order must be input or expiry, got 'oldest'"):
        build(env={"FACEID_POLLER_ORDER": "oldest"})
