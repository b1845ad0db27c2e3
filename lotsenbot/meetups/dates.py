"""Dates and times as coordinators type them, and as the bot shows them back.

Why our own grammar and not ``dateparser``: before choosing we ran dateparser 1.5.0 with
``languages=["de"]``, ``DATE_ORDER="DMY"``, ``PREFER_DATES_FROM="future"`` and a fixed
``RELATIVE_BASE`` (Friday 27.11.2026, 10:00). It read "12.01.2027 14:00", "12.01.27 14:00",
"12.01. 14:00" and "Dienstag 9:30" correctly, but

* "14 Uhr" became 14.11.2026 00:00 (the hour was taken as a day),
* "heute 15 Uhr" and "morgen 14 Uhr" kept 10:00 (the time was silently dropped),
* "3. März 14 Uhr" became 03.03.2114, "13 Uhr 30" became 13.11.2030,
* "nächsten Dienstag 9:30", "kommenden Dienstag 9:30" and "am 3. März 14 Uhr" gave None.

Silently wrong dates are worse than a refusal for invitations sent to a whole network, and
dateparser also cannot tell us where the date ends and the title begins (the short form
``!treffen neu 12.01.2027 14:00 Vernetzungstreffen``). So this module has a small grammar
that covers exactly the forms we promise, consumes a prefix, and refuses everything else with
an example. It pulls in no extra dependency (dateparser brings ``regex`` and ``pytz``).

The grammar, case-insensitive, each part optional but a time is required::

    [am] DATE [,] [um] TIME [Uhr]

    DATE  = TT.MM.JJJJ | TT.MM.JJ | TT.MM. | JJJJ-MM-TT
          | heute | morgen | übermorgen
          | [nächsten|kommenden] WOCHENTAG [[,] TT.MM.JJJJ …]   (a given date must match)
          | TT. MONATSNAME [JJJJ]
    TIME  = HH:MM [Uhr] | HH Uhr | HH.MM Uhr

Without a year the next such date (with that time) in the future is meant. "Dienstag" means
the next Tuesday whose time is still ahead (today counts); "nächsten Dienstag" always skips
today. Every confirmation shows the resolved date in full, so a reading the coordinator did
not mean is visible at once. Without a date, the time means today.

Wall-clock times are turned into instants with :func:`resolve_local`, which applies the
RFC 5545 rules (section 3.3.5) so that our instants agree with what calendar programs compute
from the ``.ics``: a time in the spring-forward gap is read with the offset before the gap,
i.e. shifted forward by the gap (02:30 on 28.03.2027 becomes 03:30 CEST), and an ambiguous
time in the autumn fold means its first occurrence (``fold=0``, still summer time).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from lotsenbot.texts import example_day

WEEKDAYS = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
MONTHS = (
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
)

#: How far ahead a date may lie before we assume a typo (e.g. 2207 for 2027).
MAX_AHEAD = timedelta(days=3 * 366)


class MeetupError(ValueError):
    """A user error in meetup input, carrying a catalogue key instead of prose.

    ``code`` is the full catalogue key (``meetups.date.past``) and ``params`` the values for
    its placeholders, so the router can answer in the user's language and tools can match on
    the code. It subclasses :class:`ValueError` so that pydantic validators (config, forms)
    turn it into an ordinary validation error when it is raised inside them.
    """

    def __init__(self, code: str, /, **params: Any) -> None:
        self.code = code
        self.params: Mapping[str, Any] = params
        super().__init__(f"{code} {params}" if params else code)


# --- wall clock <-> instant -------------------------------------------------------------


def resolve_local(wall: datetime, tz: ZoneInfo) -> datetime:
    """Attach ``tz`` to a naive wall-clock time, applying the RFC 5545 gap and fold rules.

    ``fold=0`` gives both rules at once with zoneinfo: an ambiguous time takes the first
    (summer-time) offset, and a non-existent time takes the offset before the gap, so that the
    round trip through UTC moves it forward by the length of the gap. The result is normalised
    (round-tripped through UTC) so that its wall-clock fields show the real local time.
    """
    if wall.tzinfo is not None:
        raise ValueError("resolve_local expects a naive wall-clock time")
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)


def to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a naive wall-clock time in ``tz`` (see :func:`resolve_local`)."""
    return resolve_local(wall, tz).astimezone(UTC)


