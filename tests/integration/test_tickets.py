"""Requests through a real Synapse: the whole life of a ticket, races, triage, absences,
escalation and privacy, as staff, pilots and coordinators see them in their chats.

Assertions read the ``de.lotsenbot.ticket`` metadata of the bot's messages, never prose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

import pytest

from lotsenbot.tickets.feature import TicketsFeature
from tests.integration.bot import BotRunner, ask, make_bot, open_dm
from tests.integration.conftest import MakeUser
from tests.integration.helpers import MatrixUser, Received

TICKET = "de.lotsenbot.ticket"
# Plenty of evidence for "it", so these tests do not depend on the router's thresholds.
IT_TEXT = "Mein Drucker druckt nicht mehr, und der Laptop findet das VPN nicht"


def ticket_event(event: str, **fields: Any) -> Callable[[Received], bool]:
    def matches(item: Received) -> bool:
        meta = item.content.get(TICKET) or {}
        return meta.get("event") == event and all(meta.get(k) == v for k, v in fields.items())

    return matches


def answers(item: Received) -> str | None:
    """The event a message of the bot answers in a group room (its reply relation)."""
    relates = item.content.get("m.relates_to") or {}
    return (relates.get("m.in_reply_to") or {}).get("event_id")


def error(item: Received) -> str | None:
    return (item.content.get("de.lotsenbot.error") or {}).get("code")


def departments(it: Sequence[str] = (), personal: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Two specialist departments whose keywords leave the router no doubt about "it"."""
    return [
        {
            "id": "it",
            "name": "IT-Service",
            "specialist": True,
            "description": "Arbeitsplatzrechner, Drucker und Telefonie der Verwaltung.",
            "keywords": ["Drucker", "Laptop", "Passwort", "VPN"],
            "pilots": list(it),
        },
        {
            "id": "personal",
            "name": "Personal",
            "specialist": True,
            "description": "Personalangelegenheiten, Arbeitszeit und Fortbildung.",
            "keywords": ["Urlaub", "Arbeitszeit", "Fortbildung"],
            "pilots": list(personal),
        },
    ]


async def start(runner: BotRunner) -> str:
    app = await runner.start([TicketsFeature()])
    return app.config.matrix.user_id


