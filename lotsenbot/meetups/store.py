"""SQL for meetups: the only module that knows the tables of migrations 0004 and 0013.

Every function takes the connection of the caller's transaction, so a state change and the
messages about it (enqueued by the caller on the same connection) commit together. Values
go in as parameters only. Instants are stored with :func:`lotsenbot.core.clock.iso`; the
identity of a date of a series is its original start as
:func:`lotsenbot.meetups.recurrence.occurrence_key`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiosqlite

from lotsenbot.core.clock import iso, parse_iso
from lotsenbot.core.personal_data import names_person
from lotsenbot.meetups.capacity import Roster, withdraw
from lotsenbot.meetups.form import MeetupDraft
from lotsenbot.meetups.ics import CalendarEntry
from lotsenbot.meetups.recurrence import (
    Occurrence,
    OccurrenceChange,
    Series,
    last_end,
    next_occurrence,
    occurrence_key,
    occurrence_of,
)
from lotsenbot.meetups.reminders import ReminderKey

log = logging.getLogger(__name__)

SignupStatus = Literal["confirmed", "waitlisted"]
ReminderOutcome = Literal["sent", "started", "superseded", "not_applicable"]

_WALL_FORMAT = "%Y-%m-%dT%H:%M:%S"


def parse_occurrence_key(key: str) -> datetime:
    """The original start an occurrence key stands for (aware, UTC)."""
    return datetime.strptime(key, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Meetup:
    """A meetup as stored, with its schedule (including exceptions) as a :class:`Series`."""

    id: int
    title: str
    series: Series
    location: str | None
    link: str | None
    description: str | None
    capacity: int | None
    audience: str
    status: str
    cancel_reason: str | None
    sequence: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    reasons: Mapping[str, str] = field(default_factory=dict)  # occurrence key → reason
    send_pending: bool = False  # created for a wide audience, waiting for "!treffen senden"

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    @property
    def is_series(self) -> bool:
        return self.series.rrule is not None

    def next_occurrence(self, now: datetime) -> Occurrence | None:
        """The first date that has not begun, or None when it is over (or cancelled)."""
        if self.cancelled:
            return None
        return next_occurrence(self.series, now)

    def occurrence(self, key: str) -> Occurrence | None:
        """The date with this identity as it stands now; None if cancelled or unknown."""
        return occurrence_of(self.series, parse_occurrence_key(key))

    def takes_place(self, key: str) -> bool:
        """Whether the date with this identity is still on (neither it nor the meetup is
        cancelled): only then does a freed place move someone up."""
        return not self.cancelled and self.occurrence(key) is not None

    def calendar_entry(self) -> CalendarEntry:
        return CalendarEntry(
            meetup_id=self.id,
            title=self.title,
            series=self.series,
            sequence=self.sequence,
            location=self.location,
            link=self.link,
            description=self.description,
            cancelled=self.cancelled,
            created=self.created_at,
            last_modified=self.updated_at,
        )


# --- meetups ------------------------------------------------------------------------------


async def create_meetup(
    conn: aiosqlite.Connection,
    draft: MeetupDraft,
    *,
    audience: str,
    created_by: str,
    now: datetime,
    send_pending: bool = False,
) -> int:
    """Store a new meetup; returns its number. ``send_pending``: not announced until
    :func:`mark_sent` (a wide audience is confirmed first)."""
    series = draft.series()
    end = last_end(series)
    cursor = await conn.execute(
        "INSERT INTO meetups (title, start_local, tzid, duration_s, rrule, location, link,"
        " description, capacity, audience, first_start, ends_at, created_by, created_at,"
        " updated_at, send_pending) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            draft.title,
            series.start.strftime(_WALL_FORMAT),
            series.tzid,
            int(series.duration.total_seconds()),
            series.rrule,
            draft.location,
            draft.link,
            draft.description,
            draft.capacity,
            audience,
            iso(series.first_start),
            iso(end) if end else None,
            created_by,
            iso(now),
            iso(now),
            int(send_pending),
        ),
    )
    meetup_id = cursor.lastrowid
    await cursor.close()
    assert meetup_id is not None
    return meetup_id


async def get_meetup(conn: aiosqlite.Connection, meetup_id: int) -> Meetup | None:
    async with conn.execute("SELECT * FROM meetups WHERE id = ?", (meetup_id,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    exceptions = await _exceptions(conn, [meetup_id])
    return _meetup(row, exceptions.get(meetup_id, []))


async def open_meetups(conn: aiosqlite.Connection, now: datetime) -> list[Meetup]:
    """Active meetups with a date still to come or running, in order of creation."""
    async with conn.execute(
        "SELECT * FROM meetups WHERE status = 'active' AND (ends_at IS NULL OR ends_at > ?)"
        " ORDER BY id",
        (iso(now),),
    ) as cursor:
        rows = list(await cursor.fetchall())
    exceptions = await _exceptions(conn, [row["id"] for row in rows])
    return [_meetup(row, exceptions.get(row["id"], [])) for row in rows]


async def update_meetup(
    conn: aiosqlite.Connection, meetup_id: int, changes: Mapping[str, Any], now: datetime
) -> Meetup:
    """Apply field changes (keys as in :func:`lotsenbot.meetups.form.parse_changes`).

    A new ``when`` of a one-off meetup gives it a new identity (its original start); its
    sign-ups move along, and reminders are computed afresh for the new time — a reminder
    sent for the old date says nothing about the new one.
    """
    meetup = await get_meetup(conn, meetup_id)
    if meetup is None:
        raise LookupError(meetup_id)
    series = meetup.series
    updates: dict[str, Any] = {}
    columns = {
        "title": "title",
        "location": "location",
        "link": "link",
        "capacity": "capacity",
        "description": "description",
    }
    for key, column in columns.items():
        if key in changes:
            updates[column] = changes[key]
    if "duration" in changes:
        updates["duration_s"] = int(changes["duration"].total_seconds())
        series = series.model_copy(update={"duration": changes["duration"]})
    old_key = occurrence_key(series.first_start)
    if "when" in changes:
        if series.rrule is not None:
            raise ValueError("the start of a series is not changed in place")
        series = Series.at(changes["when"], series.tz, series.duration)
        updates["start_local"] = series.start.strftime(_WALL_FORMAT)
        updates["first_start"] = iso(series.first_start)
    end = last_end(series)
    updates["ends_at"] = iso(end) if end else None
    updates["updated_at"] = iso(now)
    assignments = ", ".join(f"{column} = ?" for column in updates)
    await conn.execute(
        f"UPDATE meetups SET {assignments}, sequence = sequence + 1 WHERE id = ?",
        (*updates.values(), meetup_id),
    )
    if "when" in changes:
        new_key = occurrence_key(series.first_start)
        await conn.execute(
            "UPDATE meetup_signups SET occurrence = ?, starts_at = ?"
            " WHERE meetup_id = ? AND occurrence = ?",
            (new_key, iso(series.first_start), meetup_id, old_key),
        )
    updated = await get_meetup(conn, meetup_id)
    assert updated is not None
    return updated


async def cancel_meetup(
    conn: aiosqlite.Connection, meetup_id: int, reason: str | None, now: datetime
) -> None:
    await conn.execute(
        "UPDATE meetups SET status = 'cancelled', cancel_reason = ?, updated_at = ?,"
        " sequence = sequence + 1 WHERE id = ?",
        (reason, iso(now), meetup_id),
    )


async def set_exception(
    conn: aiosqlite.Connection,
    meetup_id: int,
    occurrence: str,
    *,
    now: datetime,
    cancelled: bool = False,
    change: OccurrenceChange | None = None,
    reason: str | None = None,
) -> Meetup:
    """Cancel or change one date of a series; a later change merges with an earlier one."""
    async with conn.execute(
        "SELECT * FROM meetup_exceptions WHERE meetup_id = ? AND occurrence = ?",
        (meetup_id, occurrence),
    ) as cursor:
        row = await cursor.fetchone()
    new_start = row["new_start"] if row else None
    duration_s = row["duration_s"] if row else None
    location = row["location"] if row else None
    link = row["link"] if row else None
    if change is not None:
        new_start = iso(change.start) if change.start is not None else new_start
        if change.duration is not None:
            duration_s = int(change.duration.total_seconds())
        location = change.location if change.location is not None else location
        link = change.link if change.link is not None else link
    await conn.execute(
        "INSERT INTO meetup_exceptions (meetup_id, occurrence, cancelled, new_start, duration_s,"
        " location, link, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (meetup_id, occurrence) DO UPDATE SET cancelled = excluded.cancelled,"
        " new_start = excluded.new_start, duration_s = excluded.duration_s,"
        " location = excluded.location, link = excluded.link,"
        " reason = COALESCE(excluded.reason, meetup_exceptions.reason)",
        (
            meetup_id,
            occurrence,
            int(cancelled or bool(row and row["cancelled"])),
            new_start,
            duration_s,
            location,
            link,
            reason,
        ),
    )
    if new_start is not None:
        await conn.execute(
            "UPDATE meetup_signups SET starts_at = ? WHERE meetup_id = ? AND occurrence = ?",
            (new_start, meetup_id, occurrence),
        )
    if new_start != (row["new_start"] if row else None):
        # A reminder sent for the old time says nothing about the new one (as for a moved
        # one-off meetup, whose date key changes with its start).
        await conn.execute(
            "DELETE FROM meetup_reminders WHERE meetup_id = ? AND occurrence = ?",
            (meetup_id, occurrence),
        )
    meetup = await get_meetup(conn, meetup_id)
    assert meetup is not None
    end = last_end(meetup.series)
    await conn.execute(
        "UPDATE meetups SET ends_at = ?, updated_at = ?, sequence = sequence + 1 WHERE id = ?",
        (iso(end) if end else None, iso(now), meetup_id),
    )
    updated = await get_meetup(conn, meetup_id)
    assert updated is not None
    return updated


async def _exceptions(
    conn: aiosqlite.Connection, meetup_ids: list[int]
) -> dict[int, list[aiosqlite.Row]]:
    if not meetup_ids:
        return {}
    marks = ", ".join("?" for _ in meetup_ids)
    async with conn.execute(
        f"SELECT * FROM meetup_exceptions WHERE meetup_id IN ({marks})",
        tuple(meetup_ids),
    ) as cursor:
        rows = await cursor.fetchall()
    found: dict[int, list[aiosqlite.Row]] = {}
    for row in rows:
        found.setdefault(row["meetup_id"], []).append(row)
    return found


def _meetup(row: aiosqlite.Row, exceptions: Iterable[aiosqlite.Row]) -> Meetup:
    cancelled: set[datetime] = set()
    changes: dict[datetime, OccurrenceChange] = {}
    reasons: dict[str, str] = {}
    for exc in exceptions:
        original = parse_occurrence_key(exc["occurrence"])
        if exc["reason"]:
            reasons[exc["occurrence"]] = exc["reason"]
        if exc["cancelled"]:
            cancelled.add(original)
            continue
        changes[original] = OccurrenceChange(
            start=parse_iso(exc["new_start"]) if exc["new_start"] else None,
            duration=timedelta(seconds=exc["duration_s"]) if exc["duration_s"] else None,
            location=exc["location"],
            link=exc["link"],
        )
    series = Series(
        start=datetime.strptime(row["start_local"], _WALL_FORMAT),
        tzid=row["tzid"],
        duration=timedelta(seconds=row["duration_s"]),
        rrule=row["rrule"],
        cancelled=frozenset(cancelled),
        changes=changes,
    )
    return Meetup(
        id=row["id"],
        title=row["title"],
        series=series,
        location=row["location"],
        link=row["link"],
        description=row["description"],
        capacity=row["capacity"],
        audience=row["audience"],
        status=row["status"],
        cancel_reason=row["cancel_reason"],
        sequence=row["sequence"],
        created_by=row["created_by"],
        created_at=parse_iso(row["created_at"]),
        updated_at=parse_iso(row["updated_at"]),
        reasons=reasons,
        send_pending=bool(row["send_pending"]),
    )


async def mark_sent(conn: aiosqlite.Connection, meetup_id: int, now: datetime) -> bool:
    """Take a meetup out of "waiting to be sent"; False if it was not waiting (sent
    already, or by a second confirmation handled meanwhile)."""
    cursor = await conn.execute(
        "UPDATE meetups SET send_pending = 0, updated_at = ? WHERE id = ? AND send_pending = 1",
        (iso(now), meetup_id),
    )
    changed = cursor.rowcount > 0
    await cursor.close()
    return changed


# --- sign-ups ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signup:
    meetup_id: int
    occurrence: str
    user_id: str
    status: SignupStatus
    starts_at: datetime
    reaction_event_id: str | None = None
    signed_up_at: datetime | None = None


def _signup(row: aiosqlite.Row) -> Signup:
    return Signup(
        row["meetup_id"],
        row["occurrence"],
        row["user_id"],
        row["status"],
        parse_iso(row["starts_at"]),
        row["reaction_event_id"],
        parse_iso(row["signed_up_at"]),
    )


async def roster(
    conn: aiosqlite.Connection, meetup_id: int, occurrence: str, capacity: int | None
) -> Roster:
    """Places and waiting list of one date, in order of sign-up."""
    async with conn.execute(
        "SELECT user_id, status FROM meetup_signups WHERE meetup_id = ? AND occurrence = ?"
        " ORDER BY id",
        (meetup_id, occurrence),
    ) as cursor:
        rows = await cursor.fetchall()
    confirmed = tuple(r["user_id"] for r in rows if r["status"] == "confirmed")
    waitlist = tuple(r["user_id"] for r in rows if r["status"] == "waitlisted")
    return Roster(capacity, confirmed, waitlist)


async def save_roster(
    conn: aiosqlite.Connection,
    meetup_id: int,
    occurrence: str,
    before: Roster,
    after: Roster,
    *,
    starts_at: datetime,
    now: datetime,
    reaction_event_id: str | None = None,
) -> None:
    """Persist the difference between two rosters of one date.

    New people get a row (ordered after everyone already there), people who left lose it,
    people who moved up change status; nobody else is touched, so sign-up order is kept.
    """
    for person in set(before.confirmed + before.waitlist) - set(after.confirmed + after.waitlist):
        await conn.execute(
            "DELETE FROM meetup_signups WHERE meetup_id = ? AND occurrence = ? AND user_id = ?",
            (meetup_id, occurrence, person),
        )
    for status, people in (("confirmed", after.confirmed), ("waitlisted", after.waitlist)):
        for person in people:
            previous = before.status(person)
            if previous == "none":
                await conn.execute(
                    "INSERT INTO meetup_signups (meetup_id, occurrence, user_id, status,"
                    " starts_at, signed_up_at, reaction_event_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        meetup_id,
                        occurrence,
                        person,
                        status,
                        iso(starts_at),
                        iso(now),
                        reaction_event_id,
                    ),
                )
            elif previous != status:
                await conn.execute(
                    "UPDATE meetup_signups SET status = ?"
                    " WHERE meetup_id = ? AND occurrence = ? AND user_id = ?",
                    (status, meetup_id, occurrence, person),
                )


async def attach_reaction(
    conn: aiosqlite.Connection, meetup_id: int, occurrence: str, user_id: str, event_id: str
) -> None:
    """Remember the 👍 of someone already signed up, so removing it withdraws them."""
    await conn.execute(
        "UPDATE meetup_signups SET reaction_event_id = ?"
        " WHERE meetup_id = ? AND occurrence = ? AND user_id = ? AND reaction_event_id IS NULL",
        (event_id, meetup_id, occurrence, user_id),
    )


async def remove_signup(conn: aiosqlite.Connection, signup: Signup) -> None:
    """Delete one sign-up as it is, moving nobody up (for a date that does not take place)."""
    await conn.execute(
        "DELETE FROM meetup_signups WHERE meetup_id = ? AND occurrence = ? AND user_id = ?",
        (signup.meetup_id, signup.occurrence, signup.user_id),
    )


async def signup_by_reaction(conn: aiosqlite.Connection, event_id: str) -> Signup | None:
    async with conn.execute(
        "SELECT * FROM meetup_signups WHERE reaction_event_id = ?", (event_id,)
    ) as cursor:
        row = await cursor.fetchone()
    return _signup(row) if row else None


async def signups_of(
    conn: aiosqlite.Connection, user_id: str, meetup_id: int, *, after: datetime
) -> list[Signup]:
    """A person's sign-ups for dates of a meetup that begin after ``after``, earliest first."""
    async with conn.execute(
        "SELECT * FROM meetup_signups WHERE user_id = ? AND meetup_id = ? AND starts_at > ?"
        " ORDER BY starts_at",
        (user_id, meetup_id, iso(after)),
    ) as cursor:
        return [_signup(row) for row in await cursor.fetchall()]


