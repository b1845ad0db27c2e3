"""The meetups feature's part in access, erasure, retention and statistics.

Registered with :mod:`lotsenbot.core.personal_data` on import. Erasure and retention use
the meetups store's own functions (``forget_person`` moves people up from the waiting list
when a place becomes free, ``purge_personal_data`` applies ``signups_days``), so the roster
invariants stay in one place. Meetups and polls a coordinator created stay: they belong to
the network.

The running meetups feature answers for these hooks itself (it delegates here): only it can
tell the people who move up into a place an erasure freed, with the promotion notice and
calendar file of a withdrawal. :meth:`MeetupsData.erase` says who they are.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from lotsenbot.config import PrivacyConfig
from lotsenbot.core import personal_data
from lotsenbot.core.clock import iso
from lotsenbot.core.personal_data import ErasureReport, table_exists
from lotsenbot.meetups.recurrence import occurrence_key
from lotsenbot.meetups.store import (
    FINISHED_MEETUPS,
    STALE_POLLS,
    Signup,
    forget_person,
    purge_personal_data,
)


async def _rows(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    async with conn.execute(sql, params) as cursor:
        return list(await cursor.fetchall())


async def _count(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> int:
    rows = await _rows(conn, sql, params)
    return int(rows[0][0] or 0) if rows else 0


class MeetupsData:
    async def export_person(self, conn: aiosqlite.Connection, user_id: str) -> dict[str, Any]:
        if not await table_exists(conn, "meetup_signups"):
            return {}
        signups = await _rows(
            conn,
            "SELECT s.meetup_id, m.title, s.occurrence, s.starts_at, s.status, s.signed_up_at"
            " FROM meetup_signups s JOIN meetups m ON m.id = s.meetup_id WHERE s.user_id = ?"
            " ORDER BY s.id",
            (user_id,),
        )
        reminders = await _rows(
            conn,
            "SELECT meetup_id, occurrence, offset_s, outcome, at FROM meetup_reminders"
            " WHERE user_id = ? ORDER BY at",
            (user_id,),
        )
        votes = await _rows(
            conn,
            "SELECT v.poll_id, p.title, v.answers FROM meetup_poll_votes v"
            " JOIN meetup_polls p ON p.id = v.poll_id WHERE v.user_id = ? ORDER BY v.poll_id",
            (user_id,),
        )
        created = await _rows(
            conn, "SELECT id, title, created_at FROM meetups WHERE created_by = ? ORDER BY id",
            (user_id,),
        )  # fmt: skip
        polls = await _rows(
            conn, "SELECT id, title, created_at FROM meetup_polls WHERE created_by = ? ORDER BY id",
            (user_id,),
        )  # fmt: skip
        invitations = await _rows(
            conn,
            "SELECT i.meetup_id, m.title, i.invited_at FROM meetup_invitations i"
            " JOIN meetups m ON m.id = i.meetup_id"
            " WHERE i.target_kind = 'user' AND i.target = ? ORDER BY i.meetup_id",
            (user_id,),
        )
        return {
            "invitations": [dict(i) for i in invitations],
            "signups": [dict(s) for s in signups],
            "reminders": [dict(r) for r in reminders],
            "poll_votes": [dict(v) for v in votes],
            "meetups_created": [dict(m) for m in created],
            "polls_created": [dict(p) for p in polls],
        }

    async def erase_person(
        self, conn: aiosqlite.Connection, user_id: str, now: datetime
    ) -> ErasureReport:
        report, _ = await self.erase(conn, user_id, now)
        return report

    async def erase(
        self, conn: aiosqlite.Connection, user_id: str, now: datetime
    ) -> tuple[ErasureReport, list[Signup]]:
        """Erase the person; also returns the sign-ups of those who moved up into a place
        they held (see :func:`lotsenbot.meetups.store.forget_person`)."""
        report = ErasureReport()
        if not await table_exists(conn, "meetup_signups"):
            return report, []
        for category, table in (("signups", "meetup_signups"), ("reminders", "meetup_reminders"),
                                ("votes", "meetup_poll_votes")):  # fmt: skip
            report.count(category, await _count(
                conn, f"SELECT COUNT(*) FROM {table} WHERE user_id = ?", (user_id,)))  # fmt: skip
        report.count("invitations", await _count(
            conn, "SELECT COUNT(*) FROM meetup_invitations WHERE target_kind = 'user'"
            " AND target = ?", (user_id,)))  # fmt: skip
        forgotten = await forget_person(conn, user_id, now)
        organised = await _count(
            conn,
            "SELECT (SELECT COUNT(*) FROM meetups WHERE created_by = ?)"
            " + (SELECT COUNT(*) FROM meetup_polls WHERE created_by = ?)",
            (user_id, user_id),
        )
        report.keep("organised", organised, "privacy.kept.meetup_organiser")
        return report, forgotten.moved_up

    async def purge(
        self, conn: aiosqlite.Connection, now: datetime, privacy: PrivacyConfig, dry_run: bool
    ) -> dict[str, int]:
        if not await table_exists(conn, "meetup_signups"):
            return {}
        before = now - timedelta(days=privacy.signups_days)
        counts = {
            "signups": await _count(
                conn, "SELECT COUNT(*) FROM meetup_signups WHERE starts_at < ?", (iso(before),)
            ),
            "reminders": await _count(
                conn,
                "SELECT COUNT(*) FROM meetup_reminders WHERE occurrence < ?",
                (occurrence_key(before),),
            ),
            "votes": await _count(
                conn,
                f"SELECT COUNT(*) FROM meetup_poll_votes WHERE poll_id IN ({STALE_POLLS})",
                (iso(before), iso(before)),
            ),
            "invitations": await _count(
                conn,
                f"SELECT COUNT(*) FROM meetup_invitations WHERE meetup_id IN ({FINISHED_MEETUPS})",
                (iso(before), iso(before)),
            ),
        }
        if not dry_run:
            await purge_personal_data(conn, before)
        return counts

    async def statistics(
        self, conn: aiosqlite.Connection, since: datetime, until: datetime, per_person: bool
    ) -> dict[str, Any]:
        if not await table_exists(conn, "meetup_signups"):
            return {}
        rows = await _rows(
            conn,
            "SELECT m.title, s.starts_at,"
            " SUM(s.status = 'confirmed') AS confirmed, SUM(s.status = 'waitlisted') AS waiting"
            " FROM meetup_signups s JOIN meetups m ON m.id = s.meetup_id"
            " WHERE s.starts_at >= ? AND s.starts_at < ?"
            " GROUP BY s.meetup_id, s.occurrence ORDER BY s.starts_at",
            (iso(since), iso(until)),
        )
        if not rows:
            return {}
        dates = [
            {"title": r["title"], "start": r["starts_at"], "confirmed": int(r["confirmed"] or 0),
             "waitlisted": int(r["waiting"] or 0)}
            for r in rows
        ]  # fmt: skip
        return {"dates": dates, "signups": sum(d["confirmed"] for d in dates)}


personal_data.register("meetups", MeetupsData())
