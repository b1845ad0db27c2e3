"""The .ics files: parsed back with icalendar, zone rules checked against zoneinfo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from icalendar import Calendar, Event

from lotsenbot.meetups.ics import CalendarEntry, build_calendar, meetup_uid, vtimezone
from lotsenbot.meetups.recurrence import OccurrenceChange, Series, expand

TZ = ZoneInfo("Europe/Berlin")
STAMP = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def series_entry(**kwargs: object) -> CalendarEntry:
    series = Series(
        start=datetime(2027, 1, 12, 14),
        tzid="Europe/Berlin",
        duration=timedelta(minutes=90),
        rrule="FREQ=WEEKLY;BYDAY=TU;UNTIL=20270630T215959Z",
        cancelled=frozenset({utc(2027, 1, 19, 13)}),
        changes={
            utc(2027, 1, 26, 13): OccurrenceChange(start=utc(2027, 1, 27, 13), location="Raum 2")
        },
    )
    defaults: dict[str, object] = {
        "meetup_id": 7,
        "title": "Vernetzungstreffen Digitallotsen",
        "series": series,
        "sequence": 3,
        "location": "Rathaus, Raum 1.12",
        "link": "https://konferenz.example.de/lotsen",
        "description": "Austausch der Lotsinnen und Lotsen; Umlaute: äöüß",
    }
    defaults.update(kwargs)
    return CalendarEntry(**defaults)  # type: ignore[arg-type]


def parse(data: bytes) -> Calendar:
    return Calendar.from_ical(data)


def events(calendar: Calendar) -> list[Event]:
    return list(calendar.walk("VEVENT"))


def exdates(event: Event) -> list[datetime]:
    """All EXDATE values; icalendar gives a list only when there are several lines."""
    raw = event.get("EXDATE", [])
    props = raw if isinstance(raw, list) else [raw]
    return [value.dt for prop in props for value in prop.dts]


def test_calendar_header_and_line_format() -> None:
    data = build_calendar([series_entry()], server_name="stadt.example", dtstamp=STAMP)
    calendar = parse(data)
    assert calendar["VERSION"] == "2.0"
    assert calendar["METHOD"] == "PUBLISH"
    assert str(calendar["PRODID"]).startswith("-//lotsenbot//")
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    # RFC 5545: content lines are folded at 75 octets.
    assert max(len(line) for line in data.split(b"\r\n")) <= 75
    # The zone is defined before any event refers to it.
    assert data.index(b"BEGIN:VTIMEZONE") < data.index(b"BEGIN:VEVENT")


def test_master_event_fields() -> None:
    calendar = parse(build_calendar([series_entry()], server_name="stadt.example", dtstamp=STAMP))
    master = next(e for e in events(calendar) if "RECURRENCE-ID" not in e)
    assert str(master["UID"]) == "meetup-7@stadt.example" == meetup_uid(7, "stadt.example")
    assert master["SEQUENCE"] == 3
    assert str(master["SUMMARY"]) == "Vernetzungstreffen Digitallotsen"
    assert str(master["LOCATION"]) == "Rathaus, Raum 1.12"
    assert str(master["URL"]) == "https://konferenz.example.de/lotsen"
    assert "https://konferenz.example.de/lotsen" in str(master["DESCRIPTION"])
    assert "äöüß" in str(master["DESCRIPTION"])
    assert str(master["STATUS"]) == "CONFIRMED"
    assert master["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert master.decoded("DTSTART") == datetime(2027, 1, 12, 14, tzinfo=TZ)
    assert master.decoded("DTEND") == datetime(2027, 1, 12, 15, 30, tzinfo=TZ)
    assert master.decoded("DTSTAMP") == STAMP
    rule = master["RRULE"]
    assert rule["FREQ"] == ["WEEKLY"] and rule["BYDAY"] == ["TU"]
    assert rule["UNTIL"][0] == datetime(2027, 6, 30, 21, 59, 59, tzinfo=UTC)
    assert exdates(master) == [datetime(2027, 1, 19, 14, tzinfo=TZ)]
    assert master["EXDATE"].params["TZID"] == "Europe/Berlin"


def test_override_event_for_moved_occurrence() -> None:
    calendar = parse(build_calendar([series_entry()], server_name="stadt.example", dtstamp=STAMP))
    overrides = [e for e in events(calendar) if "RECURRENCE-ID" in e]
    assert len(overrides) == 1
    override = overrides[0]
    assert str(override["UID"]) == "meetup-7@stadt.example"
    assert override["SEQUENCE"] == 3
    assert override.decoded("RECURRENCE-ID") == datetime(2027, 1, 26, 14, tzinfo=TZ)
    assert override["RECURRENCE-ID"].params["TZID"] == "Europe/Berlin"
    assert override.decoded("DTSTART") == datetime(2027, 1, 27, 14, tzinfo=TZ)
    assert str(override["LOCATION"]) == "Raum 2"
    assert "RRULE" not in override


def test_file_and_expand_agree_on_the_occurrences() -> None:
    """Expand the parsed file independently (dateutil on the aware DTSTART, minus EXDATE,
    plus RECURRENCE-ID overrides) and compare with our own expansion."""
    entry = series_entry()
    calendar = parse(build_calendar([entry], server_name="stadt.example", dtstamp=STAMP))
    master = next(e for e in events(calendar) if "RECURRENCE-ID" not in e)
    start = master.decoded("DTSTART")
    rule = rrulestr(master["RRULE"].to_ical().decode(), dtstart=start)
    excluded = set(exdates(master))
    overrides = {
        e.decoded("RECURRENCE-ID"): e.decoded("DTSTART")
        for e in events(calendar)
        if "RECURRENCE-ID" in e
    }
    from_file = sorted(
        overrides.get(occ, occ).astimezone(UTC) for occ in rule if occ not in excluded
    )
    ours = [o.start for o in expand(entry.series, after=utc(2027, 1, 1, 0), limit=1000)]
    assert from_file == ours
    # 14:00 Berlin on both sides of the switch on 28.03.2027.
    assert utc(2027, 3, 23, 13) in ours and utc(2027, 3, 30, 12) in ours
    assert len(ours) == 24  # 25 Tuesdays from 12.01. to 29.06., one cancelled


def test_cancelled_meetup_and_one_off() -> None:
    one_off = CalendarEntry(
        meetup_id=9,
        title="Sprechstunde",
        series=Series.at(datetime(2027, 7, 1, 10, tzinfo=TZ), TZ, timedelta(hours=1)),
        sequence=1,
        link="https://konferenz.example.de/sprechstunde",
        cancelled=True,
    )
    calendar = parse(
        build_calendar([series_entry(), one_off], server_name="stadt.example", dtstamp=STAMP)
    )
    cancelled = [e for e in events(calendar) if str(e["UID"]) == "meetup-9@stadt.example"]
    assert len(cancelled) == 1
    event = cancelled[0]
    assert str(event["STATUS"]) == "CANCELLED"
    assert "RRULE" not in event and "EXDATE" not in event
    assert event.decoded("DTSTART") == datetime(2027, 7, 1, 10, tzinfo=TZ)
    # Without a place, the video link is the location (what Outlook shows).
    assert str(event["LOCATION"]) == "https://konferenz.example.de/sprechstunde"
    # One VTIMEZONE per zone, even with two events in it.
    assert len(list(calendar.walk("VTIMEZONE"))) == 1


def test_same_state_gives_same_bytes() -> None:
    first = build_calendar([series_entry()], server_name="s.example", dtstamp=STAMP, name="Treffen")
    second = build_calendar(
        [series_entry()], server_name="s.example", dtstamp=STAMP, name="Treffen"
    )
    assert first == second
    assert b"X-WR-CALNAME:Treffen" in first


def zone_changes(zone: ZoneInfo, first: datetime, last: datetime) -> list[datetime]:
    """Offset changes found by an hourly scan; offsets only change on whole hours here."""
    found = []
    instant = first
    previous = instant.astimezone(zone).utcoffset()
    while instant < last:
        instant += timedelta(minutes=30)
        offset = instant.astimezone(zone).utcoffset()
        if offset != previous:
            found.append(instant)
        previous = offset
    return found


@pytest.mark.parametrize(
    ("key", "fallback"),
    [
        ("Europe/Berlin", False),
        ("Europe/London", False),
        ("America/New_York", False),
        ("Australia/Sydney", False),
        ("Asia/Tokyo", False),
        ("UTC", False),
        ("America/Santiago", True),  # switch at "24:00": explicit transition list
    ],
)
def test_vtimezone_matches_zoneinfo(key: str, fallback: bool) -> None:
    zone = ZoneInfo(key)
    component = vtimezone(zone, around=datetime(2027, 1, 1, tzinfo=UTC))
    assert ("RDATE" in component.to_ical().decode()) is fallback
    # Parse the text back and let dateutil interpret the VTIMEZONE, not the TZID.
    wrapped = b"BEGIN:VCALENDAR\r\n" + component.to_ical() + b"END:VCALENDAR\r\n"
    from_file = Calendar.from_ical(wrapped).walk("VTIMEZONE")[0].to_tz(lookup_tzid=False)
    first, last = utc(2026, 1, 2, 0), utc(2040, 1, 1, 0)
    samples = [first + timedelta(hours=37) * i for i in range(3400)]
    for change in zone_changes(zone, first, last):
        samples += [change - timedelta(minutes=31), change, change + timedelta(minutes=59)]
    assert len(samples) >= 3400 + (0 if key in ("Asia/Tokyo", "UTC") else 80)
    for instant in samples:
        if instant >= last:
            continue
        expected = instant.astimezone(zone).utcoffset()
        assert instant.astimezone(from_file).utcoffset() == expected, (key, instant)


def test_vtimezone_uses_yearly_rule_for_berlin() -> None:
    text = vtimezone(TZ).to_ical().decode()
    assert "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3" in text
    assert "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10" in text
    # RFC 5545: DTSTART is the local time before the switch (02:00 CET, 03:00 CEST).
    assert "DTSTART:19700329T020000" in text
    assert "DTSTART:19701025T030000" in text
    assert "RDATE" not in text
