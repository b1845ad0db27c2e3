"""SQL of the privacy feature: the foundation tables' part in access, erasure and retention.

The foundation (``0001_initial.sql``) stores people (``users``; their display names in
``display_names``, 0012), their direct chats
(``dm_rooms``), every accepted event (``inbox``; message bodies are blanked once handled),
every bot message (``outbox``), short conversational state (``pending_choices``) and the
audit log. :class:`FoundationData` answers for these tables the way each feature answers
for its own (see :mod:`lotsenbot.core.personal_data`). The audit log also serves
``!protokoll``, and the counters of purged rows keep the Prometheus totals monotonic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from lotsenbot.config import PrivacyConfig
from lotsenbot.core import names
from lotsenbot.core.clock import iso
from lotsenbot.core.markdown import escape
from lotsenbot.core.personal_data import (
    ERASED,
    ErasureReport,
    content_names_person,
    replace_person,
)

BLANK_CONTENT = json.dumps({"markdown": "", "meta": {}, "mentions": [], "reply_to": None})
COUNTER_PREFIX = "counter:"


async def _rows(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    async with conn.execute(sql, params) as cursor:
        return list(await cursor.fetchall())


async def _scalar(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> int:
    async with conn.execute(sql, params) as cursor:
        row = await cursor.fetchone()
    return int(row[0] or 0) if row is not None else 0


async def _changes(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> int:
    cursor = await conn.execute(sql, params)
    count = cursor.rowcount
    await cursor.close()
    return max(count, 0)


def _marks(values: list[Any] | tuple[Any, ...]) -> str:
    return ", ".join("?" for _ in values)


async def direct_rooms(conn: aiosqlite.Connection, user_id: str) -> list[str]:
    """The person's direct chats with the bot: recorded, written in, or created for them."""
    rows = await _rows(
        conn,
        "SELECT room_id FROM dm_rooms WHERE user_id = ?"
        " UNION SELECT i.room_id FROM inbox i JOIN rooms r ON r.room_id = i.room_id"
        " WHERE i.sender = ? AND r.is_direct = 1"
        " UNION SELECT room_id FROM outbox WHERE target_kind = 'user' AND target = ?"
        " AND room_id IS NOT NULL",
        (user_id, user_id, user_id),
    )
    return sorted({str(r[0]) for r in rows})


# Where the bot keeps the Matrix IDs of people it knows (not only of those who wrote to it).
_ID_COLUMNS = (
    ("users", "user_id"),
    ("display_names", "user_id"),
    ("dm_rooms", "user_id"),
    ("inbox", "sender"),
    ("outbox", "target"),
)


async def _longer_ids(conn: aiosqlite.Connection, user_id: str) -> set[str]:
    """Known Matrix IDs of other people that begin with ``user_id`` ("@anna:stadt.dev" for
    "@anna:stadt.de"): where they stand in a text, the text is theirs, not the person's."""
    union = " UNION ".join(
        f"SELECT {column} FROM {table} WHERE substr({column}, 1, ?) = ? AND {column} != ?"
        for table, column in _ID_COLUMNS
    )
    rows = await _rows(conn, union, (len(user_id), user_id, user_id) * len(_ID_COLUMNS))
    return {str(r[0]) for r in rows}


def _mentions(content: str, user_id: str) -> bool:
    try:
        return user_id in (json.loads(content).get("mentions") or [])
    except (ValueError, AttributeError):
        return False


async def _messages_for(conn: aiosqlite.Connection, user_id: str) -> list[Any]:
    """Outbox rows addressed to the person: to them, into their direct chat, or naming
    them in ``m.mentions`` (a reply in a group room)."""
    rooms = await direct_rooms(conn, user_id)
    rows = await _rows(
        conn,
        "SELECT * FROM outbox WHERE (target_kind = 'user' AND target = ?)"
        f" OR target IN ({_marks(rooms) or 'NULL'}) OR room_id IN ({_marks(rooms) or 'NULL'})"
        " OR instr(content, ?) > 0 ORDER BY id",
        (user_id, *rooms, *rooms, json.dumps(user_id)),
    )
    mine = set(rooms)
    return [
        r for r in rows
        if (r["target_kind"] == "user" and r["target"] == user_id)
        or r["target"] in mine or r["room_id"] in mine or _mentions(r["content"], user_id)
    ]  # fmt: skip


