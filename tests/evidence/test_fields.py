"""Which files an answer offers, and the names they get: pure."""

from __future__ import annotations

from typing import Any

import pytest

from poller.evidence.fields import (
    ALL_FIELDS,
    conflict_name,
    is_allowed_link,
    shown_url,
    stored_name,
    token_dir,
    wanted,
)
from tests.evidence.media import answer, blob


def test_every_field_of_every_attempt_is_wanted_with_its_index() -> None:
    files = {name: blob(name) for name in ALL_FIELDS}
    found, bad = wanted(answer(files, attempts=2))
    assert bad == []
    paths = {w.field for w in found}
    assert "CardVerifyResults[0].CardVideo" in paths
    assert {"CompareResults[0].BestFrame", "CompareResults[1].BestFrame"} <= paths
    assert len(found) == 3 + 2 * 6
    best = next(w for w in found if w.field == "CompareResults[1].BestFrame")
    assert best.stored == "CompareResults.1.BestFrame.bin"
    assert best.size == 300
    assert len(best.md5) == 32


def test_only_the_chosen_fields() -> None:
    files = {name: blob(name) for name in ALL_FIELDS}
    found, _ = wanted(answer(files), ["BestFrame", "CardImage"])
    assert sorted(w.field for w in found) == [
        "CardVerifyResults[0].CardImage",
        "CompareResults[0].BestFrame",
    ]


def test_empty_links_are_not_offered_and_bad_ones_are_unusable() -> None:
    response: dict[str, Any] = {
        "CardVerifyResults": [
            {
                "CardImage": {"Url": "", "MD5": "", "Size": 0},
                "CardVideo": {"Url": "http://media.example.com/v.mp4?sign=SECRET", "MD5": "a" * 32},
            }
        ],
        "CompareResults": [
            {"BestFrame": {"Url": "https://m/b.jpg?sign=SECRET", "MD5": "nope", "Size": 3}},
            {"LiveVideo": {"Url": "https://m/l.mp4", "MD5": "b" * 32, "Size": True}},
        ],
    }
    found, bad = wanted(response)
    assert found == []
    reasons = {u.field: u.reason for u in bad}
    assert set(reasons) == {
        "CardVerifyResults[0].CardVideo",
        "CompareResults[0].BestFrame",
        "CompareResults[1].LiveVideo",
    }
    assert "not a usable https link" in reasons["CardVerifyResults[0].CardVideo"]
    assert all("SECRET" not in r for r in reasons.values())


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://cos.example.com/a.jpg?sign=1", True),
        ("http://127.0.0.1:8080/media/a.jpg?sign=1", True),
        ("http://[::1]:8080/a", True),
        ("http://localhost/a", True),
        ("http://10.0.0.1/a", False),
        ("http://media.example.com/a", False),
        ("ftp://127.0.0.1/a", False),
        ("file:///etc/passwd", False),
        ("https:///nohost", False),
        ("http://[::1/a", False),
    ],
)
def test_links_are_https_or_loopback_http(url: str, allowed: bool) -> None:
    assert is_allowed_link(url) is allowed


def test_a_shown_link_has_no_query_string_nor_user_info() -> None:
    shown = shown_url("https://user:pw@cos.example.com:8443/a/b.mp4?q-signature=abc&x=1")
    assert shown == "https://cos.example.com:8443/a/b.mp4?…"
    assert "abc" not in shown
    assert "pw" not in shown


def test_stored_names_keep_a_plain_suffix_only() -> None:
    assert stored_name("CardVerifyResults[0].CardVideo", "https://h/x/v.MP4?s=1") == (
        "CardVerifyResults.0.CardVideo.mp4"
    )
    assert stored_name("CompareResults[2].LiveData", "https://h/x/data") == (
        "CompareResults.2.LiveData.bin"
    )
    assert stored_name("CompareResults[0].BestFrame", "https://h/x/a.j/p?g") == (
        "CompareResults.0.BestFrame.bin"
    )
    assert conflict_name("CompareResults.0.BestFrame.jpg", "ab" * 16) == (
        f"CompareResults.0.BestFrame.{'ab' * 16}.jpg"
    )


@pytest.mark.parametrize(
    "token", ["..", ".", "../../etc", "a/b", ".hidden", "x" * 400, "tok en%41", "", "é"]
)
def test_no_token_names_a_directory_outside_dest_or_a_hidden_one(token: str) -> None:
    name = token_dir(token)
    assert name
    assert "/" not in name
    assert not name.startswith(".")
    assert len(name.encode()) <= 255


def test_token_dirs_are_the_token_when_plain_and_never_collide() -> None:
    assert token_dir("0A1B2C3D-4E5F-6789-ABCD-EF0123456789") == (
        "0A1B2C3D-4E5F-6789-ABCD-EF0123456789"
    )
    tokens = ["a/b", "a%2Fb", "a_b", "..", "%2E%2E", ".a", "%2Ea"]
    assert len({token_dir(t) for t in tokens}) == len(tokens)


def test_a_token_cannot_spell_the_name_a_long_token_is_cut_to() -> None:
    import hashlib

    long = "a" * 201
    crafted = "a" * 150 + "~" + hashlib.sha256(long.encode()).hexdigest()[:32]
    assert token_dir(long) != token_dir(crafted)
    assert "~" not in token_dir("a~b")
