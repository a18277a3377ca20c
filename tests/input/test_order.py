"""Expiry order's compact store and the late-token arithmetic (poller/input/order.py)."""

from __future__ import annotations

import pytest

from poller.input.entries import TokenEntry
from poller.input.order import ExpiryOrder, late_count


def test_oldest_first_ties_in_input_order_undated_last_in_input_order() -> None:
    order = ExpiryOrder()
    entries = [
        TokenEntry("u1", 1),
        TokenEntry("b", 2, 200.0),
        TokenEntry("a", 3, 100.0),
        TokenEntry("tokén-ünïcode", 4, 150.0),  # non-ASCII survives the byte store
        TokenEntry("u2", 5),
        TokenEntry("b-tie", 6, 200.0),
        TokenEntry("zero", 7, 0.0),
    ]
    for entry in entries:
        order.add(entry)
    assert len(order) == 7
    assert order.dated == 5
    order.sort()
    assert [e.token for e in order] == ["zero", "a", "tokén-ünïcode", "b", "b-tie", "u1", "u2"]
    # Each comes back whole: its line and its issued_at too.
    assert list(order)[2] == TokenEntry("tokén-ünïcode", 4, 150.0)
    assert list(order.issued_in_order()) == [0.0, 100.0, 150.0, 200.0, 200.0, None, None]
    # Bytes: the tokens' UTF-8 + 8 (end) + 8 (issued_at) + 8 (line) + 8 (order) each.
    blob = sum(len(e.token.encode()) for e in entries)
    assert order.nbytes() == blob + 7 * 32
    assert "sorted" in repr(order)


def test_reading_before_sorting_is_a_mistake_said_plainly() -> None:
    order = ExpiryOrder()
    order.add(TokenEntry("a", 1, 1.0))
    with pytest.raises(RuntimeError, match=r"sort\(\) must be called"):
        list(order)


def test_late_count_by_hand() -> None:
    # One request a second from t=1000, a 100 s window: the k-th leaves at 1000 + k.
    issued: list[float | None] = [950.0, None, 901.0, 899.0, 990.0, 897.5]
    # k=0 950+100=1050 >= 1000 ok; k=1 undated; k=2 1001 < 1002 late; k=3 999 < 1003 late;
    # k=4 1090 ok; k=5 997.5 < 1005 late.
    assert late_count(issued, 1000.0, 1.0, 100.0) == 3
    # Just in time is not late: 1001 == 1000 + 1.
    assert late_count([None, 901.0], 1000.0, 1.0, 100.0) == 0
    assert late_count(issued, 1000.0, 1.0, 0.0) == 0  # no window, nothing is late


def test_the_memory_bench_runs_on_a_tiny_case(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import expiry_order

    monkeypatch.setattr("sys.argv", ["expiry_order", "1000"])
    assert expiry_order.main() == 0
    # 36 bytes of token + 4 arrays of 8 bytes each.
    assert capsys.readouterr().out.startswith("1000 tokens: buffers 0 MB (68 B each)")
