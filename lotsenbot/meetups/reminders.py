"""When to remind people of a meetup, including after the bot was down.

Everything here is a pure function of the occurrence, the configured offsets, ``now`` and what
was already sent; the scheduler only has to wake up at ``next_wakeup`` and ask again. That
keeps the database the single source of truth: after a restart the same question gives the
right answer, without replaying scheduler state.

Policy for reminders whose time passed while the bot was down:

* The meetup has not begun: the reminder is still useful, so it is sent now. If several are
  overdue (down for two days: both "24h" and "1h" have passed), only the one closest to the
  start is sent and the earlier ones are skipped as ``superseded`` — two reminders in the
  same minute are noise.
* The meetup has begun: every unsent reminder is skipped as ``started``; the caller logs it.
* A reminder whose time lies before ``not_before`` (the person signed up, or the meetup was
  created, after it) is skipped as ``not_applicable``: someone signing up two hours ahead
  should not get a "tomorrow" reminder.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

from lotsenbot.core.durations import parse_duration
from lotsenbot.meetups.dates import MeetupError
from lotsenbot.meetups.recurrence import occurrence_key

DEFAULT_OFFSETS = ("24h", "1h")


def parse_offset(text: str) -> timedelta:
    """A reminder offset ("24h", "1h", "90s", "2m", "1d"), the config syntax of durations.

    Zero is refused: a reminder at the very start is the meetup itself.
    """
    try:
        value = parse_duration(text)
    except ValueError:
        raise MeetupError("meetups.reminder.offset_invalid", text=text) from None
    if value <= timedelta(0):
        raise MeetupError("meetups.reminder.offset_invalid", text=text)
    return value


def parse_offsets(texts: Iterable[str]) -> tuple[timedelta, ...]:
    """All configured offsets, duplicates removed, largest (earliest reminder) first."""
    return tuple(sorted({parse_offset(text) for text in texts}, reverse=True))


class ReminderKey(NamedTuple):
    """Identifies one reminder of one occurrence; the store adds the person to it and keeps
    the pair unique, which is what guarantees "once per person and occurrence"."""

    meetup_id: int
    occurrence: str  # original start of the occurrence, UTC ISO 8601 (occurrence_key)
    offset_seconds: int

    @classmethod
    def of(cls, meetup_id: int, occurrence_start: datetime, offset: timedelta) -> ReminderKey:
        return cls(meetup_id, occurrence_key(occurrence_start), int(offset.total_seconds()))


SkipReason = Literal["started", "superseded", "not_applicable"]


class Skipped(NamedTuple):
    key: ReminderKey
    reason: SkipReason


@dataclass(frozen=True)
class DueReminders:
    """What to do now for one occurrence, and when to ask again."""

    send_now: list[ReminderKey] = field(default_factory=list)
    skip_missed: list[Skipped] = field(default_factory=list)
    next_wakeup: datetime | None = None


def reminder_times(
    occurrence_start: datetime, offsets: Sequence[timedelta]
) -> list[tuple[timedelta, datetime]]:
    """Each offset with the instant (UTC) its reminder is due, earliest first."""
    start = _utc(occurrence_start)
    return sorted(((offset, start - offset) for offset in offsets), key=lambda pair: pair[1])


def due_reminders(
    meetup_id: int,
    occurrence_start: datetime,
    offsets: Sequence[timedelta],
    now: datetime,
    already_sent: Set[ReminderKey],
    *,
    original_start: datetime | None = None,
    not_before: datetime | None = None,
) -> DueReminders:
    """Decide which reminders of one occurrence to send now, which to drop, and when next.

    ``occurrence_start`` is when the occurrence actually begins; ``original_start`` (default:
    the same) is its identity in the keys, so moving an occurrence does not re-send reminders
    that already went out — the move itself is announced separately. Keys in
    ``already_sent`` (sent or already skipped earlier) are ignored.
    """
    start = _utc(occurrence_start)
    now = _utc(now)
    identity = original_start if original_start is not None else occurrence_start
    pending = [
        (ReminderKey.of(meetup_id, identity, offset), due_at)
        for offset, due_at in reminder_times(start, offsets)
    ]
    pending = [(key, due_at) for key, due_at in pending if key not in already_sent]

    skipped: list[Skipped] = []
    if not_before is not None:
        limit = _utc(not_before)
        skipped += [Skipped(key, "not_applicable") for key, due_at in pending if due_at < limit]
        pending = [(key, due_at) for key, due_at in pending if due_at >= limit]

    if now >= start:
        skipped += [Skipped(key, "started") for key, _ in pending]
        return DueReminders([], skipped, None)

    overdue = [key for key, due_at in pending if due_at <= now]
    future = [due_at for _, due_at in pending if due_at > now]
    send_now: list[ReminderKey] = []
    if overdue:
        # pending is sorted by due time, so the last overdue one is closest to the start.
        send_now.append(overdue[-1])
        skipped += [Skipped(key, "superseded") for key in overdue[:-1]]
    return DueReminders(send_now, skipped, min(future) if future else None)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("reminder times must be aware datetimes")
    return value.astimezone(UTC)
