"""SQL of the requests feature: tickets, their history, absences and the rotation.

Every function takes the caller's connection, because handlers and jobs run inside one
write transaction that also holds the outgoing messages; a function here never commits.
State changes that can race (claiming, resolving, escalating) are conditional ``UPDATE``
statements whose row count says whether this caller won — the database is the arbiter,
not a check-then-act in Python.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import aiosqlite

from lotsenbot.core.clock import iso, parse_iso
from lotsenbot.core.personal_data import ERASED
from lotsenbot.core.roles import Person
from lotsenbot.tickets.assignment import Absence

__all__ = [
    "ACTIVE",
    "CLAIMABLE",
    "CLOSED",
    "Ticket",
    "TicketEvent",
    "Visibility",
    "visibility",
]

Status = Literal[
    "open", "assigned", "claimed", "answered", "resolved", "withdrawn", "escalated", "triage"
]
CLOSED: tuple[str, ...] = ("resolved", "withdrawn")
ACTIVE: tuple[str, ...] = ("open", "assigned", "claimed", "answered", "escalated", "triage")
# Any pilot of the department may claim these; "assigned" is a suggestion, not a lock, so
# the first pilot who actually starts wins.
CLAIMABLE: tuple[str, ...] = ("open", "assigned", "escalated")
# Tickets that count towards a pilot's load when choosing the next assignee.
_LOAD: tuple[str, ...] = ("assigned", "claimed", "answered", "escalated")
# A ticket waits for a pilot's answer in these states.
_AWAITING_ANSWER: tuple[str, ...] = ("open", "assigned", "claimed", "escalated")

EscalationKind = Literal["claim", "answer"]
Visibility = Literal["requester", "team"]


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


def _when(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None


@dataclass(frozen=True)
class Ticket:
    id: int
    requester: str
    room_id: str
    body: str
    source: str
    department: str | None
    assignee: str | None
    deputy_for: str | None
    status: str
    route_reason: str | None
    created_at: datetime
    updated_at: datetime
    claimed_at: datetime | None
    answered_at: datetime | None
    resolved_at: datetime | None
    claim_due_at: datetime | None
    answer_due_at: datetime | None
    claim_escalated_at: datetime | None
    answer_escalated_at: datetime | None
    escalation_round: int

    @property
    def is_closed(self) -> bool:
        return self.status in CLOSED

    @classmethod
    def from_row(cls, row: Any) -> Ticket:
        return cls(
            id=int(row["id"]),
            requester=row["requester"],
            room_id=row["room_id"],
            body=row["body"],
            source=row["source"],
            department=row["department"],
            assignee=row["assignee"],
            deputy_for=row["deputy_for"],
            status=row["status"],
            route_reason=row["route_reason"],
            created_at=parse_iso(row["created_at"]),
            updated_at=parse_iso(row["updated_at"]),
            claimed_at=_when(row["claimed_at"]),
            answered_at=_when(row["answered_at"]),
            resolved_at=_when(row["resolved_at"]),
            claim_due_at=_when(row["claim_due_at"]),
            answer_due_at=_when(row["answer_due_at"]),
            claim_escalated_at=_when(row["claim_escalated_at"]),
            answer_escalated_at=_when(row["answer_escalated_at"]),
            escalation_round=int(row["escalation_round"]),
        )


@dataclass(frozen=True)
class TicketEvent:
    id: int
    ticket_id: int
    at: datetime
    actor: str
    kind: str
    body: str | None
    internal: bool
    details: dict[str, Any]


def visibility(ticket: Ticket, person: Person) -> Visibility | None:
    """Who may see a ticket, and from which side.

    The requester sees their own ticket (without internal notes). The *team* — pilots of
    the ticket's department, its current assignee (a deputy may come from another
    department) and coordinators — sees everything. Everyone else sees nothing: tickets
    often name colleagues and their problems. A requester who is also on the team gets
    the team view, since they could read it from the team side anyway.
    """
    if (
        person.is_coordinator
        or (ticket.department is not None and ticket.department in person.departments)
        or (ticket.assignee is not None and ticket.assignee == person.user_id)
    ):
        return "team"
    if ticket.requester == person.user_id:
        return "requester"
    return None


# -- tickets ------------------------------------------------------------------------------


async def create_ticket(
    conn: aiosqlite.Connection,
    *,
    requester: str,
    room_id: str,
    body: str,
    source: str,
    now: datetime,
    answer_due_at: datetime | None,
) -> int:
    """Insert a new ticket in triage; :func:`place` decides where it goes next."""
    cursor = await conn.execute(
        "INSERT INTO tickets (requester, room_id, body, source, status, created_at, updated_at,"
        " answer_due_at) VALUES (?, ?, ?, ?, 'triage', ?, ?, ?)",
        (
            requester,
            room_id,
            body,
            source,
            iso(now),
            iso(now),
            iso(answer_due_at) if answer_due_at else None,
        ),
    )
    ticket_id = cursor.lastrowid
    await cursor.close()
    assert ticket_id is not None
    return int(ticket_id)


async def ticket_created_by(conn: aiosqlite.Connection, event_id: str, room_id: str) -> int | None:
    """The request that the message ``event_id`` in ``room_id`` opened (``!anfrage …``, or
    "ja" to the FAQ's offer), found by the bot's confirmation of it while the outbox keeps
    that (the dispatcher keys replies "evt:<event id>:<n>"). Only a request made in that
    room: a redaction in one room never concerns another room's requests."""
    async with conn.execute(
        "SELECT t.id FROM outbox AS o JOIN tickets AS t"
        " ON t.id = json_extract(o.content, '$.meta.\"de.lotsenbot.ticket\".id')"
        " WHERE o.dedup_key >= ? AND o.dedup_key < ? AND json_valid(o.content)"
        " AND json_extract(o.content, '$.meta.\"de.lotsenbot.ticket\".event') = 'created'"
        " AND t.room_id = ?",
        (f"evt:{event_id}:", f"evt:{event_id};", room_id),
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else None


async def get_ticket(conn: aiosqlite.Connection, ticket_id: int) -> Ticket | None:
    async with conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)) as cursor:
        row = await cursor.fetchone()
    return Ticket.from_row(row) if row is not None else None


