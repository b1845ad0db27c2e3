"""The tickets store: the claim race, history, escalation bookkeeping and who may see what."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from lotsenbot.core.roles import Person
from lotsenbot.core.types import Role
from lotsenbot.storage.db import Database
from lotsenbot.storage.migrate import MIGRATIONS_DIR, migrate
from lotsenbot.tickets import store

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
REQUESTER = "@anna:stadt.de"
PILOT_A = "@lotsin:stadt.de"
PILOT_B = "@lotse:stadt.de"


async def new_ticket(
    db: Database,
    department: str | None = "it",
    assignee: str | None = None,
    requester: str = REQUESTER,
) -> int:
    async with db.transaction() as conn:
        ticket_id = await store.create_ticket(
            conn,
            requester=requester,
            room_id="!dm:stadt.de",
            body="Drucker\nzweite Zeile",
            source="command",
            now=NOW,
            answer_due_at=NOW + timedelta(days=2),
        )
        if department is not None:
            await store.place(
                conn,
                ticket_id,
                department=department,
                assignee=assignee,
                deputy_for=None,
                now=NOW,
                claim_due_at=NOW + timedelta(hours=4),
            )
    return ticket_id


async def test_new_ticket_keeps_text_and_starts_in_triage(db: Database) -> None:
    ticket_id = await new_ticket(db, department=None)
    ticket = await store.get_ticket(db.conn, ticket_id)
    assert ticket is not None
    assert ticket.body == "Drucker\nzweite Zeile"
    assert (ticket.status, ticket.department, ticket.assignee) == ("triage", None, None)
    assert ticket.answer_due_at == NOW + timedelta(days=2)
    assert ticket.claim_due_at is None


async def test_place_sets_status_from_assignee(db: Database) -> None:
    queued = await get(db, await new_ticket(db, assignee=None))
    assigned = await get(db, await new_ticket(db, assignee=PILOT_A))
    assert (queued.status, queued.assignee) == ("open", None)
    assert (assigned.status, assigned.assignee) == ("assigned", PILOT_A)


async def get(db: Database, ticket_id: int) -> store.Ticket:
    ticket = await store.get_ticket(db.conn, ticket_id)
    assert ticket is not None
    return ticket


async def test_claim_race_exactly_one_wins(db: Database) -> None:
    """Two conditional updates on the same ticket: the second sees no row to change."""
    ticket_id = await new_ticket(db, assignee=PILOT_A)
    async with db.transaction() as conn:
        first = await store.claim(conn, ticket_id, PILOT_B, NOW)
        second = await store.claim(conn, ticket_id, PILOT_A, NOW)
    assert (first, second) == (True, False)
    ticket = await get(db, ticket_id)
    assert (ticket.status, ticket.assignee, ticket.claimed_at) == ("claimed", PILOT_B, NOW)


async def test_claim_race_across_transactions(db: Database) -> None:
    """Two handlers in separate transactions, as the per-room lanes run them."""
    import asyncio

    ticket_id = await new_ticket(db, assignee=None)

    async def attempt(pilot: str) -> bool:
        async with db.transaction() as conn:
            ticket = await store.get_ticket(conn, ticket_id)
            assert ticket is not None
            await asyncio.sleep(0)  # let the other task queue up on the write lock
            return await store.claim(conn, ticket_id, pilot, NOW)

    results = await asyncio.gather(attempt(PILOT_A), attempt(PILOT_B))
    assert sorted(results) == [False, True]
    winner = PILOT_A if results[0] else PILOT_B
    assert (await get(db, ticket_id)).assignee == winner


async def test_claim_of_closed_or_triage_ticket_fails(db: Database) -> None:
    triage = await new_ticket(db, department=None)
    closed = await new_ticket(db, assignee=PILOT_A)
    async with db.transaction() as conn:
        assert await store.close(conn, closed, "withdrawn", NOW)
        assert not await store.claim(conn, triage, PILOT_A, NOW)
        assert not await store.claim(conn, closed, PILOT_A, NOW)


async def test_claiming_someone_elses_deputy_ticket_drops_the_deputy_mark(db: Database) -> None:
    async with db.transaction() as conn:
        ticket_id = await store.create_ticket(
            conn,
            requester=REQUESTER,
            room_id="!r:stadt.de",
            body="x",
            source="command",
            now=NOW,
            answer_due_at=None,
        )
        await store.place(
            conn,
            ticket_id,
            department="it",
            assignee=PILOT_B,
            deputy_for=PILOT_A,
            now=NOW,
            claim_due_at=None,
        )
    assert (await get(db, ticket_id)).deputy_for == PILOT_A
    async with db.transaction() as conn:
        assert await store.claim(conn, ticket_id, PILOT_B, NOW)
    assert (await get(db, ticket_id)).deputy_for == PILOT_A  # the deputy claimed: still a deputy
    other = await new_ticket(db)
    async with db.transaction() as conn:
        await store.place(
            conn,
            other,
            department="it",
            assignee=PILOT_B,
            deputy_for=PILOT_A,
            now=NOW,
            claim_due_at=None,
        )
        assert await store.claim(conn, other, "@dritte:stadt.de", NOW)
    assert (await get(db, other)).deputy_for is None


async def test_close_only_once(db: Database) -> None:
    ticket_id = await new_ticket(db, assignee=PILOT_A)
    async with db.transaction() as conn:
        assert await store.close(conn, ticket_id, "resolved", NOW)
        assert not await store.close(conn, ticket_id, "resolved", NOW)
        assert not await store.close(conn, ticket_id, "withdrawn", NOW)
    ticket = await get(db, ticket_id)
    assert (ticket.status, ticket.resolved_at) == ("resolved", NOW)


async def test_reopen_only_within_the_window(db: Database) -> None:
    ticket_id = await new_ticket(db, assignee=PILOT_A)
    async with db.transaction() as conn:
        await store.claim(conn, ticket_id, PILOT_A, NOW)
        await store.close(conn, ticket_id, "resolved", NOW)
        later = NOW + timedelta(days=15)
        assert not await store.reopen(conn, ticket_id, later, later - timedelta(days=14), None)
        soon = NOW + timedelta(days=3)
        assert await store.reopen(conn, ticket_id, soon, soon - timedelta(days=14), soon)
        assert not await store.reopen(conn, ticket_id, soon, soon - timedelta(days=14), soon)
    ticket = await get(db, ticket_id)
    assert (ticket.status, ticket.assignee, ticket.resolved_at) == ("claimed", PILOT_A, None)
    assert ticket.escalation_round == 1


async def test_history_in_order_and_notes_only_for_the_team(db: Database) -> None:
    ticket_id = await new_ticket(db, assignee=PILOT_A)
    async with db.transaction() as conn:
        await store.add_event(conn, ticket_id, NOW, REQUESTER, "created")
        await store.add_event(conn, ticket_id, NOW, PILOT_A, "note", "intern", internal=True)
        await store.add_event(
            conn, ticket_id, NOW, PILOT_A, "reply", "Antwort\nZeile 2", details={"x": "ü"}
        )
    team = await store.history(db.conn, ticket_id, include_internal=True)
    requester = await store.history(db.conn, ticket_id, include_internal=False)
    assert [e.kind for e in team] == ["created", "note", "reply"]
    assert [e.kind for e in requester] == ["created", "reply"]
    assert team[2].body == "Antwort\nZeile 2" and team[2].details == {"x": "ü"}
    assert team[1].internal and not team[2].internal


async def test_history_is_deleted_with_its_ticket(db: Database) -> None:
    ticket_id = await new_ticket(db)
    async with db.transaction() as conn:
        await store.add_event(conn, ticket_id, NOW, REQUESTER, "created")
        await conn.execute("DELETE FROM tickets WHERE id = ?", (ticket_id,))
    assert await store.history(db.conn, ticket_id, include_internal=True) == []


def person(user_id: str, *roles: Role, departments: tuple[str, ...] = ()) -> Person:
    return Person(user_id, frozenset({Role.STAFF, *roles}), departments)


async def test_visibility_rules(db: Database) -> None:
    ticket = await get(db, await new_ticket(db, assignee=PILOT_A))
    assert store.visibility(ticket, person(REQUESTER)) == "requester"
    assert store.visibility(ticket, person(PILOT_A, Role.PILOT, departments=("it",))) == "team"
    assert store.visibility(ticket, person(PILOT_B, Role.PILOT, departments=("it",))) == "team"
    assert store.visibility(ticket, person("@koord:stadt.de", Role.COORDINATOR)) == "team"
    # A pilot of another department, and any other colleague, see nothing.
    assert (
        store.visibility(ticket, person("@hr:stadt.de", Role.PILOT, departments=("personal",)))
        is None
    )
    assert store.visibility(ticket, person("@fremd:stadt.de")) is None
    # A deputy from another department sees the ticket assigned to them.
    async with db.transaction() as conn:
        await store.place(
            conn,
            ticket.id,
            department="it",
            assignee="@hr:stadt.de",
            deputy_for=PILOT_A,
            now=NOW,
            claim_due_at=None,
        )
    ticket = await get(db, ticket.id)
    assert (
        store.visibility(ticket, person("@hr:stadt.de", Role.PILOT, departments=("personal",)))
        == "team"
    )
    # A triage ticket: coordinators and the requester only.
    triage = await get(db, await new_ticket(db, department=None))
    assert store.visibility(triage, person(PILOT_A, Role.PILOT, departments=("it",))) is None
    assert store.visibility(triage, person("@koord:stadt.de", Role.COORDINATOR)) == "team"


async def test_due_escalations_and_marking_once(db: Database) -> None:
    waiting = await new_ticket(db, assignee=PILOT_A)  # claim due at NOW + 4h
    claimed = await new_ticket(db, assignee=PILOT_B)
    async with db.transaction() as conn:
        await store.claim(conn, claimed, PILOT_B, NOW, NOW + timedelta(days=2))
    assert (await get(db, waiting)).answer_due_at is None  # starts with the claim
    assert await store.due_escalations(db.conn, NOW + timedelta(hours=3)) == []
    later = NOW + timedelta(hours=5)
    assert await store.due_escalations(db.conn, later) == [(waiting, "claim")]
    async with db.transaction() as conn:
        assert await store.mark_escalated(conn, waiting, "claim", later)
        assert not await store.mark_escalated(conn, waiting, "claim", later)
    assert (await get(db, waiting)).status == "escalated"
    assert await store.due_escalations(db.conn, later) == []
    much_later = NOW + timedelta(days=3)
    assert await store.due_escalations(db.conn, much_later) == [(claimed, "answer")]
    async with db.transaction() as conn:
        await store.mark_answered(conn, claimed, much_later)
        assert not await store.mark_escalated(conn, claimed, "answer", much_later)
    assert await store.due_escalations(db.conn, much_later) == []


async def test_requester_follow_up_restarts_the_answer_deadline(db: Database) -> None:
    ticket_id = await new_ticket(db, assignee=PILOT_A)
    async with db.transaction() as conn:
        await store.claim(conn, ticket_id, PILOT_A, NOW)
        await store.mark_answered(conn, ticket_id, NOW)
        due = NOW + timedelta(days=1)
        await store.await_answer(conn, ticket_id, NOW, due)
    ticket = await get(db, ticket_id)
    assert (ticket.status, ticket.answer_due_at, ticket.escalation_round) == ("claimed", due, 1)


async def test_open_counts_ignore_closed_tickets(db: Database) -> None:
    await new_ticket(db, assignee=PILOT_A)
    await new_ticket(db, assignee=PILOT_A)
    done = await new_ticket(db, assignee=PILOT_B)
    async with db.transaction() as conn:
        await store.close(conn, done, "resolved", NOW)
    assert await store.open_counts(db.conn) == {PILOT_A: 2}


async def test_absences_rotation_and_own_department(db: Database) -> None:
    async with db.transaction() as conn:
        await store.set_absence(conn, PILOT_A, date(2026, 12, 24), PILOT_B, NOW)
        await store.set_absence(conn, PILOT_A, date(2026, 12, 31), None, NOW)
        await store.set_last_assigned(conn, "it", PILOT_A, NOW)
        await store.set_last_assigned(conn, "it", PILOT_B, NOW)
        await store.set_user_department(conn, REQUESTER, "buergeramt", NOW)
    absences = await store.absences(db.conn)
    assert absences[PILOT_A].until == date(2026, 12, 31) and absences[PILOT_A].deputy is None
    assert await store.last_assigned(db.conn, "it") == PILOT_B
    assert await store.last_assigned(db.conn, "personal") is None
    assert await store.user_department(db.conn, REQUESTER) == "buergeramt"
    async with db.transaction() as conn:
        assert await store.clear_absence(conn, PILOT_A)
        assert not await store.clear_absence(conn, PILOT_A)


async def test_queue_views(db: Database) -> None:
    it_ticket = await new_ticket(db, assignee=PILOT_A)
    hr_ticket = await new_ticket(db, department="personal", assignee="@hr:stadt.de")
    triage = await new_ticket(db, department=None)
    deputy_ticket = await new_ticket(db, department="personal", assignee=PILOT_B)
    async with db.transaction() as conn:
        done = await store.create_ticket(
            conn,
            requester=REQUESTER,
            room_id="!r:stadt.de",
            body="x",
            source="command",
            now=NOW,
            answer_due_at=None,
        )
        await store.close(conn, done, "withdrawn", NOW)
    everyone = [t.id for t in await store.queue(db.conn, departments=None)]
    assert everyone[0] == triage and sorted(everyone) == sorted(
        [it_ticket, hr_ticket, triage, deputy_ticket]
    )
    mine = [t.id for t in await store.queue(db.conn, departments=["it"], assignee=PILOT_B)]
    assert sorted(mine) == sorted([it_ticket, deputy_ticket])
    assert await store.queue(db.conn, departments=[], assignee="@niemand:stadt.de") == []
    assert [t.id for t in await store.tickets_of(db.conn, REQUESTER)][-1] == done


async def deliver(db: Database, key: str, event_id: str, content: str) -> None:
    """An outbox row, then marked as sent the way the transport's sender does."""
    await db.execute(
        "INSERT INTO outbox (dedup_key, target_kind, target, content, next_attempt_at,"
        " created_at) VALUES (?, 'user', ?, ?, ?, ?)",
        (key, PILOT_A, content, NOW.isoformat(), NOW.isoformat()),
    )
    await db.execute(
        "UPDATE outbox SET status = 'sent', event_id = ?, sent_at = ? WHERE dedup_key = ?",
        (event_id, NOW.isoformat(), key),
    )