async def signups(
    conn: aiosqlite.Connection,
    meetup_id: int,
    *,
    after: datetime | None = None,
    occurrence: str | None = None,
) -> list[Signup]:
    """Sign-ups of a meetup (optionally one date, or dates beginning after ``after``),
    grouped by date and in order of sign-up."""
    sql = "SELECT * FROM meetup_signups WHERE meetup_id = ?"
    params: list[Any] = [meetup_id]
    if after is not None:
        sql += " AND starts_at > ?"
        params.append(iso(after))
    if occurrence is not None:
        sql += " AND occurrence = ?"
        params.append(occurrence)
    async with conn.execute(sql + " ORDER BY starts_at, id", params) as cursor:
        return [_signup(row) for row in await cursor.fetchall()]


async def counts(
    conn: aiosqlite.Connection, keys: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], tuple[int, int]]:
    """(meetup, date) → (confirmed, waiting), for the list of upcoming meetups."""
    result: dict[tuple[int, str], tuple[int, int]] = {}
    for meetup_id, occurrence in keys:
        async with conn.execute(
            "SELECT SUM(status = 'confirmed') AS c, SUM(status = 'waitlisted') AS w"
            " FROM meetup_signups WHERE meetup_id = ? AND occurrence = ?",
            (meetup_id, occurrence),
        ) as cursor:
            row = await cursor.fetchone()
        result[(meetup_id, occurrence)] = (
            (int(row["c"] or 0), int(row["w"] or 0)) if row else (0, 0)
        )
    return result


