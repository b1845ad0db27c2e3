"""Deadlines and escalation of requests, plus the addressing rules both share with the commands.

A ticket not claimed within ``[tickets] claim_within`` or not answered within
``answer_within`` is offered to its whole department again and reported to the
coordinators. The deadlines are stored on the ticket when they start, so the periodic job
only has to select what is due — a restart loses nothing, and because the job marks a
ticket as escalated in the same transaction that enqueues the messages (with stable dedup
keys ``esc:<ticket>:<kind>``), nothing is sent twice either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from lotsenbot.config import Config, DepartmentConfig
from lotsenbot.core.durations import parse_duration
from lotsenbot.core.markdown import escape, quote
from lotsenbot.core.names import PersonNames
from lotsenbot.core.outbox import Envelope
from lotsenbot.core.services import Services
from lotsenbot.core.types import OutMessage
from lotsenbot.texts import Catalogue
from lotsenbot.tickets import store
from lotsenbot.tickets.assignment import is_absent
from lotsenbot.tickets.store import EscalationKind, Ticket
from lotsenbot.tickets.worktime import (
    Duration,
    WorkCalendar,
    add_duration,
    parse_work_duration,
)

log = logging.getLogger(__name__)

TICKET_META = "de.lotsenbot.ticket"
JOB_ID = "tickets-escalation"


@dataclass(frozen=True)
class Deadlines:
    """When a ticket has to be claimed and answered, in working time of the administration."""

    calendar: WorkCalendar
    claim_within: Duration
    answer_within: Duration

    @classmethod
    def from_config(cls, config: Config) -> Deadlines:
        bot = config.bot
        spans = bot.office_hours.spans()
        if config.tickets.working_time == "always":
            calendar = WorkCalendar.always(bot.tz)
        elif not spans:
            # No office day at all would make every deadline infinite; count all hours.
            log.warning(
                "Keine Sprechzeiten konfiguriert: Fristen für Anfragen zählen rund um die Uhr"
            )
            calendar = WorkCalendar.always(bot.tz)
        else:
            calendar = WorkCalendar.from_spans(bot.office_hours.spans(), state=bot.state, tz=bot.tz)
        return cls(
            calendar,
            parse_work_duration(config.tickets.claim_within),
            parse_work_duration(config.tickets.answer_within),
        )

    def claim_due(self, start: datetime) -> datetime:
        return add_duration(start, self.claim_within, self.calendar)

    def answer_due(self, start: datetime) -> datetime:
        return add_duration(start, self.answer_within, self.calendar)


def job_interval(config: Config) -> float:
    """Seconds between escalation checks: a third of the shortest deadline, 1 to 30 s.

    Deadlines of hours need no finer check than every 30 s; the "3s" of a test needs one
    every second, or the escalation would come noticeably late.
    """
    shortest = min(
        parse_duration(config.tickets.claim_within).total_seconds(),
        parse_duration(config.tickets.answer_within).total_seconds(),
    )
    return max(1.0, min(30.0, shortest / 3))


# -- addressing and wording shared with the commands ------------------------------------------


def ticket_meta(ticket: Ticket, event: str, *, replyable: bool = False) -> dict[str, Any]:
    """The structured part every message about a ticket carries, for tests and tools.

    ``replyable`` marks a message whose reply (the chat's reply function, in a direct chat)
    is written to the ticket like ``!antwort``: what the requester receives, and what a
    pilot receives with the requester's words in it. Confirmations, notes, histories and
    coordinators' notices are not: a "danke" or "it" in reply to them must not reach the
    requester (migration 0011 records only marked messages)."""
    data: dict[str, Any] = {
        "id": ticket.id,
        "status": ticket.status,
        "department": ticket.department,
        "assignee": ticket.assignee,
        "event": event,
    }
    if replyable:
        data["replyable"] = True
    return {TICKET_META: data}


async def person_label(names: PersonNames, user_id: str | None, t: Catalogue) -> str:
    """A person in a ticket text ("Anna Schmidt (@anna:stadt.de)"), or "nobody yet"."""
    return await names.label(user_id) if user_id else t("tickets.nobody")


async def assignee_label(names: PersonNames, ticket: Ticket, t: Catalogue) -> str:
    """Who has the ticket; with a deputy "Bert Beispiel (@bert:stadt.de) (in Vertretung für
    Anna Schmidt (@anna:stadt.de))"."""
    if ticket.assignee and ticket.deputy_for:
        who, absent = await names.label(ticket.assignee), await names.label(ticket.deputy_for)
        return t("tickets.who_deputy", who=who, absent=absent)
    return await person_label(names, ticket.assignee, t)


