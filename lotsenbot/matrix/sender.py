"""Delivers the outbox: the one sending path for every bot message.

Each row is sent with a transaction id derived from its dedup key, so a resend after a
crash (sent, but not yet marked sent) is recognised by the homeserver and not shown twice.
Rate limits (M_LIMIT_EXCEEDED / 429) pause the sender for ``retry_after_ms``; transient
errors back off per row; permanent errors are recorded. Rows for different targets are
sent concurrently, rows for the same target strictly in order.

Two kinds of trouble pause the sender without ending it: an unreachable homeserver (rows
are due again as soon as a sync succeeds, see :meth:`Sender.homeserver_reachable`) and a
locked or failing database (a row sent but not yet marked sent is sent again later with
the same transaction id, which the homeserver deduplicates).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import ClientConnectionError
from nio import RoomRedactResponse, RoomSendError, RoomSendResponse, UploadResponse

from lotsenbot.core.clock import iso
from lotsenbot.core.outbox import (
    WITHDRAWN,
    WITHDRAWN_CONTENT,
    Outbox,
    backoff,
    is_withdrawn,
    txn_id_for,
)
from lotsenbot.core.types import Attachment, OutMessage
from lotsenbot.matrix.format import message_content, poll_content, poll_end_content
from lotsenbot.matrix.transport import HistoryUnavailable, MatrixTransport, RoomCreationFailed
from lotsenbot.storage.db import Database

log = logging.getLogger(__name__)

# M_UNKNOWN is not here: Synapse answers every internal error (HTTP 500) with it.
PERMANENT = {"M_FORBIDDEN", "M_NOT_FOUND", "M_BAD_JSON", "M_NOT_JSON",
             "M_TOO_LARGE", "M_INVALID_PARAM"}  # fmt: skip
ROOM_GONE = {"M_FORBIDDEN", "M_NOT_FOUND"}  # the direct chat itself is the problem
# Synapse may create the room and then fail the invitation (a remote server down) with a
# 500: every retry leaves an empty room behind, so creating is tried only this often.
CREATE_ATTEMPTS = 3
# Bind the current time once: no earlier row of the same target waits for a retry.
_NOT_HELD_BACK = (
    "NOT EXISTS (SELECT 1 FROM outbox AS e WHERE e.status = 'pending'"
    " AND e.target_kind = o.target_kind AND e.target = o.target AND e.id < o.id"
    " AND e.next_attempt_at > ? AND e.last_error IS NOT NULL)"
)
HISTORY_ATTEMPTS = 3  # tries to read a left chat's history before sending anew anyway
MAX_ATTEMPTS = 12
NEW_ROOM_WAIT_SECONDS = 10.0  # how long a new direct chat may take to show up in the sync
CONCURRENCY = 16  # different targets in parallel; one target always in order
WITHDRAWN_ERROR = "withdrawn: the message it answered was deleted"
UNREACHABLE = "unreachable: "  # prefix of last_error for rows that failed on the connection


def canonical(value: Any) -> Any:
    """Event content as Matrix accepts it: canonical JSON has no floats.

    Synapse refuses a whole event with M_BAD_JSON for one float anywhere in it (a score in
    the metadata, say), which would turn an answer into a permanent failure. Whole floats
    become integers, others a decimal string; features should prefer integers.
    """
    if isinstance(value, float):
        return int(value) if value.is_integer() else f"{value:.4g}"
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    return value


class RoomNotReady(Exception):
    """A room the bot created is not yet fully known to nio; the send is retried later."""

    def __init__(self, room_id: str) -> None:
        super().__init__(f"Raum {room_id} ist noch nicht vollständig bekannt")


class InviteDeclined(Exception):
    """The person declined the invitation to the direct chat the bot opened for this
    message. Settled as failed at once, unless the person is in another direct chat with the
    bot (often why they declined); the next message opens a new chat, so a decline stops
    this message, not every later one."""

    def __init__(self, room_id: str) -> None:
        super().__init__(f"Einladung in den Direktchat {room_id} abgelehnt")
        self.room_id = room_id


class PartnerLeft(Exception):
    """The person left the direct chat between choosing it and sending: tried again, and
    the next attempt picks or opens another chat."""

    def __init__(self, room_id: str) -> None:
        super().__init__(f"Direktchat {room_id} gerade verlassen")


class AlreadyDelivered(Exception):
    """The message reached the person in a direct chat they have since left; only its
    "sent" mark was lost. Settled as sent there instead of going out again in a new chat."""

    def __init__(self, room_id: str, event_id: str) -> None:
        super().__init__(f"bereits in {room_id} zugestellt ({event_id})")
        self.room_id = room_id
        self.event_id = event_id


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:.1f}s")
        self.retry_after = retry_after


class PermanentFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Sender:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        transport: MatrixTransport,
        now: Callable[[], datetime],
        on_sent: Callable[[str, float], None] | None = None,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.transport = transport
        self.now = now
        self.on_sent = on_sent
        self._paused_until: datetime | None = None
        self._stopping = asyncio.Event()
        self._loop_over = asyncio.Event()  # run() ends after its current pass
        self._unreachable = False  # a send failed because the homeserver could not be reached
        self._reachable_again = False
        self._db_failures = 0
        # Whether a waiting row may have gone out already (see _may_have_been_sent): rows
        # this sender began to send and whose outcome is not recorded, and the time before
        # which another run of the bot may have sent rows without recording it (a crash).
        self._in_flight: set[int] = set()
        self._started = iso(now())

    def stop(self) -> None:
        self._stopping.set()
        self._loop_over.set()
        self.outbox.wake()

    def end_loop(self) -> None:
        """Let :meth:`run` return after the pass it is in, without cutting sends short, so
        that a last :meth:`drain_once` at shutdown is the only one (two passes at once could
        both take the same row, and open two direct chats for it)."""
        self._loop_over.set()
        self.outbox.wake()

    def homeserver_reachable(self) -> None:
        """Called after every successful sync: rows that failed only because the homeserver
        was down are due again now, instead of waiting out a backoff of up to minutes."""
        if self._unreachable:
            self._unreachable = False
            self._reachable_again = True
            self.outbox.wake()

    async def run(self) -> None:
        while not self._loop_over.is_set():
            try:
                if self._reachable_again:
                    self._reachable_again = False
                    await self.db.execute(
                        "UPDATE outbox SET next_attempt_at = ? WHERE status = 'pending'"
                        " AND substr(last_error, 1, ?) = ?",
                        (iso(self.now()), len(UNREACHABLE), UNREACHABLE),
                    )
                delivered = await self.drain_once()
                if not delivered:
                    await self.outbox.wait(timeout=await self._seconds_to_next_due())
                self._db_failures = 0
            except sqlite3.Error as exc:
                # A sent row whose "sent" mark failed stays pending and goes out again with
                # the same transaction id: the homeserver answers with the first event id.
                self._db_failures += 1
                delay = backoff(self._db_failures, base=0.5, cap=30).total_seconds()
                log.warning("Postausgang: Datenbank nicht verfügbar (%s), neuer Versuch in %.1f s",
                            exc, delay)  # fmt: skip
                await self._pause(delay)
            except Exception:
                # A bug must not end delivery for every message: logged, then tried again
                # after a pause (a row that keeps failing is failed by its own retries).
                self._db_failures += 1
                delay = backoff(self._db_failures, base=0.5, cap=30).total_seconds()
                log.exception("Postausgang: unerwarteter Fehler, neuer Versuch in %.1f s", delay)
                await self._pause(delay)

    async def _seconds_to_next_due(self) -> float:
        # Rows held back wait for their blocker, whose own time counts; counting theirs
        # (already past) would poll the database many times a second until then.
        now = iso(self.now())
        row = await self.db.fetchone(
            f"SELECT MIN(next_attempt_at) AS due FROM outbox AS o WHERE status = 'pending'"
            f" AND {_NOT_HELD_BACK}",
            (now,),
        )
        if row is None or row["due"] is None:
            return 30.0
        due = datetime.fromisoformat(row["due"].replace("Z", "+00:00"))
        return max(0.05, min(30.0, (due - self.now()).total_seconds()))

    async def drain_once(self) -> int:
        """Send what is due now; return how many rows were settled (sent or failed)."""
        now = self.now()
        if self._paused_until:
            if now < self._paused_until:
                await self._pause((self._paused_until - now).total_seconds())
                return 0
            self._paused_until = None  # the pause ran out while nothing was draining
        # A row waiting for a retry holds back the later rows of its target, so that "new
        # request" never arrives after "request taken over" (as the inbox does for events).
        rows = await self.db.fetchall(
            f"SELECT * FROM outbox AS o WHERE status = 'pending' AND next_attempt_at <= ?"
            f" AND {_NOT_HELD_BACK} ORDER BY id LIMIT 200",
            (iso(now), iso(now)),
        )
        if not rows:
            return 0
        lanes: dict[tuple[str, str], list[Any]] = {}
        for row in rows:
            lanes.setdefault((row["target_kind"], row["target"]), []).append(row)
        semaphore = asyncio.Semaphore(CONCURRENCY)
        settled = 0
        db_error: sqlite3.Error | None = None

        async def lane(items: list[Any]) -> None:
            nonlocal settled, db_error
            async with semaphore:
                for row in items:
                    if self._stopping.is_set() or self._paused_until or db_error:
                        return
                    try:
                        delivered = await self._deliver(row)
                    except sqlite3.Error as exc:  # every lane stops; run() pauses
                        db_error = exc
                        return
                    if delivered:
                        settled += 1
                    else:
                        return  # keep the order within this target

        await asyncio.gather(*(lane(items) for items in lanes.values()))
        if db_error is not None:
            raise db_error
        return settled

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loop_over.wait(), seconds)
        if not self._loop_over.is_set():  # ran out; cut short at shutdown it still holds
            self._paused_until = None

    async def _deliver(self, row: Any) -> bool:
        """Try one row; True when it is settled (sent or permanently failed)."""
        # The pass read its rows at the start; a reply taken back meanwhile (its question
        # deleted, :func:`lotsenbot.core.outbox.withdraw_replies`) must not go out with the
        # text it had then. One small read; the write lock orders it after that transaction.
        current = await self.db.fetchone("SELECT content FROM outbox WHERE id = ?", (row["id"],))
        if current is not None and current["content"] != row["content"]:
            row = {**dict(row), "content": current["content"]}
        if self._never_to_send(row):
            await self._withdraw_unsent(row["id"])
            return True
        self._in_flight.add(row["id"])
        settled = await self._deliver_now(row)
        # Only once the outcome is recorded: a database error above keeps the mark.
        self._in_flight.discard(row["id"])
        return settled

    def _may_have_been_sent(self, row: Any) -> bool:
        """Whether a waiting row may have reached the homeserver with only its "sent" mark
        lost: it was tried before (``attempts``), its sending began in this run without an
        outcome recorded (a locked database), or it is older than this run (a crash)."""
        return (
            row["attempts"] > 0
            or row["id"] in self._in_flight
            or str(row["created_at"]) < self._started
        )

    def _never_to_send(self, row: Any) -> bool:
        """A message taken back before it went out (:func:`lotsenbot.core.outbox.withdraw_replies`)
        and that surely did not go out: it is not sent at all. One that may have gone out
        is sent again as the empty text of :data:`WITHDRAWN_CONTENT` under the same
        transaction id, which tells its event id (the homeserver answers a resend with the
        first event), so that the redaction that follows it can take it back."""
        content = str(row["content"])
        if WITHDRAWN not in content:  # ordinary messages: no parsing here
            return False
        try:
            message = OutMessage.from_json(content)
        except (ValueError, KeyError, TypeError):
            return False  # unreadable: the ordinary path retries it and fails it in the end
        return (
            message.redacts is None and is_withdrawn(message) and not self._may_have_been_sent(row)
        )

    async def _withdraw_unsent(self, row_id: int) -> None:
        await self.db.execute(
            "UPDATE outbox SET status = 'failed', last_error = ?, attachment = NULL"
            " WHERE id = ? AND status = 'pending'",
            (WITHDRAWN_ERROR, row_id),
        )

    async def _deliver_now(self, row: Any) -> bool:
        started = asyncio.get_running_loop().time()
        try:
            room_id = await self._room_for(row)
            event_id = await self._send(row, room_id)
        except AlreadyDelivered as exc:
            room_id, event_id = exc.room_id, exc.event_id
            log.info("#%s war schon vor dem Verlassen von %s zugestellt", row["id"], room_id)
        except RateLimited as exc:
            self._paused_until = self.now() + timedelta(seconds=exc.retry_after)
            await self._reschedule(row, self._paused_until, f"rate limited {exc.retry_after:.1f}s",
                                   count=False)  # fmt: skip
            log.info("Ratenbegrenzung: Pause für %.1f s", exc.retry_after)
            return False
        except InviteDeclined as exc:
            user_id = str(row["target"])
            await self._forget_dm(user_id, exc.room_id)
            await self.transport.abandon_direct(exc.room_id, user_id)
            other = self.transport.live_direct_room(user_id)
            if other is not None:
                await self._remember_dm(user_id, other)
                await self._reschedule(row, self.now(), str(exc), count=False)
                return False
            await self._fail(row, str(exc))
            return True
        except RoomCreationFailed as exc:
            if exc.code not in PERMANENT and row["attempts"] + 1 < CREATE_ATTEMPTS:
                return await self._retry(row, exc)  # a server hiccup (500, 502 …)
            await self._fail(row, str(exc))
            return True
        except PermanentFailure as exc:
            if row["target_kind"] == "user" and row["attempts"] < 1 and exc.code in ROOM_GONE:
                # The direct chat may be gone (left, forgotten): forget it and try a new one.
                await self.db.execute("DELETE FROM dm_rooms WHERE user_id = ?", (row["target"],))
                await self._reschedule(row, self.now(), str(exc), reset_room=True)
                return False
            await self._fail(row, str(exc))  # too large, malformed: no other chat helps
            return True
        except sqlite3.Error:
            raise  # the database, not the homeserver: handled by run()
        except Exception as exc:
            return await self._retry(row, exc)
        await self.db.execute(
            "UPDATE outbox SET status = 'sent', event_id = ?, sent_at = ?, room_id = ?,"
            " attachment = NULL WHERE id = ?",
            (event_id, iso(self.now()), room_id, row["id"]),
        )
        if self.on_sent:
            self.on_sent(row["purpose"], asyncio.get_running_loop().time() - started)
        return True

    async def _retry(self, row: Any, exc: Exception) -> bool:
        """A passing problem: try again after a backoff, or give up after MAX_ATTEMPTS."""
        attempts = row["attempts"] + 1
        error = f"{type(exc).__name__}: {exc}"
        if attempts >= MAX_ATTEMPTS:
            await self._fail(row, error)
            return True
        if isinstance(exc, ClientConnectionError | TimeoutError | OSError):
            self._unreachable = True
            error = UNREACHABLE + error
        await self._reschedule(row, self.now() + backoff(attempts), error)
        log.warning("Senden von #%s fehlgeschlagen (%s), neuer Versuch", row["id"], exc)
        return False

    async def _room_for(self, row: Any) -> str:
        if row["target_kind"] == "room":
            return str(row["target"])
        user_id = str(row["target"])
        found = await self.db.fetchone("SELECT room_id FROM dm_rooms WHERE user_id = ?", (user_id,))
        if found is not None:
            old = str(found["room_id"])
            room = self.transport.client.rooms.get(old)
            if self.transport.declined(old):
                raise InviteDeclined(old)  # a retry of the message the chat was opened for
            if self.transport.partner_left(old, user_id):
                # A message into a chat the person has left reaches nobody, yet would count
                # as sent: use a chat they are in, or open a new one.
                # It may have gone out before, with only its "sent" mark lost (a crash, a
                # locked database): then the person has it already. Rare, so always asked.
                try:
                    event_id = await self.transport.sent_while_present(
                        old, user_id, _final_txn(row)
                    )
                except HistoryUnavailable as exc:
                    if exc.code == "M_LIMIT_EXCEEDED":
                        raise RateLimited((exc.retry_after_ms or 1000) / 1000) from exc
                    if row["attempts"] < HISTORY_ATTEMPTS:
                        raise  # retried with backoff
                    # The question stays open: better the message twice than never.
                    log.warning("Verlauf von %s nicht lesbar (%s); neuer Direktchat", old, exc)
                    event_id = None
                if event_id is not None:
                    raise AlreadyDelivered(old, event_id)
                log.info("%s hat den Direktchat %s verlassen; neuer Direktchat", user_id, old)
                await self._forget_dm(user_id, old)
                await self.transport.abandon_direct(old, user_id)
                other = self.transport.live_direct_room(user_id)
                if other is not None:
                    await self._remember_dm(user_id, other)
                    return other
            elif room is None or room.member_count <= 2:
                return old
            else:
                # Others joined what was a direct chat: private messages must not go there.
                log.warning("Direktchat %s hat jetzt mehr Mitglieder; lege einen neuen an", old)
                await self._forget_dm(user_id, old)
                self.transport.forget_direct(old)
        try:
            room_id = await self.transport.create_direct_room(user_id)
        except RoomCreationFailed as exc:
            # Synapse counts room creation against the message rate limit: a pause, not a
            # permanent failure.
            if exc.code == "M_LIMIT_EXCEEDED":
                raise RateLimited((exc.retry_after_ms or 1000) / 1000) from exc
            raise
        await self._remember_dm(user_id, room_id)
        # Send once the sync has shown the room complete (instead of failing, backing off and
        # counting an attempt); if it takes longer, _send refuses and the row is retried.
        await self.transport.wait_for_room(room_id, NEW_ROOM_WAIT_SECONDS)
        return room_id

    async def _forget_dm(self, user_id: str, room_id: str) -> None:
        """Drop the mapping to this room only: meanwhile the person may have opened another
        direct chat with the bot, which accepting their invitation has recorded already."""
        await self.db.execute(
            "DELETE FROM dm_rooms WHERE user_id = ? AND room_id = ?", (user_id, room_id)
        )

    async def _remember_dm(self, user_id: str, room_id: str) -> None:
        await self.db.execute(
            "INSERT INTO dm_rooms (user_id, room_id, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id",
            (user_id, room_id, iso(self.now())),
        )

    async def _send(self, row: Any, room_id: str) -> str | None:
        to_user = row["target_kind"] == "user"
        if to_user and self.transport.declined(room_id):
            raise InviteDeclined(room_id)
        if not self.transport.room_ready(room_id):
            # A direct chat the bot created that nio knows only in part: sending now could
            # put a plain message into an encrypted room (see MatrixTransport.room_ready).
            # Or the invitee declined before a sync showed the invitation: the room state
            # says so.
            if to_user and await self.transport.confirm_declined(room_id):
                raise InviteDeclined(room_id)
            raise RoomNotReady(room_id)
        if to_user and self.transport.partner_left(room_id, row["target"]):
            raise PartnerLeft(room_id)
        attachment = None
        if row["attachment"] is not None:
            attachment = Attachment(row["attachment_name"], row["attachment_mime"],
                                    bytes(row["attachment"]))  # fmt: skip
        message = OutMessage.from_json(row["content"], attachment)
        txn = txn_id_for(row["dedup_key"])
        if message.redacts is not None:
            return await self._redact(message.redacts, message.markdown, txn)
        # The transaction id of the last event sent for the row is _final_txn's.
        if message.poll is not None:
            return await self._room_send(room_id, "org.matrix.msc3381.poll.start",
                                         poll_content(message), txn)  # fmt: skip
        if message.ends_poll is not None:
            return await self._room_send(room_id, "org.matrix.msc3381.poll.end",
                                         poll_end_content(message), txn)  # fmt: skip
        content = message_content(message)
        if attachment is not None:
            # The text goes first; the file follows with its own, derived transaction id.
            await self._room_send(room_id, "m.room.message", content, txn)
            file_content = await self._upload(room_id, attachment)
            file_content.update({k: v for k, v in message.meta.items()})
            return await self._room_send(room_id, "m.room.message", file_content, txn + "f")
        return await self._room_send(room_id, "m.room.message", content, txn)

    async def _redact(self, key: str, reason: str, txn: str) -> str | None:
        """Take back the bot's own message of the outbox row ``key``; the redaction's event
        id, or None when there is nothing to take back.

        The row's text has normally gone already, when the redaction was enqueued
        (:func:`lotsenbot.core.outbox.withdraw_replies`); it goes here at the latest. Its
        event id and room stay, which is all a retry needs. The message comes before the
        redaction in the same room, so the sender has normally settled it already (one
        room's rows go in order, and one waiting for a retry holds the redaction back). One
        still waiting (not due yet) that surely did not go out is not sent at all; one that
        may have gone out is sent again, empty, with its own transaction id to learn its
        event id, and then redacted. A message that failed needs nothing. Only a text
        message is taken back whole; of a message with a file, the file event (the one the
        row records)."""
        target = await self.db.fetchone(
            "SELECT id, status, event_id, room_id, target, attempts, created_at, dedup_key,"
            " attachment, content FROM outbox WHERE dedup_key = ?",
            (key,),
        )
        if target is None:
            return None
        await self.db.execute(
            "UPDATE outbox SET content = ?, attachment = NULL WHERE id = ?",
            (WITHDRAWN_CONTENT, target["id"]),
        )
        room_id, event_id = target["room_id"], target["event_id"]
        if target["status"] == "pending":
            if not self._may_have_been_sent(target):
                await self._withdraw_unsent(target["id"])
                return None
            room_id = str(target["target"])
            blank = message_content(OutMessage.from_json(WITHDRAWN_CONTENT))
            self._in_flight.add(target["id"])
            event_id = await self._room_send(room_id, "m.room.message", blank, _final_txn(target))
            await self.db.execute(
                "UPDATE outbox SET status = 'sent', event_id = ?, sent_at = ?, room_id = ?"
                " WHERE id = ?",
                (event_id, iso(self.now()), room_id, target["id"]),
            )
            self._in_flight.discard(target["id"])
        elif target["status"] != "sent":
            return None
        if not event_id or not room_id:
            return None
        response = await self.transport.client.room_redact(
            str(room_id), str(event_id), reason=reason or None, tx_id=txn
        )
        if isinstance(response, RoomRedactResponse):
            return str(response.event_id)
        self._raise_for(response)
        raise AssertionError("unreachable")

    async def _upload(self, room_id: str, attachment: Attachment) -> dict[str, Any]:
        client = self.transport.client
        room = client.rooms.get(room_id)
        encrypt = bool(room and room.encrypted)
        response, keys = await client.upload(
            io.BytesIO(attachment.data),
            content_type=attachment.mimetype,
            filename=attachment.filename,
            encrypt=encrypt,
            filesize=len(attachment.data),
        )
        if not isinstance(response, UploadResponse):
            self._raise_for(response)
        content: dict[str, Any] = {
            "msgtype": "m.file",
            "body": attachment.filename,
            "filename": attachment.filename,
            "info": {"mimetype": attachment.mimetype, "size": len(attachment.data)},
            "m.mentions": {},
        }
        if encrypt and keys is not None:
            content["file"] = {**keys, "url": response.content_uri}
        else:
            content["url"] = response.content_uri
        return content

    async def _room_send(self, room_id: str, event_type: str, content: dict[str, Any],
                         txn: str) -> str:  # fmt: skip
        response = await self.transport.client.room_send(
            room_id, event_type, canonical(content), tx_id=txn, ignore_unverified_devices=True
        )
        if isinstance(response, RoomSendResponse):
            return str(response.event_id)
        self._raise_for(response)
        raise AssertionError("unreachable")

    @staticmethod
    def _raise_for(response: Any) -> None:
        code = getattr(response, "status_code", None)
        if code in ("M_LIMIT_EXCEEDED", 429):
            raise RateLimited((getattr(response, "retry_after_ms", None) or 1000) / 1000)
        if code in PERMANENT:
            raise PermanentFailure(str(code), str(getattr(response, "message", "")))
        if isinstance(response, RoomSendError) or code:
            raise ConnectionError(f"{code}: {getattr(response, 'message', '')}")
        raise ConnectionError(str(response))

    async def _reschedule(self, row: Any, when: datetime, error: str, *, count: bool = True,
                          reset_room: bool = False) -> None:  # fmt: skip
        await self.db.execute(
            "UPDATE outbox SET attempts = attempts + ?, next_attempt_at = ?, last_error = ?"
            + (", room_id = NULL" if reset_room else "")
            + " WHERE id = ?",
            (1 if count else 0, iso(when), error[:500], row["id"]),
        )

    async def _fail(self, row: Any, error: str) -> None:
        log.error("Nachricht #%s an %s endgültig fehlgeschlagen: %s", row["id"], row["target"],
                  error)  # fmt: skip
        await self.db.execute(
            "UPDATE outbox SET status = 'failed', last_error = ?, attachment = NULL WHERE id = ?",
            (error[:500], row["id"]),
        )


def _final_txn(row: Any) -> str:
    """Transaction id of the last event :meth:`Sender._send` sends for ``row``, the one whose
    event id marks it sent: a poll is one event; a file follows its text under ``txn + "f"``."""
    txn = txn_id_for(row["dedup_key"])
    if row["attachment"] is None or OutMessage.from_json(row["content"], None).poll is not None:
        return txn
    return txn + "f"