# --- announcement messages -------------------------------------------------------------------


async def record_message(conn: aiosqlite.Connection, dedup_key: str, meetup_id: int) -> None:
    """Remember an outbox row as an announcement of the meetup (a 👍 on it signs up)."""
    await conn.execute(
        "INSERT OR IGNORE INTO meetup_messages (dedup_key, meetup_id) VALUES (?, ?)",
        (dedup_key, meetup_id),
    )


async def record_invitation(
    conn: aiosqlite.Connection, meetup_id: int, target_kind: str, target: str, now: datetime
) -> None:
    """Remember that a person or room got the invitation with the calendar file, so that a
    cancellation or a new calendar file reaches them too (migration 0013)."""
    await conn.execute(
        "INSERT OR IGNORE INTO meetup_invitations (meetup_id, target_kind, target, invited_at)"
        " VALUES (?, ?, ?, ?)",
        (meetup_id, target_kind, target, iso(now)),
    )


async def invitations(conn: aiosqlite.Connection, meetup_id: int) -> list[tuple[str, str]]:
    """(target kind, target) of everyone who got the invitation, in a stable order."""
    async with conn.execute(
        "SELECT target_kind, target FROM meetup_invitations WHERE meetup_id = ?"
        " ORDER BY target_kind DESC, target",
        (meetup_id,),
    ) as cursor:
        return [(row["target_kind"], row["target"]) for row in await cursor.fetchall()]