async def place(
    conn: aiosqlite.Connection,
    ticket_id: int,
    *,
    department: str | None,
    assignee: str | None,
    deputy_for: str | None,
    now: datetime,
    claim_due_at: datetime | None,
    route_reason: str | None = None,
    new_round: bool = False,
) -> str:
    """Put a ticket into a department (with or without assignee) or into triage.

    Returns the new status: ``assigned`` with an assignee, ``open`` when it waits in the
    department queue, ``triage`` without department. The claim deadline restarts, because
    the people who should claim it changed; the answer deadline waits for the next claim.
    """
    status = "triage" if department is None else "assigned" if assignee else "open"
    await conn.execute(
        "UPDATE tickets SET department = ?, assignee = ?, deputy_for = ?, status = ?,"
        " route_reason = COALESCE(?, route_reason), updated_at = ?, claimed_at = NULL,"
        " claim_due_at = ?, claim_escalated_at = NULL, answer_due_at = NULL,"
        " answer_escalated_at = NULL,"
        " escalation_round = escalation_round + ? WHERE id = ?",
        (
            department,
            assignee,
            deputy_for,
            status,
            route_reason,
            iso(now),
            iso(claim_due_at) if claim_due_at else None,
            1 if new_round else 0,
            ticket_id,
        ),
    )
    return status


async def claim(
    conn: aiosqlite.Connection,
    ticket_id: int,
    pilot: str,
    now: datetime,
    answer_due_at: datetime | None = None,
) -> bool:
    """Claim a ticket for ``pilot``; False when someone else was faster or it is not claimable.

    One conditional statement: of two pilots claiming at the same moment, exactly one sees
    a changed row. The answer deadline starts here, with the person who will answer.
    """
    cursor = await conn.execute(
        f"UPDATE tickets SET status = 'claimed', assignee = ?, deputy_for = CASE"
        f" WHEN assignee = ? THEN deputy_for ELSE NULL END, claimed_at = ?, updated_at = ?,"
        f" answer_due_at = ?, answer_escalated_at = NULL,"
        # Taken over after an answer escalation: a new round, so that the next one is sent
        # too (its messages are keyed by kind and round).
        f" escalation_round = escalation_round"
        f" + CASE WHEN answer_escalated_at IS NULL THEN 0 ELSE 1 END"
        f" WHERE id = ? AND status IN ({_marks(CLAIMABLE)})",
        (
            pilot,
            pilot,
            iso(now),
            iso(now),
            iso(answer_due_at) if answer_due_at else None,
            ticket_id,
            *CLAIMABLE,
        ),
    )
    won = cursor.rowcount == 1
    await cursor.close()
    return won


async def mark_answered(conn: aiosqlite.Connection, ticket_id: int, now: datetime) -> None:
    """A pilot answered: the requester's wait is over, so is the answer deadline."""
    await conn.execute(
        "UPDATE tickets SET status = 'answered', answered_at = ?, updated_at = ?,"
        " answer_due_at = NULL WHERE id = ?",
        (iso(now), iso(now), ticket_id),
    )