def department_label(config: Config, department_id: str | None, t: Catalogue) -> str:
    if department_id is None:
        return t("tickets.no_department")
    department = config.department(department_id)
    return escape(department.name) if department else escape(department_id)


def department_list(config: Config) -> str:
    return ", ".join(f"`{d.id}` ({escape(d.name)})" for d in config.departments) or "–"


def local_time(config: Config, moment: datetime) -> str:
    return moment.astimezone(config.bot.tz).strftime("%d.%m.%Y %H:%M")


def coordinator_envelopes(config: Config, message: OutMessage) -> list[Envelope]:
    """To the coordinators' room if there is one, else to each coordinator directly."""
    if config.bot.coordinator_room:
        return [Envelope("room", config.bot.coordinator_room, message, "notify")]
    return [Envelope("user", user, message, "notify") for user in config.bot.coordinators]


def team_envelopes(
    department: DepartmentConfig | None,
    message: OutMessage,
    *,
    people: list[str],
) -> list[Envelope]:
    """To the given people directly, and to the department's room if it has one."""
    envelopes = [Envelope("user", user, message, "notify") for user in dict.fromkeys(people)]
    if department is not None and department.room:
        envelopes.append(Envelope("room", department.room, message, "notify"))
    return envelopes


# -- the job ----------------------------------------------------------------------------


async def escalate_due(services: Services) -> int:
    """Escalate every ticket whose deadline has passed; return how many escalations were sent."""
    now = services.clock.now()
    sent = 0
    async with services.db.transaction() as conn:
        for ticket_id, kind in await store.due_escalations(conn, now):
            if await _escalate(conn, services, ticket_id, kind, now):
                sent += 1
    if sent:
        services.outbox.wake()
    return sent


async def _escalate(
    conn: aiosqlite.Connection,
    services: Services,
    ticket_id: int,
    kind: EscalationKind,
    now: datetime,
) -> bool:
    if not await store.mark_escalated(conn, ticket_id, kind, now):
        return False
    ticket = await store.get_ticket(conn, ticket_id)
    assert ticket is not None
    config, t = services.config, services.texts
    prefix = config.bot.prefix
    label = kind if ticket.escalation_round == 0 else f"{kind}{ticket.escalation_round + 1}"
    due = ticket.claim_due_at if kind == "claim" else ticket.answer_due_at
    department = config.department(ticket.department) if ticket.department else None
    params = {
        "number": ticket.id,
        "department": department_label(config, ticket.department, t),
        "who": await assignee_label(services.names.on(conn, now), ticket, t),
        "due": local_time(config, due or now),
        "prefix": prefix,
    }
    meta = ticket_meta(ticket, "escalated")
    report = OutMessage(t(f"tickets.escalation.{kind}_coordinators", **params), meta=meta)
    offer_text = "\n\n".join([t(f"tickets.escalation.{kind}_team", **params), quote(ticket.body)])
    offer = OutMessage(offer_text, meta=meta)
    envelopes = coordinator_envelopes(config, report)
    if department is not None:
        absences = await store.absences(conn)
        today = now.astimezone(config.bot.tz).date()
        people = [p for p in department.pilots if not is_absent(p, absences, today)]
        if ticket.assignee:
            people.append(ticket.assignee)
        envelopes += team_envelopes(department, offer, people=people)
    for number, envelope in enumerate(envelopes):
        key = f"esc:{ticket.id}:{label}" + (f":{number}" if number else "")
        await services.outbox.enqueue(conn, key, envelope)
    await store.add_event(
        conn, ticket.id, now, services.bot_user_id, "escalated", details={"kind": kind}
    )
    log.info("Anfrage #%s eskaliert (%s)", ticket.id, kind)
    return True


async def run_job(services: Services) -> None:
    """The scheduler's entry point: never let one bad run stop the next ones."""
    try:
        await escalate_due(services)
    except Exception:
        log.exception("Eskalation der Anfragen fehlgeschlagen; nächster Versuch beim nächsten Lauf")