@pytest.mark.asyncio(loop_scope="session")
async def test_ticket_life_cycle(tmp_path, synapse, register_user, make_user: MakeUser):
    """Create → pilot notified (new direct chat) → claim → reply relayed → resolved → reopened."""
    staff = await make_user("staff")
    pilot = await make_user("lotsin")
    runner = await make_bot(
        tmp_path, synapse, register_user, departments=departments(it=[pilot.user_id])
    )
    bot_id = await start(runner)
    try:
        room = await open_dm(staff, bot_id)
        pilot.mark()
        created = await ask(staff, room, bot_id, f"!anfrage {IT_TEXT}.\nSeit heute früh.")
        meta = created.content[TICKET]
        assert (meta["event"], meta["department"], meta["assignee"], meta["status"]) == (
            "created",
            "it",
            pilot.user_id,
            "assigned",
        )
        number = meta["id"]
        # The pilot hears of it in a direct chat the bot opens on demand.
        note = await pilot.wait_for_message(
            sender=bot_id, timeout=20, predicate=ticket_event("assigned", id=number)
        )
        assert "Seit heute früh" in note.body and note.msgtype == "m.notice"
        pilot_room = note.room_id

        staff.mark()
        claimed = await ask(pilot, pilot_room, bot_id, f"!übernehmen {number}")
        assert claimed.content[TICKET]["event"] == "claimed"
        await staff.wait_for_message(room, sender=bot_id, predicate=ticket_event("claimed"))

        staff.mark()
        await ask(
            pilot,
            pilot_room,
            bot_id,
            f"!antwort {number} Bitte Papierfach prüfen.\nDanach neu starten.",
            ticket_event("reply"),
        )
        relayed = await staff.wait_for_message(room, sender=bot_id, predicate=ticket_event("reply"))
        assert relayed.content[TICKET]["status"] == "answered"
        assert "Danach neu starten" in relayed.body
        assert pilot.user_id.split(":")[0][1:] in relayed.body  # the pilot's name

        staff.mark()
        await ask(pilot, pilot_room, bot_id, f"!erledigt {number}", ticket_event("resolved"))
        resolved = await staff.wait_for_message(
            room, sender=bot_id, predicate=ticket_event("resolved")
        )
        assert resolved.content[TICKET]["status"] == "resolved"

        pilot.mark()
        reopened = await ask(staff, room, bot_id, f"!wiedereröffnen {number}")
        assert reopened.content[TICKET]["event"] == "reopened"
        back = await pilot.wait_for_message(
            pilot_room, sender=bot_id, predicate=ticket_event("reopened")
        )
        assert back.content[TICKET]["status"] == "claimed"
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_two_pilots_claim_at_once(tmp_path, synapse, register_user, make_user: MakeUser):
    staff = await make_user("staff")
    first = await make_user("lotsin")
    second = await make_user("lotse")
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        departments=departments(it=[first.user_id, second.user_id]),
    )
    bot_id = await start(runner)
    try:
        rooms = await asyncio.gather(*(open_dm(u, bot_id) for u in (staff, first, second)))
        staff_room, first_room, second_room = rooms
        created = await ask(staff, staff_room, bot_id, f"!anfrage {IT_TEXT}")
        number = created.content[TICKET]["id"]
        first.mark()
        second.mark()
        await asyncio.gather(
            first.send_text(first_room, f"!übernehmen {number}"),
            second.send_text(second_room, f"!übernehmen {number}"),
        )

        def answer_for(pilot: MatrixUser) -> Callable[[Received], bool]:
            """The pilot's own answer: a refusal, or the claim in their name. The one who
            loses may first be told that the other took the request over (same metadata)."""
            claimed = ticket_event("claimed", assignee=pilot.user_id)
            return lambda item: error(item) is not None or claimed(item)

        results = await asyncio.gather(
            *(
                pilot.wait_for_message(room, sender=bot_id, predicate=answer_for(pilot), timeout=15)
                for pilot, room in ((first, first_room), (second, second_room))
            )
        )
        outcomes = sorted("claimed" if error(r) is None else str(error(r)) for r in results)
        assert outcomes == ["claimed", "conflict"]
        winner = next(r for r in results if error(r) is None).content[TICKET]["assignee"]
        loser = next(r for r in results if error(r) is not None)
        assert winner.split(":")[0][1:] in loser.body  # names who was faster
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_triage_and_transfers(tmp_path, synapse, register_user, make_user: MakeUser):
    """An uncertain request goes to the coordinators, who assign it; a pilot passes it on."""
    staff = await make_user("staff")
    coordinator = await make_user("koord")
    it_pilot = await make_user("lotsin")
    hr_pilot = await make_user("lotse")
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        coordinators=[coordinator.user_id],
        departments=departments(it=[it_pilot.user_id], personal=[hr_pilot.user_id]),
    )
    bot_id = await start(runner)
    try:
        staff_room, coord_room, hr_room = await asyncio.gather(
            *(open_dm(u, bot_id) for u in (staff, coordinator, hr_pilot))
        )
        coordinator.mark()
        created = await ask(staff, staff_room, bot_id, "!anfrage Ich habe da mal eine Frage")
        assert created.content[TICKET]["status"] == "triage"
        number = created.content[TICKET]["id"]
        triage = await coordinator.wait_for_message(
            coord_room, sender=bot_id, predicate=ticket_event("created")
        )
        assert triage.content[TICKET] == {
            "id": number,
            "status": "triage",
            "department": None,
            "assignee": None,
            "event": "created",
        }

        hr_pilot.mark()
        staff.mark()
        done = await ask(coordinator, coord_room, bot_id, f"!weiterleiten {number} personal")
        assert done.content[TICKET]["event"] == "transferred"
        assigned = await hr_pilot.wait_for_message(
            hr_room, sender=bot_id, predicate=ticket_event("transferred")
        )
        assert assigned.content[TICKET]["assignee"] == hr_pilot.user_id
        told = await staff.wait_for_message(
            staff_room, sender=bot_id, predicate=ticket_event("transferred")
        )
        assert told.content[TICKET]["department"] == "personal"

        it_pilot.mark()
        await ask(
            hr_pilot,
            hr_room,
            bot_id,
            f"!weiterleiten {number} it Das ist ein Druckerthema",
            ticket_event("transferred"),
        )
        moved = await it_pilot.wait_for_message(
            sender=bot_id, timeout=20, predicate=ticket_event("transferred")
        )
        assert moved.content[TICKET]["department"] == "it"
        assert "Druckerthema" in moved.body
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_absence_with_deputy(tmp_path, synapse, register_user, make_user: MakeUser):
    staff = await make_user("staff")
    away = await make_user("lotsin")
    colleague = await make_user("lotse")
    deputy = await make_user("vertretung")
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        departments=departments(it=[away.user_id, colleague.user_id], personal=[deputy.user_id]),
    )
    bot_id = await start(runner)
    try:
        staff_room, away_room, deputy_room = await asyncio.gather(
            *(open_dm(u, bot_id) for u in (staff, away, deputy))
        )
        until = (date.today() + timedelta(days=7)).strftime("%d.%m.%Y")
        deputy.mark()
        reply = await ask(
            away, away_room, bot_id, f"!abwesend bis {until} Vertretung {deputy.user_id}"
        )
        assert reply.content["de.lotsenbot.absence"]["deputy"] == deputy.user_id
        await deputy.wait_for_message(deputy_room, sender=bot_id)  # told about standing in
        created = await ask(staff, staff_room, bot_id, f"!anfrage {IT_TEXT}")
        meta = created.content[TICKET]
        assert meta["assignee"] == deputy.user_id  # the absent pilot's turn, served by the deputy
        number = meta["id"]
        await deputy.wait_for_message(
            deputy_room, sender=bot_id, predicate=ticket_event("assigned", id=number)
        )
        claimed = await ask(deputy, deputy_room, bot_id, f"!übernehmen {number}")
        assert claimed.content[TICKET]["status"] == "claimed"
        reply = await ask(away, away_room, bot_id, "!anwesend")
        assert reply.content["de.lotsenbot.absence"] is None
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_unclaimed_ticket_escalates_once(
    tmp_path, synapse, register_user, make_user: MakeUser
):
    staff = await make_user("staff")
    pilot = await make_user("lotsin")
    coordinator = await make_user("koord")
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        coordinators=[coordinator.user_id],
        departments=departments(it=[pilot.user_id]),
        extra={"tickets": {"claim_within": "3s", "working_time": "always"}},
    )
    bot_id = await start(runner)
    try:
        staff_room, coord_room, pilot_room = await asyncio.gather(
            *(open_dm(u, bot_id) for u in (staff, coordinator, pilot))
        )
        mark = coordinator.mark()
        pilot.mark()
        created = await ask(staff, staff_room, bot_id, f"!anfrage {IT_TEXT}")
        number = created.content[TICKET]["id"]
        report = await coordinator.wait_for_message(
            coord_room, sender=bot_id, timeout=15, predicate=ticket_event("escalated")
        )
        assert report.content[TICKET]["status"] == "escalated"
        await pilot.wait_for_message(
            pilot_room, sender=bot_id, timeout=10, predicate=ticket_event("escalated", id=number)
        )
        await asyncio.sleep(2.5)  # several more job runs
        reports = [
            m for m in coordinator.messages(coord_room, since=mark) if ticket_event("escalated")(m)
        ]
        assert len(reports) == 1
        claimed = await ask(pilot, pilot_room, bot_id, f"!übernehmen {number}")
        assert claimed.content[TICKET]["status"] == "claimed"
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_stranger_cannot_read_or_answer(
    tmp_path, synapse, register_user, make_user: MakeUser
):
    staff = await make_user("staff")
    stranger = await make_user("kollege")
    pilot = await make_user("lotsin")
    runner = await make_bot(
        tmp_path, synapse, register_user, departments=departments(it=[pilot.user_id])
    )
    bot_id = await start(runner)
    try:
        staff_room, stranger_room = await asyncio.gather(
            open_dm(staff, bot_id), open_dm(stranger, bot_id)
        )
        created = await ask(staff, staff_room, bot_id, f"!anfrage {IT_TEXT}")
        number = created.content[TICKET]["id"]
        for command in (f"!verlauf {number}", f"!antwort {number} Ich lese mit"):
            reply = await ask(stranger, stranger_room, bot_id, command)
            assert error(reply) == "permission_denied", command
            assert "Drucker" not in reply.body
        own = await ask(staff, staff_room, bot_id, f"!verlauf {number}")
        assert own.content[TICKET]["id"] == number and "Drucker" in own.body
    finally:
        await runner.stop()