async def meetup_for_event(conn: aiosqlite.Connection, event_id: str) -> int | None:
    """The meetup whose announcement is this Matrix event, if any."""
    async with conn.execute(
        "SELECT meetup_id FROM meetup_messages WHERE event_id = ?", (event_id,)
    ) as cursor:
        row = await cursor.fetchone()
    if row is not None:
        return int(row["meetup_id"])
    # Delivered since the last copy of event ids: look in the outbox itself.
    async with conn.execute(
        "SELECT m.meetup_id FROM outbox o JOIN meetup_messages m ON m.dedup_key = o.dedup_key"
        " WHERE o.event_id = ? AND m.event_id IS NULL",
        (event_id,),
    ) as cursor:
        row = await cursor.fetchone()
    return int(row["meetup_id"]) if row is not None else None


async def copy_event_ids(conn: aiosqlite.Connection) -> int:
    """Copy event ids of delivered announcements and polls from the outbox.

    The outbox is purged after a while (privacy); our own copy keeps reactions to an old
    announcement and votes on an old poll working.
    """
    total = 0
    for table in ("meetup_messages", "meetup_polls"):
        cursor = await conn.execute(
            f"UPDATE {table} SET event_id = (SELECT o.event_id FROM outbox o"
            f" WHERE o.dedup_key = {table}.dedup_key AND o.status = 'sent')"
            " WHERE event_id IS NULL AND EXISTS (SELECT 1 FROM outbox o"
            f" WHERE o.dedup_key = {table}.dedup_key AND o.status = 'sent'"
            " AND o.event_id IS NOT NULL)"
        )
        total += max(cursor.rowcount, 0)
        await cursor.close()
    return total


