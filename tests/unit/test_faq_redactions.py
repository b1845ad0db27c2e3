"""A deleted question takes every copy of it with it, not only the bot's direct replies.

The offer to pass a question on repeats it in a pre-filled ``!anfrage …``. It may answer a
later message than the question: "0" to "Meinten Sie …?", or 👎 / ``!nicht-hilfreich`` on
an answer. Deleting the question takes those offers back too, and what was kept for them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lotsenbot.core.outbox import WITHDRAWN
from lotsenbot.core.types import Incoming
from tests.unit.test_faq_feature import ANNA, GROUP, Env, build_env

DM = "!dm-anna:stadt.de"
TICKET = "de.lotsenbot.ticket"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    environment = await build_env(tmp_path)
    try:
        yield environment
    finally:
        await environment.db.close()


async def delete(env: Env, event_id: str, *, room: str = DM, sender: str = ANNA) -> None:
    await env.event(Incoming(event_id=f"$del-{event_id[1:]}-{room[1:4]}", room_id=room,
                             sender=sender, kind="redaction", relates_to=event_id,
                             is_direct=room == DM))  # fmt: skip


async def outbox(env: Env, key: str) -> dict[str, Any]:
    row = await env.db.fetchone("SELECT * FROM outbox WHERE dedup_key = ?", (key,))
    assert row is not None
    return dict(row)


async def redactions(env: Env) -> list[str]:
    rows = await env.db.fetchall("SELECT content FROM outbox ORDER BY id")
    return [json.loads(r[0])["redacts"] for r in rows if "redacts" in json.loads(r[0])]


async def copies(env: Env, text: str) -> list[str]:
    rows = await env.db.fetchall(
        "SELECT 'outbox ' || dedup_key FROM outbox WHERE instr(content, ?) > 0"
        " UNION ALL SELECT 'choice ' || kind FROM pending_choices WHERE instr(payload, ?) > 0"
        " UNION ALL SELECT 'open ' || id FROM faq_unanswered WHERE instr(question, ?) > 0",
        (text, text, text),
    )
    return [r[0] for r in rows]


async def test_the_offer_after_none_of_the_suggestions_goes_with_the_question(env: Env) -> None:
    (suggestion,) = await env.say(ANNA, "Passwort")
    question = suggestion.dedup_key.split(":")[1]
    (offer,) = await env.say(ANNA, "0")
    assert offer.dedup_key != suggestion.dedup_key and "`!anfrage Passwort`" in offer.markdown
    assert offer.faq["question_event"] == question
    await env.deliver(suggestion, "$suggestion")
    await env.deliver(offer, "$offer")

    await delete(env, question)
    assert await redactions(env) == [suggestion.dedup_key, offer.dedup_key]
    assert await copies(env, "Passwort") == []
    withdrawn = await outbox(env, offer.dedup_key)
    assert json.loads(withdrawn["content"])["meta"] == {WITHDRAWN: True}
    assert (withdrawn["status"], withdrawn["event_id"]) == ("sent", "$offer")
    # "ja" passes nothing on any more.
    assert [m.faq for m in await env.say(ANNA, "ja")] == [{"smalltalk": "expired"}]

    # Deleted a second time (a retried redaction, a moderator too): nothing more to do.
    await delete(env, question, sender="@moderator:stadt.de")
    assert await redactions(env) == [suggestion.dedup_key, offer.dedup_key]


async def test_the_offer_after_thumbs_down_goes_with_the_question(env: Env) -> None:
    text = "Ich habe mein Passwort vergessen"
    answer = await env.one(ANNA, text)
    question = answer.dedup_key.split(":")[1]
    await env.deliver(answer, "$answer")
    _, sent = await env.react(ANNA, "$answer", "👎")
    (offer,) = sent
    assert f"!anfrage {text}" in offer.markdown and offer.faq["question_event"] == question
    assert any(c.startswith("choice faq.offer") for c in await copies(env, text))

    await delete(env, question)
    assert await redactions(env) == [answer.dedup_key, offer.dedup_key]
    assert await copies(env, text) == []
    # Not sent yet when the question went: it never goes out (the sender sees the mark).
    withdrawn = await outbox(env, offer.dedup_key)
    assert withdrawn["status"] == "pending"
    assert json.loads(withdrawn["content"])["meta"] == {WITHDRAWN: True}
    assert [m.faq for m in await env.say(ANNA, "ja")] == [{"smalltalk": "expired"}]


async def test_the_offer_after_not_helpful_for_a_picked_suggestion_goes_too(env: Env) -> None:
    """A picked suggestion's answer replies to the "1"; the question's message is kept."""
    (suggestion,) = await env.say(ANNA, "Passwort")
    question = suggestion.dedup_key.split(":")[1]
    await env.one(ANNA, "1")
    (offer,) = await env.say(ANNA, "!nicht-hilfreich")
    assert "`!anfrage Passwort`" in offer.markdown
    assert offer.faq["question_event"] == question

    await delete(env, question)
    assert offer.dedup_key in await redactions(env)
    # What is left is the knowledge base's own wording, in the answer to the "1".
    left = await copies(env, "Passwort")
    assert [c for c in left if not c.startswith("outbox evt:$e2:")] == []


async def test_the_thumbs_down_offer_stays_in_the_answers_thread(env: Env) -> None:
    answer = await env.one(ANNA, "!frage Ich habe mein Passwort vergessen", room=GROUP,
                           is_direct=False, thread_root="$wurzel")  # fmt: skip
    await env.deliver(answer, "$answer")
    sent = await env.event(Incoming(event_id="$daumen", room_id=GROUP, sender=ANNA,
                                    kind="reaction", relates_to="$answer", key="👎"))  # fmt: skip
    (offer,) = sent
    content = json.loads((await outbox(env, offer.dedup_key))["content"])
    assert content["thread_root"] == "$wurzel"


async def test_a_redaction_in_another_room_leaves_the_question_alone(env: Env) -> None:
    text = "Wie funktioniert die Kaffeemaschine im dritten Stock?"
    none = await env.one(ANNA, text)
    question = none.dedup_key.split(":")[1]
    await delete(env, question, room=GROUP)
    assert await redactions(env) == []
    assert len(await copies(env, text)) == 3  # the offer, its pending choice, the open question
    await delete(env, question)
    assert await copies(env, text) == []


async def test_a_deleted_request_counts_only_in_its_own_room(env: Env) -> None:
    sent = await env.say(ANNA, "!anfrage Bitte einen zweiten Monitor für Zimmer 12")
    request = sent[0].dedup_key.split(":")[1]
    assert any(m.meta.get(TICKET, {}).get("event") == "created" for m in sent)

    def hints(messages: list[Any]) -> list[Any]:
        return [m for m in messages if m.meta.get(TICKET, {}).get("event") == "source_deleted"]

    elsewhere = await env.event(Incoming(event_id="$del-other", room_id=GROUP, sender=ANNA,
                                         kind="redaction", relates_to=request))  # fmt: skip
    assert hints(elsewhere) == []
    here = await env.event(
        Incoming(event_id="$del-here", room_id=DM, sender=ANNA, kind="redaction",
                 relates_to=request, is_direct=True)
    )  # fmt: skip
    assert len(hints(here)) == 1
