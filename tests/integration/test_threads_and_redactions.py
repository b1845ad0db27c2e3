"""Group rooms through a real Synapse: threads, deleted questions, and the bot's name.

Found in an exploratory test: an answer to a question asked in a thread landed in the main
timeline, and "1" or "ja" typed on in the thread went unanswered; a deleted question stayed
word for word in the bot's reply and in ``!faq offen``; and "Lotsenbot, wie …?" without a
pill went unanswered because Element sends ``m.mentions`` with every message.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lotsenbot.devserver import Synapse
from tests.integration.bot import open_dm
from tests.integration.conftest import MakeUser, RegisterUser
from tests.integration.helpers import MatrixUser, Received
from tests.integration.test_faq import META, eventually, faq_meta, has, redact, say, start_bot

TICKET = "de.lotsenbot.ticket"


async def group_room(owner: MatrixUser, bot_id: str, *others: MatrixUser) -> str:
    response = await owner.client.room_create(
        name="Team Bürgeramt", invite=[bot_id, *(o.user_id for o in others)]
    )
    room = str(response.room_id)  # type: ignore[union-attr]
    for member in (bot_id, *(o.user_id for o in others)):
        await owner.wait_for_join(room, member, timeout=20)
    return room


async def in_thread(person: MatrixUser, room: str, root: str, latest: str, body: str) -> str:
    """Typed in a thread, the way Element sends it: no chosen reply, the thread's latest
    event as the fallback for clients without threads, no one picked as a mention."""
    return await person.send(room, "m.room.message", {
        "msgtype": "m.text", "body": body, "m.mentions": {},
        "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                         "m.in_reply_to": {"event_id": latest}},
    })  # fmt: skip


def relation(item: Received) -> dict[str, Any]:
    value = item.content.get("m.relates_to")
    return value if isinstance(value, dict) else {}


def threaded(root: str, answered: str) -> dict[str, Any]:
    return {"rel_type": "m.thread", "event_id": root, "is_falling_back": False,
            "m.in_reply_to": {"event_id": answered}}  # fmt: skip


@pytest.mark.asyncio(loop_scope="session")
async def test_a_question_in_a_thread_is_answered_in_the_thread(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """The answer relates to the thread root and replies to the question; "1" and "ja"
    typed on below the bot's message in the thread are taken up as in the main timeline
    with the reply function. A colleague typing below the bot's answer to someone else is
    not talking to the bot. Messages about the request that are no replies stay out of the
    thread."""
    anna = await make_user("anna")
    bert = await make_user("bert")
    koord = await make_user("koord")
    runner, app = await start_bot(tmp_path, synapse, register_user, coordinators=[koord.user_id])
    bot_id = app.config.matrix.user_id
    try:
        room = await group_room(anna, bot_id, bert)
        root = await anna.send_text(room, "Kurze Frage zum Passwort, kennt sich jemand aus?")
        anna.mark()
        asked = await in_thread(anna, room, root, root, "!frage Passwort")
        suggestion = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        assert faq_meta(suggestion)["decision"] == "suggest"
        assert relation(suggestion) == threaded(root, asked)
        first = faq_meta(suggestion)["suggestions"][0]

        anna.mark()
        pick = await in_thread(anna, room, root, suggestion.event_id, "1")
        answer = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        assert (faq_meta(answer)["decision"], faq_meta(answer)["entry"]) == ("picked", first)
        assert relation(answer) == threaded(root, pick)

        # Bert below the bot's answer to Anna: colleagues' talk. Anna's next question in
        # the thread comes after it; the bot handles a room's events in order, so an answer
        # to Bert would come first.
        anna.mark()
        await in_thread(bert, room, root, answer.event_id, "Wie ändere ich es denn am Handy?")
        question = "!frage Wie funktioniert die Kaffeemaschine im dritten Stock?"
        unanswered = await in_thread(anna, room, root, answer.event_id, question)
        offer = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        assert faq_meta(offer)["offer"] is True and relation(offer) == threaded(root, unanswered)

        koord.mark()
        anna.mark()
        yes = await in_thread(anna, room, root, offer.event_id, "ja")
        created = await anna.wait_for_message(room, sender=bot_id, predicate=has(TICKET))
        assert created.content[TICKET]["event"] == "created"
        assert relation(created) == threaded(root, yes)
        # The coordinators' notice about the new request is no reply: not in any thread.
        notice = await koord.wait_for_message(sender=bot_id, predicate=has(TICKET), timeout=30)
        assert notice.content[TICKET]["id"] == created.content[TICKET]["id"]
        assert "m.relates_to" not in notice.content
        from_bot = [m.event_id for m in anna.messages(room) if m.sender == bot_id]
        assert from_bot == [suggestion.event_id, answer.event_id, offer.event_id,
                            created.event_id]  # fmt: skip

        # A thread opened on the bot's answer in the main timeline is colleagues talking about
        # it, although the client names that answer as the fallback: not for the bot.
        anna.mark()
        await anna.send_text(room, "!frage Wie ändere ich mein Passwort?")
        main = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        assert "rel_type" not in relation(main)
        anna.mark()
        await in_thread(anna, room, main.event_id, main.event_id,
                        "Bert, kannst du mir heute Nachmittag dabei helfen?")  # fmt: skip
        await anna.send_text(room, "!frage Wie richte ich einen Drucker ein?")
        after = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        assert "rel_type" not in relation(after), "the remark in the thread was taken up"
    finally:
        await runner.stop()


def redaction_of(event_id: str) -> Any:
    def matches(item: Received) -> bool:
        redacts = item.source.get("redacts") or item.content.get("redacts")
        return item.type == "m.room.redaction" and redacts == event_id

    return matches


@pytest.mark.asyncio(loop_scope="session")
async def test_a_deleted_question_takes_the_bots_copy_and_the_open_question_with_it(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """The author deletes her question: the bot redacts its offer (which repeated the question
    in the pre-filled ``!anfrage …``), the open question leaves ``!faq offen``, the offer
    can no longer be accepted. A moderator deleting someone's question does the same. A
    deleted ``!anfrage`` keeps its request, and the requester learns how to withdraw it."""
    anna = await make_user("anna")
    bert = await make_user("bert")
    koord = await make_user("koord")
    lotsin = await make_user("lotsin")
    team = {"coordinators": [koord.user_id], "pilots": [lotsin.user_id]}
    runner, app = await start_bot(tmp_path, synapse, register_user, **team)
    bot_id = app.config.matrix.user_id
    try:
        room = await group_room(anna, bot_id, bert)  # Anna created it: she moderates it
        text = "Unsere Kollegin Sabine Wolf hat Krebs, wie trage ich ihre Abwesenheit ein?"
        question = await anna.send_text(room, f"!frage {text}")
        offer = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        assert faq_meta(offer)["offer"] is True and "Sabine Wolf" in offer.body
        stored = await app.db.fetchall("SELECT question FROM faq_unanswered")
        assert [row[0] for row in stored] == [text]

        anna.mark()
        await redact(anna, room, question)
        await anna.wait_for_event(redaction_of(offer.event_id), room_id=room, sender=bot_id,
                                  timeout=30)  # fmt: skip
        assert await app.db.fetchall("SELECT * FROM faq_unanswered") == []
        assert await app.db.fetchall(
            "SELECT kind FROM pending_choices WHERE kind LIKE 'faq.%' AND user_id = ?",
            (anna.user_id,),
        ) == []  # fmt: skip
        copies = await app.db.fetchall(
            "SELECT dedup_key FROM outbox WHERE instr(content, 'Sabine') > 0"
        )
        assert copies == []
        dm = await open_dm(koord, bot_id)
        listed = await say(koord, dm, bot_id, "!faq offen")
        assert faq_meta(listed)["open"] == []

        # Bert asks, Anna (room admin) deletes his message: his question goes the same way.
        other = await bert.send_text(room, "!frage Wer hat den Schlüssel für Raum 3.12?")
        offer = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        await redact(anna, room, other)
        await anna.wait_for_event(redaction_of(offer.event_id), room_id=room, sender=bot_id,
                                  timeout=30)  # fmt: skip
        assert await app.db.fetchall("SELECT * FROM faq_unanswered") == []

        # A request stays; its author is told in the direct chat how to withdraw it.
        request = await bert.send_text(room, "!anfrage Bitte einen zweiten Monitor für Zimmer 12")
        created = await bert.wait_for_message(room, sender=bot_id, predicate=has(TICKET))
        number = created.content[TICKET]["id"]
        bert.mark()
        await redact(bert, room, request)
        hint = await bert.wait_for_message(
            sender=bot_id,
            predicate=lambda m: m.content.get(TICKET, {}).get("event") == "source_deleted",
            timeout=30,
        )
        assert hint.room_id != room and f"zurückziehen {number}" in hint.body
        status = await app.db.fetchone("SELECT status FROM tickets WHERE id = ?", (number,))
        assert status is not None and status[0] not in ("withdrawn", "resolved")
        # The confirmation names no text of the request: it stays.
        await asyncio.sleep(1.0)
        assert not [e for e in anna.events if redaction_of(created.event_id)(e)]
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_deleted_question_takes_back_the_offers_that_answered_later_messages(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """The offer to pass a question on repeats it, also when it answers a later message: "0"
    to "Meinten Sie …?", or 👎 on an answer. Deleting the question takes those back too,
    with what was kept for them."""
    anna = await make_user("anna")
    koord = await make_user("koord")
    lotsin = await make_user("lotsin")
    team = {"coordinators": [koord.user_id], "pilots": [lotsin.user_id]}
    runner, app = await start_bot(tmp_path, synapse, register_user, **team)
    bot_id = app.config.matrix.user_id

    async def kept(text: str) -> list[Any]:
        rows = await app.db.fetchall(
            "SELECT dedup_key FROM outbox WHERE instr(content, ?) > 0"
            " UNION ALL SELECT kind FROM pending_choices WHERE instr(payload, ?) > 0"
            " UNION ALL SELECT id FROM faq_unanswered WHERE instr(question, ?) > 0",
            (text, text, text),
        )
        return [row[0] for row in rows]

    try:
        room = await group_room(anna, bot_id)
        anna.mark()
        question = await anna.send_text(room, "!frage Passwort")
        suggestion = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        assert faq_meta(suggestion)["decision"] == "suggest"
        anna.mark()
        await anna.send_reply(suggestion, "0", fallback=False)
        offer = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        assert faq_meta(offer)["offer"] is True and "!anfrage Passwort" in offer.body
        assert faq_meta(offer)["question_event"] == question

        await redact(anna, room, question)
        for reply in (suggestion, offer):
            await anna.wait_for_event(redaction_of(reply.event_id), room_id=room,
                                      sender=bot_id, timeout=30)  # fmt: skip
        assert await kept("!anfrage Passwort") == []
        assert await kept("Passwort") == []

        text = "Ich habe mein Passwort vergessen"
        anna.mark()
        question = await anna.send_text(room, f"!frage {text}")
        answer = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        assert faq_meta(answer)["decision"] == "answer"
        anna.mark()
        await anna.react(room, answer.event_id, "👎")
        offer = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        assert faq_meta(offer)["offer"] is True and f"!anfrage {text}" in offer.body
        assert "faq.offer" in await kept(text)

        await redact(anna, room, question)
        for reply in (answer, offer):
            await anna.wait_for_event(redaction_of(reply.event_id), room_id=room,
                                      sender=bot_id, timeout=30)  # fmt: skip
        assert await kept(f"!anfrage {text}") == []
        assert await kept(text) == []
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_addressing_the_bot_by_name_counts_despite_an_empty_m_mentions(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """Element sends ``m.mentions: {}`` when the name was typed without a pill. A message
    that begins with the bot's name and a comma is for the bot; one that talks about the bot
    is not."""
    anna = await make_user("anna")
    bert = await make_user("bert")
    runner, app = await start_bot(tmp_path, synapse, register_user)
    bot_id = app.config.matrix.user_id
    name = bot_id[1:].split(":", 1)[0].capitalize()  # Synapse's default display name
    try:
        room = await group_room(anna, bot_id, bert)
        anna.mark()
        for body in (f"{name} ist heute aber schnell", f"Frag doch {name}, der weiß das"):
            await bert.send(room, "m.room.message",
                            {"msgtype": "m.text", "body": body, "m.mentions": {}})  # fmt: skip
        await anna.send(room, "m.room.message", {
            "msgtype": "m.text", "body": f"{name}, wie ändere ich mein Passwort?",
            "m.mentions": {},
        })  # fmt: skip
        answer = await anna.wait_for_message(room, sender=bot_id, predicate=has(META))
        assert faq_meta(answer)["decision"] in ("answer", "suggest")
        assert answer.content["m.mentions"] == {"user_ids": [anna.user_id]}

        async def quiet() -> bool:
            return len([m for m in anna.messages(room) if m.sender == bot_id]) == 1

        await asyncio.sleep(1.0)
        assert await eventually(quiet, timeout=2)
    finally:
        await runner.stop()