# --- reminders --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReminderCandidate:
    """A confirmed person of a date that is coming up (or began recently)."""

    meetup_id: int
    occurrence: str
    user_id: str
    starts_at: datetime
    signed_up_at: datetime
    handled: frozenset[int]  # offsets (seconds) already sent or skipped


async def reminder_candidates(
    conn: aiosqlite.Connection, *, since: datetime, until: datetime
) -> list[ReminderCandidate]:
    """Confirmed sign-ups of active meetups whose date begins in ``(since, until]`` and is
    not cancelled, each with the reminders already handled for that person and date."""
    async with conn.execute(
        "SELECT s.meetup_id, s.occurrence, s.user_id, s.starts_at, s.signed_up_at,"
        " (SELECT group_concat(r.offset_s) FROM meetup_reminders r"
        "  WHERE r.meetup_id = s.meetup_id AND r.occurrence = s.occurrence"
        "  AND r.user_id = s.user_id) AS handled"
        " FROM meetup_signups s JOIN meetups m ON m.id = s.meetup_id"
        " WHERE s.status = 'confirmed' AND m.status = 'active'"
        " AND s.starts_at > ? AND s.starts_at <= ?"
        " AND NOT EXISTS (SELECT 1 FROM meetup_exceptions e WHERE e.meetup_id = s.meetup_id"
        "  AND e.occurrence = s.occurrence AND e.cancelled = 1)"
        " ORDER BY s.starts_at, s.id",
        (iso(since), iso(until)),
    ) as cursor:
        rows = await cursor.fetchall()
    return [
        ReminderCandidate(
            row["meetup_id"],
            row["occurrence"],
            row["user_id"],
            parse_iso(row["starts_at"]),
            parse_iso(row["signed_up_at"]),
            frozenset(int(v) for v in (row["handled"] or "").split(",") if v),
        )
        for row in rows
    ]


