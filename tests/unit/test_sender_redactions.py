"""The outbox takes back the bot's own messages: a row with ``redacts`` is a redaction.

When someone deletes a question, the FAQ enqueues the redaction of the bot's replies to it
in the same transaction as dropping the question (integration test
``test_a_deleted_question_takes_the_bots_copy_and_the_open_question_with_it``). Here: what
the sender does with such a row, whatever became of the message it names.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from nio import RoomRedactError, RoomRedactResponse, RoomSendError, RoomSendResponse

from lotsenbot.core.outbox import WITHDRAWN_CONTENT, Envelope, Outbox, txn_id_for, withdraw_replies
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
        self.txns: list[str | None] = []  # of every message sent

    async def room_send(
        self, room_id: str, event_type: str, content: dict[str, Any], **kwargs: Any
    ) -> Any:
        answer = await super().room_send(room_id, event_type, content, **kwargs)
        if isinstance(answer, RoomSendResponse):
            self.txns.append(kwargs.get("tx_id"))
        return answer

    async def room_redact(self, room_id: str, event_id: str, reason: str | None = None,
                          tx_id: str | None = None) -> Any:  # fmt: skip
        if self.redact_answers:
            return self.redact_answers.pop(0)
        self.redactions.append((room_id, event_id, reason, tx_id))
        return RoomRedactResponse(f"$r{len(self.redactions)}", room_id)


async def setup(
    db: Database, *, started: timedelta = timedelta(0)
) -> tuple[Sender, FakeTransport, Outbox]:
    """``started``: how long after the rows were enqueued this sender began (a restart)."""
    transport = FakeTransport()
    transport.client = RedactingClient()
    transport.add_room(ROOM, ANNA)
    outbox = Outbox(lambda: NOW)
    sender = Sender(db, outbox, transport, lambda: NOW + started)  # type: ignore[arg-type]
    return sender, transport, outbox


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


async def take_back(db: Database, outbox: Outbox, question: str = "$frage") -> list[str]:
    """What the FAQ does when the question is deleted, in the dispatcher's transaction."""
    async with db.transaction() as conn:
        keys = await withdraw_replies(conn, question, ROOM)
        for n, key in enumerate(keys):
            redaction = Envelope("room", ROOM, OutMessage("weg", redacts=key))
            await outbox.enqueue(conn, f"evt:$loeschung:{n}", redaction)
    return keys


async def test_the_text_goes_when_the_question_is_deleted_whatever_the_row_status(
    db: Database,
) -> None:
    """Sent, waiting or failed: no copy of the question waits for the sender. A failed
    message needs no redaction; one taken back before is not taken back again."""
    _, _, outbox = await setup(db)
    await enqueue(db, outbox, "evt:$frage:0", OutMessage(QUESTION))
    await enqueue(db, outbox, "evt:$frage:1", OutMessage(QUESTION), delay=timedelta(minutes=5))
    await enqueue(db, outbox, "evt:$frage:2", OutMessage(QUESTION))
    await db.execute("UPDATE outbox SET status = 'failed' WHERE dedup_key = 'evt:$frage:2'")
    assert await take_back(db, outbox) == ["evt:$frage:0", "evt:$frage:1"]
    rows = await db.fetchall(
        "SELECT content, status FROM outbox WHERE dedup_key LIKE 'evt:$frage:%'"
    )
    assert [tuple(r) for r in rows] == [
        (WITHDRAWN_CONTENT, "pending"), (WITHDRAWN_CONTENT, "pending"),
        (WITHDRAWN_CONTENT, "failed"),
    ]  # fmt: skip
    async with db.transaction() as conn:
        assert await withdraw_replies(conn, "$frage", ROOM) == []


async def test_a_withdrawn_reply_never_tried_is_not_sent(db: Database) -> None:
    sender, transport, outbox = await setup(db)
    await enqueue(db, outbox, "evt:$frage:0", OutMessage(QUESTION))
    await take_back(db, outbox)
    assert await sender.drain_once() == 2
    client = transport.client
    assert isinstance(client, RedactingClient)
    assert client.sent == [] and client.redactions == []
    reply = await row(db, "evt:$frage:0")
    assert reply["status"] == "failed" and reply["last_error"].startswith("withdrawn")


