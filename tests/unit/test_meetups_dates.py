"""Date, time and duration input as coordinators type it, with a fixed clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lotsenbot.meetups.dates import (
    MeetupError,
    format_duration,
    format_when,
    local_wall,
    parse_date,
    parse_duration,
    parse_when,
    resolve_local,
    split_when,
)

TZ = ZoneInfo("Europe/Berlin")
# Friday, 27 November 2026, 10:00 in Berlin.
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=TZ)


def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=TZ)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.01.2027 14:00", at(2027, 1, 12, 14)),
        ("12.1.2027 14:00", at(2027, 1, 12, 14)),
        ("12.01.27 14:00", at(2027, 1, 12, 14)),
        ("12.01. 14:00", at(2027, 1, 12, 14)),
        # 27.11. 09:00 has passed today, so "27.11." means next year.
        ("27.11. 9:00", at(2027, 11, 27, 9)),
        ("27.11. 11:00", at(2026, 11, 27, 11)),
        ("12.01.2027 14 Uhr", at(2027, 1, 12, 14)),
        ("12.01.2027 14:30 Uhr", at(2027, 1, 12, 14, 30)),
        ("12.01.2027 14.30 Uhr", at(2027, 1, 12, 14, 30)),
        ("am 12.01.2027 um 14 Uhr", at(2027, 1, 12, 14)),
        ("2027-01-12 14:00", at(2027, 1, 12, 14)),
        ("14 Uhr", at(2026, 11, 27, 14)),
        ("14:30 Uhr", at(2026, 11, 27, 14, 30)),
        ("heute 15 Uhr", at(2026, 11, 27, 15)),
        ("Heute um 15:45", at(2026, 11, 27, 15, 45)),
        ("morgen 14 Uhr", at(2026, 11, 28, 14)),
        ("übermorgen 10:00", at(2026, 11, 29, 10)),
        ("uebermorgen 10:00", at(2026, 11, 29, 10)),
        ("Dienstag 9:30", at(2026, 12, 1, 9, 30)),
        ("nächsten Dienstag 9:30", at(2026, 12, 1, 9, 30)),
        ("Di. 9:30", at(2026, 12, 1, 9, 30)),
        # Today is Friday: "Freitag" is today if still ahead, next week otherwise;
        # "nächsten Freitag" always skips today.
        ("Freitag 11:00", at(2026, 11, 27, 11)),
        ("Freitag 9:30", at(2026, 12, 4, 9, 30)),
        ("nächsten Freitag 11:00", at(2026, 12, 4, 11)),
        ("kommenden Freitag 11 Uhr", at(2026, 12, 4, 11)),
        ("am 3. März 14 Uhr", at(2027, 3, 3, 14)),
        ("3. Mär. 2027 um 9.30 Uhr", at(2027, 3, 3, 9, 30)),
        ("3 Dezember 8:00", at(2026, 12, 3, 8)),
        ("Dienstag, 12.01.2027, 14:00", at(2027, 1, 12, 14)),
        ("29.02. 10:00", at(2028, 2, 29, 10)),
    ],
)
def test_parse_when_accepts_promised_forms(text: str, expected: datetime) -> None:
    assert parse_when(text, tz=TZ, now=NOW) == expected


def test_split_when_returns_title_after_the_time() -> None:
    when, title = split_when("12.01.2027 14:00 Vernetzungstreffen Digitallotsen", tz=TZ, now=NOW)
    assert when == at(2027, 1, 12, 14)
    assert title == "Vernetzungstreffen Digitallotsen"


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("morgen 14 Uhr – 2. Netzwerktreffen", "2. Netzwerktreffen"),
        ("12.01.2027 14:00: 20 Jahre Bürgeramt", "20 Jahre Bürgeramt"),
        ("Di 14:00 Sommerfest", "Sommerfest"),
        ("morgen 14 Uhr So geht digital", "So geht digital"),
    ],
)
def test_split_when_does_not_eat_numbers_of_the_title(text: str, title: str) -> None:
    assert split_when(text, tz=TZ, now=NOW)[1] == title


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("9 Uhr", "meetups.date.past"),
        ("26.11.2026 14:00", "meetups.date.past"),
        ("12.01.2207 14:00", "meetups.date.too_far"),
        ("Vernetzungstreffen", "meetups.date.unparseable"),
        ("", "meetups.date.unparseable"),
        ("12.01.2027", "meetups.date.no_time"),
        ("morgen", "meetups.date.no_time"),
        ("12.01.2027 14", "meetups.date.no_time"),
        ("31.02.2027 14:00", "meetups.date.invalid"),
        ("12.13.2027 14:00", "meetups.date.invalid"),
        ("12.01.2027 25:00", "meetups.date.invalid_time"),
        ("12.01.2027 14:75", "meetups.date.invalid_time"),
        ("Montag, 12.01.2027 14:00", "meetups.date.weekday_mismatch"),
        ("12.01.2027 14:00 Uhr extra", "meetups.date.unparseable"),
        ("14 Uhr morgen", "meetups.date.unparseable"),
        ("14:00 12.01.2027", "meetups.date.unparseable"),
    ],
)
def test_parse_when_refuses_with_typed_error(text: str, code: str) -> None:
    with pytest.raises(MeetupError) as info:
        parse_when(text, tz=TZ, now=NOW)
    assert info.value.code == code


def test_past_error_carries_formatted_date_and_example() -> None:
    with pytest.raises(MeetupError) as info:
        parse_when("heute 9 Uhr", tz=TZ, now=NOW)
    assert info.value.params["when"] == "Freitag, 27. November 2026, 09:00 Uhr"
    # A Tuesday at least four weeks after the parser's today, so never itself in the past.
    assert info.value.params["example"] == "29.12.2026 14:00"


def test_exactly_now_counts_as_past() -> None:
    with pytest.raises(MeetupError):
        parse_when("heute 10:00", tz=TZ, now=NOW)


def test_now_in_other_zone_is_respected() -> None:
    # 23:30 UTC on 27.11. is already 28.11. in Berlin, so "heute" is Saturday there.
    now_utc = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    assert parse_when("heute 14 Uhr", tz=TZ, now=now_utc) == at(2026, 11, 28, 14)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_when("morgen 14 Uhr", tz=TZ, now=datetime(2026, 11, 27, 10))


def test_a_typed_time_in_the_spring_forward_gap_is_refused() -> None:
    """02:30 on 28.03.2027 does not exist; it used to become 03:30 without a word."""
    now = datetime(2027, 3, 1, tzinfo=TZ)
    with pytest.raises(MeetupError) as info:
        parse_when("28.03.2027 02:30", tz=TZ, now=now)
    assert info.value.code == "meetups.date.dst_gap"
    assert info.value.params == {"day": "28.03.2027", "time": "02:30"}
    assert parse_when("28.03.2027 03:30", tz=TZ, now=now).utcoffset() == timedelta(hours=2)


def test_spring_forward_gap_moves_forward_by_the_gap() -> None:
    """The RFC 5545 rule, for dates of a series that fall into the gap."""
    when = resolve_local(datetime(2027, 3, 28, 2, 30), TZ)
    assert when.astimezone(UTC) == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    assert (when.hour, when.minute, when.utcoffset()) == (3, 30, timedelta(hours=2))


def test_autumn_fold_means_first_occurrence() -> None:
    now = datetime(2027, 10, 1, tzinfo=TZ)
    when = parse_when("31.10.2027 02:30", tz=TZ, now=now)
    assert when.astimezone(UTC) == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)
    assert when.utcoffset() == timedelta(hours=2)


def test_resolve_local_round_trip() -> None:
    wall = datetime(2027, 7, 1, 14, 0)
    assert local_wall(resolve_local(wall, TZ), TZ) == wall
    with pytest.raises(ValueError):
        resolve_local(wall.replace(tzinfo=UTC), TZ)


def test_parse_date_for_series_end() -> None:
    assert parse_date("30.06.2027", tz=TZ, now=NOW) == date(2027, 6, 30)
    assert parse_date("30. Juni 2027", tz=TZ, now=NOW) == date(2027, 6, 30)
    assert parse_date("27.11.", tz=TZ, now=NOW) == date(2026, 11, 27)
    assert parse_date("26.11.", tz=TZ, now=NOW) == date(2027, 11, 26)
    with pytest.raises(MeetupError) as info:
        parse_date("irgendwann", tz=TZ, now=NOW)
    assert info.value.code == "meetups.date.unparseable_date"


@pytest.mark.parametrize(
    ("dt", "text"),
    [
        (at(2027, 1, 12, 14), "Dienstag, 12. Januar 2027, 14:00 Uhr"),
        (at(2027, 3, 3, 9, 5), "Mittwoch, 3. März 2027, 09:05 Uhr"),
        # Given in UTC, shown in Berlin summer time.
        (datetime(2027, 7, 4, 22, 30, tzinfo=UTC), "Montag, 5. Juli 2027, 00:30 Uhr"),
        (at(2026, 11, 29, 18), "Sonntag, 29. November 2026, 18:00 Uhr"),
    ],
)
def test_format_when_in_german(dt: datetime, text: str) -> None:
    assert format_when(dt, TZ) == text


def test_format_when_refuses_naive() -> None:
    with pytest.raises(ValueError):
        format_when(datetime(2027, 1, 12, 14), TZ)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("90 Minuten", 90),
        ("90 min", 90),
        ("90min", 90),
        ("45 Min.", 45),
        ("1,5 h", 90),
        ("1.5h", 90),
        ("2 Stunden", 120),
        ("1 Stunde", 60),
        ("2 Std.", 120),
        ("1:30", 90),
        ("0:45", 45),
        ("1 Stunde 30 Minuten", 90),
        ("1 Stunde und 15 Minuten", 75),
        ("1h 30m", 90),
    ],
)
def test_parse_duration(text: str, minutes: int) -> None:
    assert parse_duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "meetups.duration.unparseable"),
        ("lang", "meetups.duration.unparseable"),
        ("0 Minuten", "meetups.duration.unparseable"),
        ("1:75", "meetups.duration.unparseable"),
        ("90 Minuten lang", "meetups.duration.unparseable"),
        ("25 Stunden", "meetups.duration.too_long"),
    ],
)
def test_parse_duration_refuses(text: str, code: str) -> None:
    with pytest.raises(MeetupError) as info:
        parse_duration(text)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("minutes", "text"),
    [(90, "1 Stunde 30 Minuten"), (120, "2 Stunden"), (60, "1 Stunde"), (45, "45 Minuten")],
)
def test_format_duration(minutes: int, text: str) -> None:
    assert format_duration(timedelta(minutes=minutes)) == text