def about(ticket_id: int | str, *, replyable: bool = True) -> str:
    meta: dict[str, Any] = {"id": ticket_id, "status": "assigned", "event": "assigned"}
    if replyable:
        meta["replyable"] = True
    return json.dumps({"markdown": "Neue Anfrage", "meta": {"de.lotsenbot.ticket": meta}})


async def test_delivered_messages_about_a_ticket_are_found_by_their_event_id(
    db: Database,
) -> None:
    ticket_id = await new_ticket(db, assignee=PILOT_A)
    await deliver(db, "a", "$notiz", about(ticket_id))
    await deliver(db, "b", "$faq", json.dumps({"markdown": "x", "meta": {"de.lotsenbot.faq": {}}}))
    await deliver(db, "c", "$kaputt", "kein JSON")  # the sender's update must not fail
    await deliver(db, "d", "$fremd", about(999))  # no such ticket
    # A confirmation or coordinators' notice invites no reply: not kept.
    await deliver(db, "e", "$bestaetigung", about(ticket_id, replyable=False))
    found = {e: await store.ticket_for_message(db.conn, e)
             for e in ("$notiz", "$faq", "$kaputt", "$fremd", "$bestaetigung", "$nie")}  # fmt: skip
    assert found == {"$notiz": ticket_id, "$faq": None, "$kaputt": None, "$fremd": None,
                     "$bestaetigung": None, "$nie": None}  # fmt: skip
    sent = await db.fetchall("SELECT status FROM outbox ORDER BY id")
    assert [row["status"] for row in sent] == ["sent"] * 5


async def test_messages_delivered_before_the_mapping_existed_are_not_taken_over(
    tmp_path: Path,
) -> None:
    """Messages sent before migration 0011 carry no "replyable" mark, so nothing older is
    recorded (a reply to them is handled as before), and the migration fails on no row."""
    earlier = tmp_path / "bis-0010"
    earlier.mkdir()
    for migration in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if migration.name < "0011":
            shutil.copy(migration, earlier / migration.name)
    database = Database(tmp_path / "alt.db")
    await database.open()
    try:
        await migrate(database, earlier)
        ticket_id = await new_ticket(database, assignee=PILOT_A)
        await deliver(database, "a", "$vorher", about(ticket_id, replyable=False))
        await deliver(database, "b", "$kaputt", "kein JSON")
        assert (await migrate(database))[:1] == [11]
        assert await database.fetchall("SELECT event_id FROM ticket_messages") == []
        await deliver(database, "c", "$nachher", about(ticket_id))
        assert await store.ticket_for_message(database.conn, "$nachher") == ticket_id
    finally:
        await database.close()
