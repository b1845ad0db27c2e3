"""The requests feature's part in access, erasure, retention and statistics.

Registered with :mod:`lotsenbot.core.personal_data` on import (the privacy feature imports
it). A request carries the requester's text and Matrix ID; pilots appear as assignee and
as authors of history entries, and the event ids of the bot's messages about a request
(``ticket_messages``, for replies to them) belong to it. Closed requests are anonymised
rather than deleted, so the department figures of the report stay right: department and
times remain, text, people and message ids go. An open request keeps what it needs until
it is closed.
"""

from __future__ import annotations

import json
import statistics
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from lotsenbot.config import PrivacyConfig
from lotsenbot.core import personal_data
from lotsenbot.core.clock import iso, parse_iso
from lotsenbot.core.personal_data import ERASED, ErasureReport, table_exists

CLOSED = ("resolved", "withdrawn")


async def _rows(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    async with conn.execute(sql, params) as cursor:
        return list(await cursor.fetchall())


def _marks(values: list[Any] | tuple[Any, ...]) -> str:
    return ", ".join("?" for _ in values)


def _without(value: Any, user_id: str) -> Any:
    """``value`` (parsed JSON) with every string equal to ``user_id`` replaced by ERASED."""
    if value == user_id:
        return ERASED
    if isinstance(value, dict):
        return {key: _without(item, user_id) for key, item in value.items()}
    if isinstance(value, list):
        return [_without(item, user_id) for item in value]
    return value


async def _anonymise(conn: aiosqlite.Connection, ids: list[int]) -> None:
    """Remove text and people from closed tickets; keep department, status and times."""
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = _marks(chunk)
        await conn.execute(
            f"UPDATE tickets SET requester = ?, room_id = '', body = '',"
            f" assignee = CASE WHEN assignee IS NULL THEN NULL ELSE ? END,"
            f" deputy_for = CASE WHEN deputy_for IS NULL THEN NULL ELSE ? END,"
            f" route_reason = NULL WHERE id IN ({marks})",
            (ERASED, ERASED, ERASED, *chunk),
        )
        await conn.execute(
            f"UPDATE ticket_events SET actor = ?, body = NULL, details = NULL"
            f" WHERE ticket_id IN ({marks})",
            (ERASED, *chunk),
        )
        # Which of the bot's messages were about the request: replies to them lead nowhere now.
        await conn.execute(f"DELETE FROM ticket_messages WHERE ticket_id IN ({marks})", chunk)


class TicketsData:
    async def export_person(self, conn: aiosqlite.Connection, user_id: str) -> dict[str, Any]:
        if not await table_exists(conn, "tickets"):
            return {}
        own = await _rows(conn, "SELECT * FROM tickets WHERE requester = ? ORDER BY id",
                          (user_id,))  # fmt: skip
        requests = []
        for ticket in own:
            events = await _rows(
                conn,
                "SELECT at, actor, kind, body, internal FROM ticket_events WHERE ticket_id = ?"
                " ORDER BY id",
                (ticket["id"],),
            )
            messages = await _rows(
                conn, "SELECT event_id FROM ticket_messages WHERE ticket_id = ? ORDER BY rowid",
                (ticket["id"],),
            )  # fmt: skip
            requests.append({**dict(ticket), "history": [dict(e) for e in events],
                             "bot_messages": [m["event_id"] for m in messages]})  # fmt: skip
        handled = await _rows(
            conn,
            "SELECT id, department, status, created_at, closed_at,"
            " CASE WHEN assignee = ? THEN 'assignee' ELSE 'deputy_for' END AS role"
            " FROM tickets WHERE (assignee = ? OR deputy_for = ?) AND requester != ? ORDER BY id",
            (user_id, user_id, user_id, user_id),
        )
        written = await _rows(
            conn,
            "SELECT e.ticket_id, e.at, e.kind, e.body, e.internal FROM ticket_events e"
            " JOIN tickets t ON t.id = e.ticket_id WHERE e.actor = ? AND t.requester != ?"
            " ORDER BY e.id",
            (user_id, user_id),
        )
        absence = await _rows(conn, "SELECT * FROM pilot_absences WHERE user_id = ?", (user_id,))
        return {
            "requests": requests,
            "requests_handled_as_pilot": [dict(r) for r in handled],
            "entries_written_as_pilot": [dict(r) for r in written],
            "absence": dict(absence[0]) if absence else None,
        }

    async def erase_person(
        self, conn: aiosqlite.Connection, user_id: str, now: datetime
    ) -> ErasureReport:
        report = ErasureReport()
        if not await table_exists(conn, "tickets"):
            return report
        own = await _rows(conn, "SELECT id, status FROM tickets WHERE requester = ? ORDER BY id",
                          (user_id,))  # fmt: skip
        closed = [r["id"] for r in own if r["status"] in CLOSED]
        still_open = [r["id"] for r in own if r["status"] not in CLOSED]
        await _anonymise(conn, closed)
        report.count("tickets", len(closed))
        report.keep("open_tickets", len(still_open), "privacy.kept.open_ticket",
                    numbers=", ".join(str(n) for n in still_open))  # fmt: skip
        # As a pilot: the name goes from closed requests; open ones still need their pilot.
        handled = await _rows(
            conn,
            "SELECT id, status FROM tickets WHERE (assignee = ? OR deputy_for = ?)"
            " AND requester != ?",
            (user_id, user_id, user_id),
        )
        handled_closed = [r["id"] for r in handled if r["status"] in CLOSED]
        handled_open = [r["id"] for r in handled if r["status"] not in CLOSED]
        for start in range(0, len(handled_closed), 500):
            chunk = handled_closed[start : start + 500]
            await conn.execute(
                f"UPDATE tickets SET assignee = CASE WHEN assignee = ? THEN ? ELSE assignee END,"
                f" deputy_for = CASE WHEN deputy_for = ? THEN ? ELSE deputy_for END"
                f" WHERE id IN ({_marks(chunk)})",
                (user_id, ERASED, user_id, ERASED, *chunk),
            )
        cursor = await conn.execute(
            f"UPDATE ticket_events SET actor = ? WHERE actor = ? AND ticket_id IN"
            f" (SELECT id FROM tickets WHERE status IN ({_marks(CLOSED)}))",
            (ERASED, user_id, *CLOSED),
        )
        report.count("events", max(cursor.rowcount, 0))
        await cursor.close()
        # Entries by others that name the person ("assigned to @lotsin", "deputy for …").
        for row in await _rows(
            conn,
            f"SELECT e.id, e.details FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id"
            f" WHERE t.status IN ({_marks(CLOSED)}) AND instr(e.details, ?) > 0",
            (*CLOSED, json.dumps(user_id)),
        ):
            details = _without(json.loads(row["details"]), user_id)
            await conn.execute("UPDATE ticket_events SET details = ? WHERE id = ?",
                               (json.dumps(details, ensure_ascii=False), row["id"]))  # fmt: skip
        report.keep("assigned_tickets", len(handled_open), "privacy.kept.assigned_ticket",
                    numbers=", ".join(str(n) for n in handled_open))  # fmt: skip
        written_open = [
            r[0] for r in await _rows(
                conn,
                f"SELECT DISTINCT e.ticket_id FROM ticket_events e JOIN tickets t"
                f" ON t.id = e.ticket_id WHERE e.actor = ? AND t.requester != ?"
                f" AND t.status NOT IN ({_marks(CLOSED)}) ORDER BY 1",
                (user_id, user_id, *CLOSED),
            )
            if r[0] not in handled_open
        ]  # fmt: skip
        report.keep("ticket_entries", len(written_open), "privacy.kept.ticket_entries",
                    numbers=", ".join(str(n) for n in written_open))  # fmt: skip
        cursor = await conn.execute("DELETE FROM pilot_absences WHERE user_id = ?", (user_id,))
        report.count("absences", max(cursor.rowcount, 0))
        await cursor.close()
        # Colleagues who named the person as their deputy: their requests go to the others.
        await conn.execute("UPDATE pilot_absences SET deputy = NULL WHERE deputy = ?", (user_id,))
        return report

    async def purge(
        self, conn: aiosqlite.Connection, now: datetime, privacy: PrivacyConfig, dry_run: bool
    ) -> dict[str, int]:
        if not await table_exists(conn, "tickets"):
            return {}
        before = iso(now - timedelta(days=privacy.ticket_contents_days))
        due = [
            r[0] for r in await _rows(
                conn,
                f"SELECT id FROM tickets WHERE status IN ({_marks(CLOSED)})"
                f" AND closed_at < ? AND (body != '' OR requester != ?)",
                (*CLOSED, before, ERASED),
            )
        ]  # fmt: skip
        # An absence is over the day after its last day (a local date; one more day of
        # margin for the zone): the entry, with the deputy's name, has no use after that.
        ended = (now - timedelta(days=2)).date().isoformat()
        absences = len(await _rows(conn, "SELECT 1 FROM pilot_absences WHERE until < ?", (ended,)))
        if not dry_run:
            await _anonymise(conn, due)
            await conn.execute("DELETE FROM pilot_absences WHERE until < ?", (ended,))
        return {"ticket_contents": len(due), "ended_absences": absences}

    async def statistics(
        self, conn: aiosqlite.Connection, since: datetime, until: datetime, per_person: bool
    ) -> dict[str, Any]:
        if not await table_exists(conn, "tickets"):
            return {}
        span = (iso(since), iso(until))
        tickets = await _rows(
            conn,
            "SELECT t.id, COALESCE(t.department, '') AS department, t.created_at,"
            " t.resolved_at, (SELECT MIN(e.at) FROM ticket_events e WHERE e.ticket_id = t.id"
            " AND e.kind = 'reply' AND e.actor != t.requester AND e.actor != ?) AS first_answer"
            " FROM tickets t WHERE t.created_at >= ? AND t.created_at < ?",
            (ERASED, *span),
        )
        requests: dict[str, int] = {}
        first: dict[str, list[float]] = {}
        done: dict[str, list[float]] = {}
        for t in tickets:
            department = t["department"]
            requests[department] = requests.get(department, 0) + 1
            created = parse_iso(t["created_at"])
            if t["first_answer"]:
                seconds = (parse_iso(t["first_answer"]) - created).total_seconds()
                first.setdefault(department, []).append(seconds)
            if t["resolved_at"]:
                seconds = (parse_iso(t["resolved_at"]) - created).total_seconds()
                done.setdefault(department, []).append(seconds)
        open_now = {
            str(r[0]): int(r[1]) for r in await _rows(
                conn,
                f"SELECT COALESCE(department, ''), COUNT(*) FROM tickets"
                f" WHERE status NOT IN ({_marks(CLOSED)}) GROUP BY 1",
                CLOSED,
            )
        }  # fmt: skip
        if not requests and not open_now:
            return {}
        result: dict[str, Any] = {
            "requests": requests,
            "first_answer_median_s": {d: statistics.median(v) for d, v in first.items()},
            "resolution_median_s": {d: statistics.median(v) for d, v in done.items()},
            "first_answer_overall_s": _median([s for v in first.values() for s in v]),
            "resolution_overall_s": _median([s for v in done.values() for s in v]),
            "open_now": open_now,
        }
        if per_person:
            by_pilot: dict[str, dict[str, int]] = {}
            for row in await _rows(
                conn,
                "SELECT e.actor, COUNT(*) FROM ticket_events e JOIN tickets t"
                " ON t.id = e.ticket_id WHERE e.kind = 'reply' AND e.actor != t.requester"
                " AND e.actor != ? AND e.at >= ? AND e.at < ? GROUP BY e.actor",
                (ERASED, *span),
            ):
                by_pilot.setdefault(row[0], {})["answered"] = int(row[1])
            for row in await _rows(
                conn,
                "SELECT assignee, COUNT(*) FROM tickets WHERE status = 'resolved'"
                " AND assignee IS NOT NULL AND assignee != ? AND resolved_at >= ?"
                " AND resolved_at < ? GROUP BY assignee",
                (ERASED, *span),
            ):
                by_pilot.setdefault(row[0], {})["resolved"] = int(row[1])
            result["by_pilot"] = by_pilot
        return result


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


personal_data.register("tickets", TicketsData())