async def record_reminder(
    conn: aiosqlite.Connection,
    key: ReminderKey,
    user_id: str,
    outcome: ReminderOutcome,
    now: datetime,
) -> bool:
    """Note a reminder as sent or skipped; False if it was already noted."""
    cursor = await conn.execute(
        "INSERT OR IGNORE INTO meetup_reminders (meetup_id, occurrence, offset_s, user_id,"
        " outcome, at) VALUES (?, ?, ?, ?, ?, ?)",
        (key.meetup_id, key.occurrence, key.offset_seconds, user_id, outcome, iso(now)),
    )
    inserted = cursor.rowcount > 0
    await cursor.close()
    return inserted


# --- polls ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollRecord:
    id: int
    title: str
    room_id: str
    created_by: str
    status: str
    meetup_id: int | None
    dedup_key: str
    options: tuple[tuple[str, datetime], ...]  # (answer id, start) in the order offered

    @property
    def is_open(self) -> bool:
        return self.status == "open"


async def create_poll(
    conn: aiosqlite.Connection,
    *,
    title: str,
    room_id: str,
    created_by: str,
    options: Iterable[datetime],
    now: datetime,
) -> PollRecord:
    """Store a date poll; its outbox dedup key is ``meetup-poll:<id>``."""
    cursor = await conn.execute(
        "INSERT INTO meetup_polls (title, room_id, created_by, created_at, dedup_key)"
        " VALUES (?, ?, ?, ?, ?)",
        (title, room_id, created_by, iso(now), f"meetup-poll:new:{iso(now)}"),
    )
    poll_id = cursor.lastrowid
    await cursor.close()
    assert poll_id is not None
    await conn.execute(
        "UPDATE meetup_polls SET dedup_key = ? WHERE id = ?", (f"meetup-poll:{poll_id}", poll_id)
    )
    for position, start in enumerate(options, start=1):
        await conn.execute(
            "INSERT INTO meetup_poll_options (poll_id, answer_id, position, starts_at)"
            " VALUES (?, ?, ?, ?)",
            (poll_id, f"t{position}", position, iso(start)),
        )
    poll = await get_poll(conn, poll_id)
    assert poll is not None
    return poll


async def get_poll(conn: aiosqlite.Connection, poll_id: int) -> PollRecord | None:
    async with conn.execute("SELECT * FROM meetup_polls WHERE id = ?", (poll_id,)) as cursor:
        row = await cursor.fetchone()
    return await _poll(conn, row) if row else None