async def await_answer(
    conn: aiosqlite.Connection, ticket_id: int, now: datetime, answer_due_at: datetime | None
) -> None:
    """The requester wrote again after an answer: the ticket waits for the pilot again, or,
    when nobody has taken it (a coordinator asked back), for someone to take it."""
    await conn.execute(
        "UPDATE tickets SET status = CASE WHEN assignee IS NOT NULL THEN 'claimed'"
        " WHEN department IS NULL THEN 'triage' ELSE 'open' END,"
        " updated_at = ?, answer_due_at = ?,"
        " answer_escalated_at = NULL, escalation_round = escalation_round + 1"
        " WHERE id = ? AND status = 'answered'",
        (iso(now), iso(answer_due_at) if answer_due_at else None, ticket_id),
    )


async def touch(conn: aiosqlite.Connection, ticket_id: int, now: datetime) -> None:
    await conn.execute("UPDATE tickets SET updated_at = ? WHERE id = ?", (iso(now), ticket_id))


async def close(
    conn: aiosqlite.Connection,
    ticket_id: int,
    status: Literal["resolved", "withdrawn"],
    now: datetime,
) -> bool:
    """Resolve or withdraw; False when the ticket was already closed (a lost race)."""
    cursor = await conn.execute(
        f"UPDATE tickets SET status = ?, updated_at = ?, closed_at = ?,"
        f" resolved_at = CASE WHEN ? = 'resolved' THEN ? ELSE resolved_at END"
        f" WHERE id = ? AND status NOT IN ({_marks(CLOSED)})",
        (status, iso(now), iso(now), status, iso(now), ticket_id, *CLOSED),
    )
    changed = cursor.rowcount == 1
    await cursor.close()
    return changed


async def reopen(
    conn: aiosqlite.Connection,
    ticket_id: int,
    now: datetime,
    resolved_since: datetime,
    answer_due_at: datetime | None,
) -> bool:
    """Reopen a resolved ticket if it was resolved at or after ``resolved_since``.

    It goes back to its pilot as claimed (they know it already); :func:`place` moves it on
    when there is no pilot to go back to, as when the pilot has had their data erased.
    """
    cursor = await conn.execute(
        "UPDATE tickets SET"
        " status = CASE WHEN assignee IS NULL OR assignee = ? THEN 'open' ELSE 'claimed' END,"
        " assignee = CASE WHEN assignee = ? THEN NULL ELSE assignee END,"
        " deputy_for = CASE WHEN deputy_for = ? THEN NULL ELSE deputy_for END,"
        " updated_at = ?, closed_at = NULL, resolved_at = NULL, answer_due_at = ?,"
        " answer_escalated_at = NULL, escalation_round = escalation_round + 1"
        " WHERE id = ? AND status = 'resolved' AND resolved_at >= ?",
        (
            ERASED, ERASED, ERASED, iso(now), iso(answer_due_at) if answer_due_at else None,
            ticket_id, iso(resolved_since),
        ),
    )  # fmt: skip
    changed = cursor.rowcount == 1
    await cursor.close()
    return changed


async def tickets_of(conn: aiosqlite.Connection, requester: str, limit: int = 20) -> list[Ticket]:
    """A requester's tickets, active ones first, newest first within each group."""
    async with conn.execute(
        f"SELECT * FROM tickets WHERE requester = ?"
        f" ORDER BY status IN ({_marks(CLOSED)}), id DESC LIMIT ?",
        (requester, *CLOSED, limit),
    ) as cursor:
        return [Ticket.from_row(row) for row in await cursor.fetchall()]


async def queue(
    conn: aiosqlite.Connection,
    *,
    departments: Iterable[str] | None,
    assignee: str | None = None,
    limit: int = 50,
) -> list[Ticket]:
    """Active tickets of some departments (plus those assigned to ``assignee``).

    ``departments=None`` means all tickets, triage included — the coordinators' view.
    Tickets nobody has taken come first, then oldest first, so the list reads as a to-do.
    """
    order = (
        " ORDER BY CASE status WHEN 'triage' THEN 0 WHEN 'escalated' THEN 1 WHEN 'open' THEN 2"
        " WHEN 'assigned' THEN 3 ELSE 4 END, id LIMIT ?"
    )
    active = _marks(ACTIVE)
    if departments is None:
        sql = f"SELECT * FROM tickets WHERE status IN ({active})" + order
        params: tuple[Any, ...] = (*ACTIVE, limit)
    else:
        wanted = list(departments)
        sql = (
            f"SELECT * FROM tickets WHERE status IN ({active}) AND status != 'triage'"
            f" AND (department IN ({_marks(wanted) or 'NULL'}) OR assignee = ?)" + order
        )
        params = (*ACTIVE, *wanted, assignee, limit)
    async with conn.execute(sql, params) as cursor:
        return [Ticket.from_row(row) for row in await cursor.fetchall()]


