"""The word → status rules: defaults, result codes, overrides, and what is refused."""

from __future__ import annotations

import pytest

from poller.api.outcomes import Status
from poller.reconcile._vocabulary import (
    Vocabulary,
    VocabularyError,
    from_table,
    normalize,
    parse_mapping,
)

S = Status


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("passed", S.PASSED),
        ("Approved", S.PASSED),
        (" OK ", S.PASSED),
        ("verified", S.PASSED),
        ("0", S.PASSED),
        ("rejected", S.FAILED),
        ("DENIED", S.FAILED),
        ("2016", S.FAILED),
        ("1001", S.FAILED),
        ("-999", S.PENDING),
        ("17", S.PENDING),
        ("In Progress", S.PENDING),
        ("in-progress", S.PENDING),
        ("expired", S.EXPIRED),
        ("invalid", S.INVALID_TOKEN),
        ("invalid_token", S.INVALID_TOKEN),
    ],
)
def test_defaults(word: str, status: Status) -> None:
    assert Vocabulary().status_of(word) is status


@pytest.mark.parametrize("word", ["maybe", "", "passed!", "1.5", "error"])
def test_unknown_words_are_none(word: str) -> None:
    assert Vocabulary().status_of(word) is None


def test_mappings_add_and_override_and_win_over_the_code_rule() -> None:
    vocabulary = Vocabulary().with_mappings(
        [
            parse_mapping("Green Light=passed"),
            parse_mapping("approved=failed"),
            parse_mapping("17=failed"),
        ]
    )
    assert vocabulary.status_of("green-light") is S.PASSED
    assert vocabulary.status_of("approved") is S.FAILED
    assert vocabulary.status_of("17") is S.FAILED
    assert Vocabulary().status_of("approved") is S.PASSED  # the original is unchanged


def test_an_empty_word_can_be_mapped() -> None:
    assert Vocabulary().with_mappings([parse_mapping("=pending")]).status_of("  ") is S.PENDING


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("approved", "--map 'approved' must look like WORD=STATUS, e.g. approved=passed."),
        ("approved=yes", "--map 'approved=yes': 'yes' is not a status; use one of passed, failed"),
    ],
)
def test_bad_mappings_are_one_sentence(text: str, message: str) -> None:
    with pytest.raises(VocabularyError) as caught:
        parse_mapping(text)
    assert str(caught.value).startswith(message)


def test_toml_table() -> None:
    pairs = from_table({"Good": "passed", "bad": "FAILED"}, "[reconcile.vocabulary]")
    assert pairs == [("good", S.PASSED), ("bad", S.FAILED)]
    with pytest.raises(VocabularyError, match=r"\[reconcile.vocabulary\]: the value of 'x'"):
        from_table({"x": 1}, "[reconcile.vocabulary]")
    with pytest.raises(VocabularyError, match="must be a table"):
        from_table(["x"], "[reconcile.vocabulary]")


def test_normalize() -> None:
    assert normalize("  In-Progress now ") == "in_progress_now"
