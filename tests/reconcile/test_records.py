"""Reading the user's records: CSV and JSON Lines, column choice, and one sentence per bad line."""

from __future__ import annotations

import io

import pytest

from poller.api.outcomes import Status
from poller.reconcile._records import OurRecord, RecordsError, RecordsReader
from poller.reconcile._vocabulary import Vocabulary

S = Status


def read(name: str, data: bytes, **columns: str) -> list[OurRecord]:
    reader = RecordsReader(name, Vocabulary(), **columns)
    stream = io.BufferedReader(io.BytesIO(data))
    records = list(reader.records(stream))
    assert reader.read == len(records)
    return records


def fails(name: str, data: bytes, **columns: str) -> str:
    with pytest.raises(RecordsError) as caught:
        read(name, data, **columns)
    return str(caught.value)


def test_csv_with_default_columns_bom_and_blank_lines() -> None:
    data = "\ufeffid,SdkToken,Status\r\n1,tok-a,approved\r\n\r\n2, tok-b ,2016\r\n".encode()
    assert read("mine.csv", data) == [
        OurRecord("tok-a", S.PASSED, "approved", 2),
        OurRecord("tok-b", S.FAILED, "2016", 4),
    ]


def test_jsonl_by_extension_and_by_content_with_numeric_codes() -> None:
    data = b'{"token": "a", "result": 0}\n\n{"token": "b", "result": "rejected"}\n'
    expected = [OurRecord("a", S.PASSED, "0", 1), OurRecord("b", S.FAILED, "rejected", 3)]
    assert read("mine.jsonl", data) == expected
    assert read("export.txt", data) == expected  # `{` first: JSON Lines


@pytest.mark.parametrize("name", ["mine.jsonl", "export.txt", "-"])
def test_a_bom_before_json_lines_is_skipped_by_name_and_by_content(name: str) -> None:
    data = "\ufeff".encode() + b'{"token": "a", "result": 0}\n{"token": "b", "status": "denied"}\n'
    assert read(name, data) == [
        OurRecord("a", S.PASSED, "0", 1),
        OurRecord("b", S.FAILED, "denied", 2),
    ]


def test_named_columns_win_over_the_defaults() -> None:
    data = b"token,ref,status,final_call\nx,y,pending,approved\n"
    assert read("m.csv", data, token_column="REF", outcome_column="final_call") == [
        OurRecord("y", S.PASSED, "approved", 2)
    ]
    jsonl = b'{"ref": "y", "final_call": "approved", "token": "x", "status": "pending"}\n'
    assert read("m.jsonl", jsonl, token_column="ref", outcome_column="final_call") == [
        OurRecord("y", S.PASSED, "approved", 1)
    ]


def test_jsonl_lines_may_change_their_field_names() -> None:
    data = b'{"token": "a", "status": "ok"}\n{"SdkToken": "b", "decision": "denied"}\n'
    assert read("m.jsonl", data) == [
        OurRecord("a", S.PASSED, "ok", 1),
        OurRecord("b", S.FAILED, "denied", 2),
    ]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "m.csv",
            b"token,decision\na,approved\nb,maybe\n",
            "records file m.csv line 3: the outcome 'maybe' is not in the vocabulary; map it "
            "with --map 'maybe=STATUS'",
        ),
        ("m.csv", b"token,decision\na\n", "records file m.csv line 2: the row has 1 fields"),
        ("m.csv", b"token,decision\n ,approved\n", "records file m.csv line 2: the token is empty"),
        ("m.csv", b"", "records file m.csv is empty: it has no header line."),
        ("m.csv", b"id,decision\n", "records file m.csv has no token or SdkToken column"),
        ("m.csv", b"token,when\n", "records file m.csv has no outcome column"),
        ("m.csv", b"token,decision\n\xff,approved\n",
         "records file m.csv line 2: the text is not UTF-8"),
        ("m.jsonl", b'{"token": "a", "status": "ok"}\n{"token": "b", "sta\n',
         "records file m.jsonl line 2: not a JSON object"),
        ("m.jsonl", b"[1]\n", "records file m.jsonl line 1: not a JSON object."),
        ("m.jsonl", b'{"status": "ok"}\n',
         'records file m.jsonl line 1: no "token or SdkToken" field'),
        ("m.jsonl", b'{"token": "a"}\n', "records file m.jsonl line 1: no outcome field"),
        ("m.jsonl", b'{"token": 5, "status": "ok"}\n',
         "records file m.jsonl line 1: the token is empty or not a string."),
        ("m.jsonl", b'{"token": "a", "status": [1]}\n',
         "records file m.jsonl line 1: the outcome [1] is neither"),
        ("m.jsonl", b'{"token": "\\ud800", "status": "ok"}\n',
         "records file m.jsonl line 1: a string holds a lone surrogate escape"),
        ("m.jsonl", b'{"token": "a", "status": "\xff"}\n',
         "records file m.jsonl line 1: the text is not UTF-8."),
        ("m.csv", b'token,decision\na,"ma\nybe"\n',
         "records file m.csv line 3: the outcome 'ma\\nybe' is not in the vocabulary; it holds "
         "a control character"),
        ("m.jsonl", b'{"token": "a", "status": "\\u001b[31mno\\u001b[0m way"}\n',
         "records file m.jsonl line 1: the outcome '\\x1b[31mno\\x1b[0m way' is not"),
        ("m.csv", b'token,"out\ncome"\n', "records file m.csv has no outcome column"),
    ],
)  # fmt: skip
def test_malformed_records_are_one_sentence_naming_file_and_line(
    name: str, data: bytes, message: str
) -> None:
    text = fails(name, data)
    assert text.startswith(message)
    assert text.endswith(".")
    assert "\n" not in text
