"""The outbox takes back the bot's own messages: a row with ``redacts`` is a redaction.

When someone deletes a question, the FAQ enqueues the redaction of the bot's replies to it
in the same transaction as dropping the question (integration test
``test_a_deleted_question_takes_the_bots_copy_and_the_open_question_with_it``). Here: what
the sender does with such a row, whatever became of the message it names.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from nio import RoomRedactError, RoomRedactResponse

from lotsenbot.core.outbox import Envelope, Outbox, txn_id_for
from lotsenbot.core.types import OutMessage
from lotsenbot.matrix.sender import Sender
from lotsenbot.storage.db import Database
from tests.unit.test_sender_direct_chats import NOW, FakeClient, FakeTransport

ROOM = "!team:stadt.de"
ANNA = "@anna:stadt.de"


class RedactingClient(FakeClient):
    def __init__(self) -> None:
        super().__init__()
        self.redactions: list[tuple[str, str, str | None, str | None]] = []
        self.redact_answers: list[Any] = []

    async def room_redact(self, room_id: str, event_id: str, reason: str | None = None,
                          tx_id: str | None = None) -> Any:  # fmt: skip
        if self.redact_answers:
            return self.redact_answers.pop(0)
        self.redactions.append((room_id, event_id, reason, tx_id))
        return RoomRedactResponse(f"$r{len(self.redactions)}", room_id)


async def setup(db: Database) -> tuple[Sender, FakeTransport, Outbox]:
    transport = FakeTransport()
    transport.client = RedactingClient()
    transport.add_room(ROOM, ANNA)
    outbox = Outbox(lambda: NOW)
    return Sender(db, outbox, transport, lambda: NOW), transport, outbox  # type: ignore[arg-type]


async def enqueue(db: Database, outbox: Outbox, key: str, message: OutMessage,
                  delay: timedelta | None = None) -> None:  # fmt: skip
    async with db.transaction() as conn:
        await outbox.enqueue(conn, key, Envelope("room", ROOM, message),
                             not_before=NOW + delay if delay else None)  # fmt: skip


async def row(db: Database, key: str) -> dict[str, Any]:
    found = await db.fetchone("SELECT * FROM outbox WHERE dedup_key = ?", (key,))
    assert found is not None
    return dict(found)


QUESTION = "!anfrage Unsere Kollegin Sabine Wolf hat Krebs"


async def test_a_sent_reply_is_redacted_and_its_text_goes(db: Database) -> None:
    sender, transport, outbox = await setup(db)
    await enqueue(db, outbox, "evt:$frage:0", OutMessage(f"Angebot: `{QUESTION}`"))
    assert await sender.drain_once() == 1
    reply = await row(db, "evt:$frage:0")
    await enqueue(
        db, outbox, "evt:$loeschung:0", OutMessage("Frage gelöscht", redacts="evt:$frage:0")
    )
    assert await sender.drain_once() == 1
    client = transport.client
    assert isinstance(client, RedactingClient)
    assert client.redactions == [
        (ROOM, reply["event_id"], "Frage gelöscht", txn_id_for("evt:$loeschung:0"))
    ]
    redaction = await row(db, "evt:$loeschung:0")
    assert (redaction["status"], redaction["event_id"]) == ("sent", "$r1")
    reply = await row(db, "evt:$frage:0")
    assert reply["status"] == "sent" and "Sabine" not in reply["content"]


async def test_a_reply_not_sent_yet_is_not_sent_at_all(db: Database) -> None:
    """Waiting (here: not due yet) when the question was deleted: withdrawn, never sent."""
    sender, transport, outbox = await setup(db)
    await enqueue(db, outbox, "evt:$frage:0", OutMessage(QUESTION), delay=timedelta(minutes=5))
    await enqueue(db, outbox, "evt:$loeschung:0", OutMessage("weg", redacts="evt:$frage:0"))
    assert await sender.drain_once() == 1
    client = transport.client
    assert isinstance(client, RedactingClient)
    assert client.redactions == [] and client.sent == []
    reply = await row(db, "evt:$frage:0")
    assert reply["status"] == "failed" and reply["last_error"].startswith("withdrawn")
    assert "Sabine" not in reply["content"]
    redaction = await row(db, "evt:$loeschung:0")
    assert (redaction["status"], redaction["event_id"]) == ("sent", None)


async def test_a_failed_redaction_is_tried_again_with_the_same_transaction_id(
    db: Database,
) -> None:
    """A passing error: tried again later; the transaction id, derived from the row's key,
    lets the homeserver recognise a resend after a crash (redacted once, not twice)."""
    sender, transport, outbox = await setup(db)
    await enqueue(db, outbox, "evt:$frage:0", OutMessage(QUESTION))
    await sender.drain_once()
    await enqueue(db, outbox, "evt:$loeschung:0", OutMessage("weg", redacts="evt:$frage:0"))
    client = transport.client
    assert isinstance(client, RedactingClient)
    client.redact_answers.append(RoomRedactError("Internal", "M_UNKNOWN"))
    assert await sender.drain_once() == 0
    pending = await row(db, "evt:$loeschung:0")
    assert (pending["status"], pending["attempts"]) == ("pending", 1)
    await db.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ?",
                     (pending["created_at"], pending["id"]))  # fmt: skip
    assert await sender.drain_once() == 1
    assert [r[3] for r in client.redactions] == [txn_id_for("evt:$loeschung:0")]
