"""SQL of the announcements feature, and nothing else.

Every function takes the connection it runs on: a handler passes ``ctx.conn`` (inside the
event's transaction), a job the connection of its own ``db.transaction()``. State changes
are compare-and-set on the current state, so two coordinators confirming the same draft at
once, or a confirmation racing the scheduler, cannot both win.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from lotsenbot.announcements.audience import Audience, dedup_range
from lotsenbot.core.clock import iso, parse_iso

OPEN_STATES = ("draft", "scheduled", "sending")


@dataclass(frozen=True)
class Announcement:
    id: int
    author: str
    room_id: str
    room_is_direct: bool
    audience: Audience
    body: str
    important: bool
    state: str
    send_at: datetime | None
    due_at: datetime | None
    recipients: int
    preview_key: str | None
    created_at: datetime
    confirmed_by: str | None
    sent_count: int | None
    failed_count: int | None


@dataclass(frozen=True)
class DeliveryCounts:
    pending: int = 0
    sent: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.sent + self.failed


def _time(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None


def _row(row: Any) -> Announcement:
    return Announcement(
        id=int(row["id"]),
        author=row["author"],
        room_id=row["room_id"],
        room_is_direct=bool(row["room_is_direct"]),
        audience=Audience.from_key(row["audience"]),
        body=row["body"],
        important=bool(row["important"]),
        state=row["state"],
        send_at=_time(row["send_at"]),
        due_at=_time(row["due_at"]),
        recipients=int(row["recipients"]),
        preview_key=row["preview_key"],
        created_at=parse_iso(row["created_at"]),
        confirmed_by=row["confirmed_by"],
        sent_count=row["sent_count"],
        failed_count=row["failed_count"],
    )


async def _all(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[Any]:
    async with conn.execute(sql, tuple(params)) as cursor:
        return list(await cursor.fetchall())


async def _one(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> Any | None:
    async with conn.execute(sql, tuple(params)) as cursor:
        return await cursor.fetchone()


async def _changed(conn: aiosqlite.Connection, sql: str, params: Iterable[Any]) -> bool:
    cursor = await conn.execute(sql, tuple(params))
    changed = cursor.rowcount > 0
    await cursor.close()
    return changed


# -- announcements -------------------------------------------------------------------------


async def create(
    conn: aiosqlite.Connection,
    *,
    author: str,
    room_id: str,
    room_is_direct: bool,
    audience: Audience,
    body: str,
    important: bool,
    send_at: datetime | None,
    recipients: int,
    now: datetime,
) -> int:
    cursor = await conn.execute(
        "INSERT INTO announcements (author, room_id, room_is_direct, audience, body, important,"
        " send_at, recipients, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            author,
            room_id,
            int(room_is_direct),
            audience.key,
            body,
            int(important),
            iso(send_at) if send_at else None,
            recipients,
            iso(now),
        ),
    )
    new_id = cursor.lastrowid
    await cursor.close()
    assert new_id is not None
    return int(new_id)


async def set_preview_key(conn: aiosqlite.Connection, announcement_id: int, key: str) -> None:
    await conn.execute(
        "UPDATE announcements SET preview_key = ? WHERE id = ?", (key, announcement_id)
    )


async def get(conn: aiosqlite.Connection, announcement_id: int) -> Announcement | None:
    row = await _one(conn, "SELECT * FROM announcements WHERE id = ?", (announcement_id,))
    return _row(row) if row is not None else None


async def draft_for_preview_event(conn: aiosqlite.Connection, event_id: str) -> Announcement | None:
    """The draft whose preview is the Matrix event ``event_id`` (a 👍 on it confirms).

    Driven from the few open drafts to the outbox by its unique key, so no scan of the
    outbox is needed.
    """
    row = await _one(
        conn,
        "SELECT a.* FROM announcements AS a JOIN outbox AS o ON o.dedup_key = a.preview_key"
        " WHERE a.state = 'draft' AND o.event_id = ?",
        (event_id,),
    )
    return _row(row) if row is not None else None


async def confirm(
    conn: aiosqlite.Connection, announcement_id: int, by: str, due_at: datetime, now: datetime
) -> bool:
    """draft → scheduled; the job starts the fan-out at ``due_at``."""
    return await _changed(
        conn,
        "UPDATE announcements SET state = 'scheduled', due_at = ?, confirmed_at = ?,"
        " confirmed_by = ? WHERE id = ? AND state = 'draft'",
        (iso(due_at), iso(now), by, announcement_id),
    )


async def discard(conn: aiosqlite.Connection, announcement_id: int, by: str, now: datetime) -> bool:
    """draft or scheduled → discarded; too late once the fan-out has started."""
    return await _changed(
        conn,
        "UPDATE announcements SET state = 'discarded', discarded_at = ?, discarded_by = ?"
        " WHERE id = ? AND state IN ('draft', 'scheduled')",
        (iso(now), by, announcement_id),
    )


async def start_sending(
    conn: aiosqlite.Connection, announcement_id: int, recipients: int, now: datetime
) -> bool:
    return await _changed(
        conn,
        "UPDATE announcements SET state = 'sending', recipients = ?, started_at = ?"
        " WHERE id = ? AND state = 'scheduled'",
        (recipients, iso(now), announcement_id),
    )


async def finish(
    conn: aiosqlite.Connection, announcement_id: int, counts: DeliveryCounts, now: datetime
) -> bool:
    return await _changed(
        conn,
        "UPDATE announcements SET state = 'done', finished_at = ?, sent_count = ?,"
        " failed_count = ? WHERE id = ? AND state = 'sending'",
        (iso(now), counts.sent, counts.failed, announcement_id),
    )


async def due(conn: aiosqlite.Connection, now: datetime) -> list[int]:
    rows = await _all(
        conn,
        "SELECT id FROM announcements WHERE state = 'scheduled' AND due_at <= ? ORDER BY due_at",
        (iso(now),),
    )
    return [int(r["id"]) for r in rows]


async def sending(conn: aiosqlite.Connection) -> list[int]:
    rows = await _all(conn, "SELECT id FROM announcements WHERE state = 'sending' ORDER BY id")
    return [int(r["id"]) for r in rows]


async def open_announcements(conn: aiosqlite.Connection) -> list[Announcement]:
    """Drafts awaiting confirmation and scheduled ones, soonest first."""
    rows = await _all(
        conn,
        "SELECT * FROM announcements WHERE state IN ('draft', 'scheduled')"
        " ORDER BY state = 'draft', COALESCE(due_at, send_at, created_at), id",
    )
    return [_row(r) for r in rows]


async def delivery_counts(conn: aiosqlite.Connection, announcement_id: int) -> DeliveryCounts:
    """Pending/sent/failed copies, counted over the outbox's unique key index."""
    low, high = dedup_range(announcement_id)
    rows = await _all(
        conn,
        "SELECT status, COUNT(*) AS n FROM outbox WHERE dedup_key >= ? AND dedup_key < ?"
        " GROUP BY status",
        (low, high),
    )
    counts = {r["status"]: int(r["n"]) for r in rows}
    return DeliveryCounts(counts.get("pending", 0), counts.get("sent", 0), counts.get("failed", 0))