async def test_a_withdrawn_reply_that_failed_to_send_is_resent_empty_and_redacted(
    db: Database,
) -> None:
    """It may have reached the homeserver (a time-out after it arrived): sent again with its
    own transaction id, it tells its event id, empty, and is then redacted."""
    sender, transport, outbox = await setup(db)
    client = transport.client
    assert isinstance(client, RedactingClient)
    await enqueue(db, outbox, "evt:$frage:0", OutMessage(QUESTION))
    client.answers.append(RoomSendError("Internal", "M_UNKNOWN"))
    assert await sender.drain_once() == 0
    assert (await row(db, "evt:$frage:0"))["attempts"] == 1
    await take_back(db, outbox)
    await db.execute("UPDATE outbox SET next_attempt_at = created_at")
    assert await sender.drain_once() == 2
    assert client.txns == [txn_id_for("evt:$frage:0")] and client.bodies == [""]
    reply = await row(db, "evt:$frage:0")
    assert (reply["status"], reply["content"]) == ("sent", WITHDRAWN_CONTENT)
    assert client.redactions == [(ROOM, reply["event_id"], "weg", txn_id_for("evt:$loeschung:0"))]


async def test_a_waiting_reply_from_before_a_restart_may_have_gone_out(db: Database) -> None:
    """Sent, then the crash before its "sent" mark: after the restart it is still waiting,
    with no attempt counted. Taken back, it is not assumed unsent: resent empty with the
    same transaction id (the homeserver answers with the first event), then redacted."""
    await enqueue(db, outbox=Outbox(lambda: NOW), key="evt:$frage:0",
                  message=OutMessage(QUESTION), delay=timedelta(minutes=5))  # fmt: skip
    sender, transport, outbox = await setup(db, started=timedelta(seconds=1))
    await take_back(db, outbox)
    assert await sender.drain_once() == 1  # the redaction; the reply is not due
    client = transport.client
    assert isinstance(client, RedactingClient)
    assert client.txns == [txn_id_for("evt:$frage:0")] and client.bodies == [""]
    reply = await row(db, "evt:$frage:0")
    assert reply["status"] == "sent"
    assert [r[1] for r in client.redactions] == [reply["event_id"]]


async def test_an_unreadable_row_does_not_stop_the_other_messages(db: Database) -> None:
    """The check for withdrawn rows must not turn one unreadable row (a hand-made fix, a
    partial write) into an exception that ends delivery: it fails by its own retries, as it
    did before, and the other messages go out."""
    sender, transport, outbox = await setup(db)
    await enqueue(db, outbox, "evt:$kaputt:0", OutMessage("wird gleich unlesbar"))
    await db.execute(
        "UPDATE outbox SET content = '{\"text\": 1}' WHERE dedup_key = 'evt:$kaputt:0'"
    )
    other = "!anderer:stadt.de"
    transport.add_room(other, ANNA)
    async with db.transaction() as conn:
        await outbox.enqueue(conn, "evt:$gut:0", Envelope("room", other, OutMessage("Antwort")))
    await sender.drain_once()  # raised KeyError, which ended the sender task
    assert (await row(db, "evt:$gut:0"))["status"] == "sent"
    broken = await row(db, "evt:$kaputt:0")
    assert broken["status"] == "pending" and broken["attempts"] == 1


async def test_a_reply_taken_back_while_the_pass_runs_is_not_sent_with_its_text(
    db: Database,
) -> None:
    """The pass reads its rows first; the question is deleted while an earlier message of
    the room is on its way. The reply must not go out with the text read before."""
    sender, transport, outbox = await setup(db)
    await enqueue(db, outbox, "evt:$vorher:0", OutMessage("Etwas anderes"))
    await enqueue(db, outbox, "evt:$frage:0", OutMessage(f"Angebot: `{QUESTION}`"))
    client = transport.client
    plain_send = client.room_send

    async def send_then_delete(room_id: str, event_type: str, content: dict[str, Any],
                               **kwargs: Any) -> Any:  # fmt: skip
        answer = await plain_send(room_id, event_type, content, **kwargs)
        if "Etwas anderes" in str(content):
            async with db.transaction() as conn:
                await withdraw_replies(conn, "$frage", ROOM)
        return answer

    client.room_send = send_then_delete  # type: ignore[method-assign]
    await sender.drain_once()
    assert client.bodies[0] == "Etwas anderes"
    assert not any("Sabine" in body for body in client.bodies), client.bodies
    assert (await row(db, "evt:$frage:0"))["status"] == "failed"  # never sent at all
