"""Calendar files (RFC 5545) for meetups, built with ``icalendar``.

What calendar programs need to import our meetups correctly, and how we provide it:

* ``METHOD:PUBLISH``: the file is an announcement to copy into one's calendar, not an
  invitation that expects a reply (there are no attendees to answer to).
* A stable ``UID`` (``meetup-<id>@<server-name>``) and a ``SEQUENCE`` that the store raises
  with every change, so importing an updated file replaces the entry instead of duplicating it.
* ``DTSTART``/``DTEND`` with ``TZID`` and a ``VTIMEZONE``: a series keeps its wall-clock time
  across summer-time switches only if the client knows the zone's rules.
* ``EXDATE`` for cancelled single occurrences and a second ``VEVENT`` with the same UID and a
  ``RECURRENCE-ID`` for a changed one; ``STATUS:CANCELLED`` when the whole meetup is off.

About the VTIMEZONE: icalendar's ``Timezone.from_tzinfo`` (checked with icalendar 7.3) writes
each transition as an RDATE between two fixed dates (1970–2038 by default, or the range given)
and places the spring DTSTART at the wall time *after* the switch, whereas RFC 5545 expects the
local time before it; read back with dateutil, America/Santiago was then off by an hour after
each spring switch. Outlook in particular matches zones by their yearly rule. So we write the
rule form that Thunderbird, Google and Apple export themselves (``RRULE:FREQ=YEARLY;BYMONTH=3;
BYDAY=-1SU``), derived from the POSIX TZ string at the end of the zone's TZif file — the rule
the tz database itself uses for all future years. Zones whose rule cannot be expressed that way
(a switch at "24:00", or no TZif v2 footer) get an explicit list of transitions found with
zoneinfo, over a range covering the events.
"""

from __future__ import annotations

import importlib.resources
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, TimezoneDaylight, TimezoneStandard, vRecur

from lotsenbot.meetups.recurrence import Series

PRODID = "-//lotsenbot//Lotsenbot Treffen//DE"


@dataclass(frozen=True)
class CalendarEntry:
    """Everything the calendar file shows about one meetup (one series or one date)."""

    meetup_id: int
    title: str
    series: Series
    sequence: int = 0
    location: str | None = None
    link: str | None = None
    description: str | None = None
    cancelled: bool = False
    created: datetime | None = None
    last_modified: datetime | None = None


def meetup_uid(meetup_id: int, server_name: str) -> str:
    """The UID that identifies a meetup across every file we ever hand out for it."""
    return f"meetup-{meetup_id}@{server_name}"


def build_calendar(
    entries: Iterable[CalendarEntry],
    *,
    server_name: str,
    dtstamp: datetime,
    name: str | None = None,
) -> bytes:
    """An RFC 5545 ``VCALENDAR`` (CRLF lines, UTF-8) for the given meetups.

    ``dtstamp`` is passed in rather than read from the clock so that the same state gives the
    same bytes — tests compare files, and an unchanged meetup does not look changed.
    """
    stamp = dtstamp.astimezone(UTC)
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    if name:
        calendar.add("x-wr-calname", name)
    events: list[Event] = []
    zones: dict[str, list[datetime]] = {}
    for entry in entries:
        for event in _events(entry, server_name, stamp):
            events.append(event)
        zones.setdefault(entry.series.tzid, []).append(entry.series.first_start)
    for tzid, starts in sorted(zones.items()):
        calendar.add_component(vtimezone(ZoneInfo(tzid), around=min(starts)))
    for event in events:
        calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data


def _describe(description: str | None, link: str | None) -> str | None:
    """The description with the link appended, since some clients hide the URL property."""
    parts = [description.strip()] if description and description.strip() else []
    if link and not any(link in part for part in parts):
        parts.append(link)
    return "\n\n".join(parts) or None


def _events(entry: CalendarEntry, server_name: str, stamp: datetime) -> list[Event]:
    series = entry.series
    tz = series.tz
    uid = meetup_uid(entry.meetup_id, server_name)
    start = series.first_start.astimezone(tz)

    master = _base_event(entry, uid, stamp, start, series.duration, entry.location, entry.link)
    if series.rrule:
        master.add("rrule", vRecur.from_ical(series.rrule))
        for original in sorted(series.cancelled):
            master.add("exdate", original.astimezone(tz))
    events = [master]
    if not series.rrule:
        return events
    for original, change in sorted(series.changes.items()):
        if original in series.cancelled:
            continue
        moved_start = (change.start or original).astimezone(tz)
        override = _base_event(
            entry,
            uid,
            stamp,
            moved_start,
            change.duration or series.duration,
            change.location if change.location is not None else entry.location,
            change.link if change.link is not None else entry.link,
        )
        override.add("recurrence-id", original.astimezone(tz))
        events.append(override)
    return events


