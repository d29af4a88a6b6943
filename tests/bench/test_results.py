"""The result table prints ratios so that a miss never reads as the bound."""

from __future__ import annotations

from bench.results import Line, ratio_at_least, table_rows


def test_ratio_just_below_bound_prints_below() -> None:
    line = Line(
        "3", "catch-up", "events/s", 22_780, 116_317, "set-based SQL",
        (ratio_at_least(0.2),),
    )  # fmt: skip

    [row] = table_rows([line])

    assert row[6] == "0.196"
    assert row[8] == "MISSED"