async def poll_for_event(conn: aiosqlite.Connection, event_id: str) -> PollRecord | None:
    """The poll whose start event this is (from our copy, or the outbox if not yet copied)."""
    async with conn.execute(
        "SELECT p.* FROM meetup_polls p WHERE p.event_id = ?"
        " UNION ALL SELECT p.* FROM meetup_polls p JOIN outbox o ON o.dedup_key = p.dedup_key"
        " WHERE p.event_id IS NULL AND o.event_id = ? LIMIT 1",
        (event_id, event_id),
    ) as cursor:
        row = await cursor.fetchone()
    return await _poll(conn, row) if row else None


async def _poll(conn: aiosqlite.Connection, row: aiosqlite.Row) -> PollRecord:
    async with conn.execute(
        "SELECT answer_id, starts_at FROM meetup_poll_options WHERE poll_id = ? ORDER BY position",
        (row["id"],),
    ) as cursor:
        options = tuple(
            (r["answer_id"], parse_iso(r["starts_at"])) for r in await cursor.fetchall()
        )
    return PollRecord(
        row["id"],
        row["title"],
        row["room_id"],
        row["created_by"],
        row["status"],
        row["meetup_id"],
        row["dedup_key"],
        options,
    )


async def record_vote(
    conn: aiosqlite.Connection,
    poll_id: int,
    user_id: str,
    answers: Iterable[str],
    *,
    origin_ts: int,
    event_id: str,
) -> bool:
    """Store a person's response unless a later one is already stored; True if stored."""
    cursor = await conn.execute(
        "INSERT INTO meetup_poll_votes (poll_id, user_id, answers, origin_ts, event_id)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (poll_id, user_id) DO UPDATE SET"
        " answers = excluded.answers, origin_ts = excluded.origin_ts, event_id = excluded.event_id"
        " WHERE excluded.origin_ts >= meetup_poll_votes.origin_ts",
        (poll_id, user_id, json.dumps(list(answers)), origin_ts, event_id),
    )
    stored = cursor.rowcount > 0
    await cursor.close()
    return stored


async def poll_event_id(conn: aiosqlite.Connection, poll: PollRecord) -> str | None:
    """The Matrix event of the poll's start, once it has been delivered."""
    async with conn.execute(
        "SELECT COALESCE((SELECT event_id FROM meetup_polls WHERE id = ?),"
        " (SELECT event_id FROM outbox WHERE dedup_key = ? AND status = 'sent'))",
        (poll.id, poll.dedup_key),
    ) as cursor:
        row = await cursor.fetchone()
    return str(row[0]) if row is not None and row[0] else None


async def tally(conn: aiosqlite.Connection, poll: PollRecord) -> dict[str, int]:
    """Votes per answer id (every offered answer present, zero if nobody chose it)."""
    result = {answer_id: 0 for answer_id, _ in poll.options}
    async with conn.execute(
        "SELECT answers FROM meetup_poll_votes WHERE poll_id = ?", (poll.id,)
    ) as cursor:
        for row in await cursor.fetchall():
            for answer in set(json.loads(row["answers"])):
                if answer in result:
                    result[answer] += 1
    return result


async def close_poll(
    conn: aiosqlite.Connection, poll_id: int, meetup_id: int | None, now: datetime
) -> None:
    await conn.execute(
        "UPDATE meetup_polls SET status = 'closed', meetup_id = ?, closed_at = ? WHERE id = ?",
        (meetup_id, iso(now), poll_id),
    )


# --- privacy ----------------------------------------------------------------------------------


# Polls whose votes have served their purpose by a cut-off (bind it twice): closed before
# it, or still open with every proposed date before it (nobody closed the poll).
STALE_POLLS = (
    "SELECT p.id FROM meetup_polls p WHERE (p.status = 'closed' AND p.closed_at < ?)"
    " OR (p.status = 'open' AND (SELECT MAX(o.starts_at) FROM meetup_poll_options o"
    " WHERE o.poll_id = p.id) < ?)"
)


# Meetups whose invitations have served their purpose by a cut-off (bind it twice): the
# last date ended before it, or the meetup was cancelled before it. Nothing is sent about
# them any more, so nobody needs to know who was invited.
FINISHED_MEETUPS = (
    "SELECT id FROM meetups WHERE (ends_at IS NOT NULL AND ends_at < ?)"
    " OR (status = 'cancelled' AND updated_at < ?)"
)


