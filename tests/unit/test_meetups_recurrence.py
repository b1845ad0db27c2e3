"""Recurrence phrases, and expansion across the summer-time switches of 2026 and 2027."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lotsenbot.meetups.dates import MeetupError
from lotsenbot.meetups.recurrence import (
    OccurrenceChange,
    Series,
    expand,
    is_original_start,
    next_occurrence,
    occurrence_key,
    parse_recurrence,
)

TZ = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=TZ)
START = datetime(2027, 1, 12, 14, 0, tzinfo=TZ)  # a Tuesday, the 2nd Tuesday of January


def utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("wöchentlich", "FREQ=WEEKLY;BYDAY=TU"),
        ("Woechentlich", "FREQ=WEEKLY;BYDAY=TU"),
        ("jede Woche", "FREQ=WEEKLY;BYDAY=TU"),
        ("jeden Dienstag", "FREQ=WEEKLY;BYDAY=TU"),
        ("alle zwei Wochen", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"),
        ("alle 3 Wochen", "FREQ=WEEKLY;INTERVAL=3;BYDAY=TU"),
        ("14-tägig", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"),
        ("14tägig", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"),
        ("zweiwöchentlich", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"),
        ("monatlich", "FREQ=MONTHLY;BYMONTHDAY=12"),
        ("alle zwei Monate", "FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=12"),
        ("jeden zweiten Dienstag im Monat", "FREQ=MONTHLY;BYDAY=2TU"),
        ("jeden 2. Dienstag des Monats", "FREQ=MONTHLY;BYDAY=2TU"),
        ("wöchentlich bis 30.06.2027", "FREQ=WEEKLY;BYDAY=TU;UNTIL=20270630T215959Z"),
        ("monatlich, bis zum 31.12.2027", "FREQ=MONTHLY;BYMONTHDAY=12;UNTIL=20271231T225959Z"),
        ("alle zwei Wochen, 10 Termine", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;COUNT=10"),
        ("wöchentlich 5 mal", "FREQ=WEEKLY;BYDAY=TU;COUNT=5"),
    ],
)
def test_parse_recurrence(text: str, rule: str) -> None:
    assert parse_recurrence(text, start=START, tz=TZ, now=NOW) == rule


@pytest.mark.parametrize("text", ["einmalig", "", "-", "keine"])
def test_no_recurrence(text: str) -> None:
    assert parse_recurrence(text, start=START, tz=TZ, now=NOW) is None


def test_first_and_last_weekday_of_month() -> None:
    first_tuesday = datetime(2027, 2, 2, 14, tzinfo=TZ)
    last_friday = datetime(2027, 1, 29, 14, tzinfo=TZ)
    assert (
        parse_recurrence("jeden ersten Dienstag im Monat", start=first_tuesday, tz=TZ, now=NOW)
        == "FREQ=MONTHLY;BYDAY=1TU"
    )
    assert (
        parse_recurrence("jeden letzten Freitag im Monat", start=last_friday, tz=TZ, now=NOW)
        == "FREQ=MONTHLY;BYDAY=-1FR"
    )


@pytest.mark.parametrize(
    ("text", "code", "params"),
    [
        ("quartalsweise", "meetups.recurrence.unparseable", {}),
        ("jeden Mittwoch", "meetups.recurrence.weekday_mismatch", {"weekday": "Dienstag"}),
        (
            "jeden ersten Dienstag im Monat",
            "meetups.recurrence.start_mismatch",
            {"first": "Dienstag, 2. Februar 2027"},
        ),
        (
            "jeden letzten Freitag im Monat",
            "meetups.recurrence.start_mismatch",
            {"first": "Freitag, 29. Januar 2027"},
        ),
        ("jeden zweiten Dienstag", "meetups.recurrence.ambiguous", {}),
        ("wöchentlich bis 01.01.2027", "meetups.recurrence.until_before_start", {}),
        ("wöchentlich bis irgendwann", "meetups.date.unparseable_date", {}),
        ("wöchentlich, 0 mal", "meetups.recurrence.count", {}),
        ("einmalig bis 30.06.2027", "meetups.recurrence.unparseable", {}),
    ],
)
def test_parse_recurrence_refuses(text: str, code: str, params: dict[str, str]) -> None:
    with pytest.raises(MeetupError) as info:
        parse_recurrence(text, start=START, tz=TZ, now=NOW)
    assert info.value.code == code
    for key, value in params.items():
        assert info.value.params[key] == value


def test_monthly_on_the_31st_is_refused() -> None:
    start = datetime(2027, 1, 31, 14, tzinfo=TZ)
    with pytest.raises(MeetupError) as info:
        parse_recurrence("monatlich", start=start, tz=TZ, now=NOW)
    assert info.value.code == "meetups.recurrence.month_day"


def weekly_local_times(series: Series, after: datetime, count: int) -> list[tuple[str, str]]:
    """(local date-time, UTC offset) of the first ``count`` occurrences."""
    found = expand(series, after=after, limit=count)
    return [
        (o.start.astimezone(TZ).strftime("%Y-%m-%d %H:%M"), o.start.astimezone(TZ).strftime("%z"))
        for o in found
    ]


@pytest.mark.parametrize(
    ("first", "switch_day"),
    [
        (datetime(2026, 3, 17, 14), "2026-03-29"),  # spring 2026
        (datetime(2026, 10, 13, 14), "2026-10-25"),  # autumn 2026
        (datetime(2027, 3, 16, 14), "2027-03-28"),  # spring 2027
        (datetime(2027, 10, 19, 14), "2027-10-31"),  # autumn 2027
    ],
)
def test_weekly_series_keeps_wall_clock_across_switch(first: datetime, switch_day: str) -> None:
    series = Series(start=first, tzid="Europe/Berlin", rrule="FREQ=WEEKLY;BYDAY=TU")
    after = first.replace(tzinfo=TZ)
    times = weekly_local_times(series, after, 4)
    assert [t for t, _ in times] == [
        (first + timedelta(weeks=i)).strftime("%Y-%m-%d %H:%M") for i in range(4)
    ]
    # The offset changes exactly once, between the second and the third Tuesday.
    offsets = [o for _, o in times]
    assert offsets[0] == offsets[1] != offsets[2] == offsets[3]
    switch = datetime.fromisoformat(switch_day)
    assert first + timedelta(weeks=1) < switch < first + timedelta(weeks=2)


def test_utc_instants_shift_by_an_hour_in_summer() -> None:
    series = Series(start=datetime(2027, 3, 16, 14), tzid="Europe/Berlin", rrule="FREQ=WEEKLY")
    starts = [o.start for o in expand(series, after=utc(2027, 3, 1, 0), limit=3)]
    assert starts == [utc(2027, 3, 16, 13), utc(2027, 3, 23, 13), utc(2027, 3, 30, 12)]


def test_spring_forward_gap_is_shifted_forward() -> None:
    # 02:30 on Sunday 28.03.2027 does not exist in Berlin; it becomes 03:30 CEST.
    series = Series(start=datetime(2027, 3, 21, 2, 30), tzid="Europe/Berlin", rrule="FREQ=WEEKLY")
    starts = [o.start for o in expand(series, after=utc(2027, 3, 1, 0), limit=3)]
    assert starts == [utc(2027, 3, 21, 1, 30), utc(2027, 3, 28, 1, 30), utc(2027, 4, 4, 0, 30)]
    assert starts[1].astimezone(TZ).strftime("%H:%M %z") == "03:30 +0200"


@pytest.mark.parametrize(
    ("first", "fold_day"),
    [(datetime(2026, 10, 18, 2, 30), 25), (datetime(2027, 10, 24, 2, 30), 31)],
)
def test_autumn_fold_takes_first_occurrence(first: datetime, fold_day: int) -> None:
    series = Series(start=first, tzid="Europe/Berlin", rrule="FREQ=WEEKLY")
    second = expand(series, after=first.replace(tzinfo=TZ), limit=2)[1].start
    # 02:30 happens twice; the first time is still summer time (+02:00) = 00:30 UTC.
    assert second == utc(first.year, 10, fold_day, 0, 30)


def test_monthly_nth_weekday_expansion() -> None:
    series = Series(
        start=datetime(2027, 1, 29, 14), tzid="Europe/Berlin", rrule="FREQ=MONTHLY;BYDAY=-1FR"
    )
    days = [o.start.astimezone(TZ).date().isoformat() for o in expand(series, after=NOW, limit=4)]
    assert days == ["2027-01-29", "2027-02-26", "2027-03-26", "2027-04-30"]


def test_until_is_inclusive_of_the_last_day() -> None:
    rule = parse_recurrence("wöchentlich bis 26.01.2027", start=START, tz=TZ, now=NOW)
    series = Series.at(START, TZ, timedelta(hours=1), rule)
    found = expand(series, after=NOW)
    assert [o.start for o in found] == [
        utc(2027, 1, 12, 13),
        utc(2027, 1, 19, 13),
        utc(2027, 1, 26, 13),
    ]


def test_until_in_summer_with_winter_start() -> None:
    # UNTIL is end of day in local time, converted with the summer offset.
    rule = parse_recurrence("wöchentlich bis 30.03.2027", start=START, tz=TZ, now=NOW)
    assert rule is not None and rule.endswith("UNTIL=20270330T215959Z")
    series = Series.at(START, TZ, timedelta(hours=1), rule)
    assert expand(series, after=NOW)[-1].start == utc(2027, 3, 30, 12)


def test_window_and_limit() -> None:
    series = Series.at(START, TZ, timedelta(hours=1), "FREQ=WEEKLY;BYDAY=TU")
    found = expand(series, after=utc(2027, 2, 1, 0), before=utc(2027, 2, 28, 0))
    assert [o.start.day for o in found] == [2, 9, 16, 23]
    assert len(expand(series, after=NOW, limit=7)) == 7
    # An unbounded series far in the future still expands.
    assert expand(series, after=utc(2029, 12, 31, 0), limit=1)[0].start == utc(2030, 1, 1, 13)


def test_cancelled_and_moved_occurrences() -> None:
    moved_from = utc(2027, 1, 26, 13)
    series = Series(
        start=datetime(2027, 1, 12, 14),
        tzid="Europe/Berlin",
        duration=timedelta(minutes=90),
        rrule="FREQ=WEEKLY;BYDAY=TU;COUNT=4",
        cancelled=frozenset({utc(2027, 1, 19, 13)}),
        changes={moved_from: OccurrenceChange(start=utc(2027, 1, 27, 13), location="Raum 2")},
    )
    found = expand(series, after=NOW)
    assert [(o.original_start, o.start) for o in found] == [
        (utc(2027, 1, 12, 13), utc(2027, 1, 12, 13)),
        (moved_from, utc(2027, 1, 27, 13)),
        (utc(2027, 2, 2, 13), utc(2027, 2, 2, 13)),
    ]
    assert found[0].end - found[0].start == timedelta(minutes=90)
    assert found[1].change is not None and found[1].change.location == "Raum 2"
    assert found[1].key == "2027-01-26T13:00:00Z"
    # A window around the new date finds the moved occurrence, one around the old does not.
    assert [
        o.original_start
        for o in expand(series, after=utc(2027, 1, 27, 0), before=utc(2027, 1, 28, 0))
    ] == [moved_from]
    assert expand(series, after=utc(2027, 1, 26, 0), before=utc(2027, 1, 27, 0)) == []


def test_moved_occurrence_order_and_window_start() -> None:
    # The third occurrence moves before the second; expansion is ordered by actual start.
    series = Series(
        start=datetime(2027, 1, 12, 14),
        tzid="Europe/Berlin",
        rrule="FREQ=WEEKLY;COUNT=3",
        changes={utc(2027, 1, 26, 13): OccurrenceChange(start=utc(2027, 1, 18, 13))},
    )
    assert [o.start.day for o in expand(series, after=NOW)] == [12, 18, 19]
    assert [o.start.day for o in expand(series, after=utc(2027, 1, 13, 0), limit=1)] == [18]


def test_is_original_start_and_next_occurrence() -> None:
    series = Series.at(START, TZ, timedelta(hours=1), "FREQ=WEEKLY;BYDAY=TU")
    assert is_original_start(series, utc(2027, 2, 2, 13))
    assert not is_original_start(series, utc(2027, 2, 2, 14))
    assert not is_original_start(series, utc(2027, 2, 3, 13))
    now = utc(2027, 1, 12, 13)  # the first one begins right now: the next is a week later
    nxt = next_occurrence(series, now)
    assert nxt is not None and nxt.start == utc(2027, 1, 19, 13)


def test_one_off_meetup_is_a_series_without_rule() -> None:
    series = Series.at(START, TZ, timedelta(hours=2))
    assert [o.start for o in expand(series, after=NOW)] == [utc(2027, 1, 12, 13)]
    assert expand(series, after=utc(2027, 1, 12, 13, 1)) == []
    assert next_occurrence(series, utc(2027, 1, 12, 14)) is None


def test_series_validation() -> None:
    with pytest.raises(ValueError):
        Series(start=START, tzid="Europe/Berlin")  # must be naive wall time
    with pytest.raises(ValueError):
        Series(start=datetime(2027, 1, 12, 14), tzid="Europe/Berlin", rrule="FREQ=SOMETIMES")
    with pytest.raises(ValueError):
        Series(start=datetime(2027, 1, 12, 14), cancelled=frozenset({datetime(2027, 1, 19)}))
    with pytest.raises(ValueError, match="time zone"):
        Series(start=datetime(2027, 1, 12, 14), tzid="Europe/Nowhere")
    with pytest.raises(ValueError):
        occurrence_key(datetime(2027, 1, 19))
