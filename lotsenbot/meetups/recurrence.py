"""Meetup series: German recurrence phrases to RFC 5545 RRULEs, and their expansion.

A series is stored as its first start in *wall-clock* time plus an IANA zone, never as a UTC
instant plus a rule: "every Tuesday 14:00" must stay 14:00 in Berlin when summer time starts
or ends, which a UTC-based expansion would shift by an hour. Expansion runs in naive wall time
with python-dateutil's ``rrule`` (already installed as a dependency of ``icalendar``) and only
then turns each occurrence into an aware UTC instant with
:func:`lotsenbot.meetups.dates.resolve_local`, i.e. by the RFC 5545 rules that calendar
programs apply to the ``.ics`` as well: a start in the spring-forward gap moves forward by the
gap, an ambiguous start in the autumn fold takes its first (summer-time) occurrence.

Occurrences are identified by their *original* start in UTC (what RFC 5545 calls the
RECURRENCE-ID): cancelling or moving one occurrence refers to that, so sign-ups and reminders
keep their key even if the time of the occurrence changes.

Rules are always written with explicit BYDAY/BYMONTHDAY, even where RFC 5545 would derive them
from DTSTART, because some calendar clients have been unreliable with the implicit form.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from lotsenbot.meetups.dates import (
    WEEKDAYS,
    MeetupError,
    format_date,
    local_wall,
    parse_date,
    to_utc,
)

_RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_WEEKDAY_WORDS = {name.lower(): index for index, name in enumerate(WEEKDAYS)} | {"sonnabend": 5}
_NUMBER_WORDS = {"zwei": 2, "drei": 3, "vier": 4, "fünf": 5, "sechs": 6}
_ORDINALS = {
    "ersten": 1,
    "1.": 1,
    "zweiten": 2,
    "2.": 2,
    "dritten": 3,
    "3.": 3,
    "vierten": 4,
    "4.": 4,
    "letzten": -1,
}
_WD = "(?P<wd>" + "|".join(_WEEKDAY_WORDS) + ")"
_N = r"(?P<n>\d+|zwei|drei|vier|fünf|sechs)"

_END_CLAUSE = re.compile(
    r"[\s,;]+(?:bis(?:\s+zum|\s+einschließlich)?\s+(?P<until>.+)"
    r"|(?:insgesamt\s+)?(?P<count>\d+)\s*(?:mal|termine|x))\s*$",
    re.I,
)
_NONE = re.compile(r"(?:einmalig|keine|nein|-|—)?", re.I)
_WEEKLY = re.compile(r"wöchentlich|woechentlich|jede\s+woche|jeden\s+" + _WD, re.I)
_EVERY_N_WEEKS = re.compile(
    r"alle\s+" + _N + r"\s+wochen|(?P<fortnight>14-?tägig|14-?taegig|vierzehntägig"
    r"|vierzehntäglich|zweiwöchentlich|zweiwoechentlich)",
    re.I,
)
_MONTHLY = re.compile(r"monatlich|jeden\s+monat|alle\s+" + _N + r"\s+monate", re.I)
_NTH_WEEKDAY = re.compile(
    r"jeden\s+(?P<nth>ersten|zweiten|dritten|vierten|letzten|[1-4]\.)\s+"
    + _WD
    + r"\s+(?:im\s+monat|des\s+monats|eines\s+monats)",
    re.I,
)
# "jeden zweiten Dienstag" without "im Monat" is read both ways in German offices.
_AMBIGUOUS = re.compile(r"jeden\s+(?:zweiten|dritten|vierten|[2-4]\.)\s+" + _WD, re.I)

MAX_COUNT = 500


def _number(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBER_WORDS[word.lower()]


def _until_utc(text: str, start: datetime, tz: ZoneInfo, now: datetime) -> str:
    """UNTIL for "bis <Datum>": the end of that day in ``tz``, written in UTC as RFC 5545
    requires when DTSTART has a TZID. Inclusive, so a meetup on that day still takes place."""
    last_day = parse_date(text, tz=tz, now=now)
    if last_day < start.astimezone(tz).date():
        raise MeetupError(
            "meetups.recurrence.until_before_start",
            until=format_date(last_day),
            start=format_date(start, tz),
        )
    end_of_day = to_utc(datetime.combine(last_day, time(23, 59, 59)), tz)
    return end_of_day.strftime("%Y%m%dT%H%M%SZ")


def _is_nth_weekday(day: date, nth: int) -> bool:
    """Whether ``day`` is the ``nth`` (1-4, or -1 for last) of its weekday in its month."""
    if nth == -1:
        return (day + timedelta(days=7)).month != day.month
    return (day.day - 1) // 7 + 1 == nth


def _nth_weekday_on_or_after(day: date, nth: int, weekday: int) -> date:
    """First date on or after ``day`` that is the ``nth`` ``weekday`` of its month."""
    while not (day.weekday() == weekday and _is_nth_weekday(day, nth)):
        day += timedelta(days=1)
    return day


def parse_recurrence(text: str, *, start: datetime, tz: ZoneInfo, now: datetime) -> str | None:
    """Turn a German phrase into an RRULE (without the ``RRULE:`` prefix), or None for
    "einmalig".

    ``start`` is the aware first start; the rule must agree with it (a series "jeden letzten
    Freitag im Monat" cannot start on a Tuesday), otherwise the error names the first date
    that would fit, so the coordinator can correct with one message.
    """
    raw = " ".join(text.split())
    local = start.astimezone(tz)
    end = ""
    body = raw
    match = _END_CLAUSE.search(" " + raw)
    if match:
        body = (" " + raw)[: match.start()].strip()
        if match["until"]:
            end = ";UNTIL=" + _until_utc(match["until"], start, tz, now)
        else:
            count = int(match["count"])
            if not 1 <= count <= MAX_COUNT:
                raise MeetupError("meetups.recurrence.count", count=count, max=MAX_COUNT)
            end = f";COUNT={count}"
    if _NONE.fullmatch(body):
        if end:
            raise MeetupError("meetups.recurrence.unparseable", text=raw)
        return None
    day_code = _RRULE_DAYS[local.weekday()]

    if m := _NTH_WEEKDAY.fullmatch(body):
        nth = _ORDINALS[m["nth"].lower()]
        weekday = _WEEKDAY_WORDS[m["wd"].lower()]
        fits = _nth_weekday_on_or_after(local.date(), nth, weekday)
        if fits != local.date():
            raise MeetupError(
                "meetups.recurrence.start_mismatch", text=raw, first=format_date(fits)
            )
        return f"FREQ=MONTHLY;BYDAY={nth}{_RRULE_DAYS[weekday]}{end}"
    if _AMBIGUOUS.fullmatch(body):
        raise MeetupError("meetups.recurrence.ambiguous", text=raw)
    if m := _WEEKLY.fullmatch(body):
        if m["wd"] is not None and _WEEKDAY_WORDS[m["wd"].lower()] != local.weekday():
            raise MeetupError(
                "meetups.recurrence.weekday_mismatch",
                text=raw,
                weekday=WEEKDAYS[local.weekday()],
            )
        return f"FREQ=WEEKLY;BYDAY={day_code}{end}"
    if m := _EVERY_N_WEEKS.fullmatch(body):
        interval = 2 if m["fortnight"] else _number(m["n"])
        if interval < 1:
            raise MeetupError("meetups.recurrence.unparseable", text=raw)
        prefix = f"FREQ=WEEKLY;INTERVAL={interval}" if interval > 1 else "FREQ=WEEKLY"
        return f"{prefix};BYDAY={day_code}{end}"
    if m := _MONTHLY.fullmatch(body):
        interval = _number(m["n"]) if m["n"] else 1
        if interval < 1:
            raise MeetupError("meetups.recurrence.unparseable", text=raw)
        if local.day > 28:
            # RFC 5545 skips months without that day; nobody expects a gap in February.
            raise MeetupError("meetups.recurrence.month_day", day=local.day)
        prefix = f"FREQ=MONTHLY;INTERVAL={interval}" if interval > 1 else "FREQ=MONTHLY"
        return f"{prefix};BYMONTHDAY={local.day}{end}"
    raise MeetupError("meetups.recurrence.unparseable", text=raw)


# --- series and occurrences -----------------------------------------------------------------


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("expected an aware datetime")
    return value.astimezone(UTC)


AwareUTC = Annotated[datetime, AfterValidator(_aware_utc)]


class OccurrenceChange(BaseModel):
    """What differs for one occurrence of a series (an RFC 5545 RECURRENCE-ID override)."""

    model_config = ConfigDict(frozen=True)

    start: AwareUTC | None = None
    duration: timedelta | None = None
    location: str | None = None
    link: str | None = None


class Series(BaseModel):
    """The schedule of a meetup: wall-clock start, zone, optional rule and exceptions.

    A one-off meetup is a series without ``rrule``, so every caller handles both alike.
    """

    model_config = ConfigDict(frozen=True)

    start: datetime = Field(description="naive wall-clock time of the first occurrence")
    tzid: str = "Europe/Berlin"
    duration: timedelta = timedelta(hours=1)
    rrule: str | None = None
    cancelled: frozenset[AwareUTC] = frozenset()
    changes: dict[AwareUTC, OccurrenceChange] = Field(default_factory=dict)

    @field_validator("start")
    @classmethod
    def _naive(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            raise ValueError("Series.start is a naive wall-clock time; use Series.at()")
        return value

    @field_validator("tzid")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("rrule")
    @classmethod
    def _parsable(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.removeprefix("RRULE:")
            rrulestr(_strip_until(value), dtstart=datetime(2000, 1, 1))
        return value

    @classmethod
    def at(
        cls, start: datetime, tz: ZoneInfo, duration: timedelta, rrule: str | None = None
    ) -> Series:
        """Build a series from an aware first start, keeping its wall-clock time in ``tz``."""
        return cls(start=local_wall(start, tz), tzid=tz.key, duration=duration, rrule=rrule)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.tzid)

    @property
    def first_start(self) -> datetime:
        """The first start as an aware UTC instant."""
        return to_utc(self.start, self.tz)


@dataclass(frozen=True)
class Occurrence:
    """One concrete meetup date; ``original_start`` is its identity, ``start`` its time."""

    original_start: datetime
    start: datetime
    end: datetime
    change: OccurrenceChange | None = None

    @property
    def key(self) -> str:
        """Stable text form of the identity, e.g. ``2027-01-12T13:00:00Z``."""
        return occurrence_key(self.original_start)


def occurrence_key(original_start: datetime) -> str:
    """The identity of an occurrence as stored: its original start in UTC, ISO 8601."""
    return _aware_utc(original_start).strftime("%Y-%m-%dT%H:%M:%SZ")


_UNTIL = re.compile(r"UNTIL=(?P<v>\d{8}(?:T\d{6}Z?)?)", re.I)


def _strip_until(rule: str) -> str:
    return ";".join(p for p in rule.split(";") if not p.upper().startswith("UNTIL="))


def _wall_rule(series: Series) -> rrule:
    """The dateutil rule in naive wall time; a UTC UNTIL is converted to local wall time,
    since dateutil refuses to mix an aware UNTIL with a naive DTSTART."""
    assert series.rrule is not None
    rule_text = series.rrule
    match = _UNTIL.search(rule_text)
    if match and match["v"].upper().endswith("Z"):
        until_utc = datetime.strptime(match["v"].upper(), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        local_until = local_wall(until_utc, series.tz)
        rule_text = rule_text.replace(match[0], "UNTIL=" + local_until.strftime("%Y%m%dT%H%M%S"))
    result = rrulestr(rule_text, dtstart=series.start)
    assert isinstance(result, rrule)
    return result


# Wall time and UTC differ by at most a day anywhere on earth; the margin lets us search in
# wall time and filter exactly in UTC.
_MARGIN = timedelta(hours=27)
_MAX_SCAN = 20_000


def _original_starts(series: Series, after: datetime) -> Iterator[datetime]:
    """Original starts (UTC, ascending) at or after ``after``, ignoring exceptions."""
    tz = series.tz
    if series.rrule is None:
        start = to_utc(series.start, tz)
        if start >= after:
            yield start
        return
    rule = _wall_rule(series)
    begin = max(series.start, local_wall(after, tz) - _MARGIN)
    for scanned, wall in enumerate(rule.xafter(begin, inc=True)):
        if scanned >= _MAX_SCAN:
            return
        instant = to_utc(wall, tz)
        if instant >= after:
            yield instant


def is_original_start(series: Series, instant: datetime) -> bool:
    """Whether ``instant`` is an occurrence of the rule (cancelled or not) — to validate a
    "cancel/move the meetup on …" command before it is stored."""
    instant = _aware_utc(instant)
    return next(_original_starts(series, instant), None) == instant


def expand(
    series: Series,
    *,
    after: datetime,
    before: datetime | None = None,
    limit: int = 100,
) -> list[Occurrence]:
    """Occurrences whose (possibly changed) start lies in ``[after, before)``, in order.

    Cancelled occurrences are left out. A moved occurrence appears at its new time, even when
    its original time lies outside the window.
    """
    after = _aware_utc(after)
    end_bound = _aware_utc(before) if before is not None else None
    result: list[Occurrence] = []
    for original in _original_starts(series, after):
        if end_bound is not None and original >= end_bound:
            break
        if original in series.cancelled or original in series.changes:
            continue
        result.append(Occurrence(original, original, original + series.duration))
        if len(result) >= limit:
            break
    for original, change in series.changes.items():
        if original in series.cancelled:
            continue
        start = change.start or original
        if start < after or (end_bound is not None and start >= end_bound):
            continue
        duration = change.duration or series.duration
        result.append(Occurrence(original, start, start + duration, change))
    result.sort(key=lambda occ: (occ.start, occ.original_start))
    return result[:limit]


def next_occurrence(series: Series, now: datetime) -> Occurrence | None:
    """The first occurrence that has not begun yet, or None when the series is over."""
    found = expand(series, after=now + timedelta(microseconds=1), limit=1)
    return found[0] if found else None


def is_finite(series: Series) -> bool:
    """Whether the series ends (a one-off date, or a rule with COUNT or UNTIL)."""
    if series.rrule is None:
        return True
    parts = {p.split("=", 1)[0].upper() for p in series.rrule.split(";")}
    return bool(parts & {"COUNT", "UNTIL"})


def last_end(series: Series) -> datetime | None:
    """When the last occurrence ends (UTC), or None for a series without end.

    The store keeps this next to the meetup so that "upcoming meetups" is one indexed query
    instead of an expansion of every series ever created. Cancelled dates do not count.
    """
    if not is_finite(series):
        return None
    occurrences = expand(series, after=series.first_start, limit=MAX_COUNT + len(series.changes))
    if not occurrences:
        return series.first_start + series.duration
    return max(occ.end for occ in occurrences)


def original_on(series: Series, day: date) -> datetime | None:
    """The original start (UTC) of the series' date on the local calendar ``day``, if any.

    Coordinators name a single date of a series by its day ("streichen 5 am 12.01.2027");
    a date that was moved can also be named by the day it was moved to.
    """
    tz = series.tz
    begin = to_utc(datetime.combine(day, time(0, 0)), tz) - timedelta(hours=1)
    for original in _original_starts(series, begin):
        local_day = original.astimezone(tz).date()
        if local_day == day:
            return original
        if local_day > day:
            break
    for original, change in series.changes.items():
        if change.start is not None and change.start.astimezone(tz).date() == day:
            return original
    return None


def occurrence_of(series: Series, original: datetime) -> Occurrence | None:
    """The date with this identity as it currently stands (moved or not), None if cancelled
    or not part of the series."""
    original = _aware_utc(original)
    if original in series.cancelled:
        return None
    change = series.changes.get(original)
    if change is not None:
        start = change.start or original
        return Occurrence(original, start, start + (change.duration or series.duration), change)
    if not is_original_start(series, original):
        return None
    return Occurrence(original, original, original + series.duration)