async def purge_personal_data(conn: aiosqlite.Connection, before: datetime) -> int:
    """Delete sign-ups, reminder records and poll votes of dates that began before ``before``,
    and the invitations of meetups finished before it (for ``[privacy] signups_days``);
    returns the number of rows deleted."""
    total = 0
    cutoff = iso(before)
    for sql, params in (
        ("DELETE FROM meetup_signups WHERE starts_at < ?", (cutoff,)),
        ("DELETE FROM meetup_reminders WHERE occurrence < ?", (occurrence_key(before),)),
        (f"DELETE FROM meetup_poll_votes WHERE poll_id IN ({STALE_POLLS})", (cutoff, cutoff)),
        (
            f"DELETE FROM meetup_invitations WHERE meetup_id IN ({FINISHED_MEETUPS})",
            (cutoff, cutoff),
        ),
    ):
        cursor = await conn.execute(sql, params)
        total += max(cursor.rowcount, 0)
        await cursor.close()
    return total


@dataclass(frozen=True)
class Forgotten:
    """What :func:`forget_person` did: rows deleted, and who moved up into a freed place
    (their sign-ups as they are now), to be told as after a withdrawal."""

    deleted: int
    moved_up: list[Signup]


async def forget_person(conn: aiosqlite.Connection, user_id: str, now: datetime) -> Forgotten:
    """Delete everything about one person (right to erasure).

    Meetups a coordinator created stay (they belong to the network, not to a person). A place
    the person held on a date still ahead goes to the first on the waiting list, exactly as
    after a withdrawal (:func:`lotsenbot.meetups.capacity.withdraw`); the caller tells those
    who moved up. As with ``!absage``, a date that has begun or does not take place moves
    nobody up: the sign-up only goes.
    """
    total = 0
    moved_up: list[Signup] = []
    async with conn.execute(
        "SELECT * FROM meetup_signups WHERE user_id = ? AND status = 'confirmed'"
        " AND starts_at > ? ORDER BY starts_at, id",
        (user_id, iso(now)),
    ) as cursor:
        held = [_signup(row) for row in await cursor.fetchall()]
    for signup in held:
        meetup = await get_meetup(conn, signup.meetup_id)
        if meetup is None or not meetup.takes_place(signup.occurrence):
            continue
        try:
            before = await roster(conn, meetup.id, signup.occurrence, meetup.capacity)
        except ValueError as exc:
            # A roster the bot would never write (changed by hand, or by an old bug) must not
            # block an erasure: the sign-up still goes below, only nobody moves up.
            log.warning("Treffen %s am %s: Teilnehmerliste uneinheitlich (%s); beim Löschen"
                        " rückt niemand nach", meetup.id, signup.occurrence, exc)  # fmt: skip
            continue
        after, result = withdraw(before, user_id)
        await save_roster(conn, meetup.id, signup.occurrence, before, after,
                          starts_at=signup.starts_at, now=now)  # fmt: skip
        total += 1
        for person in result.promoted:
            moved_up += [
                s for s in await signups(conn, meetup.id, occurrence=signup.occurrence)
                if s.user_id == person
            ]  # fmt: skip
    for table in ("meetup_signups", "meetup_reminders", "meetup_poll_votes"):
        cursor = await conn.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
        total += max(cursor.rowcount, 0)
        await cursor.close()
    # Without the record of the invitation, a later cancellation or change is not sent to
    # the person either: the bot keeps nothing that would make it write to them.
    cursor = await conn.execute(
        "DELETE FROM meetup_invitations WHERE target_kind = 'user' AND target = ?", (user_id,)
    )
    total += max(cursor.rowcount, 0)
    await cursor.close()
    # The copies of announcements in the person's direct chat are known by keys that name
    # them ("meetup:7:ann:@anna:…"); without the person the mapping has no use. Only keys
    # naming exactly this person: "@anna:stadt.dev" still signs up with her 👍.
    async with conn.execute(
        "SELECT dedup_key FROM meetup_messages WHERE instr(dedup_key, ?) > 0", (user_id,)
    ) as cursor:
        keys = [r["dedup_key"] for r in await cursor.fetchall()]
    for key in keys:
        if names_person(key, user_id):
            cursor = await conn.execute("DELETE FROM meetup_messages WHERE dedup_key = ?", (key,))
            total += max(cursor.rowcount, 0)
            await cursor.close()
    return Forgotten(total, moved_up)
