"""The announcements feature's part in access, erasure and statistics.

Registered with :mod:`lotsenbot.core.personal_data` on import. Recipients are not stored
here (their copies are outbox rows, covered by the foundation's part); what names a person
is the opt-out from general announcements and the authorship of an announcement, which
stays as a communication of the coordination team.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiosqlite

from lotsenbot.core import personal_data
from lotsenbot.core.clock import iso
from lotsenbot.core.personal_data import ErasureReport, table_exists


async def _rows(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    async with conn.execute(sql, params) as cursor:
        return list(await cursor.fetchall())


class AnnouncementsData:
    async def export_person(self, conn: aiosqlite.Connection, user_id: str) -> dict[str, Any]:
        if not await table_exists(conn, "announcements"):
            return {}
        written = await _rows(
            conn,
            "SELECT id, created_at, audience, body, state, send_at, finished_at FROM announcements"
            " WHERE author = ? ORDER BY id",
            (user_id,),
        )
        optout = await _rows(conn, "SELECT since FROM announcement_optouts WHERE user_id = ?",
                             (user_id,))  # fmt: skip
        return {
            "announcements_written": [dict(a) for a in written],
            "opted_out_since": optout[0]["since"] if optout else None,
        }

    async def erase_person(
        self, conn: aiosqlite.Connection, user_id: str, now: datetime
    ) -> ErasureReport:
        report = ErasureReport()
        if not await table_exists(conn, "announcements"):
            return report
        cursor = await conn.execute("DELETE FROM announcement_optouts WHERE user_id = ?",
                                    (user_id,))  # fmt: skip
        report.count("optout", max(cursor.rowcount, 0))
        await cursor.close()
        authored = await _rows(
            conn,
            "SELECT COUNT(*) FROM announcements WHERE author = ? OR confirmed_by = ?"
            " OR discarded_by = ?",
            (user_id, user_id, user_id),
        )
        report.keep("authored", int(authored[0][0]), "privacy.kept.announcement_author")
        return report

    async def statistics(
        self, conn: aiosqlite.Connection, since: datetime, until: datetime, per_person: bool
    ) -> dict[str, Any]:
        if not await table_exists(conn, "announcements"):
            return {}
        rows = await _rows(
            conn,
            "SELECT COUNT(*), SUM(COALESCE(sent_count, recipients)) FROM announcements"
            " WHERE state = 'done' AND finished_at >= ? AND finished_at < ?",
            (iso(since), iso(until)),
        )
        count = int(rows[0][0] or 0)
        if not count:
            return {}
        return {"sent": count, "recipients": int(rows[0][1] or 0)}


personal_data.register("announcements", AnnouncementsData())
