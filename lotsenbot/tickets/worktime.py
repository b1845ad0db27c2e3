"""Working-time arithmetic for ticket escalation deadlines.

Escalation promises ("a pilot answers within 4 working hours") are made to staff
who work office hours, so the clock must stop at night, at weekends and on public
holidays of the administration's Bundesland.  Everything here is pure: the caller
passes aware datetimes and a :class:`WorkCalendar`, and gets aware datetimes back.

Office hours are wall-clock times in the calendar's zone (Europe/Berlin by
default).  Each working day is turned into one interval of *real* instants, so a
working day that contains a DST switch is exactly as long as the clocks say and
durations are measured in elapsed seconds, never in naive wall-clock arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

from lotsenbot.core.durations import duration_parts, parse_duration

__all__ = [
    "ALWAYS_HOURS",
    "DEFAULT_OFFICE_HOURS",
    "Duration",
    "WorkCalendar",
    "add_duration",
    "add_working_time",
    "parse_work_duration",
    "working_time_between",
]

_DAY = timedelta(days=1)
_ZERO = timedelta(0)
# How far the arithmetic searches for the next working day before declaring the
# calendar unusable; a real administration never closes for a year.
_MAX_SEARCH_DAYS = 400

# Typical municipal office hours: long days Monday to Thursday, short Friday.
DEFAULT_OFFICE_HOURS: Mapping[int, tuple[timedelta, timedelta]] = {
    0: (timedelta(hours=8), timedelta(hours=16)),
    1: (timedelta(hours=8), timedelta(hours=16)),
    2: (timedelta(hours=8), timedelta(hours=16)),
    3: (timedelta(hours=8), timedelta(hours=16)),
    4: (timedelta(hours=8), timedelta(hours=13)),
}

# Round the clock, every day: lets integration tests escalate after seconds.
ALWAYS_HOURS: Mapping[int, tuple[timedelta, timedelta]] = {wd: (_ZERO, _DAY) for wd in range(7)}


@dataclass(frozen=True)
class Duration:
    """A configured duration: whole working days plus a time part.

    Days are kept apart from hours because "2d" in an escalation rule means two
    office days (Friday's short day counts as one), not 48 hours; only the caller
    knows whether a duration is meant as working time or calendar time.
    """

    days: int = 0
    time: timedelta = _ZERO

    def __post_init__(self) -> None:
        if self.days < 0 or self.time < _ZERO:
            raise ValueError("a duration cannot be negative")

    def as_timedelta(self) -> timedelta:
        """Calendar reading (a day is 24 hours), for retention periods and timers."""
        return self.days * _DAY + self.time

    def __bool__(self) -> bool:
        return self.days > 0 or self.time > _ZERO


def parse_work_duration(text: str) -> Duration:
    """Read a config duration ("90s", "2m", "4h", "2d") for working-time deadlines.

    The syntax is the one of :mod:`lotsenbot.core.durations` (one parser for the
    whole config); only the reading of "d" differs: office days, not 24 hours.
    """
    amount, unit = duration_parts(text)
    if unit == "d":
        return Duration(days=amount)
    return Duration(time=parse_duration(text))


class WorkCalendar:
    """Office hours, public holidays and time zone of one administration.

    Built once from config and shared; holiday lookups are cached per year by the
    ``holidays`` package, so the object is cheap to query repeatedly.
    """

    def __init__(
        self,
        office_hours: Mapping[int, tuple[timedelta, timedelta]] = DEFAULT_OFFICE_HOURS,
        *,
        state: str | None = None,
        tz: str | ZoneInfo = "Europe/Berlin",
        closed_dates: Iterable[date] = (),
    ) -> None:
        hours = dict(office_hours)
        if not hours:
            raise ValueError("office hours leave no working day in the week")
        for weekday, (start, end) in hours.items():
            if weekday not in range(7):
                raise ValueError(f"weekday must be 0 (Monday) to 6 (Sunday), got {weekday}")
            if not (_ZERO <= start < end <= _DAY):
                raise ValueError(f"invalid office hours {start}-{end} for weekday {weekday}")
        self.office_hours: Mapping[int, tuple[timedelta, timedelta]] = hours
        self.tz: ZoneInfo = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        self.closed_dates = frozenset(closed_dates)
        self.state: str | None = None
        self._holidays: holidays.HolidayBase | None = None
        if state:
            # "nw" and "NW" mean the same; the package also knows Augsburg as a
            # subdivision of its own (Hohes Friedensfest), spelt in mixed case.
            supported = {
                code.upper(): code for code in holidays.country_holidays("DE").subdivisions
            }
            code = supported.get(state.strip().upper())
            if code is None:
                raise ValueError(
                    f"unknown Bundesland {state!r}; expected one of {', '.join(supported.values())}"
                )
            self.state = code
            self._holidays = holidays.country_holidays("DE", subdiv=code, language="de")

    @classmethod
    def always(cls, tz: str | ZoneInfo = "Europe/Berlin") -> WorkCalendar:
        """Every second counts: for tests that must escalate within seconds."""
        return cls(ALWAYS_HOURS, tz=tz)

    @classmethod
    def from_spans(
        cls,
        spans: Mapping[int, tuple[time, time | None]],
        *,
        state: str | None,
        tz: str | ZoneInfo = "Europe/Berlin",
        closed_dates: Iterable[date] = (),
    ) -> WorkCalendar:
        """Build from ``OfficeHours.spans()`` of the config (end None means 24:00)."""
        hours = {
            weekday: (_clock_offset(start), _DAY if end is None else _clock_offset(end))
            for weekday, (start, end) in spans.items()
        }
        return cls(hours, state=state, tz=tz, closed_dates=closed_dates)

    def is_holiday(self, day: date) -> bool:
        """True on public holidays of the Bundesland and configured closing days."""
        if day in self.closed_dates:
            return True
        return self._holidays is not None and day in self._holidays

    def holiday_name(self, day: date) -> str | None:
        """Name of the public holiday, for explaining a deadline to users."""
        if self._holidays is None:
            return None
        return self._holidays.get(day)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.office_hours and not self.is_holiday(day)

    def _wall(self, day: date, offset: timedelta) -> datetime:
        """Instant (UTC) of wall-clock ``offset`` after local midnight of ``day``.

        24:00 is the next day's midnight; a wall time inside the spring-forward gap
        resolves as zoneinfo does (fold=0), i.e. one hour later in real time.
        """
        if offset >= _DAY:
            day, offset = day + _DAY, offset - _DAY
        seconds = int(offset.total_seconds())
        clock = time(seconds // 3600, (seconds % 3600) // 60, seconds % 60)
        return datetime.combine(day, clock, tzinfo=self.tz).astimezone(UTC)

    def interval(self, day: date) -> tuple[datetime, datetime] | None:
        """Office interval of ``day`` as UTC instants, or None on a day off."""
        if not self.is_working_day(day):
            return None
        start, end = self.office_hours[day.weekday()]
        return self._wall(day, start), self._wall(day, end)

    def local_date(self, moment: datetime) -> date:
        return _require_aware(moment).astimezone(self.tz).date()

    def _intervals_from(self, day: date) -> Iterator[tuple[date, datetime, datetime]]:
        """Working intervals from ``day`` on; stops if the calendar has no working day."""
        empty_run = 0
        while True:
            interval = self.interval(day)
            if interval is None:
                empty_run += 1
                if empty_run > _MAX_SEARCH_DAYS:
                    raise ValueError("the calendar has no working day within a year")
            else:
                empty_run = 0
                yield day, interval[0], interval[1]
            day += _DAY

    def next_working_moment(self, moment: datetime) -> datetime:
        """``moment`` itself during office hours, else the start of the next office period."""
        instant = _require_aware(moment).astimezone(UTC)
        for _day, start, end in self._intervals_from(self.local_date(instant) - _DAY):
            if instant < end:
                return max(start, instant).astimezone(self.tz)
        raise AssertionError("unreachable: _intervals_from is infinite")  # pragma: no cover

    def is_working_time(self, moment: datetime) -> bool:
        instant = _require_aware(moment).astimezone(UTC)
        day = self.local_date(instant)
        for candidate in (day - _DAY, day):
            interval = self.interval(candidate)
            if interval is not None and interval[0] <= instant < interval[1]:
                return True
        return False


def _clock_offset(clock: time) -> timedelta:
    return timedelta(hours=clock.hour, minutes=clock.minute, seconds=clock.second)


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("working-time arithmetic needs aware datetimes")
    return moment


def _add_working_days(start: datetime, days: int, calendar: WorkCalendar) -> datetime:
    """Same wall-clock time ``days`` office days later, clamped into that day's hours.

    A ticket opened Monday 10:00 with "2d" is due Wednesday 10:00; one opened
    outside office hours counts from the start of the next office day; and a
    Thursday 15:00 start plus one day ends at Friday's closing time rather than
    spilling into Monday.
    """
    instant = start.astimezone(UTC)
    anchor_day: date | None = None
    anchor_offset = _ZERO
    for day, begin, end in calendar._intervals_from(calendar.local_date(instant) - _DAY):
        if instant <= end:
            anchor_day = day
            if instant <= begin:
                anchor_offset = calendar.office_hours[day.weekday()][0]
            else:
                local = instant.astimezone(calendar.tz)
                midnight = datetime.combine(day, time(0), tzinfo=calendar.tz)
                anchor_offset = local.replace(tzinfo=None) - midnight.replace(tzinfo=None)
            break
    assert anchor_day is not None
    remaining = days
    target = anchor_day
    for day, _begin, _end in calendar._intervals_from(anchor_day + _DAY):
        remaining -= 1
        if remaining == 0:
            target = day
            break
    open_at, close_at = calendar.office_hours[target.weekday()]
    offset = min(max(anchor_offset, open_at), close_at)
    return calendar._wall(target, offset).astimezone(calendar.tz)


def add_working_time(
    start: datetime, duration: timedelta | Duration, calendar: WorkCalendar
) -> datetime:
    """Earliest instant at which ``duration`` of working time has passed since ``start``.

    A ``timedelta`` is pure working time ("4h" = four office hours); a
    :class:`Duration` applies its whole working days first, then its time part.
    The result is in the calendar's zone.
    """
    _require_aware(start)
    if isinstance(duration, Duration):
        moment = start
        if duration.days:
            moment = _add_working_days(moment, duration.days, calendar)
        return add_working_time(moment, duration.time, calendar)
    if duration < _ZERO:
        raise ValueError("cannot add a negative working time")
    instant = start.astimezone(UTC)
    if duration == _ZERO:
        return instant.astimezone(calendar.tz)
    remaining = duration
    for _day, begin, end in calendar._intervals_from(calendar.local_date(instant) - _DAY):
        if end <= instant:
            continue
        begin = max(begin, instant)
        available = end - begin
        if available >= remaining:
            return (begin + remaining).astimezone(calendar.tz)
        remaining -= available
    raise AssertionError("unreachable: _intervals_from is infinite")  # pragma: no cover


def add_duration(start: datetime, duration: Duration, calendar: WorkCalendar | None) -> datetime:
    """Working-time deadline with a calendar, plain elapsed time without one."""
    if calendar is None:
        return _require_aware(start) + duration.as_timedelta()
    return add_working_time(start, duration, calendar)


def working_time_between(a: datetime, b: datetime, calendar: WorkCalendar) -> timedelta:
    """Working time elapsed from ``a`` to ``b``; negative when ``b`` is before ``a``.

    Used to tell users how much of an escalation period is left and to report
    response times in working hours.
    """
    first = _require_aware(a).astimezone(UTC)
    second = _require_aware(b).astimezone(UTC)
    if second < first:
        return -working_time_between(second, first, calendar)
    total = _ZERO
    last_day = calendar.local_date(second)
    day = calendar.local_date(first) - _DAY
    while day <= last_day:
        interval = calendar.interval(day)
        if interval is not None:
            overlap_start = max(interval[0], first)
            overlap_end = min(interval[1], second)
            if overlap_end > overlap_start:
                total += overlap_end - overlap_start
        day += _DAY
    return total