def quoting(text: str, event: str = "reply") -> Callable[[Received], bool]:
    """A message about a request that passes on ``text`` (not the sender's confirmation)."""
    about = ticket_event(event)
    return lambda item: about(item) and text in item.body


async def reply_events(runner: BotRunner, number: int) -> list[tuple[str, str]]:
    assert runner.app is not None
    rows = await runner.app.db.fetchall(
        "SELECT actor, body FROM ticket_events WHERE ticket_id = ? AND kind = 'reply' ORDER BY id",
        (number,),
    )
    return [(row["actor"], row["body"]) for row in rows]


@pytest.mark.asyncio(loop_scope="session")
async def test_replies_with_the_reply_function_reach_the_request(
    tmp_path, synapse, register_user, make_user: MakeUser
):
    """The pilot replies to the notice of a new request with a question, the requester
    replies to that question: both plain messages, both reach the other side."""
    staff = await make_user("staff")
    pilot = await make_user("lotsin")
    runner = await make_bot(
        tmp_path, synapse, register_user, departments=departments(it=[pilot.user_id])
    )
    bot_id = await start(runner)
    try:
        room = await open_dm(staff, bot_id)
        pilot.mark()
        created = await ask(staff, room, bot_id, f"!anfrage {IT_TEXT}")
        number = created.content[TICKET]["id"]
        notice = await pilot.wait_for_message(
            sender=bot_id, timeout=20, predicate=ticket_event("assigned", id=number)
        )
        pilot_room = notice.room_id

        staff.mark()
        pilot.mark()
        await pilot.send_reply(notice, "Welches Modell ist es?", fallback=False)  # Matrix 1.13
        question = await staff.wait_for_message(
            room, sender=bot_id, predicate=quoting("Welches Modell ist es?")
        )
        meta = question.content[TICKET]
        assert (meta["id"], meta["status"], meta["assignee"]) == (number, "answered", pilot.user_id)
        confirmed = await pilot.wait_for_message(
            pilot_room, sender=bot_id, predicate=ticket_event("reply", id=number)
        )
        assert error(confirmed) is None and "Welches Modell" not in confirmed.body

        staff.mark()
        pilot.mark()
        await staff.send_reply(question, "Ein HP LaserJet,\nim 2. Stock")
        relayed = await pilot.wait_for_message(
            pilot_room, sender=bot_id, predicate=quoting("im 2. Stock")
        )
        assert relayed.content[TICKET]["status"] == "claimed"  # waiting for the pilot again
        assert f"<{bot_id}>" not in relayed.body  # the client's quote is not passed on
        confirmed = await staff.wait_for_message(
            room, sender=bot_id, predicate=ticket_event("reply", id=number)
        )
        assert error(confirmed) is None and "im 2. Stock" not in confirmed.body
        assert await reply_events(runner, number) == [
            (pilot.user_id, "Welches Modell ist es?"),
            (staff.user_id, "Ein HP LaserJet,\nim 2. Stock"),
        ]
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_thank_you_to_a_closed_request_reaches_the_pilot_once(
    tmp_path, synapse, register_user, make_user: MakeUser
):
    """The requester answers "erledigt" with the reply function: the first message goes to
    the pilot who closed the request, as a note; the request stays closed, and she is told
    how to reopen it. A second one is not passed on. Neither becomes an FAQ question."""
    staff = await make_user("staff")
    pilot = await make_user("lotsin")
    runner = await make_bot(
        tmp_path, synapse, register_user, departments=departments(it=[pilot.user_id])
    )
    app = await runner.start()  # every default feature, the FAQ included
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(staff, bot_id)
        pilot.mark()
        created = await ask(staff, room, bot_id, f"!anfrage {IT_TEXT}", ticket_event("created"))
        number = created.content[TICKET]["id"]
        notice = await pilot.wait_for_message(
            sender=bot_id, timeout=20, predicate=ticket_event("assigned", id=number)
        )
        pilot_room = notice.room_id
        staff.mark()
        await pilot.send_text(pilot_room, f"!erledigt {number} Toner getauscht")
        resolved = await staff.wait_for_message(
            room, sender=bot_id, predicate=ticket_event("resolved", id=number)
        )

        def from_bot(item: Received) -> bool:
            return TICKET in item.content or "de.lotsenbot.faq" in item.content

        staff.mark()
        pilot.mark()
        await staff.send_reply(resolved, "Danke, hat geklappt!")
        told = await staff.wait_for_message(room, sender=bot_id, predicate=from_bot)
        assert told.content[TICKET]["event"] == "closed_reply" and error(told) is None
        assert f"!wiedereröffnen {number}" in told.body
        note = await pilot.wait_for_message(
            pilot_room, sender=bot_id, predicate=ticket_event("closed_reply", id=number)
        )
        assert "Danke, hat geklappt!" in note.body and note.content[TICKET]["status"] == "resolved"

        staff.mark()
        await staff.send_reply(resolved, "Und noch was: der Scanner auch nicht")
        hint = await staff.wait_for_message(room, sender=bot_id, predicate=error)
        assert error(hint) == "conflict" and f"!wiedereröffnen {number}" in hint.body
        assert await reply_events(runner, number) == [(staff.user_id, "Danke, hat geklappt!")]
        notes = await app.db.fetchall(
            "SELECT id FROM outbox WHERE target = ? AND json_extract(content,"
            " '$.meta.\"de.lotsenbot.ticket\".event') = 'closed_reply'",
            (pilot.user_id,),
        )
        assert len(notes) == 1
        status = await app.db.fetchone("SELECT status FROM tickets WHERE id = ?", (number,))
        assert status is not None and status[0] == "resolved"
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_reply_to_another_message_of_the_bot_is_still_a_question(
    tmp_path, synapse, register_user, make_user: MakeUser
):
    staff = await make_user("staff")
    pilot = await make_user("lotsin")
    runner = await make_bot(
        tmp_path, synapse, register_user, departments=departments(it=[pilot.user_id])
    )
    app = await runner.start()  # every default feature, the FAQ with its starter entries
    try:
        assert app.services is not None
        faq = app.services.feature("faq")
        assert faq is not None and await faq.load_starter_kb() > 0
        bot_id = app.config.matrix.user_id
        room = await open_dm(staff, bot_id)
        created = await ask(staff, room, bot_id, f"!anfrage {IT_TEXT}", ticket_event("created"))
        number = created.content[TICKET]["id"]
        answer = await ask(staff, room, bot_id, "Wie ändere ich mein Passwort?",
                           lambda item: "de.lotsenbot.faq" in item.content)  # fmt: skip
        staff.mark()
        await staff.send_reply(answer, "Und wie komme ich ins VPN?")
        again = await staff.wait_for_message(
            room, sender=bot_id, predicate=lambda item: "de.lotsenbot.faq" in item.content
        )
        assert TICKET not in again.content and error(again) is None
        assert await reply_events(runner, number) == []
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_reply_in_a_group_room_goes_nowhere(
    tmp_path, synapse, register_user, make_user: MakeUser
):
    """A request made in a group room: a colleague there who replies to the bot's
    confirmation (Element mentions the bot in such a reply) reaches neither the request nor
    anyone else; the command gets the refusal. The bot handles a room's events in order, so
    anything the reply had caused would arrive before the command's refusal."""
    staff = await make_user("staff")
    colleague = await make_user("kollege")
    pilot = await make_user("lotsin")
    runner = await make_bot(
        tmp_path, synapse, register_user, departments=departments(it=[pilot.user_id])
    )
    bot_id = await start(runner)
    try:
        response = await staff.client.room_create(name="Team", invite=[bot_id, colleague.user_id])
        group = str(response.room_id)  # type: ignore[union-attr]
        await staff.wait_for_join(group, bot_id, timeout=20)
        await staff.wait_for_join(group, colleague.user_id, timeout=20)
        colleague.mark()
        created = await ask(staff, group, bot_id, f"!anfrage {IT_TEXT}", ticket_event("created"))
        number = created.content[TICKET]["id"]
        seen = await colleague.wait_for_message(
            group, sender=bot_id, predicate=ticket_event("created", id=number)
        )
        mark = colleague.mark()
        await colleague.send_reply(seen, "Bei mir auch!")
        command = await colleague.send_text(group, f"!antwort {number} Bei mir auch!")
        refusal = await colleague.wait_for_message(
            group, sender=bot_id, predicate=lambda item: answers(item) == command
        )
        assert error(refusal) == "permission_denied" and "Drucker" not in refusal.body
        from_bot = [m for m in colleague.messages(since=mark) if m.sender == bot_id]
        assert [m.event_id for m in from_bot] == [refusal.event_id]
        assert await reply_events(runner, number) == []

    finally:
        await runner.stop()