async def open_counts(conn: aiosqlite.Connection) -> dict[str, int]:
    """Open tickets per person, the load that :func:`choose_assignee` balances."""
    async with conn.execute(
        f"SELECT assignee, COUNT(*) AS n FROM tickets WHERE assignee IS NOT NULL"
        f" AND status IN ({_marks(_LOAD)}) GROUP BY assignee",
        _LOAD,
    ) as cursor:
        return {row["assignee"]: int(row["n"]) for row in await cursor.fetchall()}


# -- history ------------------------------------------------------------------------------


async def add_event(
    conn: aiosqlite.Connection,
    ticket_id: int,
    now: datetime,
    actor: str,
    kind: str,
    body: str | None = None,
    *,
    internal: bool = False,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO ticket_events (ticket_id, at, actor, kind, body, internal, details)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            ticket_id,
            iso(now),
            actor,
            kind,
            body,
            int(internal),
            json.dumps(details, ensure_ascii=False) if details else None,
        ),
    )


async def history(
    conn: aiosqlite.Connection, ticket_id: int, *, include_internal: bool
) -> list[TicketEvent]:
    """The ticket's events in order; internal notes only for the team."""
    sql = "SELECT * FROM ticket_events WHERE ticket_id = ?"
    if not include_internal:
        sql += " AND internal = 0"
    async with conn.execute(sql + " ORDER BY id", (ticket_id,)) as cursor:
        rows = await cursor.fetchall()
    return [
        TicketEvent(
            id=int(row["id"]),
            ticket_id=int(row["ticket_id"]),
            at=parse_iso(row["at"]),
            actor=row["actor"],
            kind=row["kind"],
            body=row["body"],
            internal=bool(row["internal"]),
            details=json.loads(row["details"]) if row["details"] else {},
        )
        for row in rows
    ]


# -- the bot's messages about a ticket ------------------------------------------------------


async def ticket_of_notice(
    conn: aiosqlite.Connection, event_id: str, targets: Sequence[str]
) -> int | None:
    """The request a delivered message of the bot names in its metadata, replyable or not,
    while its outbox row exists (it is purged after a while). Only messages sent to one of
    ``targets`` (the chat the reply is in, the person): found through the outbox's index
    by target, and nobody learns about a message of another chat by naming its event id.
    Used only for a team member's reply that :func:`ticket_for_message` does not know."""
    marks = ", ".join("?" for _ in targets)
    async with conn.execute(
        "SELECT json_extract(content, '$.meta.\"de.lotsenbot.ticket\".id') AS ticket_id"
        f" FROM outbox WHERE target IN ({marks}) AND event_id = ? AND json_valid(content)",
        (*targets, event_id),
    ) as cursor:
        row = await cursor.fetchone()
    return int(row["ticket_id"]) if row is not None and row["ticket_id"] is not None else None


async def after_resolution(
    conn: aiosqlite.Connection, ticket_id: int, requester: str
) -> tuple[str | None, bool]:
    """Who resolved the ticket (its latest resolution), and whether ``requester`` has written
    to it since: the requester's first message after a resolution is passed on to who
    resolved it, later ones are not (see the feature)."""
    async with conn.execute(
        "SELECT id, actor FROM ticket_events WHERE ticket_id = ? AND kind = 'resolved'"
        " ORDER BY id DESC LIMIT 1",
        (ticket_id,),
    ) as cursor:
        resolution = await cursor.fetchone()
    if resolution is None:
        return None, False
    async with conn.execute(
        "SELECT 1 FROM ticket_events WHERE ticket_id = ? AND id > ? AND kind = 'reply'"
        " AND actor = ? LIMIT 1",
        (ticket_id, resolution["id"], requester),
    ) as cursor:
        written = await cursor.fetchone() is not None
    return resolution["actor"], written


async def ticket_for_message(conn: aiosqlite.Connection, event_id: str) -> int | None:
    """The ticket a delivered message of the bot is about, or None.

    ``ticket_messages`` is filled by a trigger when the outbox row is marked as sent
    (migration 0011), so this also holds after the outbox row has been purged.
    """
    async with conn.execute(
        "SELECT ticket_id FROM ticket_messages WHERE event_id = ?", (event_id,)
    ) as cursor:
        row = await cursor.fetchone()
    return int(row["ticket_id"]) if row is not None else None