def _in_json(text: str) -> str:
    """``text`` as it appears inside a JSON string (the outbox content)."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _text_of(content: str) -> str:
    try:
        return str(json.loads(content).get("markdown", ""))
    except (ValueError, AttributeError):
        return ""


class FoundationData:
    """Personal-data hooks for the foundation tables."""

    async def export_person(self, conn: aiosqlite.Connection, user_id: str) -> dict[str, Any]:
        user = await _rows(conn, "SELECT * FROM users WHERE user_id = ?", (user_id,))
        dm = await _rows(conn, "SELECT * FROM dm_rooms WHERE user_id = ?", (user_id,))
        events = await _rows(
            conn,
            "SELECT event_id, room_id, kind, payload, received_at, status, handled_at"
            " FROM inbox WHERE sender = ? ORDER BY origin_ts, rowid",
            (user_id,),
        )
        messages = await _messages_for(conn, user_id)
        choices = await _rows(
            conn,
            "SELECT room_id, kind, payload, expires_at FROM pending_choices WHERE user_id = ?",
            (user_id,),
        )
        audit = await _rows(
            conn,
            "SELECT at, actor, action, subject, details FROM audit_log"
            " WHERE actor = ? OR subject = ? ORDER BY id",
            (user_id, user_id),
        )
        return {
            "person": dict(user[0]) if user else None,
            "display_name": await names.export_name(conn, user_id),
            "direct_chat": dict(dm[0]) if dm else None,
            "events": [
                {
                    "event_id": e["event_id"],
                    "room_id": e["room_id"],
                    "kind": e["kind"],
                    "received_at": e["received_at"],
                    "status": e["status"],
                    "handled_at": e["handled_at"],
                    # Only events still waiting to be handled keep their text.
                    "body": _body_of(e["payload"]),
                }
                for e in events
            ],
            "messages": [
                {
                    "id": m["id"],
                    "room_id": m["room_id"] or _room_target(m),
                    "purpose": m["purpose"],
                    "status": m["status"],
                    "created_at": m["created_at"],
                    "sent_at": m["sent_at"],
                    "text": _text_of(m["content"]),
                    "attachment": m["attachment_name"],
                }
                for m in messages
            ],
            "pending_choices": [dict(c) for c in choices],
            "audit_log": [{**dict(a), "details": _json_or_text(a["details"])} for a in audit],
        }

    async def erase_person(
        self, conn: aiosqlite.Connection, user_id: str, now: datetime
    ) -> ErasureReport:
        report = ErasureReport()
        longer = await _longer_ids(conn, user_id)  # before anything about anyone is deleted
        report.count("person", await _changes(conn, "DELETE FROM users WHERE user_id = ?",
                                              (user_id,)))  # fmt: skip
        report.count("display_name", await names.forget(conn, user_id))
        report.count(
            "pending_choices",
            await _changes(conn, "DELETE FROM pending_choices WHERE user_id = ?", (user_id,)),
        )
        # Found before the events lose their sender: a direct chat that only the person's
        # own messages in the inbox tie to them would otherwise not be found.
        messages = await _messages_for(conn, user_id)
        # Handled events stay as the anonymous record that they were handled (counts for the
        # statistics); their text is gone already. Waiting events keep their text until the
        # bot has handled them.
        report.count(
            "events",
            await _changes(
                conn,
                "UPDATE inbox SET sender = ?, payload = CASE WHEN status = 'pending'"
                " THEN payload ELSE '{}' END WHERE sender = ?",
                (ERASED, user_id),
            ),
        )
        # Everything that merely names the person (e.g. a request forwarded to pilots) loses
        # its text, too, once delivered: their Matrix ID in the metadata, or in the text,
        # where it stands escaped for Markdown, next to their display name. SQL only narrows
        # the rows down; a text keeps its words only where a known longer ID stands
        # ("@anna:stadt.de" is not named by a message about "@anna:stadt.dev"), not where
        # someone ran the ID into other letters ("@anna:stadt.de-Postfach").
        naming = [
            r for r in await _rows(
                conn,
                "SELECT id, content FROM outbox WHERE status != 'pending'"
                " AND (instr(content, ?) > 0 OR instr(content, ?) > 0)",
                (user_id, _in_json(escape(user_id))),
            )
            if content_names_person(r["content"], user_id, longer)
        ]  # fmt: skip
        done = sorted({m["id"] for m in messages if m["status"] != "pending"}
                      | {r["id"] for r in naming})  # fmt: skip
        pending = [m for m in messages if m["status"] == "pending"]
        for chunk in _chunks(done, 500):
            await conn.execute(
                f"UPDATE outbox SET content = ?, attachment = NULL, attachment_name = NULL,"
                f" target = CASE WHEN target_kind = 'user' AND target = ? THEN ? ELSE target END"
                f" WHERE id IN ({_marks(chunk)})",
                (BLANK_CONTENT, user_id, ERASED, *chunk),
            )
        # Delivery keys name their recipient ("ann:7:@anna:…"); the row id keeps them unique.
        # Only the person's own ID goes: a copy to "@anna:stadt.dev" that names Anna keeps
        # its key, or the counts of that announcement would lose it.
        for chunk in _chunks(done, 500):
            for row in await _rows(
                conn,
                f"SELECT id, dedup_key FROM outbox WHERE id IN ({_marks(chunk)})"
                f" AND instr(dedup_key, ?) > 0",
                (*chunk, user_id),
            ):
                key = replace_person(row["dedup_key"], user_id, f"{ERASED}#{row['id']}")
                if key != row["dedup_key"]:
                    await conn.execute(
                        "UPDATE outbox SET dedup_key = ? WHERE id = ?", (key, row["id"])
                    )
        report.count("messages", len(done))
        report.keep("messages", len(pending), "privacy.kept.pending_delivery")
        dm = await _scalar(conn, "SELECT COUNT(*) FROM dm_rooms WHERE user_id = ?", (user_id,))
        report.keep("direct_chat", dm, "privacy.kept.direct_chat")
        audit = await _scalar(
            conn, "SELECT COUNT(*) FROM audit_log WHERE actor = ? OR subject = ?",
            (user_id, user_id),
        )  # fmt: skip
        report.keep("audit_log", audit, "privacy.kept.audit")
        return report

    async def purge(
        self, conn: aiosqlite.Connection, now: datetime, privacy: PrivacyConfig, dry_run: bool
    ) -> dict[str, int]:
        events_before = iso(now - timedelta(days=privacy.handled_events_days))
        records_before = iso(now - timedelta(days=privacy.delivery_records_days))
        users_before = iso(now - timedelta(days=privacy.inactive_users_days))
        audit_before = iso(now - timedelta(days=privacy.audit_log_days))
        events_where = "status != 'pending' AND COALESCE(handled_at, received_at) < ?"
        records_where = "status != 'pending' AND COALESCE(sent_at, created_at) < ?"
        counts = {
            "events": await _scalar(
                conn, f"SELECT COUNT(*) FROM inbox WHERE {events_where}", (events_before,)
            ),
            "delivery_records": await _scalar(
                conn, f"SELECT COUNT(*) FROM outbox WHERE {records_where}", (records_before,)
            ),
            "expired_choices": await _scalar(
                conn, "SELECT COUNT(*) FROM pending_choices WHERE expires_at <= ?", (iso(now),)
            ),
            "inactive_people": await _scalar(
                conn, "SELECT COUNT(*) FROM users WHERE last_seen < ?", (users_before,)
            ),
            # Names the homeserver has not confirmed for as long (no message, no rename).
            "display_names": await _scalar(
                conn, "SELECT COUNT(*) FROM display_names WHERE learned_at < ?", (users_before,)
            ),
            "audit_log": await _scalar(
                conn, "SELECT COUNT(*) FROM audit_log WHERE at < ?", (audit_before,)
            ),
        }
        if dry_run:
            return counts
        # Totals for /metrics must not shrink when old rows go: carry them over.
        for table, where, before in (("inbox", events_where, events_before),
                                     ("outbox", records_where, records_before)):  # fmt: skip
            for row in await _rows(
                conn, f"SELECT status, COUNT(*) FROM {table} WHERE {where} GROUP BY status",
                (before,),
            ):  # fmt: skip
                await add_counter(conn, f"{table}:{row[0]}", int(row[1]))
        await conn.execute(f"DELETE FROM inbox WHERE {events_where}", (events_before,))
        await conn.execute(f"DELETE FROM outbox WHERE {records_where}", (records_before,))
        await conn.execute("DELETE FROM pending_choices WHERE expires_at <= ?", (iso(now),))
        await conn.execute("DELETE FROM users WHERE last_seen < ?", (users_before,))
        await conn.execute("DELETE FROM display_names WHERE learned_at < ?", (users_before,))
        await conn.execute("DELETE FROM audit_log WHERE at < ?", (audit_before,))
        return counts

    async def statistics(
        self, conn: aiosqlite.Connection, since: datetime, until: datetime, per_person: bool
    ) -> dict[str, Any]:
        span = (iso(since), iso(until))
        result: dict[str, Any] = {
            "messages_handled": await _scalar(
                conn,
                "SELECT COUNT(*) FROM inbox WHERE kind = 'message' AND status = 'done'"
                " AND received_at >= ? AND received_at < ?",
                span,
            ),
            # People who wrote in the period (not everyone seen before and after it).
            "active_people": await _scalar(
                conn,
                "SELECT COUNT(DISTINCT sender) FROM inbox WHERE kind = 'message'"
                " AND received_at >= ? AND received_at < ? AND sender != ?",
                (*span, ERASED),
            ),
        }
        # Both come from the event records, which go after [privacy] handled_events_days:
        # a longer period is counted only from the oldest record on, and the report says so.
        rows = await _rows(conn, "SELECT MIN(received_at) FROM inbox")
        oldest = rows[0][0] if rows else None
        if isinstance(oldest, str) and oldest > span[0]:
            result["counted_from"] = oldest
        return result


def _room_target(row: Any) -> str | None:
    return str(row["target"]) if row["target_kind"] == "room" else None


def _body_of(payload: str) -> str | None:
    try:
        body = json.loads(payload).get("body")
    except (ValueError, AttributeError):
        return None
    return str(body) if body else None


def _json_or_text(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def _chunks(values: list[int], size: int) -> list[list[int]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


async def add_counter(conn: aiosqlite.Connection, name: str, amount: int) -> None:
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
        " DO UPDATE SET value = CAST(CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER)"
        " AS TEXT)",
        (COUNTER_PREFIX + name, str(amount)),
    )


@dataclass(frozen=True)
class AuditEntry:
    at: str
    actor: str
    action: str
    subject: str | None
    details: Any


async def recent_audit(conn: aiosqlite.Connection, limit: int) -> list[AuditEntry]:
    rows = await _rows(
        conn,
        "SELECT at, actor, action, subject, details FROM audit_log ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [
        AuditEntry(r["at"], r["actor"], r["action"], r["subject"], _json_or_text(r["details"]))
        for r in rows
    ]


# -- read-only figures for /health and /metrics (outside any transaction) ------------------


async def health_figures(conn: aiosqlite.Connection) -> dict[str, Any]:
    rows = await _rows(
        conn, "SELECT key, value FROM meta WHERE key IN ('last_sync_at', 'sync_token')"
    )
    meta = {r[0]: r[1] for r in rows}
    return {
        "last_sync_at": meta.get("last_sync_at"),
        "outbox_backlog": await _scalar(
            conn, "SELECT COUNT(*) FROM outbox WHERE status = 'pending'"
        ),
    }


async def status_totals(conn: aiosqlite.Connection, table: str) -> dict[str, int]:
    """Rows per status of inbox or outbox, plus what the purges carried over."""
    if table not in ("inbox", "outbox"):
        raise ValueError(table)
    totals: dict[str, int] = {}
    for row in await _rows(conn, f"SELECT status, COUNT(*) FROM {table} GROUP BY status"):
        totals[str(row[0])] = int(row[1])
    prefix = f"{COUNTER_PREFIX}{table}:"
    for row in await _rows(
        conn, "SELECT key, value FROM meta WHERE key >= ? AND key < ?", (prefix, prefix + "~")
    ):
        status = str(row[0])[len(prefix) :]
        totals[status] = totals.get(status, 0) + int(row[1])
    return totals


@dataclass(frozen=True)
class SentReply:
    sent_at: str
    row_id: int
    event_id: str


async def replies_sent_after(
    conn: aiosqlite.Connection, sent_at: str, row_id: int, limit: int = 5000
) -> list[SentReply]:
    """Replies to events (dedup key ``evt:<event id>:<n>``) delivered after a cursor."""
    rows = await _rows(
        conn,
        "SELECT id, sent_at, dedup_key FROM outbox WHERE status = 'sent'"
        " AND dedup_key LIKE 'evt:%' AND (sent_at > ? OR (sent_at = ? AND id > ?))"
        " ORDER BY sent_at, id LIMIT ?",
        (sent_at, sent_at, row_id, limit),
    )
    return [
        SentReply(r["sent_at"], r["id"], str(r["dedup_key"])[4:].rsplit(":", 1)[0]) for r in rows
    ]


async def origin_times(conn: aiosqlite.Connection, event_ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(event_ids), 500):
        chunk = event_ids[start : start + 500]
        for row in await _rows(
            conn,
            f"SELECT event_id, origin_ts FROM inbox WHERE event_id IN ({_marks(chunk)})",
            tuple(chunk),
        ):
            found[str(row[0])] = int(row[1])
    return found


async def open_tickets_by_department(conn: aiosqlite.Connection) -> dict[str, int] | None:
    """Open requests per department (None when the tickets feature's table is absent)."""
    async with conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tickets'"
    ) as cursor:
        if await cursor.fetchone() is None:
            return None
    rows = await _rows(
        conn,
        "SELECT COALESCE(department, ''), COUNT(*) FROM tickets"
        " WHERE status NOT IN ('resolved', 'withdrawn') GROUP BY 1",
    )
    return {str(r[0]): int(r[1]) for r in rows}