def local_wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall-clock time of an aware instant in ``tz``."""
    if instant.tzinfo is None:
        raise ValueError("local_wall expects an aware datetime")
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


# --- display -----------------------------------------------------------------------------


def format_date(dt: datetime | date, tz: ZoneInfo | None = None) -> str:
    """German date such as "Dienstag, 12. Januar 2027", independent of the system locale."""
    if isinstance(dt, datetime):
        if tz is not None and dt.tzinfo is not None:
            dt = dt.astimezone(tz)
        dt = dt.date()
    return f"{WEEKDAYS[dt.weekday()]}, {dt.day}. {MONTHS[dt.month - 1]} {dt.year}"


def format_time(dt: datetime, tz: ZoneInfo | None = None) -> str:
    """Time of day such as "14:00 Uhr" in the zone ``tz`` (or as given when ``tz`` is None)."""
    if tz is not None and dt.tzinfo is not None:
        dt = dt.astimezone(tz)
    return f"{dt.hour:02d}:{dt.minute:02d} Uhr"


def format_when(dt: datetime, tz: ZoneInfo) -> str:
    """An aware instant as "Dienstag, 12. Januar 2027, 14:00 Uhr", shown in ``tz``."""
    if dt.tzinfo is None:
        raise ValueError("format_when expects an aware datetime")
    local = dt.astimezone(tz)
    return f"{format_date(local)}, {format_time(local)}"


def format_duration(value: timedelta) -> str:
    """A duration as people say it back: "90 Minuten", "2 Stunden", "1 Stunde 30 Minuten"."""
    minutes = round(value.total_seconds() / 60)
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        unit = "Stunde" if hours == 1 else "Stunden"
        return f"{hours} {unit} {rest} Minuten" if rest != 1 else f"{hours} {unit} 1 Minute"
    if hours:
        return "1 Stunde" if hours == 1 else f"{hours} Stunden"
    return "1 Minute" if minutes == 1 else f"{minutes} Minuten"


# --- parsing -------------------------------------------------------------------------------

_END = r"(?![\w])"
_SEP = re.compile(r"[\s,]*")
_AM = re.compile(r"am\s+", re.I)
_UM = re.compile(r"um\s+", re.I)
_NUMERIC_DATE = re.compile(r"(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4}|\d{2})?(?![\d:.])")
_ISO_DATE = re.compile(r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})" + _END)
_RELATIVE = re.compile(r"(?P<rel>heute|morgen|übermorgen|uebermorgen)" + _END, re.I)
_WEEKDAY_NAMES = {
    "montag": 0,
    "mo": 0,
    "dienstag": 1,
    "di": 1,
    "mittwoch": 2,
    "mi": 2,
    "donnerstag": 3,
    "do": 3,
    "freitag": 4,
    "fr": 4,
    "samstag": 5,
    "sonnabend": 5,
    "sa": 5,
    "sonntag": 6,
    "so": 6,
}
_WEEKDAY = re.compile(
    r"(?:(?P<next>nächste[nrs]?|naechste[nrs]?|kommende[nrs]?)\s+)?"
    r"(?P<wd>montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonnabend|sonntag"
    r"|mo|di|mi|do|fr|sa|so)(?:\.|" + _END + ")",
    re.I,
)
_MONTH_NAMES = {
    "januar": 1,
    "jänner": 1,
    "jan": 1,
    "februar": 2,
    "feb": 2,
    "märz": 3,
    "maerz": 3,
    "mär": 3,
    "mrz": 3,
    "april": 4,
    "apr": 4,
    "mai": 5,
    "juni": 6,
    "jun": 6,
    "juli": 7,
    "jul": 7,
    "august": 8,
    "aug": 8,
    "september": 9,
    "sept": 9,
    "sep": 9,
    "oktober": 10,
    "okt": 10,
    "november": 11,
    "nov": 11,
    "dezember": 12,
    "dez": 12,
}
_NAMED_DATE = re.compile(
    r"(?P<d>\d{1,2})\.?\s*(?P<mon>"
    + "|".join(sorted(_MONTH_NAMES, key=len, reverse=True))
    + r")\.?"
    + _END
    + r"(?:\s+(?P<y>\d{4})"
    + _END
    + ")?",
    re.I,
)
_TIME = re.compile(
    r"(?P<h>\d{1,2})(?:(?P<sep>[:.])(?P<min>\d{2}))?(?P<uhr>\s*uhr)?" + _END,
    re.I,
)
_TITLE_SEPARATORS = " \t,:;–—-"  # what people put before a title


def example_when(today: date | None = None) -> str:
    """Shown in error messages so that every refusal teaches the form that always works;
    a date a few weeks after ``today`` (default: the real today), never in the past."""
    return f"{example_day(today):%d.%m.%Y} 14:00"


def _month_day(year: int, month: int, day: int, original: str) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise MeetupError("meetups.date.invalid", text=original, example=example_when()) from None


class _Cursor:
    """Position in the input; each rule either consumes a prefix or leaves it untouched."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip(self, pattern: re.Pattern[str]) -> None:
        match = pattern.match(self.text, self.pos)
        if match:
            self.pos = match.end()

    def take(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        match = pattern.match(self.text, self.pos)
        if match:
            self.pos = match.end()
        return match

    @property
    def rest(self) -> str:
        return self.text[self.pos :]


@dataclass(frozen=True)
class _NextDayMonth:
    """A date without year ("12.01.", "3. März"): the next such day, fixed with the time."""

    month: int
    day: int
    original: str


@dataclass(frozen=True)
class _NextWeekday:
    """A weekday ("Dienstag"): ``day`` is the first candidate, a week later if it passed."""

    day: date


_DatePart = date | _NextDayMonth | _NextWeekday


def _parse_date_part(cur: _Cursor, today: date) -> _DatePart | None:
    """Consume a date at the cursor, if there is one."""
    match = cur.take(_NUMERIC_DATE)
    if match:
        day, month = int(match["d"]), int(match["m"])
        if match["y"] is None:
            return _NextDayMonth(month, day, match[0])
        year = int(match["y"])
        return _month_day(year + 2000 if year < 100 else year, month, day, match[0])
    match = cur.take(_ISO_DATE)
    if match:
        return _month_day(int(match["y"]), int(match["m"]), int(match["d"]), match[0])
    match = cur.take(_RELATIVE)
    if match:
        offset = {"heute": 0, "morgen": 1}.get(match["rel"].lower(), 2)
        return today + timedelta(days=offset)
    match = cur.take(_NAMED_DATE)
    if match:
        return _named_date(match)
    match = cur.take(_WEEKDAY)
    if match:
        return _weekday_part(cur, match, today)
    return None


def _weekday_part(cur: _Cursor, match: re.Match[str], today: date) -> _DatePart:
    weekday = _WEEKDAY_NAMES[match["wd"].lower()]
    # "Dienstag, 12.01.2027": the explicit date wins and the weekday must agree with it.
    cur.skip(_SEP)
    explicit = _parse_explicit_date(cur, today)
    if explicit is not None:
        if isinstance(explicit, date) and explicit.weekday() != weekday:
            raise MeetupError(
                "meetups.date.weekday_mismatch",
                text=cur.text[match.start() : cur.pos].strip(),
                weekday=WEEKDAYS[explicit.weekday()],
            )
        return explicit
    cur.pos = match.end()
    days = (weekday - today.weekday()) % 7
    if match["next"] and days == 0:
        days = 7
    return _NextWeekday(today + timedelta(days=days))


def _parse_explicit_date(cur: _Cursor, today: date) -> date | _NextDayMonth | None:
    start = cur.pos
    part = _parse_date_part(cur, today)
    if isinstance(part, date | _NextDayMonth):
        return part
    cur.pos = start
    return None


def _named_date(match: re.Match[str]) -> date | _NextDayMonth:
    month = _MONTH_NAMES[match["mon"].lower()]
    day = int(match["d"])
    if match["y"] is None:
        return _NextDayMonth(month, day, match[0])
    return _month_day(int(match["y"]), month, day, match[0])


def _parse_time_part(cur: _Cursor) -> time | None:
    match = cur.take(_TIME)
    if match is None:
        return None
    # A bare number ("14") is not a time, and "14.30" only is one with "Uhr" — otherwise a
    # title beginning with a number would be eaten.
    if (match["sep"] is None and not match["uhr"]) or (match["sep"] == "." and not match["uhr"]):
        cur.pos = match.start()
        return None
    hour, minute = int(match["h"]), int(match["min"] or 0)
    if hour > 23 or minute > 59:
        raise MeetupError(
            "meetups.date.invalid_time", text=match[0].strip(), example=example_when()
        )
    return time(hour, minute)


def _next_day_month(part: _NextDayMonth, accept: Callable[[date], bool], first_year: int) -> date:
    """The first year's such day that ``accept`` likes; 29.02. may need a few years."""
    for year in range(first_year, first_year + 9):
        try:
            candidate = date(year, part.month, part.day)
        except ValueError:
            continue
        if accept(candidate):
            return candidate
    raise MeetupError("meetups.date.invalid", text=part.original, example=example_when())


def _combine(part: _DatePart | None, at: time, tz: ZoneInfo, now: datetime) -> datetime:
    """Turn the date part and the time into an aware datetime in ``tz``."""
    now_local = now.astimezone(tz)
    if part is None:
        return resolve_local(datetime.combine(now_local.date(), at), tz)
    if isinstance(part, date):
        return resolve_local(datetime.combine(part, at), tz)
    if isinstance(part, _NextWeekday):
        candidate = resolve_local(datetime.combine(part.day, at), tz)
        if candidate <= now:
            candidate = resolve_local(datetime.combine(part.day + timedelta(days=7), at), tz)
        return candidate
    day = _next_day_month(
        part, lambda d: resolve_local(datetime.combine(d, at), tz) > now, now_local.year
    )
    return resolve_local(datetime.combine(day, at), tz)


def _check_future(when: datetime, tz: ZoneInfo, now: datetime) -> None:
    if when <= now:
        raise MeetupError(
            "meetups.date.past",
            when=format_when(when, tz),
            example=example_when(now.astimezone(tz).date()),
        )
    if when - now > MAX_AHEAD:
        raise MeetupError(
            "meetups.date.too_far",
            when=format_when(when, tz),
            example=example_when(now.astimezone(tz).date()),
        )


def split_when(text: str, *, tz: ZoneInfo, now: datetime) -> tuple[datetime, str]:
    """Read a date and time at the start of ``text``; return it and the rest (the title).

    The returned datetime is aware, in ``tz``, lies in the future and at most
    :data:`MAX_AHEAD` ahead. Raises :class:`MeetupError` (``meetups.date.*``) otherwise.
    """
    if now.tzinfo is None:
        raise ValueError("now must be aware")
    cur = _Cursor(text.strip())
    today = now.astimezone(tz).date()
    cur.skip(_AM)
    part = _parse_date_part(cur, today)
    cur.skip(_SEP)
    cur.skip(_UM)
    at = _parse_time_part(cur)
    if at is None:
        if part is None:
            raise MeetupError("meetups.date.unparseable", text=text.strip(), example=example_when())
        raise MeetupError("meetups.date.no_time", text=text.strip(), example=example_when())
    when = _combine(part, at, tz, now)
    if when.time() != at:
        # Only a time in the gap of the switch to summer time comes out moved (02:30 on the
        # last Sunday in March is 03:30): said, not done silently.
        raise MeetupError("meetups.date.dst_gap", day=f"{when:%d.%m.%Y}", time=f"{at:%H:%M}")
    _check_future(when, tz, now)
    title = cur.rest.strip().lstrip(_TITLE_SEPARATORS).strip()
    # "14 Uhr morgen Treffen": a date after the time would silently become part of the title
    # and the meetup would be today. Weekday names are not checked here, since titles such as
    # "So geht digital" start with one.
    if _RELATIVE.match(title) or _NUMERIC_DATE.match(title):
        raise MeetupError("meetups.date.unparseable", text=text.strip(), example=example_when())
    return when, title


def parse_when(text: str, *, tz: ZoneInfo, now: datetime) -> datetime:
    """Read a complete date-and-time field such as ``Wann: morgen 14 Uhr``.

    Unlike :func:`split_when` nothing may follow the time, so a typo in the field is
    reported instead of being ignored.
    """
    when, rest = split_when(text, tz=tz, now=now)
    if rest:
        raise MeetupError("meetups.date.unparseable", text=text.strip(), example=example_when())
    return when


def parse_date(text: str, *, tz: ZoneInfo, now: datetime) -> date:
    """Read a date without time ("30.06.2027", "30. Juni 2027"), e.g. the end of a series.

    A date without a year means the next such day that is not before today.
    """
    cur = _Cursor(text.strip())
    cur.skip(_AM)
    today = now.astimezone(tz).date()
    part = _parse_date_part(cur, today)
    if part is None or cur.rest.strip():
        raise MeetupError("meetups.date.unparseable_date", text=text.strip(), example="30.06.2027")
    if isinstance(part, date):
        return part
    if isinstance(part, _NextWeekday):
        return part.day
    return _next_day_month(part, lambda d: d >= today, today.year)


_DURATION_UNITS = {
    "min": 60,
    "minute": 60,
    "minuten": 60,
    "m": 60,
    "h": 3600,
    "std": 3600,
    "stunde": 3600,
    "stunden": 3600,
}
_DURATION_PART = re.compile(
    r"(?P<n>\d+(?:[.,]\d+)?)\s*(?P<unit>minuten|minute|min|m|stunden|stunde|std|h)\.?" + _END,
    re.I,
)
_DURATION_CLOCK = re.compile(r"(?P<h>\d{1,2}):(?P<m>\d{2})(?:\s*(?:h|std\.?|stunden))?", re.I)
MAX_DURATION = timedelta(hours=24)
_SEP_AND = re.compile(r"\s*,?\s*(?:und\s+)?", re.I)


def parse_duration(text: str) -> timedelta:
    """Read "90 Minuten", "1,5 h", "2 Stunden", "1 Stunde 30 Minuten" or "1:30".

    Rounded to whole minutes; must be positive and at most a day, since a longer "meetup"
    is almost certainly a typo for minutes.
    """
    raw = text.strip()
    total = 0.0
    clock = _DURATION_CLOCK.fullmatch(raw)
    if clock:
        minutes = int(clock["m"])
        if minutes > 59:
            raise MeetupError("meetups.duration.unparseable", text=raw)
        total = int(clock["h"]) * 3600 + minutes * 60
    else:
        pos = 0
        found = False
        while pos < len(raw):
            match = _DURATION_PART.match(raw, pos)
            if match is None:
                raise MeetupError("meetups.duration.unparseable", text=raw)
            total += float(match["n"].replace(",", ".")) * _DURATION_UNITS[match["unit"].lower()]
            found = True
            separator = _SEP_AND.match(raw, match.end())
            pos = separator.end() if separator else match.end()
        if not found:
            raise MeetupError("meetups.duration.unparseable", text=raw)
    value = timedelta(minutes=round(total / 60))
    if value <= timedelta(0):
        raise MeetupError("meetups.duration.unparseable", text=raw)
    if value > MAX_DURATION:
        raise MeetupError("meetups.duration.too_long", text=raw)
    return value