def _base_event(
    entry: CalendarEntry,
    uid: str,
    stamp: datetime,
    start: datetime,
    duration: timedelta,
    location: str | None,
    link: str | None,
) -> Event:
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp)
    event.add("sequence", entry.sequence)
    event.add("summary", entry.title)
    event.add("dtstart", start)
    # DTEND rather than DURATION: older Outlook versions ignore DURATION on import.
    event.add("dtend", (start.astimezone(UTC) + duration).astimezone(start.tzinfo))
    # A meetup with only a video link still gets a LOCATION, which is what Outlook shows.
    if location or link:
        event.add("location", location or link)
    if link:
        event.add("url", link)
    description = _describe(entry.description, link)
    if description:
        event.add("description", description)
    event.add("status", "CANCELLED" if entry.cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")
    if entry.created:
        event.add("created", entry.created.astimezone(UTC))
    if entry.last_modified:
        event.add("last-modified", entry.last_modified.astimezone(UTC))
    return event


# --- VTIMEZONE -------------------------------------------------------------------------------

_OFFSET = r"[+-]?\d{1,3}(?::\d{2}){0,2}"
_NAME = r"<[^>]+>|[A-Za-z]{3,}"
_RULE = r"M\d{1,2}\.[1-5]\.[0-6](?:/" + _OFFSET + ")?"
_POSIX_TZ = re.compile(
    rf"(?P<std>{_NAME})(?P<stdoff>{_OFFSET})"
    rf"(?:(?P<dst>{_NAME})(?P<dstoff>{_OFFSET})?,(?P<start>{_RULE}),(?P<end>{_RULE}))?"
)
_RRULE_DAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA")  # POSIX counts from Sunday


def _hms(text: str) -> timedelta:
    sign = -1 if text.startswith("-") else 1
    parts = [int(p) for p in text.lstrip("+-").split(":")] + [0, 0]
    return sign * timedelta(hours=parts[0], minutes=parts[1], seconds=parts[2])


def _posix_tz(key: str) -> str | None:
    """The POSIX TZ footer of the zone's TZif file, looked up where zoneinfo looks."""
    data: bytes | None = None
    for root in zoneinfo.TZPATH:
        candidate = Path(root) / key
        if candidate.is_file():
            data = candidate.read_bytes()
            break
    if data is None:
        try:
            resource = importlib.resources.files("tzdata.zoneinfo").joinpath(*key.split("/"))
            data = resource.read_bytes()
        except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, OSError):
            return None
    if not data.startswith(b"TZif") or data[4:5] in (b"\x00", b"1") or not data.endswith(b"\n"):
        return None
    footer = data[:-1].rsplit(b"\n", 1)[-1]
    return footer.decode("ascii", errors="replace") or None


def _transition(rule: str, year: int) -> tuple[datetime, str] | None:
    """Local wall time of ``Mm.w.d/time`` in ``year`` and the matching RRULE BYDAY."""
    spec, _, at = rule[1:].partition("/")
    month, week, weekday = (int(x) for x in spec.split("."))
    time_of_day = _hms(at) if at else timedelta(hours=2)
    if not timedelta(0) <= time_of_day < timedelta(hours=24):
        return None
    if week == 5:
        last = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
        day = last - timedelta(days=(last.isoweekday() % 7 - weekday) % 7)
        byday = f"-1{_RRULE_DAYS[weekday]}"
    else:
        first = date(year, month, 1)
        day = first + timedelta(days=(weekday - first.isoweekday() % 7) % 7 + 7 * (week - 1))
        byday = f"{week}{_RRULE_DAYS[weekday]}"
    return datetime(day.year, day.month, day.day) + time_of_day, byday


def _name(text: str) -> str:
    return text.strip("<>")


