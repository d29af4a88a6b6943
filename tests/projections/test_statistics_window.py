"""How get_statistics splits a window into buckets of each grain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.errors import InvalidInputError
from projections.statistics_query import StatisticsWindow


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_no_bounds_read_the_all_time_rows() -> None:
    assert StatisticsWindow.validated(None, None).grain_ranges == [("all", None, None)]


def test_long_window_uses_months_days_hours() -> None:
    window = StatisticsWindow.validated(
        utc(2026, 1, 30, 22, 15), utc(2026, 4, 2, 3, 40)
    )

    assert window.grain_ranges == [
        ("month", utc(2026, 2, 1), utc(2026, 4, 1)),
        ("day", utc(2026, 1, 31), utc(2026, 2, 1)),
        ("hour", utc(2026, 1, 30, 23), utc(2026, 1, 31)),
        ("day", utc(2026, 4, 1), utc(2026, 4, 2)),
        ("hour", utc(2026, 4, 2), utc(2026, 4, 2, 3)),
    ]
    assert window.partial_ranges == [
        (utc(2026, 1, 30, 22, 15), utc(2026, 1, 30, 23)),
        (utc(2026, 4, 2, 3), utc(2026, 4, 2, 3, 40)),
    ]


def test_open_start_reads_earlier_months() -> None:
    window = StatisticsWindow.validated(None, utc(2026, 5, 3))

    assert window.grain_ranges == [
        ("month", None, utc(2026, 5, 1)),
        ("day", utc(2026, 5, 1), utc(2026, 5, 3)),
    ]


def test_open_end_starts_next_month() -> None:
    window = StatisticsWindow.validated(utc(2026, 12, 31, 23), None)

    assert window.grain_ranges == [
        ("month", utc(2027, 1, 1), None),
        ("hour", utc(2026, 12, 31, 23), utc(2027, 1, 1)),
    ]


def test_window_within_hour_reads_tasks() -> None:
    window = StatisticsWindow.validated(utc(2026, 3, 1, 10, 5), utc(2026, 3, 1, 10, 50))

    assert window.grain_ranges == []
    assert window.partial_ranges == [(utc(2026, 3, 1, 10, 5), utc(2026, 3, 1, 10, 50))]


def test_window_splits_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    window = StatisticsWindow.validated(
        datetime(2026, 3, 1, 2, tzinfo=plus_two),
        datetime(2026, 3, 3, 2, tzinfo=plus_two),
    )

    assert window.grain_ranges == [("day", utc(2026, 3, 1), utc(2026, 3, 3))]


@pytest.mark.parametrize(
    ("since", "until"),
    [(utc(1800, 1, 1), None), (None, utc(2300, 1, 1))],
)
def test_bounds_outside_the_creation_range_are_rejected(
    since: datetime | None, until: datetime | None
) -> None:
    with pytest.raises(InvalidInputError, match="outside the supported range"):
        StatisticsWindow.validated(since, until)


def test_until_may_be_end_of_range() -> None:
    window = StatisticsWindow.validated(utc(2199, 12, 31, 23, 30), utc(2200, 1, 1))

    assert window.until == utc(2200, 1, 1)
    assert window.whole_hours is None


def test_latest_window_stays_in_range() -> None:
    window = StatisticsWindow.validated(utc(2199, 12, 31, 23, 30), None)

    assert window.grain_ranges == [("month", utc(2200, 1, 1), None)]
