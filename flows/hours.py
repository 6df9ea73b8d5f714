"""The one business-hours calendar (flow branches, queue availability, agency coverage, callbacks).

Pure: every function takes the moment to judge; nothing reads the clock.

Weekly intervals are local wall-clock times in `hours.timezone`. Each day's interval is turned into one
span of real (UTC) time, so a shift 08:00-17:00 stays 08:00-17:00 local on both sides of a DST change.
Around a transition:
- a start or end inside a spring-forward gap (e.g. 02:30 in New York in March) maps to the moment the
  clocks jump (03:00 local), so the shift simply begins (or ends) then;
- an ambiguous start (fall-back, e.g. 01:30 in November) uses its first occurrence and an ambiguous
  end its last one, so the shift covers the repeated hour;
- "24:00" is the first instant of the next local day.
Holidays are whole local days (status "holiday"); one-off closures (naive datetimes read as local)
make an otherwise open moment "closed".
"""

from __future__ import annotations

import datetime as dt
from typing import Literal
from zoneinfo import ZoneInfo

from flows.definition import WEEKDAYS, BusinessHours

UTC = dt.UTC
Status = Literal["open", "closed", "holiday"]
Interval = tuple[dt.datetime, dt.datetime]

_DAY = dt.timedelta(days=1)


def _require_aware(value: dt.datetime, name: str) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (got {value!r})")


def _wall(ts: int, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz).replace(tzinfo=None)


def resolve_local(naive: dt.datetime, tz: ZoneInfo, *, latest: bool = False) -> dt.datetime:
    """The UTC instant of a local wall-clock time.

    Ambiguous times (fall back) give the earliest occurrence, or the latest with latest=True.
    Nonexistent times (spring forward gap) give the instant the clocks jump.
    """
    u0 = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    u1 = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if u0 == u1:
        return u0
    ok0 = u0.astimezone(tz).replace(tzinfo=None) == naive
    ok1 = u1.astimezone(tz).replace(tzinfo=None) == naive
    if ok0 and ok1:
        return max(u0, u1) if latest else min(u0, u1)
    if ok0 or ok1:
        return u0 if ok0 else u1
    # In a gap: find the first instant whose wall clock reaches `naive` (binary search on seconds).
    lo, hi = int(min(u0, u1).timestamp()), int(max(u0, u1).timestamp())
    if _wall(lo, tz) >= naive:
        return dt.datetime.fromtimestamp(lo, UTC)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(mid, tz) >= naive:
            hi = mid
        else:
            lo = mid
    return dt.datetime.fromtimestamp(hi, UTC)


def _hm(value: str) -> tuple[int, int]:
    h, m = value.split(":")
    return int(h), int(m)


def _day_intervals(hours: BusinessHours, day: dt.date, tz: ZoneInfo) -> list[Interval]:
    """Weekly intervals of one local date as UTC spans (ignores holidays and closures)."""
    out: list[Interval] = []
    for start_s, end_s in hours.weekly.get(WEEKDAYS[day.weekday()], []):
        sh, sm = _hm(start_s)
        start = resolve_local(dt.datetime.combine(day, dt.time(sh, sm)), tz)
        if end_s == "24:00":
            end = resolve_local(dt.datetime.combine(day + _DAY, dt.time(0, 0)), tz)
        else:
            eh, em = _hm(end_s)
            end = resolve_local(dt.datetime.combine(day, dt.time(eh, em)), tz, latest=True)
        if end > start:
            out.append((start, end))
    return out


def _closures(hours: BusinessHours, tz: ZoneInfo) -> list[Interval]:
    out = []
    for c in hours.closures:
        start = c.start.astimezone(UTC) if c.start.tzinfo else resolve_local(c.start, tz)
        end = c.end.astimezone(UTC) if c.end.tzinfo else resolve_local(c.end, tz, latest=True)
        if end > start:
            out.append((start, end))
    return out


def _subtract(intervals: list[Interval], cuts: list[Interval]) -> list[Interval]:
    out = intervals
    for cs, ce in cuts:
        nxt: list[Interval] = []
        for s, e in out:
            if ce <= s or cs >= e:
                nxt.append((s, e))
                continue
            if s < cs:
                nxt.append((s, cs))
            if ce < e:
                nxt.append((ce, e))
        out = nxt
    return out


def _merge(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _holidays(hours: BusinessHours) -> set[dt.date]:
    return {h.date for h in hours.holidays}


def holiday_name(hours: BusinessHours, when: dt.datetime) -> str | None:
    """Name of the holiday on when's local date ("" when unnamed), None when it is not a holiday."""
    _require_aware(when, "when")
    day = when.astimezone(ZoneInfo(hours.timezone)).date()
    for h in hours.holidays:
        if h.date == day:
            return h.name
    return None


def status_at(hours: BusinessHours, when: dt.datetime) -> Status:
    """ "open", "closed" or "holiday" at an aware moment."""
    _require_aware(when, "when")
    tz = ZoneInfo(hours.timezone)
    day = when.astimezone(tz).date()
    if day in _holidays(hours):
        return "holiday"
    u = when.astimezone(UTC)
    if any(s <= u < e for s, e in _closures(hours, tz)):
        return "closed"
    if any(s <= u < e for s, e in _day_intervals(hours, day, tz)):
        return "open"
    return "closed"


def is_open(hours: BusinessHours, when: dt.datetime) -> bool:
    return status_at(hours, when) == "open"


def open_intervals(hours: BusinessHours, start: dt.datetime, end: dt.datetime) -> list[Interval]:
    """Open spans between start and end, as sorted, merged, aware UTC (start, end) pairs."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    if end <= start:
        return []
    tz = ZoneInfo(hours.timezone)
    s_utc, e_utc = start.astimezone(UTC), end.astimezone(UTC)
    holidays = _holidays(hours)
    day = start.astimezone(tz).date() - _DAY
    last = end.astimezone(tz).date() + _DAY
    spans: list[Interval] = []
    while day <= last:
        if day not in holidays:
            spans += _day_intervals(hours, day, tz)
        day += _DAY
    spans = _subtract(spans, _closures(hours, tz))
    clipped = [(max(s, s_utc), min(e, e_utc)) for s, e in spans if e > s_utc and s < e_utc]
    return _merge([(s, e) for s, e in clipped if e > s])


def open_seconds(hours: BusinessHours, start: dt.datetime, end: dt.datetime) -> float:
    """Seconds of business time between start and end (for service levels counted in business hours)."""
    return sum((e - s).total_seconds() for s, e in open_intervals(hours, start, end))


def next_open(hours: BusinessHours, when: dt.datetime, *, horizon_days: int = 370) -> dt.datetime | None:
    """The next moment at or after `when` that is open, in the hours' timezone; None if none within the horizon."""
    _require_aware(when, "when")
    tz = ZoneInfo(hours.timezone)
    u = when.astimezone(UTC)
    holidays = _holidays(hours)
    closures = _closures(hours, tz)
    first = when.astimezone(tz).date()
    for offset in range(-1, horizon_days + 1):
        day = first + dt.timedelta(days=offset)
        if day in holidays:
            continue
        for s, e in _subtract(_day_intervals(hours, day, tz), closures):
            if e > u:
                return max(s, u).astimezone(tz)
    return None


def next_close(hours: BusinessHours, when: dt.datetime) -> dt.datetime | None:
    """When the current open span ends (in the hours' timezone); None when closed at `when`."""
    _require_aware(when, "when")
    if not is_open(hours, when):
        return None
    spans = open_intervals(hours, when, when + dt.timedelta(days=370))
    return spans[0][1].astimezone(ZoneInfo(hours.timezone)) if spans else None
