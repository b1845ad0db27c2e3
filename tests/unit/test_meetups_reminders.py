"""Reminder timing, including the policy after the bot was down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lotsenbot.meetups.dates import MeetupError
from lotsenbot.meetups.reminders import (
    DEFAULT_OFFSETS,
    ReminderKey,
    Skipped,
    due_reminders,
    parse_offset,
    parse_offsets,
    reminder_times,
)

START = datetime(2027, 1, 12, 13, 0, tzinfo=UTC)
H24, H1 = timedelta(hours=24), timedelta(hours=1)
OFFSETS = parse_offsets(DEFAULT_OFFSETS)
KEY24 = ReminderKey(5, "2027-01-12T13:00:00Z", 86400)
KEY1 = ReminderKey(5, "2027-01-12T13:00:00Z", 3600)


@pytest.mark.parametrize(
    ("text", "value"),
    [("24h", H24), ("1h", H1), ("90s", timedelta(seconds=90)), ("2m", timedelta(minutes=2))],
)
def test_parse_offset(text: str, value: timedelta) -> None:
    assert parse_offset(text) == value


@pytest.mark.parametrize("text", ["0h", "", "1 Stunde", "-1h", "h"])
def test_parse_offset_refuses(text: str) -> None:
    with pytest.raises(MeetupError) as info:
        parse_offset(text)
    assert info.value.code == "meetups.reminder.offset_invalid"


def test_parse_offsets_sorted_and_unique() -> None:
    assert parse_offsets(["1h", "24h", "60m", "1d"]) == (H24, H1)
    assert OFFSETS == (H24, H1)


def test_reminder_times() -> None:
    assert reminder_times(START, OFFSETS) == [(H24, START - H24), (H1, START - H1)]


def test_key_is_stable_and_in_utc() -> None:
    berlin = START.astimezone(ZoneInfo("Europe/Berlin"))
    assert ReminderKey.of(5, berlin, H24) == KEY24


def test_nothing_due_yet_wakes_at_first_reminder() -> None:
    due = due_reminders(5, START, OFFSETS, START - timedelta(days=3), set())
    assert due.send_now == [] and due.skip_missed == []
    assert due.next_wakeup == START - H24


def test_regular_operation_sends_one_then_wakes_for_the_next() -> None:
    now = START - H24 + timedelta(seconds=2)
    due = due_reminders(5, START, OFFSETS, now, set())
    assert due.send_now == [KEY24]
    assert due.next_wakeup == START - H1
    after = due_reminders(5, START, OFFSETS, now, {KEY24})
    assert after.send_now == [] and after.next_wakeup == START - H1
    last = due_reminders(5, START, OFFSETS, START - H1, {KEY24})
    assert last.send_now == [KEY1] and last.next_wakeup is None
    done = due_reminders(5, START, OFFSETS, START - timedelta(minutes=30), {KEY24, KEY1})
    assert done.send_now == [] and done.skip_missed == [] and done.next_wakeup is None


def test_down_past_one_reminder_sends_it_late() -> None:
    # Down from two days before until 20 hours before: the 24h reminder is late but useful.
    due = due_reminders(5, START, OFFSETS, START - timedelta(hours=20), set())
    assert due.send_now == [KEY24]
    assert due.skip_missed == []
    assert due.next_wakeup == START - H1


def test_down_past_both_reminders_sends_only_the_nearest() -> None:
    due = due_reminders(5, START, OFFSETS, START - timedelta(minutes=20), set())
    assert due.send_now == [KEY1]
    assert due.skip_missed == [Skipped(KEY24, "superseded")]
    assert due.next_wakeup is None


def test_down_until_after_the_start_skips_everything() -> None:
    due = due_reminders(5, START, OFFSETS, START + timedelta(minutes=5), {KEY24})
    assert due.send_now == []
    assert due.skip_missed == [Skipped(KEY1, "started")]
    assert due.next_wakeup is None
    exactly = due_reminders(5, START, OFFSETS, START, set())
    assert [s.reason for s in exactly.skip_missed] == ["started", "started"]


def test_sign_up_after_a_reminder_time_does_not_get_it() -> None:
    signed_up = START - timedelta(hours=2)
    due = due_reminders(
        5, START, OFFSETS, signed_up + timedelta(seconds=1), set(), not_before=signed_up
    )
    assert due.send_now == []
    assert due.skip_missed == [Skipped(KEY24, "not_applicable")]
    assert due.next_wakeup == START - H1


def test_moved_occurrence_keeps_its_identity_but_new_times() -> None:
    moved = START + timedelta(days=1)
    due = due_reminders(5, moved, OFFSETS, START, {KEY24}, original_start=START)
    # The 24h reminder went out for the original identity; only the 1h one remains.
    assert due.send_now == [] and due.next_wakeup == moved - H1
    late = due_reminders(5, moved, OFFSETS, moved - H1, {KEY24}, original_start=START)
    assert late.send_now == [KEY1]


def test_seconds_and_minutes_offsets_for_quick_tests() -> None:
    offsets = parse_offsets(["2m", "90s"])
    now = START - timedelta(seconds=100)
    due = due_reminders(1, START, offsets, now, set())
    assert due.send_now == [ReminderKey(1, "2027-01-12T13:00:00Z", 120)]
    assert due.next_wakeup == START - timedelta(seconds=90)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        due_reminders(1, START.replace(tzinfo=None), OFFSETS, START, set())