def _rule_vtimezone(tzid: str, posix: str) -> Timezone | None:
    match = _POSIX_TZ.fullmatch(posix)
    if match is None:
        return None
    std_offset = -_hms(match["stdoff"])  # POSIX counts west of Greenwich as positive
    zone = Timezone()
    zone.add("tzid", tzid)
    if match["dst"] is None:
        standard = TimezoneStandard()
        standard.add("dtstart", datetime(1970, 1, 1))
        standard.add("tzoffsetfrom", std_offset)
        standard.add("tzoffsetto", std_offset)
        standard.add("tzname", _name(match["std"]))
        zone.add_component(standard)
        return zone
    dst_offset = -_hms(match["dstoff"]) if match["dstoff"] else std_offset + timedelta(hours=1)
    begin = _transition(match["start"], 1970)
    end = _transition(match["end"], 1970)
    if begin is None or end is None:
        return None
    for component, (onset, byday), rule, before, after, name in (
        (TimezoneDaylight(), begin, match["start"], std_offset, dst_offset, match["dst"]),
        (TimezoneStandard(), end, match["end"], dst_offset, std_offset, match["std"]),
    ):
        component.add("dtstart", onset)
        component.add(
            "rrule", {"freq": "yearly", "bymonth": int(rule[1:].split(".")[0]), "byday": byday}
        )
        component.add("tzoffsetfrom", before)
        component.add("tzoffsetto", after)
        component.add("tzname", _name(name))
        zone.add_component(component)
    return zone


def _offset_changes(tz: ZoneInfo, first: datetime, last: datetime) -> list[datetime]:
    """UTC instants in [first, last) at which the zone's offset or name changes.

    Daily steps find every change (no zone changes twice within a day), bisection to the
    second then finds the exact instant.
    """
    changes: list[datetime] = []
    step = timedelta(days=1)
    before = first
    state = (before.astimezone(tz).utcoffset(), before.astimezone(tz).tzname())
    while before < last:
        after = before + step
        new_state = (after.astimezone(tz).utcoffset(), after.astimezone(tz).tzname())
        if new_state != state:
            low, high = before, after
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                mid_state = (middle.astimezone(tz).utcoffset(), middle.astimezone(tz).tzname())
                if mid_state == state:
                    low = middle
                else:
                    high = middle
            changes.append(high.replace(microsecond=0))
        before, state = after, new_state
    return changes


def _transition_vtimezone(tz: ZoneInfo, tzid: str, first: date, last: date) -> Timezone:
    """A VTIMEZONE listing each transition between ``first`` and ``last`` as DTSTART/RDATE.

    Written by us rather than with ``Timezone.from_tzinfo`` so that DTSTART and RDATE are the
    local times *before* each switch, as RFC 5545 requires (see module docstring).
    """
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC)
    # Observances keyed by (is_dst, offset_from, offset_to, name) -> local onsets.
    observances: dict[tuple[bool, timedelta, timedelta, str], list[datetime]] = {}
    initial = start.astimezone(tz)
    initial_offset = initial.utcoffset() or timedelta(0)
    observances[(bool(initial.dst()), initial_offset, initial_offset, initial.tzname() or "")] = [
        initial.replace(tzinfo=None)
    ]
    for change in _offset_changes(tz, start, end):
        old = (change - timedelta(seconds=1)).astimezone(tz)
        new = change.astimezone(tz)
        old_offset = old.utcoffset() or timedelta(0)
        new_offset = new.utcoffset() or timedelta(0)
        key = (bool(new.dst()), old_offset, new_offset, new.tzname() or "")
        observances.setdefault(key, []).append((change + old_offset).replace(tzinfo=None))
    zone = Timezone()
    zone.add("tzid", tzid)
    for (is_dst, offset_from, offset_to, name), onsets in observances.items():
        component = TimezoneDaylight() if is_dst else TimezoneStandard()
        component.add("dtstart", onsets[0])
        for onset in onsets[1:]:
            component.add("rdate", onset)
        component.add("tzoffsetfrom", offset_from)
        component.add("tzoffsetto", offset_to)
        component.add("tzname", name)
        zone.add_component(component)
    return zone


def vtimezone(tz: ZoneInfo, *, around: datetime | None = None) -> Timezone:
    """A VTIMEZONE for ``tz``: the yearly rule where possible, explicit transitions otherwise.

    ``around`` (the earliest event start) only matters for the transition list, which covers
    the year before it and the 30 years after.
    """
    tzid = tz.key
    posix = _posix_tz(tzid)
    component = _rule_vtimezone(tzid, posix) if posix else None
    if component is not None:
        return component
    year = (around or datetime(2026, 1, 1, tzinfo=UTC)).year
    return _transition_vtimezone(tz, tzid, date(year - 1, 1, 1), date(year + 30, 1, 1))
