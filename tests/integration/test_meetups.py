"""Network meetups through a real Synapse: announce, sign up, waiting list, reminders across
restarts, cancellation, and a date poll that becomes a meetup.

Assertions read ``"de.lotsenbot.meetup"`` (and the error code), never the German prose.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from nio import RoomCreateError, RoomRedactResponse

from lotsenbot.devserver import Synapse
from lotsenbot.meetups.audience import Audience
from lotsenbot.meetups.feature import MeetupsFeature
from lotsenbot.meetups.form import MeetupDraft
from tests.integration.bot import ask, make_bot, open_dm
from tests.integration.conftest import MakeUser, RegisterUser
from tests.integration.helpers import MatrixUser, Received

META = "de.lotsenbot.meetup"
TZ = ZoneInfo("Europe/Berlin")
POLL_START = "org.matrix.msc3381.poll.start"
POLL_RESPONSE = "org.matrix.msc3381.poll.response"


def meetup_meta(event: str, **expected: Any):  # type: ignore[no-untyped-def]
    """Predicate: a bot message about a meetup with this event (and these meta values)."""

    def matches(item: Received) -> bool:
        meta = item.content.get(META)
        if not isinstance(meta, dict) or meta.get("event") != event:
            return False
        return all(meta.get(key) == value for key, value in expected.items())

    return matches


def local(days: int, hour: int, minute: int = 0) -> datetime:
    day = datetime.now(TZ).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


def typed(moment: datetime) -> str:
    return moment.strftime("%d.%m.%Y %H:%M")


async def redact(person: MatrixUser, room_id: str, event_id: str) -> None:
    response = await person.client.room_redact(room_id, event_id)
    assert isinstance(response, RoomRedactResponse), response


@pytest.mark.asyncio(loop_scope="session")
async def test_announce_signup_waitlist_change_cancel(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    coordinator = await make_user("koord")
    p1, p2, p3, p4 = [await make_user(f"lotse{n}") for n in (1, 2, 3, 4)]
    pilots = [p1, p2, p3, p4]  # p4 gets the invitation and never answers it
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        coordinators=[coordinator.user_id],
        pilots=[p.user_id for p in pilots],
    )
    app = await runner.start()
    bot = app.config.matrix.user_id
    try:
        desk = await open_dm(coordinator, bot)
        refused = await ask(coordinator, desk, bot, "!treffen neu 01.02.2020 14:00 Zu spät",
                            timeout=10)  # fmt: skip
        assert refused.content["de.lotsenbot.error"]["code"] == "bad_arguments"

        for person in pilots:
            person.mark()
        start = local(30, 14)
        await coordinator.send_text(
            desk, f"!treffen neu\nTitel: Lotsentreffen\nWann: {typed(start)}\nPlätze: 1"
        )
        created = await coordinator.wait_for_message(
            desk, sender=bot, predicate=meetup_meta("created")
        )
        meetup_id = created.content[META]["id"]
        assert created.content[META]["starts_at"] == start.isoformat()
        assert created.content[META]["recipients"] == 4

        def announcement(item: Received) -> bool:
            meta = item.content.get(META) or {}
            return (
                meta.get("id") == meetup_id
                and meta.get("event") == "created"
                and (not meta.get("calendar"))
            )

        rooms: dict[str, str] = {}
        announced: dict[str, Received] = {}
        for person in pilots:
            announced[person.user_id] = await person.wait_for_message(
                sender=bot, predicate=announcement, timeout=15
            )
            rooms[person.user_id] = announced[person.user_id].room_id
            calendar = await person.wait_for_message(
                rooms[person.user_id],
                sender=bot,
                timeout=10,
                predicate=lambda item: item.msgtype == "m.file",
            )
            assert calendar.content["filename"] == f"treffen-{meetup_id}.ics"
            assert calendar.content["info"]["mimetype"] == "text/calendar"

        # p1 signs up with 👍, p2 and p3 by command and end up on the waiting list.
        reaction = await p1.react(rooms[p1.user_id], announced[p1.user_id].event_id, "👍")
        confirmed = await p1.wait_for_message(
            rooms[p1.user_id], sender=bot, predicate=meetup_meta("rsvp", id=meetup_id)
        )
        assert confirmed.content[META]["status"] == "confirmed"
        for position, person in enumerate((p2, p3), start=1):
            await person.send_text(rooms[person.user_id], f"!zusage {meetup_id}")
            waiting = await person.wait_for_message(
                rooms[person.user_id], sender=bot, predicate=meetup_meta("waitlisted")
            )
            assert waiting.content[META]["position"] == position

        # Removing the 👍 withdraws p1; p2 moves up and is told, with the calendar file.
        await redact(p1, rooms[p1.user_id], reaction)
        await p1.wait_for_message(
            rooms[p1.user_id], sender=bot, predicate=meetup_meta("withdrawn", status="confirmed")
        )
        await p2.wait_for_message(
            rooms[p2.user_id], sender=bot, predicate=meetup_meta("promoted", id=meetup_id)
        )
        promoted_file = await p2.wait_for_message(
            rooms[p2.user_id],
            sender=bot,
            predicate=lambda item: item.msgtype == "m.file" and meetup_meta("promoted")(item),
        )
        assert promoted_file.content["filename"] == f"treffen-{meetup_id}.ics"

        # A second place and a new date in one change: p3 moves up and hears of both in one
        # message, with the new date and its calendar file; p2 gets the change notice.
        marks = {person.user_id: person.mark() for person in (p2, p3)}
        moved, start = start, local(31, 10)
        await coordinator.send_text(
            desk, f"!treffen ändern {meetup_id}\nPlätze: 2\nWann: {typed(start)}"
        )
        changed = await coordinator.wait_for_message(
            desk, sender=bot, predicate=meetup_meta("changed")
        )
        # The date is in the calendar: those only invited (p1, p4) hear of it, too.
        assert changed.content[META]["notified_by_status"] == {
            "confirmed": 2,
            "waitlisted": 0,
            "invited": 2,
        }
        promoted = await p3.wait_for_message(
            rooms[p3.user_id], sender=bot, predicate=meetup_meta("promoted")
        )
        assert promoted.content[META]["starts_at"] == start.isoformat()
        assert promoted.content[META]["previous_starts_at"] == moved.isoformat()
        promoted_file = await p3.wait_for_message(
            rooms[p3.user_id],
            sender=bot,
            predicate=lambda item: item.msgtype == "m.file" and meetup_meta("promoted")(item),
        )
        assert promoted_file.content[META]["starts_at"] == start.isoformat()
        notice = await p2.wait_for_message(
            rooms[p2.user_id], sender=bot, predicate=meetup_meta("changed")
        )
        assert notice.content[META]["starts_at"] == start.isoformat()
        await asyncio.sleep(1.0)
        about_p3 = [m for m in p3.messages(rooms[p3.user_id], since=marks[p3.user_id])
                    if (m.content.get(META) or {}).get("id") == meetup_id]  # fmt: skip
        assert sorted(m.msgtype for m in about_p3) == ["m.file", "m.notice"]
        assert all(m.content[META]["starts_at"] == start.isoformat() for m in about_p3)

        await coordinator.send_text(desk, f"!treffen {meetup_id}")
        details = await coordinator.wait_for_message(
            desk, sender=bot, predicate=meetup_meta("details")
        )
        assert details.content[META]["participants"] == [p2.user_id, p3.user_id]

        # The cancellation reaches everyone who got the invitation's calendar file: those
        # signed up (p2, p3), the one who withdrew (p1) and the one who never answered (p4).
        marks = {person.user_id: person.mark() for person in pilots}
        await coordinator.send_text(desk, f"!treffen streichen {meetup_id} Krankheit")
        done = await coordinator.wait_for_message(
            desk, sender=bot, predicate=meetup_meta("cancelled")
        )
        assert done.content[META]["notified"] == 4
        assert done.content[META]["notified_by_status"] == {
            "confirmed": 2,
            "waitlisted": 0,
            "invited": 2,
        }
        expected = ((p1, "invited"), (p2, "confirmed"), (p3, "confirmed"), (p4, "invited"))
        for person, status in expected:
            notice = await person.wait_for_message(
                rooms[person.user_id], sender=bot, predicate=meetup_meta("cancelled")
            )
            assert notice.msgtype != "m.file"
            assert notice.content[META]["status"] == status
            assert notice.content[META]["starts_at"] == start.isoformat()
            assert "Krankheit" in notice.body
            # The calendar file that takes the date out of their calendar follows the text.
            calendar = await person.wait_for_message(
                rooms[person.user_id],
                sender=bot,
                predicate=lambda item: item.msgtype == "m.file" and meetup_meta("cancelled")(item),
            )
            assert calendar.content["filename"] == f"treffen-{meetup_id}.ics"
        await asyncio.sleep(1.0)
        for person in pilots:  # each once: one text and one file
            since = marks[person.user_id]
            got = [m for m in person.messages(since=since) if meetup_meta("cancelled")(m)]
            assert sorted(m.msgtype for m in got) == ["m.file", "m.notice"], person.user_id
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_reminders_exactly_once_across_restarts(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """Offsets 38 s and 20 s before a meetup 50 s ahead. The bot is restarted between the
    sign-up and the first reminder, and is down while the second one falls due; after that
    restart it has 18 s (a full start-up on a loaded machine) before the meetup begins."""
    coordinator = await make_user("koord")
    person = await make_user("lotsin")
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        coordinators=[coordinator.user_id],
        pilots=[person.user_id],
        extra={"meetups": {"reminders": ["38s", "20s"]}},
    )
    app = await runner.start()
    bot = app.config.matrix.user_id
    try:
        room = await open_dm(person, bot)
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=50)
        feature = app.services.features["meetups"] if app.services else None
        assert isinstance(feature, MeetupsFeature)
        draft = MeetupDraft(
            title="Kurzes Treffen",
            start=start.astimezone(TZ),
            tzid="Europe/Berlin",
            duration=timedelta(minutes=30),
        )
        async with app.db.transaction() as conn:
            meetup_id = await feature.create(
                conn, draft, Audience("keine"), coordinator.user_id, datetime.now(UTC)
            )
        mark = person.mark()
        await person.send_text(room, f"!zusage {meetup_id}")
        await person.wait_for_message(room, sender=bot, predicate=meetup_meta("rsvp"))
        # Let the bot's sync pass its own confirmation, so that after the restart nothing new
        # has happened in this room: the reminder must reach a room the restarted bot has
        # not seen any traffic in (as after a night's restart in production).
        await asyncio.sleep(1.5)

        await runner.stop()  # stopped after the sign-up, started before the first reminder
        await runner.start()
        first = await person.wait_for_message(
            room, sender=bot, timeout=25, predicate=meetup_meta("reminder", id=meetup_id)
        )
        assert first.content[META]["offset"] == 38
        assert first.content[META]["starts_at"] == start.astimezone(TZ).isoformat()

        await runner.stop()  # down while the 20 s reminder falls due
        two_seconds_after_due = start - timedelta(seconds=18)
        await asyncio.sleep(max(0.0, (two_seconds_after_due - datetime.now(UTC)).total_seconds()))
        await runner.start()
        second = await person.wait_for_message(
            room, sender=bot, timeout=15, predicate=meetup_meta("reminder", id=meetup_id)
        )
        assert second.content[META]["offset"] == 20
        assert datetime.now(UTC) < start  # it came before the meetup began

        await asyncio.sleep(1.5)
        sent = [
            m.content[META]["offset"]
            for m in person.messages(room, since=mark)
            if meetup_meta("reminder")(m)
        ]
        assert sent == [38, 20]
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_poll_becomes_meetup(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    coordinator = await make_user("koord")
    voter1, voter2 = await make_user("lotse"), await make_user("lotsin")
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        coordinators=[coordinator.user_id],
        pilots=[voter1.user_id, voter2.user_id],
    )
    app = await runner.start()
    bot = app.config.matrix.user_id
    try:
        created = await coordinator.client.room_create(
            name="Netzwerk", invite=[bot, voter1.user_id, voter2.user_id]
        )
        assert not isinstance(created, RoomCreateError), created
        room = created.room_id
        for user_id in (bot, voter1.user_id, voter2.user_id):
            await coordinator.wait_for_join(room, user_id, timeout=15)
        first, second = local(20, 10), local(21, 15, 30)
        for person in (coordinator, voter1, voter2):
            person.mark()
        await coordinator.send_text(
            room, f"!treffen umfrage Planungstreffen | {typed(first)} | {typed(second)}"
        )
        started = await coordinator.wait_for_message(
            room, sender=bot, predicate=meetup_meta("poll")
        )
        poll_id = started.content[META]["poll"]
        poll = await voter1.wait_for_event(room_id=room, sender=bot, event_type=POLL_START)
        answers = poll.content[POLL_START]["answers"]
        assert [a["id"] for a in answers] == ["t1", "t2"]
        assert "Planungstreffen" in poll.content[POLL_START]["question"]["body"]

        async def vote(person: MatrixUser, answer: str) -> None:
            await person.send(
                room,
                POLL_RESPONSE,
                {
                    "m.relates_to": {"rel_type": "m.reference", "event_id": poll.event_id},
                    POLL_RESPONSE: {"answers": [answer]},
                },
            )

        await vote(voter1, "t2")
        await vote(voter2, "t1")
        await vote(voter2, "t2")  # changed their mind: the latest response counts
        await asyncio.sleep(0.5)
        await coordinator.send_text(room, f"!treffen umfrage beenden {poll_id}")
        result = await coordinator.wait_for_message(
            room, sender=bot, timeout=15, predicate=meetup_meta("poll", status="closed")
        )
        meta = result.content[META]
        assert meta["votes"] == {"t1": 0, "t2": 2}
        assert meta["starts_at"] == second.isoformat()
        # Clients show the poll as ended: an end event refers to its start.
        ended = await voter1.wait_for_event(
            room_id=room, sender=bot, event_type="org.matrix.msc3381.poll.end", timeout=15
        )
        assert ended.content["m.relates_to"] == {
            "rel_type": "m.reference",
            "event_id": poll.event_id,
        }
        assert "org.matrix.msc3381.poll.end" in ended.content
        meetup_id = meta["id"]
        invitation = await voter1.wait_for_message(
            sender=bot, timeout=15, predicate=meetup_meta("created", id=meetup_id)
        )
        assert invitation.content[META]["starts_at"] == second.isoformat()
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_an_erasure_that_frees_a_place_tells_who_moves_up_once(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """p1 erases their data (``!daten-löschen``) and so frees their place: p2, first on the
    waiting list, gets the notice and calendar file of a withdrawal, once, also after the
    bot is stopped abruptly and started again."""
    coordinator = await make_user("koord")
    p1, p2 = await make_user("lotse"), await make_user("lotsin")
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        coordinators=[coordinator.user_id],
        pilots=[p1.user_id, p2.user_id],
    )
    app = await runner.start()
    bot = app.config.matrix.user_id
    try:
        desk = await open_dm(coordinator, bot)
        rooms = {p.user_id: await open_dm(p, bot) for p in (p1, p2)}
        start = local(30, 14)
        created = await ask(
            coordinator, desk, bot,
            f"!treffen neu\nTitel: Kleine Runde\nWann: {typed(start)}\nPlätze: 1\n"
            "Zielgruppe: keine",
            meetup_meta("created"),
        )  # fmt: skip
        meetup_id = created.content[META]["id"]
        for person, status in ((p1, "confirmed"), (p2, "waitlisted")):
            answer = await ask(person, rooms[person.user_id], bot, f"!zusage {meetup_id}",
                               lambda m: META in m.content)  # fmt: skip
            assert answer.content[META]["status"] == status

        mark = p2.mark()
        await ask(p1, rooms[p1.user_id], bot, "!daten-löschen")
        erased = await ask(p1, rooms[p1.user_id], bot, "!daten-löschen bestätigen",
                           lambda m: m.content.get("de.lotsenbot.privacy", {}).get("action")
                           == "erased")  # fmt: skip
        assert erased.content["de.lotsenbot.privacy"]["erased"]["meetups.signups"] == 1
        notice = await p2.wait_for_message(
            rooms[p2.user_id], sender=bot, predicate=meetup_meta("promoted", id=meetup_id)
        )
        assert notice.content[META]["starts_at"] == start.isoformat()
        calendar = await p2.wait_for_message(
            rooms[p2.user_id],
            sender=bot,
            predicate=lambda item: item.msgtype == "m.file" and meetup_meta("promoted")(item),
        )
        assert calendar.content["filename"] == f"treffen-{meetup_id}.ics"

        await runner.kill()
        await runner.start()
        details = await ask(p2, rooms[p2.user_id], bot, f"!treffen {meetup_id}",
                            meetup_meta("details"))  # fmt: skip
        assert details.content[META]["confirmed"] == 1
        assert details.content[META]["waitlisted"] == 0
        await asyncio.sleep(1.0)
        got = [m for m in p2.messages(rooms[p2.user_id], since=mark) if meetup_meta("promoted")(m)]
        assert sorted(m.msgtype for m in got) == ["m.file", "m.notice"]
    finally:
        await runner.stop()
