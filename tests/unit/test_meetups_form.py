"""The "!treffen neu" message in its short and multi-line forms."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lotsenbot.meetups.dates import MeetupError
from lotsenbot.meetups.form import MeetupDraft, parse_meetup
from lotsenbot.meetups.recurrence import expand

TZ = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=TZ)


def parse(text: str) -> MeetupDraft:
    return parse_meetup(text, tz=TZ, now=NOW, default_duration=timedelta(minutes=90))


def test_short_form() -> None:
    draft = parse("12.01.2027 14:00 Vernetzungstreffen Digitallotsen")
    assert draft.title == "Vernetzungstreffen Digitallotsen"
    assert draft.start == datetime(2027, 1, 12, 14, tzinfo=TZ)
    assert draft.duration == timedelta(minutes=90)
    assert draft.tzid == "Europe/Berlin"
    assert (draft.location, draft.link, draft.capacity, draft.rrule) == (None, None, None, None)


def test_full_multiline_form() -> None:
    draft = parse(
        """Titel: Vernetzungstreffen Digitallotsen
        wann: Dienstag, 02.02.2027, 14 Uhr
        DAUER: 2 Stunden
        Wo: Rathaus,
        Raum 1.12
        Link: https://konferenz.example.de/lotsen
        Plätze: 20
        Wiederholung: jeden ersten Dienstag im Monat bis 30.06.2027
        Zielgruppe: alle Lotsinnen und Lotsen
        Beschreibung: Austausch.
        Zweite Zeile."""
    )
    assert draft.title == "Vernetzungstreffen Digitallotsen"
    assert draft.start == datetime(2027, 2, 2, 14, tzinfo=TZ)
    assert draft.duration == timedelta(hours=2)
    assert draft.location == "Rathaus, Raum 1.12"
    assert draft.link == "https://konferenz.example.de/lotsen"
    assert draft.capacity == 20
    assert draft.rrule == "FREQ=MONTHLY;BYDAY=1TU;UNTIL=20270630T215959Z"
    assert draft.audience == "alle Lotsinnen und Lotsen"
    assert draft.description == "Austausch.\nZweite Zeile."
    days = [o.start.astimezone(TZ).day for o in expand(draft.series(), after=NOW)]
    assert days == [2, 2, 6, 4, 1]  # first Tuesdays, February to June 2027


def test_short_first_line_completed_by_fields() -> None:
    draft = parse("morgen 14 Uhr Sprechstunde\nOrt: Raum 3\nplaetze: unbegrenzt")
    assert draft.title == "Sprechstunde"
    assert draft.start == datetime(2026, 11, 28, 14, tzinfo=TZ)
    assert draft.location == "Raum 3" and draft.capacity is None


def test_english_aliases_and_capacity_with_unit() -> None:
    draft = parse("Title: Meetup\nWhen: 12.01.2027 9:30\nSeats: 12 Plätze\nRepeat: wöchentlich")
    assert draft.capacity == 12 and draft.rrule == "FREQ=WEEKLY;BYDAY=TU"


@pytest.mark.parametrize(
    ("text", "code", "params"),
    [
        ("", "meetups.form.empty", {}),
        ("Titel: X\nOrt: a\nRaum: b", "meetups.form.unknown_field", {"field": "Raum"}),
        ("Titel: X\nTitel: Y\nWann: morgen 14 Uhr", "meetups.form.duplicate_field", {}),
        ("morgen 14 Uhr X\nWann: morgen 15 Uhr", "meetups.form.duplicate_field", {}),
        ("morgen 14 Uhr X\nTitel: Y", "meetups.form.duplicate_field", {"field": "Titel"}),
        ("Titel: X", "meetups.form.missing_field", {"field": "Wann"}),
        ("Wann: morgen 14 Uhr", "meetups.form.missing_field", {"field": "Titel"}),
        ("12.01.2027 14:00", "meetups.form.missing_field", {"field": "Titel"}),
        ("morgen 14 Uhr X\nnoch eine Zeile", "meetups.form.stray_line", {}),
        ("morgen 14 Uhr X\nLink: ftp://example.de", "meetups.form.link_invalid", {}),
        ("morgen 14 Uhr X\nLink: konferenz.example.de", "meetups.form.link_invalid", {}),
        ("morgen 14 Uhr X\nPlätze: viele", "meetups.form.capacity_invalid", {}),
        ("morgen 14 Uhr X\nPlätze: 0", "meetups.capacity.invalid", {}),
        ("morgen 14 Uhr X\nDauer: ewig", "meetups.duration.unparseable", {}),
        ("morgen 14 Uhr X\nWiederholung: ab und zu", "meetups.recurrence.unparseable", {}),
        ("Titel: X\nWann: gestern", "meetups.date.unparseable", {}),
        ("Titel: X\nWann: 01.01.2026 10:00", "meetups.date.past", {}),
        ("Titel: " + "x" * 201 + "\nWann: morgen 14 Uhr", "meetups.form.too_long", {}),
        ("Vernetzungstreffen ohne Datum", "meetups.date.unparseable", {}),
    ],
)
def test_form_errors(text: str, code: str, params: dict[str, str]) -> None:
    with pytest.raises(MeetupError) as info:
        parse(text)
    assert info.value.code == code
    for key, value in params.items():
        assert info.value.params[key] == value


def test_unknown_field_lists_the_known_ones() -> None:
    with pytest.raises(MeetupError) as info:
        parse("Titel: X\nUhrzeit: 14 Uhr")
    assert info.value.params["field"] == "Uhrzeit"
    assert "Plätze" in info.value.params["known"] and "Wiederholung" in info.value.params["known"]


def test_url_line_is_not_a_field() -> None:
    draft = parse("morgen 14 Uhr X\nBeschreibung: Details unter\nhttps://example.de/a")
    assert draft.description == "Details unter\nhttps://example.de/a"
