"""The FAQ through a real Synapse: answers with metadata, "Meinten Sie …?", feedback by
reaction, passing an unanswered question on as a request, and coordinators editing entries.

Assertions read ``de.lotsenbot.faq`` (and ``.ticket`` / ``.error``) in the event content,
never the German prose, except where the text itself is what changed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from nio import RoomRedactResponse

from lotsenbot.app import App
from lotsenbot.devserver import Synapse
from tests.integration.bot import BotRunner, ask, make_bot, open_dm
from tests.integration.conftest import MakeUser, RegisterUser
from tests.integration.helpers import MatrixUser, Received

META = "de.lotsenbot.faq"


async def start_bot(
    tmp_path: Path,
    synapse: Synapse,
    register_user: RegisterUser,
    *,
    coordinators: Sequence[str] = (),
    pilots: Sequence[str] = (),
) -> tuple[BotRunner, App]:
    """The bot with every default feature (tickets included) and the starter FAQ."""
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        coordinators=coordinators,
        departments=[
            {"id": "it", "name": "IT-Service", "specialist": True, "pilots": list(pilots),
             "keywords": ["Drucker", "Passwort", "VPN"]},
        ],
        matrix={"sync_timeout_ms": 5000},
    )  # fmt: skip
    app = await runner.start()
    assert app.services is not None
    faq = app.services.feature("faq")
    assert faq is not None, "the FAQ feature is part of the default build"
    assert await faq.load_starter_kb() == 51
    return runner, app


def faq_meta(item: Received) -> dict[str, Any]:
    value = item.content.get(META)
    return value if isinstance(value, dict) else {}


def has(key: str) -> Callable[[Received], bool]:
    return lambda item: key in item.content


async def say(person: MatrixUser, room: str, bot_id: str, text: str,
              key: str = META) -> Received:  # fmt: skip
    return await ask(person, room, bot_id, text, has(key))


async def eventually(probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll until ``probe`` returns something truthy (the bot works asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


@pytest.mark.asyncio(loop_scope="session")
async def test_answer_suggestion_and_feedback_by_reaction(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    anna = await make_user("anna")
    runner, app = await start_bot(tmp_path, synapse, register_user)
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(anna, bot_id)
        answer = await say(anna, room, bot_id, "Ich habe mein Passwort vergessen")
        assert faq_meta(answer) == {"entry": "passwort-vergessen", "score": 1.0,
                                    "suggestions": [], "decision": "answer"}  # fmt: skip
        assert answer.msgtype == "m.notice"
        assert "<strong>Ich habe mein Passwort vergessen. Was kann ich tun?</strong>" in (
            answer.formatted_body or "")  # fmt: skip

        suggestion = await say(anna, room, bot_id, "Passwort")
        meta = faq_meta(suggestion)
        assert meta["decision"] == "suggest" and meta["entry"] is None
        ids = meta["suggestions"]
        assert 2 <= len(ids) <= 3 and "passwort-aendern" in ids
        picked = await say(anna, room, bot_id, str(ids.index("passwort-aendern") + 1))
        assert faq_meta(picked)["entry"] == "passwort-aendern"
        assert faq_meta(picked)["decision"] == "picked"

        await anna.react(room, answer.event_id, "👍")

        async def verdict() -> Any:
            return await app.db.fetchone(
                "SELECT q.entry_id, f.helpful FROM faq_feedback AS f"
                " JOIN faq_questions AS q ON q.id = f.question_id WHERE f.user_id = ?",
                (anna.user_id,),
            )

        row = await eventually(verdict)
        assert row is not None and tuple(row) == ("passwort-vergessen", 1)
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_unanswered_question_is_offered_and_passed_on_as_a_request(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    anna = await make_user("anna")
    lotsin = await make_user("lotsin")
    coordinator = await make_user("koord")
    team = {"coordinators": [coordinator.user_id], "pilots": [lotsin.user_id]}
    runner, app = await start_bot(tmp_path, synapse, register_user, **team)
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(anna, bot_id)
        question = "Wie funktioniert die Kaffeemaschine im dritten Stock?"
        none = await say(anna, room, bot_id, question)
        meta = faq_meta(none)
        assert meta["decision"] == "none" and meta["entry"] is None
        assert meta["suggestions"] == [] and meta["offer"] is True
        assert f"!anfrage {question}" in none.body

        created = await say(anna, room, bot_id, "ja", key="de.lotsenbot.ticket")
        ticket = created.content["de.lotsenbot.ticket"]
        assert ticket["event"] == "created" and isinstance(ticket["id"], int)
        row = await app.db.fetchone("SELECT body, source FROM tickets WHERE id = ?",
                                    (ticket["id"],))  # fmt: skip
        assert row is not None and tuple(row) == (question, "faq")
        unanswered = await app.db.fetchone("SELECT question, ticket_id FROM faq_unanswered")
        assert unanswered is not None and tuple(unanswered) == (question, ticket["id"])
    finally:
        await runner.stop()


async def redact(person: MatrixUser, room_id: str, event_id: str) -> None:
    response = await person.client.room_redact(room_id, event_id)
    assert isinstance(response, RoomRedactResponse), response


def to(person: MatrixUser) -> Callable[[Received], bool]:
    """A message of the bot that mentions ``person`` (in a group room: one for her)."""
    return lambda item: person.user_id in (item.content.get("m.mentions") or {}).get("user_ids", [])


def replies_to(item: Received) -> str | None:
    relates = item.content.get("m.relates_to") or {}
    return (relates.get("m.in_reply_to") or {}).get("event_id")


@pytest.mark.asyncio(loop_scope="session")
async def test_thumbs_down_on_an_older_answer_offers_its_question_once(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """👎 on an answer that is not the person's latest offers to pass on that answer's
    question, once; a colleague's 👎 on it in a group room offers nothing. The bot handles a
    room's events in order, so a second offer would arrive before the answer to what follows."""
    anna = await make_user("anna")
    bert = await make_user("bert")
    lotsin = await make_user("lotsin")
    runner, app = await start_bot(tmp_path, synapse, register_user, pilots=[lotsin.user_id])
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(anna, bot_id)
        question = "Ich habe mein Passwort vergessen"
        older = await say(anna, room, bot_id, question)
        latest = await say(anna, room, bot_id, "Wie richte ich die Abwesenheitsnotiz ein?")
        assert faq_meta(older)["entry"] == "passwort-vergessen"
        assert faq_meta(latest)["entry"] not in (None, "passwort-vergessen")

        mark = anna.mark()
        thumbs = await anna.react(room, older.event_id, "👎")
        offer = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        # The offer names the question's message: deleting it takes the offer back.
        meta = dict(faq_meta(offer))
        question_event = meta.pop("question_event")
        assert question_event.startswith("$") and question_event != older.event_id
        assert meta == {"offer": True, "entry": "passwort-vergessen"}
        assert f"!anfrage {question}" in offer.body and replies_to(offer) == older.event_id

        await redact(anna, room, thumbs)
        await anna.react(room, older.event_id, "👎")
        await anna.react(room, older.event_id, "👎🏽")
        created = await say(anna, room, bot_id, "ja", key="de.lotsenbot.ticket")
        assert created.content["de.lotsenbot.ticket"]["event"] == "created"
        from_bot = [m for m in anna.messages(room, since=mark) if m.sender == bot_id]
        assert [m.event_id for m in from_bot] == [offer.event_id, created.event_id]
        row = await app.db.fetchone("SELECT body FROM tickets")
        assert row is not None and row[0] == question

        # A group room: Bert's 👎 on Anna's older answer is his verdict, no offer to anyone.
        response = await anna.client.room_create(name="Team", invite=[bot_id, bert.user_id])
        group = str(response.room_id)  # type: ignore[union-attr]
        await anna.wait_for_join(group, bot_id, timeout=20)
        await anna.wait_for_join(group, bert.user_id, timeout=20)
        older = await say(anna, group, bot_id, f"!frage {question}")
        await say(anna, group, bot_id, "!frage Wie richte ich die Abwesenheitsnotiz ein?")
        mark = anna.mark()
        await bert.react(group, older.event_id, "👎")
        await anna.react(group, older.event_id, "👎")
        offer = await anna.wait_for_message(group, sender=bot_id, predicate=has(META))
        assert faq_meta(offer)["offer"] is True and replies_to(offer) == older.event_id
        assert offer.content["m.mentions"] == {"user_ids": [anna.user_id]}
        from_bot = [m for m in anna.messages(group, since=mark) if m.sender == bot_id]
        assert [m.event_id for m in from_bot] == [offer.event_id]
        verdicts = await app.db.fetchall(
            "SELECT f.user_id, f.helpful FROM faq_feedback AS f JOIN faq_questions AS q"
            " ON q.id = f.question_id WHERE q.room_id = ? ORDER BY f.user_id", (group,),
        )  # fmt: skip
        assert [tuple(v) for v in verdicts] == sorted([(anna.user_id, 0), (bert.user_id, 0)])
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_coordinator_edit_changes_the_next_answer_and_staff_may_not(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    anna = await make_user("anna")
    coordinator = await make_user("koord")
    runner, app = await start_bot(tmp_path, synapse, register_user,
                                  coordinators=[coordinator.user_id])  # fmt: skip
    bot_id = app.config.matrix.user_id
    try:
        anna_room, koord_room = await asyncio.gather(
            open_dm(anna, bot_id), open_dm(coordinator, bot_id)
        )
        edit = "!faq ändern passwort-vergessen\nAntwort:\nBitte **Durchwahl 4711** anrufen."
        refused = await say(anna, anna_room, bot_id, edit, key="de.lotsenbot.error")
        assert refused.content["de.lotsenbot.error"]["code"] == "permission_denied"

        changed = await say(coordinator, koord_room, bot_id, edit)
        assert faq_meta(changed)["edit"] == {"action": "updated", "entry": "passwort-vergessen",
                                             "fields": ["answer"]}  # fmt: skip
        answer = await say(anna, anna_room, bot_id, "Ich habe mein Passwort vergessen")
        assert faq_meta(answer)["entry"] == "passwort-vergessen"
        assert "<strong>Durchwahl 4711</strong>" in (answer.formatted_body or "")
        audit = await app.db.fetchone(
            "SELECT actor FROM audit_log WHERE action = 'faq.update' AND subject = ?",
            ("passwort-vergessen",),
        )
        assert audit is not None and audit[0] == coordinator.user_id
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_long_open_question_is_learnt_in_the_coordinators_words(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """`!faq lernen` refuses a long question word for word and stores the phrasing given
    instead; the next person asking in those words gets the entry's answer."""
    anna = await make_user("anna")
    coordinator = await make_user("koord")
    runner, app = await start_bot(tmp_path, synapse, register_user,
                                  coordinators=[coordinator.user_id])  # fmt: skip
    bot_id = app.config.matrix.user_id
    try:
        anna_room, koord_room = await asyncio.gather(
            open_dm(anna, bot_id), open_dm(coordinator, bot_id)
        )
        question = (
            "Guten Morgen, ich habe beim Bescheid für Herrn Müller aus der Kantstraße "
            "dreimal die Kassenzeichen vertippt und brauche den Ausdruck bis Freitag"
        )
        assert faq_meta(await say(anna, anna_room, bot_id, question))["decision"] == "none"
        listed = await say(coordinator, koord_room, bot_id, "!faq offen")
        assert [group["count"] for group in faq_meta(listed)["open"]] == [1]

        refused = await say(coordinator, koord_room, bot_id, "!faq lernen 1 it-service",
                            key="de.lotsenbot.error")  # fmt: skip
        assert refused.content["de.lotsenbot.error"]["code"] == "bad_arguments"
        assert "!faq lernen 1 it-service <kurze Formulierung>" in refused.body

        learnt = await say(coordinator, koord_room, bot_id,
                           "!faq lernen 1 it-service Kassenzeichen vertippt")  # fmt: skip
        assert faq_meta(learnt)["learned"] == {
            "entry": "it-service", "phrase": "Kassenzeichen vertippt", "resolved": 1,
            "added": True, "given": True,
        }  # fmt: skip
        assert "„Kassenzeichen vertippt“" in learnt.body
        row = await app.db.fetchone("SELECT alternatives FROM faq_entries WHERE id = 'it-service'")
        assert row is not None and "Kassenzeichen vertippt" in row[0] and "Müller" not in row[0]

        answer = await say(anna, anna_room, bot_id, "Kassenzeichen vertippt")
        assert faq_meta(answer)["entry"] == "it-service"
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_in_a_group_room_yes_replies_to_the_offer_and_chat_is_left_alone(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """Found by an exploratory test in a group room: "ja" sent with the reply function to
    the offer failed once the bot had answered someone else there; "!wichtig: …" among
    colleagues got an error; "!faq offen" posted the open questions word for word."""
    anna = await make_user("anna")
    bert = await make_user("bert")
    koord = await make_user("koord")
    runner, app = await start_bot(tmp_path, synapse, register_user,
                                  coordinators=[koord.user_id])  # fmt: skip
    bot_id = app.config.matrix.user_id
    try:
        koord_dm = await open_dm(koord, bot_id)
        response = await anna.client.room_create(
            name="Team", invite=[bot_id, bert.user_id, koord.user_id]
        )
        group = str(response.room_id)  # type: ignore[union-attr]
        for user_id in (bot_id, bert.user_id, koord.user_id):
            await anna.wait_for_join(group, user_id, timeout=20)
        question = "wo bekomme ich einen neuen Tacker her"
        offer = await say(anna, group, bot_id, f"!frage {question}")
        assert faq_meta(offer)["offer"] is True
        # (Each waits for the bot's message to them: a colleague's client may see an earlier
        # one only after sending.)
        bert.mark()
        await bert.send_text(group, "!frage Ich habe mein Passwort vergessen")
        answer = await bert.wait_for_message(group, sender=bot_id, predicate=to(bert), timeout=20)
        assert faq_meta(answer)["entry"] == "passwort-vergessen"

        mark = anna.mark()
        chat = [await anna.send_text(group, "!wichtig: Besprechung um 10"),
                await bert.send_text(group, "!!!")]  # fmt: skip
        await anna.send_reply(offer, "ja")
        created = await anna.wait_for_message(
            group, sender=bot_id, predicate=has("de.lotsenbot.ticket"), timeout=20
        )
        assert created.content["de.lotsenbot.ticket"]["event"] == "created"
        # The bot handles a room's events in order: an answer to the chat would be here now.
        from_bot = [m for m in anna.messages(group, since=mark) if m.sender == bot_id]
        assert not [
            m for m in from_bot if replies_to(m) in chat or "de.lotsenbot.error" in m.content
        ]
        row = await app.db.fetchone("SELECT body, requester FROM tickets")
        assert row is not None and tuple(row) == (question, anna.user_id)

        koord.mark()
        await koord.send_text(group, "!faq offen")
        in_room = await koord.wait_for_message(group, sender=bot_id, predicate=to(koord),
                                               timeout=20)  # fmt: skip
        assert "Direktchat" in in_room.body and "Tacker" not in in_room.body
        listing = await koord.wait_for_message(koord_dm, sender=bot_id, predicate=has(META),
                                               timeout=20)  # fmt: skip
        assert "Tacker" in listing.body and faq_meta(listing)["open"][0]["count"] == 1
    finally:
        await runner.stop()
