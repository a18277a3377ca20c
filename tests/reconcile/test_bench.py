"""The reconcile benchmark on a tiny case: its data hits every category it promises."""

from __future__ import annotations

from pathlib import Path

from bench import reconcile as bench_reconcile


def test_the_benchmark_data_and_measurement(tmp_path: Path) -> None:
    child, report = bench_reconcile.measure(3_000, tmp_path)
    assert child.returncode == 1
    assert child.maxrss_mb > 0
    categories = report["categories"]
    assert isinstance(categories, dict)
    # Token 0 is on neither side (0 % 997 == 0 % 991 == 0), so 2,999 tokens have a category.
    assert sum(categories.values()) == 2_999
    assert categories["passed_not_passed"] == 3  # 1, 1001, 2001: recorded approved, failed
    # Missing in ours: 997 (passed) and 2991 (failed); 1994 is pending, so not_final.
    assert categories["missing_in_ours"] == 2
    assert categories["missing_in_results"] == 3  # 991, 1982, 2973
    assert categories["not_final"] == 600  # every fifth token is pending
    results = report["results"]
    assert isinstance(results, dict)
    assert results["superseded"] == 299  # every tenth token restated, but token 0
    assert list(tmp_path.iterdir()) == []  # the inputs are removed after measuring
