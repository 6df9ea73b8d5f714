"""The business-hours calendar: split shifts, holidays, closures, DST (New York, London)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from flows.definition import BusinessHours, Closure, Holiday
from flows.hours import (
    is_open,
    next_close,
    next_open,
    open_intervals,
    open_seconds,
    resolve_local,
    status_at,
)

NY = ZoneInfo("America/New_York")
LON = ZoneInfo("Europe/London")
UTC = dt.UTC
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


@pytest.fixture
def dental() -> BusinessHours:
    return BusinessHours(
        timezone="America/New_York",
        weekly={**{d: [("08:00", "12:00"), ("13:00", "17:00")] for d in WEEKDAYS}, "sat": [("09:00", "13:00")]},
        holidays=[Holiday(date=dt.date(2025, 12, 25), name="Christmas"), Holiday(date=dt.date(2025, 9, 1))],
        closures=[
            Closure(start=dt.datetime(2025, 3, 12, 14, 0), end=dt.datetime(2025, 3, 12, 17, 0), reason="Training")
        ],
    )


def test_split_shift_and_boundaries(dental):
    # Tuesday 2025-03-11
    assert status_at(dental, ny(2025, 3, 11, 7, 59)) == "closed"
    assert status_at(dental, ny(2025, 3, 11, 8, 0)) == "open"
    assert status_at(dental, ny(2025, 3, 11, 11, 59)) == "open"
    assert status_at(dental, ny(2025, 3, 11, 12, 0)) == "closed"  # lunch; end is exclusive
    assert status_at(dental, ny(2025, 3, 11, 12, 30)) == "closed"
    assert status_at(dental, ny(2025, 3, 11, 13, 0)) == "open"
    assert status_at(dental, ny(2025, 3, 11, 17, 0)) == "closed"
    assert is_open(dental, ny(2025, 3, 11, 16, 59, 59))


def test_saturday_and_sunday(dental):
    assert is_open(dental, ny(2025, 3, 15, 9, 0))
    assert not is_open(dental, ny(2025, 3, 15, 13, 0))
    assert status_at(dental, ny(2025, 3, 16, 10, 0)) == "closed"


def test_when_is_converted_to_the_hours_timezone(dental):
    # 13:30 UTC on Tue 2025-03-11 is 09:30 EDT -> open; 03:30 UTC Wed is 23:30 EDT Tue -> closed
    assert is_open(dental, dt.datetime(2025, 3, 11, 13, 30, tzinfo=UTC))
    assert not is_open(dental, dt.datetime(2025, 3, 12, 3, 30, tzinfo=UTC))


def test_holiday_is_a_whole_local_day(dental):
    assert status_at(dental, ny(2025, 12, 25, 10, 0)) == "holiday"
    assert status_at(dental, ny(2025, 12, 25, 0, 0)) == "holiday"
    # 23:30 local on Christmas is already Dec 26 in UTC: still the holiday
    assert status_at(dental, dt.datetime(2025, 12, 26, 4, 30, tzinfo=UTC)) == "holiday"
    assert status_at(dental, ny(2025, 12, 26, 10, 0)) == "open"
    assert status_at(dental, ny(2025, 9, 1, 10, 0)) == "holiday"  # unnamed holiday


def test_closure_naive_times_are_local(dental):
    assert status_at(dental, ny(2025, 3, 12, 10, 0)) == "open"
    assert status_at(dental, ny(2025, 3, 12, 14, 0)) == "closed"
    assert status_at(dental, ny(2025, 3, 12, 16, 59)) == "closed"


def test_aware_closure():
    hours = BusinessHours(
        timezone="America/New_York",
        weekly={"mon": [("08:00", "17:00")]},
        closures=[
            Closure(start=dt.datetime(2025, 3, 10, 14, 0, tzinfo=UTC), end=dt.datetime(2025, 3, 10, 15, 0, tzinfo=UTC))
        ],
    )
    assert status_at(hours, ny(2025, 3, 10, 10, 30)) == "closed"  # 14:30 UTC
    assert status_at(hours, ny(2025, 3, 10, 11, 0)) == "open"


def test_naive_when_is_rejected(dental):
    with pytest.raises(ValueError, match="timezone-aware"):
        status_at(dental, dt.datetime(2025, 3, 11, 10, 0))
    with pytest.raises(ValueError):
        next_open(dental, dt.datetime(2025, 3, 11, 10, 0))


# ---------------------------------------------------------------- DST


def test_shift_keeps_local_times_across_new_york_spring_forward():
    hours = BusinessHours(timezone="America/New_York", weekly={d: [("08:00", "17:00")] for d in WEEKDAYS})
    spans = open_intervals(hours, ny(2025, 3, 7, 0, 0), ny(2025, 3, 11, 0, 0))  # Fri 7th .. Mon 10th (DST on 9th)
    assert spans == [
        (dt.datetime(2025, 3, 7, 13, 0, tzinfo=UTC), dt.datetime(2025, 3, 7, 22, 0, tzinfo=UTC)),  # EST
        (dt.datetime(2025, 3, 10, 12, 0, tzinfo=UTC), dt.datetime(2025, 3, 10, 21, 0, tzinfo=UTC)),  # EDT
    ]
    for s, e in spans:
        assert s.astimezone(NY).strftime("%H:%M") == "08:00"
        assert e.astimezone(NY).strftime("%H:%M") == "17:00"
        assert s.tzinfo is UTC


def test_shift_keeps_local_times_across_new_york_fall_back():
    hours = BusinessHours(timezone="America/New_York", weekly={d: [("08:00", "17:00")] for d in WEEKDAYS})
    fri = dt.datetime(2025, 10, 31, 12, 0, tzinfo=UTC)  # 08:00 EDT
    mon = dt.datetime(2025, 11, 3, 13, 0, tzinfo=UTC)  # 08:00 EST
    assert is_open(hours, fri) and is_open(hours, mon)
    assert not is_open(hours, dt.datetime(2025, 11, 3, 12, 30, tzinfo=UTC))  # 07:30 EST
    assert open_seconds(hours, ny(2025, 10, 27), ny(2025, 11, 8)) == 10 * 9 * 3600


def test_shift_keeps_local_times_across_london_change():
    hours = BusinessHours(timezone="Europe/London", weekly={d: [("08:00", "17:00")] for d in WEEKDAYS})
    # BST starts Sunday 2025-03-30
    assert is_open(hours, dt.datetime(2025, 3, 28, 8, 0, tzinfo=UTC))  # 08:00 GMT
    assert not is_open(hours, dt.datetime(2025, 3, 31, 6, 30, tzinfo=UTC))  # 07:30 BST
    assert is_open(hours, dt.datetime(2025, 3, 31, 7, 0, tzinfo=UTC))  # 08:00 BST
    assert not is_open(hours, dt.datetime(2025, 3, 31, 16, 0, tzinfo=UTC))  # 17:00 BST
    # and back in October (Sunday 2025-10-26)
    assert is_open(hours, dt.datetime(2025, 10, 27, 8, 0, tzinfo=UTC))  # 08:00 GMT
    assert not is_open(hours, dt.datetime(2025, 10, 27, 7, 30, tzinfo=UTC))
    spans = open_intervals(hours, dt.datetime(2025, 3, 27, tzinfo=LON), dt.datetime(2025, 4, 1, tzinfo=LON))
    assert [s.astimezone(LON).strftime("%a %H:%M") for s, _ in spans] == ["Thu 08:00", "Fri 08:00", "Mon 08:00"]


def test_start_inside_spring_forward_gap_opens_when_clocks_jump():
    hours = BusinessHours(timezone="America/New_York", weekly={"sun": [("02:30", "05:00")]})
    spans = open_intervals(hours, ny(2025, 3, 9), ny(2025, 3, 10))
    assert spans == [(dt.datetime(2025, 3, 9, 7, 0, tzinfo=UTC), dt.datetime(2025, 3, 9, 9, 0, tzinfo=UTC))]
    assert spans[0][0].astimezone(NY).strftime("%H:%M") == "03:00"
    assert not is_open(hours, dt.datetime(2025, 3, 9, 6, 59, tzinfo=UTC))  # 01:59 EST
    assert is_open(hours, dt.datetime(2025, 3, 9, 7, 0, tzinfo=UTC))  # 03:00 EDT


def test_interval_entirely_in_the_gap_is_empty():
    hours = BusinessHours(timezone="America/New_York", weekly={"sun": [("02:10", "02:40")]})
    assert open_intervals(hours, ny(2025, 3, 9), ny(2025, 3, 10)) == []


def test_ambiguous_fall_back_hour_is_covered():
    hours = BusinessHours(timezone="America/New_York", weekly={"sun": [("01:30", "03:00")]})
    spans = open_intervals(hours, ny(2025, 11, 2), ny(2025, 11, 3))
    # from the first 01:30 (EDT, 05:30 UTC) to 03:00 EST (08:00 UTC)
    assert spans == [(dt.datetime(2025, 11, 2, 5, 30, tzinfo=UTC), dt.datetime(2025, 11, 2, 8, 0, tzinfo=UTC))]
    assert is_open(hours, dt.datetime(2025, 11, 2, 6, 15, tzinfo=UTC))  # 01:15 EST (second pass)


def test_resolve_local_fold_rules():
    amb = dt.datetime(2025, 11, 2, 1, 30)
    assert resolve_local(amb, NY) == dt.datetime(2025, 11, 2, 5, 30, tzinfo=UTC)
    assert resolve_local(amb, NY, latest=True) == dt.datetime(2025, 11, 2, 6, 30, tzinfo=UTC)
    gap = dt.datetime(2025, 3, 9, 2, 30)
    assert resolve_local(gap, NY) == dt.datetime(2025, 3, 9, 7, 0, tzinfo=UTC)
    assert resolve_local(dt.datetime(2025, 6, 1, 12, 0), NY) == dt.datetime(2025, 6, 1, 16, 0, tzinfo=UTC)


def test_full_day_on_fall_back_day_is_25_hours():
    hours = BusinessHours(timezone="America/New_York", weekly={"sun": [("00:00", "24:00")]})
    assert open_seconds(hours, ny(2025, 11, 1), ny(2025, 11, 4)) == 25 * 3600
    assert open_seconds(hours, ny(2025, 3, 8), ny(2025, 3, 11)) == 23 * 3600


def test_24_00_joins_the_next_day():
    hours = BusinessHours(timezone="UTC", weekly={"mon": [("20:00", "24:00")], "tue": [("00:00", "04:00")]})
    spans = open_intervals(hours, dt.datetime(2025, 3, 10, tzinfo=UTC), dt.datetime(2025, 3, 12, tzinfo=UTC))
    assert spans == [(dt.datetime(2025, 3, 10, 20, tzinfo=UTC), dt.datetime(2025, 3, 11, 4, tzinfo=UTC))]
    assert is_open(hours, dt.datetime(2025, 3, 10, 23, 59, tzinfo=UTC))
    assert next_close(hours, dt.datetime(2025, 3, 10, 22, tzinfo=UTC)) == dt.datetime(2025, 3, 11, 4, tzinfo=UTC)


# ---------------------------------------------------------------- intervals and next_open


def test_open_intervals_clip_and_skip_holidays_and_closures(dental):
    spans = open_intervals(dental, ny(2025, 3, 12, 9, 0), ny(2025, 3, 12, 20, 0))
    assert [(s.astimezone(NY).strftime("%H:%M"), e.astimezone(NY).strftime("%H:%M")) for s, e in spans] == [
        ("09:00", "12:00"),
        ("13:00", "14:00"),  # training closure from 14:00
    ]
    assert open_intervals(dental, ny(2025, 12, 25), ny(2025, 12, 26)) == []
    assert open_intervals(dental, ny(2025, 3, 12, 10), ny(2025, 3, 12, 9)) == []


def test_open_seconds_over_a_week(dental):
    # Mon 2025-03-17 .. Sun 23rd: 5 x 8h + Sat 4h
    assert open_seconds(dental, ny(2025, 3, 17), ny(2025, 3, 24)) == (5 * 8 + 4) * 3600


def test_next_open(dental):
    assert next_open(dental, ny(2025, 3, 11, 10, 0)) == ny(2025, 3, 11, 10, 0)  # already open
    assert next_open(dental, ny(2025, 3, 11, 12, 15)) == ny(2025, 3, 11, 13, 0)  # lunch
    assert next_open(dental, ny(2025, 3, 14, 17, 30)) == ny(2025, 3, 15, 9, 0)  # Fri evening -> Sat
    assert next_open(dental, ny(2025, 3, 15, 13, 5)) == ny(2025, 3, 17, 8, 0)  # Sat afternoon -> Mon
    assert next_open(dental, ny(2025, 3, 12, 14, 30)) == ny(2025, 3, 13, 8, 0)  # closure until 17:00
    assert next_open(dental, ny(2025, 12, 24, 18, 0)) == ny(2025, 12, 26, 8, 0)  # over Christmas
    result = next_open(dental, dt.datetime(2025, 3, 14, 22, 0, tzinfo=UTC))
    assert result.tzinfo is not None and result.utcoffset() == dt.timedelta(hours=-4)


def test_next_open_never():
    assert next_open(BusinessHours(timezone="UTC"), dt.datetime(2025, 1, 1, tzinfo=UTC)) is None
    only_xmas = BusinessHours(
        timezone="UTC", weekly={"thu": [("09:00", "10:00")]}, holidays=[Holiday(date=dt.date(2025, 12, 25))]
    )
    assert next_open(only_xmas, dt.datetime(2025, 12, 24, tzinfo=UTC)) == dt.datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert next_open(only_xmas, dt.datetime(2025, 12, 24, tzinfo=UTC), horizon_days=3) is None


def test_next_close(dental):
    assert next_close(dental, ny(2025, 3, 11, 9, 0)) == ny(2025, 3, 11, 12, 0)
    assert next_close(dental, ny(2025, 3, 11, 12, 30)) is None
