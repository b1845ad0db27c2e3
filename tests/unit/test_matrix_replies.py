"""Replies: the transport passes on which event a message answers, and the inbox keeps it.

A reply to one of the bot's messages about a request goes to that request; the replied-to
event id has to survive the way every event takes (inbox row, crash, replay).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lotsenbot.config import MatrixConfig
from lotsenbot.core.inbox import Inbox
from lotsenbot.core.types import Incoming
from lotsenbot.matrix.transport import MatrixTransport
from lotsenbot.storage.db import Database

BOT = "@lotsenbot:stadt.example"
ANNA = "@anna:stadt.example"
ROOM = "!dm:stadt.example"
NOTICE = "$rueckfrage"


def transport(tmp_path: Path) -> MatrixTransport:
    config = MatrixConfig(
        homeserver="http://127.0.0.1:1", user_id=BOT, password="x", store_path=tmp_path / "store"
    )
    return MatrixTransport(config)


def message(content: dict[str, Any], event_type: str = "m.room.message") -> SimpleNamespace:
    return SimpleNamespace(source={"type": event_type, "sender": ANNA, "event_id": "$antwort",
                                   "origin_server_ts": 1, "content": content})  # fmt: skip


def parse(t: MatrixTransport, content: dict[str, Any], event_type: str = "m.room.message"
          ) -> Incoming:  # fmt: skip
    incoming = t._incoming(ROOM, message(content, event_type), is_direct=True)
    assert incoming is not None
    return incoming


def test_a_reply_names_the_message_it_answers(tmp_path: Path) -> None:
    t = transport(tmp_path)
    with_fallback = {  # as Element sent replies for years: the quote in front
        "msgtype": "m.text",
        "body": f"> <{BOT}> 💬 Antwort von @lotsin zu Ihrer Anfrage #5:\n\nJa, das HP-Modell",
        "format": "org.matrix.custom.html",
        "formatted_body": "<mx-reply><blockquote>Antwort</blockquote></mx-reply>Ja, das HP-Modell",
        "m.relates_to": {"m.in_reply_to": {"event_id": NOTICE}},
        "m.mentions": {"user_ids": [BOT]},
    }
    incoming = parse(t, with_fallback)
    assert (incoming.kind, incoming.reply_to, incoming.body) == (
        "message", NOTICE, "Ja, das HP-Modell"
    )  # fmt: skip
    assert incoming.relates_to is None  # that field is for reactions, edits and the like
    without_fallback = {"msgtype": "m.text", "body": "Ja, das HP-Modell",
                        "m.relates_to": {"m.in_reply_to": {"event_id": NOTICE}}}  # fmt: skip
    assert parse(t, without_fallback).reply_to == NOTICE
    # A reply that is a command stays a command; the dispatcher sees the "!" first.
    command = {**without_fallback, "body": "!antwort 5 Ja"}
    assert (parse(t, command).body, parse(t, command).reply_to) == ("!antwort 5 Ja", NOTICE)


def test_no_reply_without_a_chosen_replied_to_event(tmp_path: Path) -> None:
    t = transport(tmp_path)
    plain = {"msgtype": "m.text", "body": "Wie ändere ich mein Passwort?"}
    assert parse(t, plain).reply_to is None
    for relates in (
        "kaputt",
        {"m.in_reply_to": "kaputt"},
        {"m.in_reply_to": {"event_id": 5}},
        {"m.in_reply_to": {"event_id": "keine-ereignis-id"}},
        {"m.in_reply_to": {"event_id": "$" + "x" * 300}},
        {"m.in_reply_to": {}},
    ):
        assert parse(t, {**plain, "m.relates_to": relates}).reply_to is None, relates
    # In a thread the latest event stands in m.in_reply_to only for clients without threads.
    in_thread = {**plain, "m.relates_to": {"rel_type": "m.thread", "event_id": "$wurzel",
                                           "is_falling_back": True,
                                           "m.in_reply_to": {"event_id": NOTICE}}}  # fmt: skip
    assert parse(t, in_thread).reply_to is None
    chosen = {**plain, "m.relates_to": {"rel_type": "m.thread", "event_id": "$wurzel",
                                        "is_falling_back": False,
                                        "m.in_reply_to": {"event_id": NOTICE}}}  # fmt: skip
    assert parse(t, chosen).reply_to == NOTICE  # a reply chosen within the thread


def test_reactions_and_edits_are_no_replies(tmp_path: Path) -> None:
    t = transport(tmp_path)
    reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": NOTICE, "key": "👍"}}
    incoming = parse(t, reaction, "m.reaction")
    assert (incoming.kind, incoming.relates_to, incoming.reply_to) == ("reaction", NOTICE, None)
    edit = {"msgtype": "m.text", "body": "* neu",
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$alt"}}  # fmt: skip
    assert parse(t, edit).reply_to is None


def test_the_replied_to_event_survives_the_json_round_trip() -> None:
    incoming = Incoming(event_id="$a", room_id=ROOM, sender=ANNA, kind="message",
                        body="Ja", is_direct=True, reply_to=NOTICE, answers=("x",))  # fmt: skip
    assert Incoming.from_json(incoming.to_json()) == incoming
    # A row stored before replies were passed on has no such field: it loads as no reply.
    old = asdict(incoming)
    del old["reply_to"]
    loaded = Incoming.from_json(json.dumps(old))
    assert loaded.reply_to is None and loaded.body == "Ja" and loaded.answers == ("x",)


async def test_a_pending_reply_is_replayed_with_its_replied_to_event(db: Database) -> None:
    """After a crash the inbox hands the event out again: still a reply to the same event."""
    inbox = Inbox(db)
    now = datetime(2027, 1, 12, 9, 0, tzinfo=UTC)
    incoming = Incoming(event_id="$a", room_id=ROOM, sender=ANNA, kind="message",
                        body="Ja, das HP-Modell", is_direct=True, reply_to=NOTICE)  # fmt: skip
    async with db.transaction() as conn:
        assert await inbox.accept(conn, [incoming], now) == [incoming]
    async with db.transaction() as conn:
        assert await inbox.accept(conn, [incoming], now) == []  # seen: not stored twice
    [pending] = await inbox.pending(now)
    assert pending.incoming == incoming


def test_a_message_in_a_thread_names_its_thread(tmp_path: Path) -> None:
    """Element writes in a thread with ``rel_type: m.thread`` to the root and, for clients
    without threads, the thread's latest event as ``m.in_reply_to`` marked
    ``is_falling_back``: that is no chosen reply, but it says what the message follows."""
    t = transport(tmp_path)
    typed_on = {"msgtype": "m.text", "body": "1", "m.mentions": {},
                "m.relates_to": {"rel_type": "m.thread", "event_id": "$wurzel",
                                 "is_falling_back": True,
                                 "m.in_reply_to": {"event_id": NOTICE}}}  # fmt: skip
    incoming = parse(t, typed_on)
    assert (incoming.thread_root, incoming.thread_latest, incoming.reply_to) == (
        "$wurzel", NOTICE, None
    )  # fmt: skip
    chosen = {**typed_on, "m.relates_to": {**typed_on["m.relates_to"], "is_falling_back": False}}
    incoming = parse(t, chosen)
    assert (incoming.thread_root, incoming.thread_latest, incoming.reply_to) == (
        "$wurzel", None, NOTICE
    )  # fmt: skip
    first = {"msgtype": "m.text", "body": "!frage Drucker?",
             "m.relates_to": {"rel_type": "m.thread", "event_id": "$wurzel"}}  # fmt: skip
    assert (parse(t, first).thread_root, parse(t, first).thread_latest) == ("$wurzel", None)
    for broken in ({"rel_type": "m.thread"}, {"rel_type": "m.thread", "event_id": "kein-id"}):
        incoming = parse(t, {"msgtype": "m.text", "body": "x", "m.relates_to": broken})
        assert (incoming.thread_root, incoming.thread_latest) == (None, None)
    # The thread travels with the event through the inbox.
    assert Incoming.from_json(parse(t, typed_on).to_json()).thread_latest == NOTICE
