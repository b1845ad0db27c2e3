"""Working-time arithmetic: office hours, Bundesland holidays, DST, durations."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from lotsenbot.tickets.worktime import (
    ALWAYS_HOURS,
    DEFAULT_OFFICE_HOURS,
    Duration,
    WorkCalendar,
    add_duration,
    add_working_time,
    parse_work_duration,
    working_time_between,
)

BERLIN = ZoneInfo("Europe/Berlin")
H = timedelta(hours=1)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


@pytest.fixture(scope="module")
def nw() -> WorkCalendar:
    return WorkCalendar(state="NW")


@pytest.fixture(scope="module")
def by() -> WorkCalendar:
    return WorkCalendar(state="BY")


@pytest.fixture(scope="module")
def ni() -> WorkCalendar:
    return WorkCalendar(state="NI")


# --- durations and calendar construction -----------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", Duration(time=timedelta(seconds=90))),
        ("2m", Duration(time=timedelta(minutes=2))),
        ("4h", Duration(time=timedelta(hours=4))),
        ("2d", Duration(days=2)),
        (" 5s ", Duration(time=timedelta(seconds=5))),
    ],
)
def test_parse_work_duration_reads_days_as_office_days(text: str, expected: Duration) -> None:
    assert parse_work_duration(text) == expected


@pytest.mark.parametrize("text", ["", "4", "4x", "h4", "-4h", "4.5h", "4 hours"])
def test_parse_work_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_work_duration(text)


def test_duration_calendar_reading_and_truth() -> None:
    assert Duration(days=2, time=timedelta(hours=3)).as_timedelta() == timedelta(days=2, hours=3)
    assert not Duration()
    assert parse_work_duration("1s")
    with pytest.raises(ValueError):
        Duration(days=-1)


def test_from_spans_matches_config_office_hours() -> None:
    spans = {
        0: (time(8), time(16)),
        1: (time(8), time(16)),
        2: (time(8), time(16)),
        3: (time(8), time(16)),
        4: (time(8), time(13)),
    }
    calendar = WorkCalendar.from_spans(spans, state="NW")
    assert calendar.office_hours == dict(DEFAULT_OFFICE_HOURS)
    whole_days = WorkCalendar.from_spans({d: (time(0), None) for d in range(7)}, state=None)
    assert whole_days.office_hours == dict(ALWAYS_HOURS)


@pytest.mark.parametrize(
    "hours",
    [
        {},
        {0: (timedelta(hours=16), timedelta(hours=8))},
        {7: (timedelta(hours=8), timedelta(hours=16))},
        {0: (timedelta(hours=8), timedelta(hours=25))},
    ],
)
def test_invalid_office_hours_are_rejected(hours: dict[int, tuple[timedelta, timedelta]]) -> None:
    with pytest.raises(ValueError):
        WorkCalendar(hours)


def test_unknown_state_is_rejected_and_case_is_ignored() -> None:
    with pytest.raises(ValueError, match="Bundesland"):
        WorkCalendar(state="XX")
    assert WorkCalendar(state="nw").state == "NW"


def test_naive_datetimes_are_refused(nw: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="aware"):
        add_working_time(datetime(2026, 3, 2, 9), timedelta(hours=1), nw)


# --- hours within a week ------------------------------------------------------


def test_within_one_day(nw: WorkCalendar) -> None:
    assert add_working_time(at(2026, 3, 2, 9), 4 * H, nw) == at(2026, 3, 2, 13)


def test_deadline_ending_exactly_at_closing_time_stays_on_that_day(nw: WorkCalendar) -> None:
    assert add_working_time(at(2026, 3, 2, 12), 4 * H, nw) == at(2026, 3, 2, 16)


def test_night_does_not_count(nw: WorkCalendar) -> None:
    assert add_working_time(at(2026, 3, 2, 14), 4 * H, nw) == at(2026, 3, 3, 10)


def test_friday_short_day_then_weekend(nw: WorkCalendar) -> None:
    # Thursday 15:00: one hour left on Thursday, five on Friday (08-13).
    assert add_working_time(at(2026, 3, 5, 15), 4 * H, nw) == at(2026, 3, 6, 11)
    # Friday 12:00: one hour on Friday, the rest on Monday morning.
    assert add_working_time(at(2026, 3, 6, 12), 2 * H, nw) == at(2026, 3, 9, 9)
    # Friday afternoon is already closed.
    assert add_working_time(at(2026, 3, 6, 14), 1 * H, nw) == at(2026, 3, 9, 9)


def test_start_at_weekend_or_before_opening(nw: WorkCalendar) -> None:
    assert add_working_time(at(2026, 3, 7, 10), 30 * timedelta(minutes=1), nw) == at(
        2026, 3, 9, 8, 30
    )
    assert add_working_time(at(2026, 3, 9, 6), H, nw) == at(2026, 3, 9, 9)


def test_zero_duration_returns_start(nw: WorkCalendar) -> None:
    start = at(2026, 3, 7, 10)
    assert add_working_time(start, timedelta(0), nw) == start


def test_negative_duration_is_refused(nw: WorkCalendar) -> None:
    with pytest.raises(ValueError):
        add_working_time(at(2026, 3, 2, 9), -H, nw)


def test_full_week_between(nw: WorkCalendar) -> None:
    assert working_time_between(at(2026, 3, 2, 8), at(2026, 3, 9, 8), nw) == 37 * H
    assert working_time_between(at(2026, 3, 9, 8), at(2026, 3, 2, 8), nw) == -37 * H
    assert working_time_between(at(2026, 3, 7, 0), at(2026, 3, 8, 23), nw) == timedelta(0)


def test_result_is_in_calendar_zone_even_for_utc_input(nw: WorkCalendar) -> None:
    start = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
    result = add_working_time(start, H, nw)
    assert result == at(2026, 3, 2, 10)
    assert result.tzinfo == BERLIN


# --- holidays: Bundesland matters ---------------------------------------------


def test_fronleichnam_counts_in_nw_but_not_in_ni(nw: WorkCalendar, ni: WorkCalendar) -> None:
    # Corpus Christi 2026 is Thursday 4 June.
    start = at(2026, 6, 3, 15)
    assert add_working_time(start, 2 * H, nw) == at(2026, 6, 5, 9)
    assert add_working_time(start, 2 * H, ni) == at(2026, 6, 4, 9)
    assert nw.holiday_name(date(2026, 6, 4)) == "Fronleichnam"


def test_epiphany_only_in_by(nw: WorkCalendar, by: WorkCalendar) -> None:
    # Heilige Drei Könige 2027 is a Wednesday.
    start = at(2027, 1, 5, 15)
    assert add_working_time(start, 2 * H, by) == at(2027, 1, 7, 9)
    assert add_working_time(start, 2 * H, nw) == at(2027, 1, 6, 9)


def test_allerheiligen_2027_with_dst_weekend(
    nw: WorkCalendar, by: WorkCalendar, ni: WorkCalendar
) -> None:
    # Friday 29 Oct 2027, clocks go back on Sunday 31 Oct, Monday 1 Nov is
    # All Saints' Day in NW and BY but a working day in Lower Saxony.
    start = at(2027, 10, 29, 12)
    assert add_working_time(start, 2 * H, nw) == at(2027, 11, 2, 9)
    assert add_working_time(start, 2 * H, by) == at(2027, 11, 2, 9)
    assert add_working_time(start, 2 * H, ni) == at(2027, 11, 1, 9)
    assert working_time_between(start, at(2027, 11, 2, 9), nw) == 2 * H


def test_closed_dates_are_treated_like_holidays() -> None:
    calendar = WorkCalendar(state="NW", closed_dates=[date(2026, 12, 24), date(2026, 12, 31)])
    # 24 Dec 2026 is a Thursday; 25/26 are public holidays (26 is Saturday).
    assert add_working_time(at(2026, 12, 23, 15), 2 * H, calendar) == at(2026, 12, 28, 9)


def test_calendar_without_state_has_no_holidays() -> None:
    calendar = WorkCalendar()
    assert not calendar.is_holiday(date(2026, 12, 25))
    assert calendar.holiday_name(date(2026, 12, 25)) is None


# --- DST ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("switch_day", "hours"),
    [
        (date(2026, 3, 29), 23),
        (date(2026, 10, 25), 25),
        (date(2027, 3, 28), 23),
        (date(2027, 10, 31), 25),
    ],
)
def test_always_calendar_counts_real_hours_on_switch_days(switch_day: date, hours: int) -> None:
    calendar = WorkCalendar.always()
    midnight = datetime.combine(switch_day, datetime.min.time(), tzinfo=BERLIN)
    next_midnight = datetime.combine(
        switch_day + timedelta(days=1), datetime.min.time(), tzinfo=BERLIN
    )
    assert working_time_between(midnight, next_midnight, calendar) == hours * H
    assert add_working_time(midnight, hours * H, calendar) == next_midnight


def test_always_calendar_adds_real_seconds_across_spring_forward() -> None:
    calendar = WorkCalendar.always()
    start = at(2026, 3, 29, 1, 59)
    result = add_working_time(start, timedelta(minutes=2), calendar)
    # 01:59 CET + 2 real minutes = 03:01 CEST.
    assert result == at(2026, 3, 29, 3, 1)
    assert result.utcoffset() == 2 * H
    assert add_working_time(start, timedelta(seconds=5), calendar) - start == timedelta(seconds=5)


def test_night_office_hours_across_fall_back() -> None:
    # A Sunday on-call window 00:00-06:00 holds seven real hours on 25 Oct 2026.
    calendar = WorkCalendar({6: (timedelta(0), 6 * H)})
    start = at(2026, 10, 25, 0)
    assert working_time_between(start, at(2026, 10, 25, 12), calendar) == 7 * H
    assert add_working_time(start, 7 * H, calendar) == at(2026, 10, 25, 6)


def test_office_week_across_spring_forward(nw: WorkCalendar) -> None:
    # Friday 27 March 2026 (CET) to Monday 30 March (CEST): 1 h + 2 h, not shifted.
    assert add_working_time(at(2026, 3, 27, 12), 3 * H, nw) == at(2026, 3, 30, 10)
    assert working_time_between(at(2026, 3, 27, 12), at(2026, 3, 30, 10), nw) == 3 * H


# --- working days -----------------------------------------------------------------


def test_working_days_keep_the_time_of_day(nw: WorkCalendar) -> None:
    assert add_working_time(at(2026, 3, 2, 10), parse_work_duration("2d"), nw) == at(2026, 3, 4, 10)


def test_working_days_clamp_to_friday_closing(nw: WorkCalendar) -> None:
    assert add_working_time(at(2026, 3, 5, 15), parse_work_duration("1d"), nw) == at(2026, 3, 6, 13)


def test_working_days_from_weekend_start_next_morning(nw: WorkCalendar) -> None:
    assert add_working_time(at(2026, 3, 7, 10), parse_work_duration("1d"), nw) == at(2026, 3, 10, 8)


def test_working_days_from_closing_time(nw: WorkCalendar) -> None:
    assert add_working_time(at(2026, 3, 2, 16), parse_work_duration("1d"), nw) == at(2026, 3, 3, 16)


def test_working_days_skip_easter(nw: WorkCalendar) -> None:
    # Thursday 2 April 2026; Good Friday and Easter Monday are holidays.
    assert add_working_time(at(2026, 4, 2, 10), parse_work_duration("1d"), nw) == at(2026, 4, 7, 10)


def test_working_days_across_dst_keep_wall_clock(nw: WorkCalendar) -> None:
    assert add_working_time(at(2026, 10, 23, 10), parse_work_duration("1d"), nw) == at(
        2026, 10, 26, 10
    )


def test_days_and_hours_combined(nw: WorkCalendar) -> None:
    assert add_working_time(at(2026, 3, 2, 14), Duration(days=1, time=3 * H), nw) == at(
        2026, 3, 4, 9
    )


def test_add_duration_without_calendar_is_elapsed_time() -> None:
    start = at(2026, 3, 28, 12)
    assert add_duration(start, parse_work_duration("1d"), None) == start + timedelta(days=1)


# --- consistency --------------------------------------------------------------------


@pytest.mark.parametrize("state", ["NW", "BY"])
def test_add_and_between_are_inverse(state: str) -> None:
    calendar = WorkCalendar(state=state)
    start = at(2026, 3, 20, 7, 13)
    durations = [timedelta(minutes=m) for m in (1, 59, 200, 481, 1333, 4000)]
    for step in range(0, 24 * 60, 97):
        moment = start + timedelta(hours=step)
        for duration in durations:
            end = add_working_time(moment, duration, calendar)
            assert working_time_between(moment, end, calendar) == duration
            # Earliest instant: a second less is not enough working time.
            assert working_time_between(moment, end - timedelta(seconds=1), calendar) < duration
            assert calendar.is_working_time(end - timedelta(seconds=1))


def test_calendar_without_any_working_day_fails_loudly() -> None:
    every_day = [date(2026, 1, 1) + timedelta(days=i) for i in range(800)]
    calendar = WorkCalendar(closed_dates=every_day)
    with pytest.raises(ValueError, match="no working day"):
        add_working_time(at(2026, 1, 1), H, calendar)


def test_next_working_moment_and_is_working_time(nw: WorkCalendar) -> None:
    assert nw.next_working_moment(at(2026, 3, 6, 13)) == at(2026, 3, 9, 8)
    assert nw.next_working_moment(at(2026, 3, 6, 12)) == at(2026, 3, 6, 12)
    assert not nw.is_working_time(at(2026, 3, 6, 13))
    assert nw.is_working_time(at(2026, 3, 6, 12, 59))
