"""Changes to a meetup, its audience, and naming single dates of a series."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lotsenbot.announcements import audience as announcements
from lotsenbot.meetups.audience import Audience, parse_audience
from lotsenbot.meetups.dates import MeetupError
from lotsenbot.meetups.form import parse_changes
from lotsenbot.meetups.recurrence import (
    OccurrenceChange,
    Series,
    is_finite,
    last_end,
    occurrence_of,
    original_on,
)

TZ = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=TZ)
DEPARTMENTS = [("it", "IT-Service"), ("buergeramt", "Bürgeramt")]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (None, "lotsen"),
        ("", "lotsen"),
        ("alle Lotsinnen und Lotsen", "lotsen"),
        ("Lotsen", "lotsen"),
        ("it", "abteilung:it"),
        ("Abteilung Bürgeramt", "abteilung:buergeramt"),
        ("buergeramt", "abteilung:buergeramt"),
        ("!abc:stadt.de", "raum:!abc:stadt.de"),
        ("keine", "keine"),
        ("alle", "alle"),
        ("Alle", "alle"),
        ("everyone", "alle"),
        ("räume", "raeume"),
        ("Koordination", "koordination"),
    ],
)
def test_audience(text: str | None, key: str) -> None:
    audience = parse_audience(text, DEPARTMENTS)
    assert audience.key == key
    assert Audience.from_key(key) == audience


def test_unknown_audience_lists_choices() -> None:
    with pytest.raises(MeetupError) as info:
        parse_audience("Marketing", DEPARTMENTS)
    assert info.value.code == "meetups.audience.unknown"
    assert info.value.params["choices"] == (
        "lotsen, koordination, räume, alle, it, buergeramt, keine, !raum:server"
    )


@pytest.mark.parametrize(
    "word", [word for words in announcements.KEYWORDS.values() for word in words] + ["it"]
)
def test_every_audience_word_of_announcements_means_the_same_for_a_meetup(word: str) -> None:
    shared = announcements.resolve_audience(word, [d for d, _ in DEPARTMENTS])
    assert shared is not None
    assert parse_audience(word, DEPARTMENTS).key == shared.key


def test_changes_whole_meetup() -> None:
    changes = parse_changes(
        "Wann: 13.01.2027 15:00\nWo: -\nPlätze: unbegrenzt\nLink: https://x.example/a\n"
        "Titel: Neuer Titel",
        tz=TZ,
        now=NOW,
    )
    assert changes == {
        "when": datetime(2027, 1, 13, 15, 0, tzinfo=TZ),
        "location": None,
        "capacity": None,
        "link": "https://x.example/a",
        "title": "Neuer Titel",
    }


@pytest.mark.parametrize(
    ("text", "single", "code"),
    [
        ("", False, "meetups.change.empty"),
        ("nur Text", False, "meetups.form.stray_line"),
        ("Wiederholung: monatlich", False, "meetups.change.not_changeable"),
        ("Plätze: 5", True, "meetups.change.not_changeable"),
        ("Titel: -", False, "meetups.change.cannot_clear"),
        ("Wo: -", True, "meetups.change.cannot_clear"),
        ("Wann: 01.01.2020 10:00", False, "meetups.date.past"),
        ("Ort: Rathaus\nWo: Rathaus", False, "meetups.form.duplicate_field"),
    ],
)
def test_changes_refused(text: str, single: bool, code: str) -> None:
    with pytest.raises(MeetupError) as info:
        parse_changes(text, tz=TZ, now=NOW, single_date=single)
    assert info.value.code == code


def weekly(**extra: object) -> Series:
    return Series(
        start=datetime(2027, 1, 5, 14, 0),
        tzid="Europe/Berlin",
        duration=timedelta(hours=1),
        rrule="FREQ=WEEKLY;BYDAY=TU",
        **extra,
    )  # type: ignore[arg-type]


def test_original_on_names_dates_of_a_series() -> None:
    series = weekly()
    assert original_on(series, date(2027, 1, 19)) == datetime(2027, 1, 19, 13, 0, tzinfo=UTC)
    assert original_on(series, date(2027, 1, 20)) is None
    assert original_on(series, date(2026, 12, 29)) is None  # before the first date
    # After summer time starts the wall-clock time stays 14:00 (12:00 UTC).
    assert original_on(series, date(2027, 4, 6)) == datetime(2027, 4, 6, 12, 0, tzinfo=UTC)
    original = datetime(2027, 1, 12, 13, 0, tzinfo=UTC)
    moved = weekly(changes={original: OccurrenceChange(start=datetime(2027, 1, 14, 9, tzinfo=UTC))})
    assert original_on(moved, date(2027, 1, 14)) == original
    occ = occurrence_of(moved, original)
    assert occ is not None and occ.start == datetime(2027, 1, 14, 9, tzinfo=UTC)
    assert occurrence_of(weekly(cancelled=frozenset({original})), original) is None
    assert occurrence_of(moved, datetime(2027, 1, 13, 13, 0, tzinfo=UTC)) is None


def test_last_end() -> None:
    assert not is_finite(weekly()) and last_end(weekly()) is None
    counted = Series(
        start=datetime(2027, 1, 5, 14, 0),
        duration=timedelta(hours=1),
        rrule="FREQ=WEEKLY;BYDAY=TU;COUNT=4",
    )
    assert last_end(counted) == datetime(2027, 1, 26, 14, 0, tzinfo=UTC)
    once = Series(start=datetime(2027, 1, 5, 14, 0), duration=timedelta(minutes=90))
    assert last_end(once) == datetime(2027, 1, 5, 14, 30, tzinfo=UTC)
