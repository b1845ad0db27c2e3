"""What a handler gets: the event, the person, the open transaction, texts, and a way to answer."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiosqlite

from lotsenbot.core.clock import iso
from lotsenbot.core.names import PersonNames
from lotsenbot.core.outbox import Envelope
from lotsenbot.core.roles import Person
from lotsenbot.core.types import Incoming, OutMessage
from lotsenbot.texts import Catalogue

if TYPE_CHECKING:
    from lotsenbot.core.services import Services

log = logging.getLogger(__name__)

ANY_ROOM = "*"
"""``pending_choices.room_id`` of a choice that holds in every room (no room ID looks so)."""


@dataclass
class Context:
    incoming: Incoming
    person: Person
    conn: aiosqlite.Connection  # inside the event's write transaction
    t: Catalogue
    now: datetime
    services: Services
    outgoing: list[Envelope] = field(default_factory=list)
    prepared: Any = None  # the command's prepare result, if it declared one and it worked
    _names: PersonNames | None = field(default=None, init=False, repr=False)

    @property
    def sender(self) -> str:
        return self.incoming.sender

    @property
    def room_id(self) -> str:
        return self.incoming.room_id

    @property
    def names(self) -> PersonNames:
        """How to show people in this event's messages: ``await ctx.names.label(user_id)``."""
        if self._names is None:
            self._names = self.services.names.on(self.conn, self.now)
        return self._names

    def _mentions_for_reply(self) -> tuple[str, ...]:
        # In a group room the answer names its asker; in a direct chat nobody needs a ping.
        return () if self.incoming.is_direct else (self.incoming.sender,)

    def reply(self, markdown: str, /, **meta: Any) -> None:
        """Answer in the room the event came from, in its thread if it was sent in one."""
        self.outgoing.append(
            Envelope(
                "room",
                self.incoming.room_id,
                OutMessage(
                    markdown=markdown,
                    meta=meta,
                    mentions=self._mentions_for_reply(),
                    reply_to=None if self.incoming.is_direct else self.incoming.event_id,
                    thread_root=self.incoming.thread_root,
                ),
            )
        )

    def reply_privately(self, markdown: str, /, **meta: Any) -> None:
        """Answer in the direct chat: ticket texts, internal notes and the audit log must
        not land in a group room just because the command was typed there."""
        if self.incoming.is_direct:
            self.reply(markdown, **meta)
            return
        self.reply_message_privately(OutMessage(markdown=markdown, meta=meta))

    def reply_message_privately(self, message: OutMessage) -> None:
        """Like :meth:`reply_privately` for a whole message (e.g. one with an attachment)."""
        if self.incoming.is_direct:
            self.reply_message(message)
            return
        self.send_to_user(self.sender, message, "reply")
        self.reply(self.t("core.answered_privately"))

    def reply_message(self, message: OutMessage) -> None:
        if message.thread_root is None and self.incoming.thread_root is not None:
            message = replace(message, thread_root=self.incoming.thread_root)
        self.outgoing.append(Envelope("room", self.incoming.room_id, message))

    def send_to_user(self, user_id: str, message: OutMessage, purpose: str = "notify") -> None:
        """Send to a person's direct chat with the bot (created on demand by the transport)."""
        self.outgoing.append(Envelope("user", user_id, message, purpose))

    def send_to_room(self, room_id: str, message: OutMessage, purpose: str = "notify") -> None:
        self.outgoing.append(Envelope("room", room_id, message, purpose))

    async def audit(self, action: str, subject: str | None, details: dict[str, Any]) -> None:
        await audit(self.conn, self.now, self.sender, action, subject, details)

    # Short-lived conversational state, e.g. the numbered choices of "Meinten Sie …?". It
    # belongs to the person in this room, or with ``anywhere`` to the person in every room:
    # a list sent to the direct chat in answer to a command in a group room (``!faq
    # offen``) is referred to from either.
    async def remember_choice(
        self, kind: str, payload: Any, ttl: timedelta, *, anywhere: bool = False
    ) -> None:
        await self.conn.execute(
            "INSERT OR REPLACE INTO pending_choices (user_id, room_id, kind, payload, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (self.sender, self._choice_room(anywhere), kind, json.dumps(payload),
             iso(self.now + ttl)),
        )  # fmt: skip

    async def recall_choice(
        self, kind: str, *, consume: bool = False, anywhere: bool = False
    ) -> Any | None:
        async with self.conn.execute(
            "SELECT payload FROM pending_choices"
            " WHERE user_id = ? AND room_id = ? AND kind = ? AND expires_at > ?",
            (self.sender, self._choice_room(anywhere), kind, iso(self.now)),
        ) as cursor:
            row = await cursor.fetchone()
        if row is not None and consume:
            await self.forget_choice(kind, anywhere=anywhere)
        return json.loads(row[0]) if row is not None else None

    def _choice_room(self, anywhere: bool) -> str:
        return ANY_ROOM if anywhere else self.room_id

    def here_and_now(self) -> dict[str, Any]:
        """The current event's place in the conversation, to keep in a choice's payload for
        `refers_to` and `said_nothing_since`."""
        return {"event": self.incoming.event_id, "ts": self.incoming.origin_ts,
                "at": iso(self.now)}  # fmt: skip

    async def refers_to(self, mark: Any) -> bool:
        """True if the current message answers what the bot said in reply to the event of
        ``mark`` (from `here_and_now`), e.g. "ja" to its offer.

        Sent with the chat's reply function to a message of the bot, it refers to exactly
        that message, whatever else was said since (in a group room that is how people
        answer the bot). Without the reply function, or replying to something that is no
        message of the bot known here, the rule of `said_nothing_since` applies.
        """
        if not isinstance(mark, dict) or "event" not in mark:
            return False
        replied = self.incoming.reply_to
        if replied is not None:
            # The replied-to message was sent to this room, or to the person's direct chat.
            async with self.conn.execute(
                "SELECT dedup_key FROM outbox WHERE target IN (?, ?) AND event_id = ?",
                (self.room_id, self.sender, replied),
            ) as cursor:
                row = await cursor.fetchone()
            if row is not None:
                return str(row[0]).startswith(f"evt:{mark['event']}:")
        return await self.said_nothing_since(mark)

    async def said_nothing_since(self, mark: Any) -> bool:
        """True if nothing else was said in this conversation between the event of ``mark``
        (from `here_and_now`) and the current one: a bare "ja" then answers the bot's reply
        to that event, not something further back.

        "Something else" is a message of the person that the bot took up (also one that
        arrived late with an older time stamp, such as a message decrypted later; chat with
        colleagues in a group room that the bot ignored does not count), or another message
        of the bot to the person: in a direct chat any, in a group room one that mentions
        her or answers a message of hers (answers to colleagues do not count), and anything
        sent to her direct chat.
        """
        if not isinstance(mark, dict) or "event" not in mark or "at" not in mark:
            return False
        mark_event = str(mark["event"])
        async with self.conn.execute(
            "SELECT 1 FROM inbox WHERE room_id = ? AND sender = ? AND kind = 'message'"
            " AND status != 'ignored' AND event_id NOT IN (?, ?) AND origin_ts <= ?"
            " AND (origin_ts >= ? OR rowid > (SELECT rowid FROM inbox WHERE event_id = ?))"
            " LIMIT 1",
            (self.room_id, self.sender, mark_event, self.incoming.event_id,
             self.incoming.origin_ts, int(mark.get("ts") or 0), mark_event),
        ) as cursor:  # fmt: skip
            if await cursor.fetchone() is not None:
                return False
        async with self.conn.execute(
            "SELECT 1 FROM outbox AS o WHERE o.created_at > ?"
            " AND substr(o.dedup_key, 1, ?) != ?"
            " AND ((o.target_kind = 'user' AND o.target = ?)"
            "   OR (o.target_kind = 'room' AND o.target = ? AND (?"
            "     OR EXISTS (SELECT 1 FROM json_each(o.content, '$.mentions') WHERE value = ?)"
            "     OR EXISTS (SELECT 1 FROM inbox AS i WHERE i.room_id = o.target"
            "       AND i.sender = ? AND substr(o.dedup_key, 1, length(i.event_id) + 5)"
            "         = 'evt:' || i.event_id || ':'))))"
            " LIMIT 1",
            (str(mark["at"]), len(mark_event) + 5, f"evt:{mark_event}:", self.sender,
             self.room_id, self.incoming.is_direct, self.sender, self.sender),
        ) as cursor:  # fmt: skip
            return await cursor.fetchone() is None

    async def forget_choice(self, kind: str, *, anywhere: bool = False) -> None:
        await self.conn.execute(
            "DELETE FROM pending_choices WHERE user_id = ? AND room_id = ? AND kind = ?",
            (self.sender, self._choice_room(anywhere), kind),
        )


async def audit(
    conn: aiosqlite.Connection,
    now: datetime,
    actor: str,
    action: str,
    subject: str | None,
    details: dict[str, Any],
) -> None:
    """Record a privileged action: who, when, what."""
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, subject, details) VALUES (?, ?, ?, ?, ?)",
        (iso(now), actor, action, subject, json.dumps(details, ensure_ascii=False)),
    )
