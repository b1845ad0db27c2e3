"""The durable inbox: events from a sync are stored before the sync token moves on.

Each event is handled exactly once: its row is marked ``done`` in the same transaction as
the state changes and outgoing messages it caused. Events that hit a transient database
problem stay ``pending`` and are tried again with backoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from lotsenbot.core.clock import iso
from lotsenbot.core.outbox import backoff
from lotsenbot.core.types import Incoming
from lotsenbot.storage.db import Database

MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class InboxItem:
    incoming: Incoming
    attempts: int


class Inbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def accept(
        self, conn: aiosqlite.Connection, events: Sequence[Incoming], now: datetime
    ) -> list[Incoming]:
        """Store new events (inside the caller's transaction); return those not seen before."""
        fresh: list[Incoming] = []
        for event in events:
            cursor = await conn.execute(
                "INSERT OR IGNORE INTO inbox (event_id, room_id, sender, kind, payload, origin_ts,"
                " received_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.event_id,
                    event.room_id,
                    event.sender,
                    event.kind,
                    event.to_json(),
                    event.origin_ts,
                    iso(now),
                    iso(now),
                ),
            )
            if cursor.rowcount > 0:
                fresh.append(event)
            await cursor.close()
        return fresh

    async def pending(self, now: datetime, limit: int = 500) -> list[InboxItem]:
        # An event waiting for a retry holds back the later events of its room, so that
        # "1" is never handled before the question it answers.
        rows = await self.db.fetchall(
            "SELECT payload, attempts FROM inbox AS i"
            " WHERE status = 'pending' AND next_attempt_at <= ?"
            " AND NOT EXISTS (SELECT 1 FROM inbox AS e WHERE e.status = 'pending'"
            "   AND e.room_id = i.room_id AND e.next_attempt_at > ?"
            "   AND (e.origin_ts < i.origin_ts"
            "        OR (e.origin_ts = i.origin_ts AND e.rowid < i.rowid)))"
            " ORDER BY origin_ts, rowid LIMIT ?",
            (iso(now), iso(now), limit),
        )
        return [InboxItem(Incoming.from_json(r["payload"]), r["attempts"]) for r in rows]

    @staticmethod
    async def finish(
        conn: aiosqlite.Connection,
        event_id: str,
        status: str,
        now: datetime,
        error: str | None = None,
    ) -> None:
        await conn.execute(
            "UPDATE inbox SET status = ?, handled_at = ?, error = ?, payload = CASE"
            " WHEN ? THEN payload ELSE '{}' END WHERE event_id = ?",
            # Message bodies are not kept once handled (data minimisation); the row stays
            # as the record that this event was handled.
            (status, iso(now), error, status == "pending", event_id),
        )

    async def retry_later(self, event_id: str, attempts: int, now: datetime, error: str) -> bool:
        """Schedule another attempt; return False once the event has failed too often."""
        give_up = attempts + 1 >= MAX_ATTEMPTS
        async with self.db.transaction() as conn:
            # An event given up on loses its text like a handled one (data minimisation).
            await conn.execute(
                "UPDATE inbox SET attempts = attempts + 1, next_attempt_at = ?, error = ?,"
                " status = ?, payload = CASE WHEN ? THEN '{}' ELSE payload END"
                " WHERE event_id = ?",
                (
                    iso(now + backoff(attempts + 1, base=0.5, cap=60)),
                    error[:500],
                    "failed" if give_up else "pending",
                    give_up,
                    event_id,
                ),
            )
        return not give_up
