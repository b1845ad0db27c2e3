"""The persistent outbox: every bot message is a row before it is a Matrix event.

Features and jobs enqueue inside the transaction that changes their state, so a state
change and the message about it commit together. ``dedup_key`` is unique: enqueuing the
same logical message twice (a retried event, a reminder after a restart) is a no-op, and
the Matrix transaction id derived from it lets the homeserver drop a resend after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiosqlite

from lotsenbot.core.clock import iso
from lotsenbot.core.types import OutMessage

TargetKind = str  # "user" | "room"


def txn_id_for(dedup_key: str) -> str:
    return "lb" + hashlib.sha256(dedup_key.encode("utf-8")).hexdigest()[:40]


@dataclass(frozen=True)
class Envelope:
    target_kind: TargetKind
    target: str
    message: OutMessage
    purpose: str = "reply"


class Outbox:
    """Enqueue side of the outbox; the transport's sender drains it."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now
        self._wake = asyncio.Event()

    async def enqueue(
        self,
        conn: aiosqlite.Connection,
        dedup_key: str,
        envelope: Envelope,
        not_before: datetime | None = None,
    ) -> bool:
        """Insert one message; return False if a message with this key already exists."""
        now = self._now()
        attachment = envelope.message.attachment
        cursor = await conn.execute(
            "INSERT OR IGNORE INTO outbox (dedup_key, target_kind, target, content, attachment,"
            " attachment_name, attachment_mime, purpose, next_attempt_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                dedup_key,
                envelope.target_kind,
                envelope.target,
                envelope.message.to_json(),
                attachment.data if attachment else None,
                attachment.filename if attachment else None,
                attachment.mimetype if attachment else None,
                envelope.purpose,
                iso(not_before or now),
                iso(now),
            ),
        )
        inserted = cursor.rowcount > 0
        await cursor.close()
        return inserted

    def wake(self) -> None:
        """Tell the sender that new rows are due (call after the transaction committed)."""
        self._wake.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()


WITHDRAWN = "de.lotsenbot.withdrawn"
"""Metadata key of an outbox row whose text was taken back (:func:`withdraw_replies`)."""
WITHDRAWN_CONTENT = OutMessage("", meta={WITHDRAWN: True}).to_json()
"""What is left of a message taken back: nothing of its text, only the mark."""


def is_withdrawn(message: OutMessage) -> bool:
    return bool(message.meta.get(WITHDRAWN))


async def withdraw_replies(
    conn: aiosqlite.Connection, event_id: str, room_id: str, *, meta_path: str | None = None
) -> list[str]:
    """Take back the bot's messages into ``room_id`` that answered the event ``event_id``
    (the dispatcher keys them "evt:<event id>:<n>"), or whose content names it at the JSON
    path ``meta_path`` (a message answering a later event that repeats what ``event_id``
    said). Messages to a person's direct chat are not among them, nor redactions.

    Their text goes at once, whatever their status (sent, waiting, failed); what the sender
    needs to find the event (dedup key, event id, room) stays, and :data:`WITHDRAWN_CONTENT`
    tells it that such a row still waiting must not go out as it was (see
    :class:`lotsenbot.matrix.sender.Sender`). Returns the dedup keys of those not failed and
    not taken back before, to be redacted (``OutMessage.redacts``) in this transaction."""
    low, high = f"evt:{event_id}:", f"evt:{event_id};"
    sql = (
        "SELECT id, dedup_key, content, status FROM outbox WHERE target_kind = 'room'"
        " AND target = ? AND dedup_key >= ? AND dedup_key < ?"
    )
    params: list[str] = [room_id, low, high]
    if meta_path is not None:
        sql += (
            " UNION SELECT id, dedup_key, content, status FROM outbox WHERE target_kind = 'room'"
            " AND target = ? AND json_valid(content) AND json_extract(content, ?) = ?"
        )
        params += [room_id, meta_path, event_id]
    async with conn.execute(sql + " ORDER BY id", params) as cursor:
        rows = await cursor.fetchall()
    keys: list[str] = []
    for row_id, key, content, status in rows:
        message = OutMessage.from_json(content)
        if message.redacts is not None or is_withdrawn(message):
            continue  # a redaction names no text; taken back before: not again
        await conn.execute(
            "UPDATE outbox SET content = ?, attachment = NULL WHERE id = ?",
            (WITHDRAWN_CONTENT, row_id),
        )
        if status != "failed":
            keys.append(str(key))
    return keys


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> timedelta:
    """Exponential backoff for transient failures: 1 s, 2 s, 4 s … capped."""
    return timedelta(seconds=min(cap, base * (2 ** max(0, attempt - 1))))
