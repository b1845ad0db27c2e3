"""Which direct chat the sender uses when the person has left or declined one.

The transport is a stand-in that answers the questions the sender asks (is the person still
in the room, did they decline, is there another chat with them); the real answers come from
nio and Synapse and are covered by `tests/unit/test_matrix_new_rooms.py` and the integration
test `test_a_person_who_left_the_direct_chat_gets_the_next_copy_in_a_new_one`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nio import MatrixRoom, RoomSendError, RoomSendResponse

from lotsenbot.core.clock import iso
from lotsenbot.core.outbox import Envelope, Outbox, txn_id_for
from lotsenbot.core.types import OutMessage
from lotsenbot.matrix.sender import Sender
from lotsenbot.matrix.transport import HistoryUnavailable, RoomCreationFailed
from lotsenbot.storage.db import Database

NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
BOT = "@lotsenbot:stadt.de"
PILOT = "@lotsin:stadt.de"
OLD = "!alt:stadt.de"
OTHER = "!eigener:stadt.de"


class FakeClient:
    def __init__(self) -> None:
        self.rooms: dict[str, MatrixRoom] = {}
        self.sent: list[str] = []
        self.bodies: list[str] = []
        self.answers: list[Any] = []  # responses (or exceptions) to give before succeeding

    async def room_send(
        self, room_id: str, event_type: str, content: dict[str, Any], **kwargs: Any
    ) -> Any:
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        self.sent.append(room_id)
        self.bodies.append(str(content.get("body")))
        return RoomSendResponse(f"$e{len(self.sent)}", room_id)


class FakeTransport:
    """Rooms are ready when known; ``left`` people are gone from their room; rooms created
    while ``decline_next`` is set are declined before any sync shows the invitation."""

    def __init__(self) -> None:
        self.client = FakeClient()
        self.left: set[str] = set()
        self.declined_rooms: set[str] = set()
        self.live: dict[str, str] = {}
        self.created: list[str] = []
        self.abandoned: list[str] = []
        self.decline_next = False
        self.before_leave: dict[tuple[str, str], str] = {}  # (room, txn) → event id
        self.history_reads: list[str] = []
        self.history_error: HistoryUnavailable | None = None
        self.create_error: RoomCreationFailed | None = None

    def add_room(self, room_id: str, *members: str) -> None:
        room = self.client.rooms[room_id] = MatrixRoom(room_id, BOT)
        for member in (BOT, *members):
            room.add_member(member, None, None)

    def partner_left(self, room_id: str, user_id: str) -> bool:
        return room_id in self.left or room_id in self.declined_rooms

    def declined(self, room_id: str) -> bool:
        return room_id in self.declined_rooms

    async def confirm_declined(self, room_id: str) -> bool:
        return room_id in self.declined_rooms

    def room_ready(self, room_id: str) -> bool:
        return room_id in self.client.rooms and room_id not in self.declined_rooms

    async def wait_for_room(self, room_id: str, timeout: float) -> bool:
        return self.room_ready(room_id)

    async def create_direct_room(self, user_id: str) -> str:
        if self.create_error is not None:
            raise self.create_error
        room_id = f"!neu{len(self.created) + 1}:stadt.de"
        self.created.append(room_id)
        if self.decline_next:
            self.declined_rooms.add(room_id)  # nio never shows the person in it
        else:
            self.add_room(room_id, user_id)
        return room_id

    async def sent_while_present(self, room_id: str, user_id: str, txn_id: str) -> str | None:
        self.history_reads.append(room_id)
        if self.history_error is not None:
            raise self.history_error
        return self.before_leave.get((room_id, txn_id))

    def live_direct_room(self, user_id: str) -> str | None:
        return self.live.get(user_id)

    async def abandon_direct(self, room_id: str, user_id: str) -> None:
        self.abandoned.append(room_id)
        self.declined_rooms.discard(room_id)

    def forget_direct(self, room_id: str) -> None:
        pass


async def setup(db: Database, mapped: str | None = OLD) -> tuple[Sender, FakeTransport]:
    transport = FakeTransport()
    outbox = Outbox(lambda: NOW)
    async with db.transaction() as conn:
        await outbox.enqueue(
            conn, "ticket:7:new", Envelope("user", PILOT, OutMessage("Neue Anfrage #7"))
        )
        if mapped is not None:
            await conn.execute(
                "INSERT INTO dm_rooms (user_id, room_id, created_at) VALUES (?, ?, ?)",
                (PILOT, mapped, iso(NOW)),
            )
    return Sender(db, outbox, transport, lambda: NOW), transport  # type: ignore[arg-type]


async def state(db: Database) -> tuple[str, int, str | None, str | None]:
    row = await db.fetchone("SELECT status, attempts, room_id, last_error FROM outbox")
    mapping = await db.fetchone("SELECT room_id FROM dm_rooms WHERE user_id = ?", (PILOT,))
    assert row is not None
    return (
        row["status"],
        row["attempts"],
        row["room_id"] or (mapping["room_id"] if mapping else None),
        row["last_error"],
    )


async def test_a_chat_the_person_left_is_replaced_by_a_new_one(db: Database) -> None:
    sender, transport = await setup(db)
    transport.add_room(OLD)  # only the bot is left in it
    transport.left.add(OLD)
    assert await sender.drain_once() == 1
    assert transport.abandoned == [OLD] and transport.created == ["!neu1:stadt.de"]
    assert transport.client.sent == ["!neu1:stadt.de"]
    assert transport.history_reads == [OLD]  # asked first whether it had gone out there
    assert (await state(db))[:3] == ("sent", 0, "!neu1:stadt.de")
    mapping = await db.fetchone("SELECT room_id FROM dm_rooms WHERE user_id = ?", (PILOT,))
    assert mapping is not None and mapping["room_id"] == "!neu1:stadt.de"


async def test_a_message_that_reached_the_person_before_they_left_is_not_sent_again(
    db: Database,
) -> None:
    """Sent, but the "sent" mark was lost (a crash, a locked database), and then the person
    left the chat: they have the message already, so it is settled as sent there."""
    sender, transport = await setup(db)
    transport.add_room(OLD)
    transport.left.add(OLD)
    transport.before_leave[(OLD, txn_id_for("ticket:7:new"))] = "$frueher"
    assert await sender.drain_once() == 1
    assert transport.client.sent == [] and transport.created == []
    assert (await state(db))[:3] == ("sent", 0, OLD)
    row = await db.fetchone("SELECT event_id FROM outbox")
    assert row is not None and row["event_id"] == "$frueher"
    # The chat is still the person's mapping until the next message finds it left.
    assert transport.abandoned == []


async def test_an_unreadable_history_delays_the_message_instead_of_a_new_chat(
    db: Database,
) -> None:
    sender, transport = await setup(db)
    transport.add_room(OLD)
    transport.left.add(OLD)
    transport.history_error = HistoryUnavailable("M_LIMIT_EXCEEDED", "Too Many Requests", 3000)
    assert await sender.drain_once() == 0
    assert transport.created == [] and transport.abandoned == [] and transport.client.sent == []
    assert (await state(db))[:3] == ("pending", 0, OLD)  # a pause, not an attempt
    transport.history_error = HistoryUnavailable("M_UNKNOWN", "Internal server error")
    sender._paused_until = None  # the pause is over, the row due again
    for attempt in (1, 2, 3):
        await db.execute("UPDATE outbox SET next_attempt_at = ?", (iso(NOW),))
        assert await sender.drain_once() == 0
        assert (await state(db))[:2] == ("pending", attempt) and transport.created == []
        row = await db.fetchone("SELECT last_error FROM outbox")
        assert row is not None and not row["last_error"].startswith("unreachable")
    # Still unreadable after three tries: sent anew rather than never.
    await db.execute("UPDATE outbox SET next_attempt_at = ?", (iso(NOW),))
    assert await sender.drain_once() == 1
    assert transport.created == ["!neu1:stadt.de"] and (await state(db))[0] == "sent"


async def test_a_chat_the_person_opened_meanwhile_is_used_instead(db: Database) -> None:
    sender, transport = await setup(db)
    transport.add_room(OLD)
    transport.left.add(OLD)
    transport.add_room(OTHER, PILOT)
    transport.live[PILOT] = OTHER
    assert await sender.drain_once() == 1
    assert transport.created == [] and transport.client.sent == [OTHER]
    mapping = await db.fetchone("SELECT room_id FROM dm_rooms WHERE user_id = ?", (PILOT,))
    assert mapping is not None and mapping["room_id"] == OTHER


async def test_a_declined_invitation_fails_the_message_at_once(db: Database) -> None:
    sender, transport = await setup(db, mapped=None)
    transport.decline_next = True
    assert await sender.drain_once() == 1
    status, attempts, _, error = await state(db)
    assert (status, attempts) == ("failed", 0)
    assert error is not None and "abgelehnt" in error
    assert transport.abandoned == ["!neu1:stadt.de"] and transport.client.sent == []
    assert await db.fetchone("SELECT 1 FROM dm_rooms WHERE user_id = ?", (PILOT,)) is None


async def test_a_retry_does_not_invite_again_after_a_decline(db: Database) -> None:
    """The message a declined chat was opened for, tried again (e.g. after its wait timed
    out): it fails, instead of opening one new chat per attempt."""
    sender, transport = await setup(db, mapped="!neu9:stadt.de")
    transport.declined_rooms.add("!neu9:stadt.de")
    assert await sender.drain_once() == 1
    assert transport.created == [] and (await state(db))[0] == "failed"


async def test_a_declined_invitation_goes_to_the_chat_the_person_is_in(db: Database) -> None:
    sender, transport = await setup(db, mapped=None)
    transport.decline_next = True
    transport.add_room(OTHER, PILOT)
    transport.live[PILOT] = OTHER
    assert await sender.drain_once() == 0  # rescheduled, not counted as an attempt
    assert (await state(db))[:3] == ("pending", 0, OTHER)
    assert await sender.drain_once() == 1
    assert transport.client.sent == [OTHER] and (await state(db))[0] == "sent"


async def test_a_row_waiting_for_a_retry_holds_back_the_later_rows_of_its_target(
    db: Database,
) -> None:
    sender, transport = await setup(db)
    transport.add_room(OLD, PILOT)
    async with db.transaction() as conn:
        await sender.outbox.enqueue(
            conn, "ticket:7:claimed", Envelope("user", PILOT, OutMessage("#7 übernommen"))
        )
    transport.client.answers = [ConnectionError("Verbindung weg")]
    assert await sender.drain_once() == 0
    assert await sender.drain_once() == 0  # the second row waits for the first
    assert transport.client.sent == []
    # The loop's next wake-up is the first row's retry (after 1 s), not the second row's
    # past due time, which would poll the database many times a second.
    assert await sender._seconds_to_next_due() >= 0.9
    later = NOW + timedelta(minutes=5)
    sender.now = lambda: later
    assert await sender.drain_once() == 2
    assert transport.client.bodies == ["Neue Anfrage #7", "#7 übernommen"]


async def test_a_server_error_on_creating_the_chat_is_retried_not_final(db: Database) -> None:
    sender, transport = await setup(db, mapped=None)
    transport.create_error = RoomCreationFailed("M_UNKNOWN", "Internal server error")
    for attempt in (1, 2):
        assert await sender.drain_once() == 0
        assert (await state(db))[:2] == ("pending", attempt)
        await db.execute("UPDATE outbox SET next_attempt_at = ?", (iso(NOW),))
    transport.create_error = RoomCreationFailed("M_FORBIDDEN", "not allowed to invite")
    assert await sender.drain_once() == 1
    assert (await state(db))[0] == "failed"
    # Each failed try may leave an empty room behind (created, invitation failed): three
    # tries at most, then the message fails.
    await db.execute("UPDATE outbox SET status = 'pending', attempts = 2, next_attempt_at = ?",
                     (iso(NOW),))  # fmt: skip
    transport.create_error = RoomCreationFailed("M_UNKNOWN", "Internal server error")
    assert await sender.drain_once() == 1
    assert (await state(db))[0] == "failed"


async def test_a_message_too_large_fails_without_a_new_chat(db: Database) -> None:
    sender, transport = await setup(db)
    transport.add_room(OLD, PILOT)
    transport.client.answers = [RoomSendError("event too large", "M_TOO_LARGE")]
    assert await sender.drain_once() == 1
    assert (await state(db))[0] == "failed"
    assert transport.created == []  # the chat was fine; another one would not help
    mapping = await db.fetchone("SELECT room_id FROM dm_rooms WHERE user_id = ?", (PILOT,))
    assert mapping is not None and mapping["room_id"] == OLD