# -- escalation ---------------------------------------------------------------------------


async def due_escalations(
    conn: aiosqlite.Connection, now: datetime
) -> list[tuple[int, EscalationKind]]:
    """Tickets whose claim or answer deadline has passed and was not yet escalated."""
    moment = iso(now)
    async with conn.execute(
        f"SELECT id, 'claim' AS kind FROM tickets WHERE claim_escalated_at IS NULL"
        f" AND claim_due_at IS NOT NULL AND claim_due_at <= ? AND status IN ('open', 'assigned')"
        f" UNION ALL"
        f" SELECT id, 'answer' AS kind FROM tickets WHERE answer_escalated_at IS NULL"
        f" AND answer_due_at IS NOT NULL AND answer_due_at <= ?"
        f" AND status IN ({_marks(_AWAITING_ANSWER)}) ORDER BY id",
        (moment, moment, *_AWAITING_ANSWER),
    ) as cursor:
        return [(int(row["id"]), row["kind"]) for row in await cursor.fetchall()]


async def mark_escalated(
    conn: aiosqlite.Connection, ticket_id: int, kind: EscalationKind, now: datetime
) -> bool:
    """Record an escalation; False if it was recorded already or is no longer due.

    Runs in the transaction that enqueues the escalation messages, so a crash between
    the two cannot lose or repeat them.
    """
    moment = iso(now)
    if kind == "claim":
        sql = (
            "UPDATE tickets SET claim_escalated_at = ?, status = 'escalated', updated_at = ?"
            " WHERE id = ? AND claim_escalated_at IS NULL AND claim_due_at <= ?"
            " AND status IN ('open', 'assigned')"
        )
        params: tuple[Any, ...] = (moment, moment, ticket_id, moment)
    else:
        sql = (
            f"UPDATE tickets SET answer_escalated_at = ?, status = 'escalated', updated_at = ?"
            f" WHERE id = ? AND answer_escalated_at IS NULL AND answer_due_at <= ?"
            f" AND status IN ({_marks(_AWAITING_ANSWER)})"
        )
        params = (moment, moment, ticket_id, moment, *_AWAITING_ANSWER)
    cursor = await conn.execute(sql, params)
    changed = cursor.rowcount == 1
    await cursor.close()
    return changed


# -- absences, rotation, departments of people -------------------------------------------


async def absences(conn: aiosqlite.Connection) -> dict[str, Absence]:
    async with conn.execute("SELECT user_id, until, deputy FROM pilot_absences") as cursor:
        rows = await cursor.fetchall()
    return {
        row["user_id"]: Absence(until=date.fromisoformat(row["until"]), deputy=row["deputy"])
        for row in rows
    }


async def set_absence(
    conn: aiosqlite.Connection, user_id: str, until: date, deputy: str | None, now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO pilot_absences (user_id, until, deputy, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET until = excluded.until, deputy = excluded.deputy,"
        " created_at = excluded.created_at",
        (user_id, until.isoformat(), deputy, iso(now)),
    )


async def clear_absence(conn: aiosqlite.Connection, user_id: str) -> bool:
    cursor = await conn.execute("DELETE FROM pilot_absences WHERE user_id = ?", (user_id,))
    removed = cursor.rowcount > 0
    await cursor.close()
    return removed


async def last_assigned(conn: aiosqlite.Connection, department: str) -> str | None:
    async with conn.execute(
        "SELECT last_assigned FROM ticket_rotation WHERE department = ?", (department,)
    ) as cursor:
        row = await cursor.fetchone()
    return row["last_assigned"] if row is not None else None


async def set_last_assigned(
    conn: aiosqlite.Connection, department: str, slot: str, now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO ticket_rotation (department, last_assigned, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (department) DO UPDATE SET last_assigned = excluded.last_assigned,"
        " updated_at = excluded.updated_at",
        (department, slot, iso(now)),
    )


async def user_department(conn: aiosqlite.Connection, user_id: str) -> str | None:
    async with conn.execute("SELECT department FROM users WHERE user_id = ?", (user_id,)) as cursor:
        row = await cursor.fetchone()
    return row["department"] if row is not None else None


async def set_user_department(
    conn: aiosqlite.Connection, user_id: str, department: str | None, now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO users (user_id, first_seen, last_seen, department) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET department = excluded.department",
        (user_id, iso(now), iso(now), department),
    )