# -- audience sources ----------------------------------------------------------------------


async def known_users(conn: aiosqlite.Connection) -> list[str]:
    rows = await _all(conn, "SELECT user_id FROM users ORDER BY user_id")
    return [r["user_id"] for r in rows]


async def group_rooms(conn: aiosqlite.Connection) -> list[str]:
    """Group rooms the bot is in; a room known as someone's direct chat never counts."""
    rows = await _all(
        conn,
        "SELECT room_id FROM rooms WHERE is_direct = 0 AND left_at IS NULL"
        " AND room_id NOT IN (SELECT room_id FROM dm_rooms) ORDER BY joined_at, room_id",
    )
    return [r["room_id"] for r in rows]


async def opted_out(conn: aiosqlite.Connection) -> frozenset[str]:
    rows = await _all(conn, "SELECT user_id FROM announcement_optouts")
    return frozenset(r["user_id"] for r in rows)


async def opt_out(conn: aiosqlite.Connection, user_id: str, now: datetime) -> bool:
    """Record the opt-out; False if it was already recorded."""
    return await _changed(
        conn,
        "INSERT OR IGNORE INTO announcement_optouts (user_id, since) VALUES (?, ?)",
        (user_id, iso(now)),
    )


async def opt_in(conn: aiosqlite.Connection, user_id: str) -> bool:
    """Remove the opt-out; False if there was none."""
    return await _changed(conn, "DELETE FROM announcement_optouts WHERE user_id = ?", (user_id,))
