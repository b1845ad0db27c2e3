"""The durable outbox and inbox on a real SQLite file: exactly once, and nothing kept too long."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lotsenbot.core.clock import iso
from lotsenbot.core.inbox import MAX_ATTEMPTS, Inbox
from lotsenbot.core.outbox import Envelope, Outbox, backoff, txn_id_for
from lotsenbot.core.types import Attachment, Incoming, OutMessage
from lotsenbot.storage.db import Database

NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


def envelope(text: str = "Ihre Anfrage #3 wurde übernommen.", **kwargs: object) -> Envelope:
    return Envelope("user", "@mitarbeiterin:stadt.de", OutMessage(text, **kwargs))  # type: ignore[arg-type]


def event(number: int, body: str = "Mein Drucker druckt nicht", **kwargs: object) -> Incoming:
    return Incoming(
        event_id=f"$ereignis{number}",
        room_id="!dm:stadt.de",
        sender="@mitarbeiterin:stadt.de",
        kind="message",
        body=body,
        origin_ts=1_700_000_000_000 + number,
        **kwargs,  # type: ignore[arg-type]
    )


# -- outbox ------------------------------------------------------------------------------------


async def test_enqueue_twice_with_same_key_inserts_once(db: Database) -> None:
    outbox = Outbox(lambda: NOW)
    async with db.transaction() as conn:
        assert await outbox.enqueue(conn, "ticket:3:claimed", envelope()) is True
        assert await outbox.enqueue(conn, "ticket:3:claimed", envelope("anderer Text")) is False
    async with db.transaction() as conn:  # also across transactions (a retried event)
        assert await outbox.enqueue(conn, "ticket:3:claimed", envelope()) is False
        assert await outbox.enqueue(conn, "ticket:3:closed", envelope("geschlossen")) is True
    rows = await db.fetchall("SELECT dedup_key, content, status FROM outbox ORDER BY id")
    assert [r["dedup_key"] for r in rows] == ["ticket:3:claimed", "ticket:3:closed"]
    assert json.loads(rows[0]["content"])["markdown"] == "Ihre Anfrage #3 wurde übernommen."
    assert {r["status"] for r in rows} == {"pending"}


async def test_enqueue_rolls_back_with_its_transaction(db: Database) -> None:
    outbox = Outbox(lambda: NOW)
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await outbox.enqueue(conn, "weg", envelope())
            raise RuntimeError("Zustandsänderung fehlgeschlagen")
    assert await db.fetchall("SELECT id FROM outbox") == []


async def test_enqueued_row_round_trips(db: Database) -> None:
    outbox = Outbox(lambda: NOW)
    later = NOW + timedelta(hours=23)
    message = OutMessage(
        "Erinnerung: **Netzwerktreffen** morgen",
        meta={"de.lotsenbot.meetup": {"id": 5}},
        mentions=("@lotsin-it:stadt.de",),
        reply_to="$vorher",
        attachment=Attachment("treffen.ics", "text/calendar", b"BEGIN:VCALENDAR\r\n"),
    )
    async with db.transaction() as conn:
        await outbox.enqueue(
            conn, "meetup:5:24h", Envelope("room", "!netz:stadt.de", message, "reminder"), later
        )
    row = await db.fetchone("SELECT * FROM outbox WHERE dedup_key = 'meetup:5:24h'")
    assert row is not None
    assert (row["target_kind"], row["target"], row["purpose"]) == ("room", "!netz:stadt.de",
                                                                   "reminder")  # fmt: skip
    assert row["next_attempt_at"] == iso(later) and row["created_at"] == iso(NOW)
    assert row["attempts"] == 0
    attachment = Attachment(row["attachment_name"], row["attachment_mime"], row["attachment"])
    assert OutMessage.from_json(row["content"], attachment) == message


def test_transaction_ids_are_stable_and_distinct() -> None:
    first = txn_id_for("evt:$abc:0")
    assert first == txn_id_for("evt:$abc:0")  # the same after a restart
    assert first != txn_id_for("evt:$abc:1")
    assert first.startswith("lb") and len(first) == 42 and first[2:].isalnum()


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n).total_seconds() for n in (0, 1, 2, 3, 4)] == [1, 1, 2, 4, 8]
    assert backoff(30).total_seconds() == 300
    assert backoff(3, base=0.5, cap=1.5).total_seconds() == 1.5


async def test_wake_and_wait() -> None:
    outbox = Outbox(lambda: NOW)
    outbox.wake()
    await outbox.wait(timeout=5)  # returns at once: woken before
    await outbox.wait(timeout=0.01)  # the flag was cleared, so this one times out quietly


# -- inbox -------------------------------------------------------------------------------------


async def test_accept_is_idempotent(db: Database) -> None:
    inbox = Inbox(db)
    async with db.transaction() as conn:
        fresh = await inbox.accept(conn, [event(1), event(2)], NOW)
    assert [e.event_id for e in fresh] == ["$ereignis1", "$ereignis2"]
    async with db.transaction() as conn:  # the same sync batch again, plus one new event
        fresh = await inbox.accept(conn, [event(2), event(1), event(3)], NOW)
    assert [e.event_id for e in fresh] == ["$ereignis3"]
    count = await db.fetchone("SELECT COUNT(*) AS n FROM inbox")
    assert count is not None and count["n"] == 3


async def test_accept_deduplicates_within_one_batch(db: Database) -> None:
    inbox = Inbox(db)
    async with db.transaction() as conn:
        fresh = await inbox.accept(conn, [event(1), event(1)], NOW)
    assert len(fresh) == 1


async def test_pending_in_origin_order_and_round_trip(db: Database) -> None:
    inbox = Inbox(db)
    events = [event(3, "dritte\nZeile zwei"), event(1, "erste", is_direct=True), event(2)]
    async with db.transaction() as conn:
        await inbox.accept(conn, events, NOW)
    pending = await inbox.pending(NOW)
    assert [item.incoming.event_id for item in pending] == ["$ereignis1", "$ereignis2",
                                                            "$ereignis3"]  # fmt: skip
    assert pending[0].incoming == events[1]
    assert pending[2].incoming.body == "dritte\nZeile zwei"
    assert all(item.attempts == 0 for item in pending)
    assert len(await inbox.pending(NOW, limit=2)) == 2
    assert await inbox.pending(NOW - timedelta(seconds=1)) == []  # not due yet


@pytest.mark.parametrize("status", ["done", "ignored", "failed"])
async def test_finish_blanks_the_payload_of_handled_events(db: Database, status: str) -> None:
    inbox = Inbox(db)
    async with db.transaction() as conn:
        await inbox.accept(conn, [event(1, "Meine Personalnummer ist 4711"), event(2)], NOW)
    later = NOW + timedelta(seconds=2)
    error = "ValueError" if status == "failed" else None
    async with db.transaction() as conn:
        await Inbox.finish(conn, "$ereignis1", status, later, error)
    row = await db.fetchone("SELECT * FROM inbox WHERE event_id = '$ereignis1'")
    assert row is not None
    assert row["payload"] == "{}"
    assert "4711" not in " ".join(str(value) for value in tuple(row))
    assert (row["status"], row["handled_at"], row["error"]) == (status, iso(later), error)
    # The row stays as the record that the event was handled, so a re-sync cannot replay it.
    async with db.transaction() as conn:
        assert await inbox.accept(conn, [event(1, "Meine Personalnummer ist 4711")], NOW) == []
    assert [i.incoming.event_id for i in await inbox.pending(later)] == ["$ereignis2"]
    other = await db.fetchone("SELECT payload FROM inbox WHERE event_id = '$ereignis2'")
    assert other is not None and "Mein Drucker" in other["payload"]


async def test_finish_as_pending_keeps_the_payload(db: Database) -> None:
    inbox = Inbox(db)
    async with db.transaction() as conn:
        await inbox.accept(conn, [event(1)], NOW)
        await Inbox.finish(conn, "$ereignis1", "pending", NOW)
    (item,) = await inbox.pending(NOW)
    assert item.incoming == event(1)


async def test_retry_later_backs_off_then_gives_up(db: Database) -> None:
    inbox = Inbox(db)
    async with db.transaction() as conn:
        await inbox.accept(conn, [event(1)], NOW)
    assert await inbox.retry_later("$ereignis1", 0, NOW, "database is locked") is True
    row = await db.fetchone("SELECT * FROM inbox WHERE event_id = '$ereignis1'")
    assert row is not None
    assert (row["status"], row["attempts"], row["error"]) == ("pending", 1, "database is locked")
    assert await inbox.pending(NOW) == []  # waits for its backoff
    (item,) = await inbox.pending(NOW + timedelta(seconds=1))
    assert item.attempts == 1
    for attempts in range(1, MAX_ATTEMPTS - 1):
        assert await inbox.retry_later("$ereignis1", attempts, NOW, "x" * 900) is True
    long_error = await db.fetchone("SELECT length(error) AS n FROM inbox")
    assert long_error is not None and long_error["n"] == 500  # errors are cut, not stored whole
    assert await inbox.retry_later("$ereignis1", MAX_ATTEMPTS - 1, NOW, "immer noch") is False
    row = await db.fetchone(
        "SELECT status, attempts, payload FROM inbox WHERE event_id = '$ereignis1'"
    )
    assert row is not None and (row["status"], row["attempts"]) == ("failed", MAX_ATTEMPTS)
    assert row["payload"] == "{}"  # given up: the text goes, as for a handled event
    assert await inbox.pending(NOW + timedelta(days=1)) == []
