"""Hostile and broken input, through a real Synapse to the real bot.

Two sources of input: the corpus in ``tests/data/hostile/corpus.yaml`` (each case with its
expected outcome), and every command of the command table with garbage arguments. Whatever
comes in, the bot must answer clearly or stay silent on purpose, never crash, never echo
unsanitised HTML, never link to other sites, never ping a whole room, and never leave a
half-handled event in its database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import pytest
import yaml

from lotsenbot.matrix.format import ALLOWED_TAGS
from tests.integration.bot import ask, make_bot, open_dm
from tests.integration.helpers import MatrixUser, Received

ASYNC = pytest.mark.asyncio(loop_scope="session")
CORPUS = Path(__file__).parents[1] / "data" / "hostile" / "corpus.yaml"
FOREIGN_HOST = "evil.example"
GARBAGE_ARGS = (
    "",
    "-1 0 99999999999999999999999999999 1e308 NaN {0} %s %(x)s {__class__}",
    "'; DROP TABLE users; -- <script>alert(1)</script> <img src=x onerror=alert(1)> "
    "[x](https://evil.example) @room",
    "\u202e\u200b\u2060 \U0001f44d \u0000 " * 3,
)
# Text from the corpus that must never show up in the bot's log (bodies are not logged).
LOG_CANARIES = ("DROP TABLE", FOREIGN_HOST, "alert(1)", "UNION SELECT", "Passwort ändern")


@dataclass(frozen=True)
class Case:
    id: str
    why: str
    expect: str
    content: Any = None
    type: str = "m.room.message"
    room: str = "dm"
    setup: str | None = None
    action: str = "send"


def load_corpus() -> list[Case]:
    cases = [Case(**raw) for raw in yaml.safe_load(CORPUS.read_text("utf-8"))]
    assert len({c.id for c in cases}) == len(cases), "case ids must be unique"
    return cases


def expand(value: Any, previous: str | None) -> Any:
    """Apply the corpus notations: ``{$repeat: s, times: n}`` and ``"$PREV"``."""
    if isinstance(value, dict):
        if set(value) == {"$repeat", "times"}:
            return str(value["$repeat"]) * int(value["times"])
        return {key: expand(item, previous) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item, previous) for item in value]
    if value == "$PREV":
        return previous
    return value


class Rejected(Exception):
    """The homeserver refused the event; it never reaches the bot."""


async def send_raw(person: MatrixUser, room_id: str, event_type: str, content: Any) -> str:
    """PUT the content exactly as given (even a list), bypassing nio's checks."""
    txn = secrets.token_hex(8)
    path = (f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/"
            f"{quote(event_type, safe='')}/{txn}")  # fmt: skip
    headers = {"Authorization": f"Bearer {person.client.access_token}",
               "Content-Type": "application/json"}  # fmt: skip
    response = await person.client.send("PUT", path, json.dumps(content), headers)
    body = await response.json()
    if response.status != 200:
        raise Rejected(str(body.get("errcode")))
    return str(body["event_id"])


async def redact(person: MatrixUser, room_id: str, event_id: str) -> None:
    path = (f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/redact/"
            f"{quote(event_id, safe='')}/{secrets.token_hex(8)}")  # fmt: skip
    headers = {"Authorization": f"Bearer {person.client.access_token}",
               "Content-Type": "application/json"}  # fmt: skip
    response = await person.client.send("PUT", path, json.dumps({"reason": "x"}), headers)
    assert response.status == 200, await response.text()


def is_barrier_reply(item: Received) -> bool:
    help_meta = item.content.get("de.lotsenbot.help")
    return isinstance(help_meta, dict) and help_meta.get("command") == "hilfe"


def error_code(item: Received) -> str | None:
    meta = item.content.get("de.lotsenbot.error")
    return meta.get("code") if isinstance(meta, dict) else None


class _Markup(HTMLParser):
    """The real tags and attributes of a formatted_body (escaped text is just text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def safety_problems(item: Received) -> list[str]:
    """What is wrong with one bot message, measured against the sending rules."""
    problems = []
    content = item.content
    if item.type == "m.room.message" and content.get("msgtype") not in ("m.notice", "m.file"):
        problems.append(f"msgtype {content.get('msgtype')}")
    mentions = content.get("m.mentions")
    if not isinstance(mentions, dict) or mentions.get("room"):
        problems.append(f"m.mentions {mentions!r}")
    if "@room" in str(content.get("body", "")):
        problems.append("@room in body")
    html = content.get("formatted_body")
    if html is None:
        return problems
    if "@room" in str(html):
        problems.append("@room in formatted_body")
    markup = _Markup()
    markup.feed(str(html))
    markup.close()
    for tag, attrs in markup.tags:
        if tag not in ALLOWED_TAGS:
            problems.append(f"tag <{tag}>")
        for name, value in attrs:
            if name not in ("href", "start", "class"):
                problems.append(f"attribute {name} on <{tag}>")
            if name == "href":
                url = urlparse(value or "")
                if url.scheme not in ("http", "https", "mailto"):
                    problems.append(f"link scheme {url.scheme!r}")
                if FOREIGN_HOST in (url.hostname or "") or FOREIGN_HOST in (value or ""):
                    problems.append(f"link to {value}")
    return problems


async def group_room(owner: MatrixUser, others: list[MatrixUser], bot_id: str) -> str:
    """A room of three or more: not a direct chat, so replies are threaded and mention."""
    response = await owner.client.room_create(
        name="Hostile", invite=[bot_id, *(o.user_id for o in others)]
    )
    room_id = str(response.room_id)  # type: ignore[union-attr]
    await owner.wait_for_join(room_id, bot_id, timeout=20)
    for other in others:
        await owner.wait_for_join(room_id, other.user_id, timeout=20)
    return room_id


async def run_case(person: MatrixUser, room: str, bot_id: str, case: Case) -> dict[str, Any]:
    """Send one case followed by a barrier; everything the bot says in between is its answer.

    The bot handles a room's events strictly in order and sends a room's replies in order,
    so the barrier's reply ("!hilfe hilfe") closes the window of the case's replies.
    """
    previous = None
    if case.setup is not None:
        person.mark()
        previous = await person.send_text(room, case.setup)
        await person.wait_for_message(room, sender=bot_id, timeout=20)
    mark = person.mark()
    try:
        if case.action == "redact":
            assert previous is not None
            await redact(person, room, previous)
        else:
            await send_raw(person, room, case.type, expand(case.content, previous))
    except Rejected as exc:
        return {"case": case, "outcome": "rejected", "errcode": str(exc), "replies": []}
    await person.send_text(room, "!hilfe hilfe")
    barrier = await person.wait_for_message(room, sender=bot_id, predicate=is_barrier_reply,
                                            timeout=30)  # fmt: skip
    replies = [m for m in person.messages(room, since=mark)
               if m.sender == bot_id and m.position < barrier.position]  # fmt: skip
    return {"case": case, "outcome": "replied" if replies else "silent", "replies": replies}


def judge(result: dict[str, Any]) -> list[str]:
    case: Case = result["case"]
    replies: list[Received] = result["replies"]
    problems = [f"{p} in {r.body[:60]!r}" for r in replies for p in safety_problems(r)]
    expect = case.expect
    if expect == "rejected":
        if result["outcome"] != "rejected":
            problems.append("expected the homeserver to refuse it")
    elif result["outcome"] == "rejected":
        problems.append(f"homeserver refused it ({result['errcode']})")
    elif expect == "ignore":
        if replies:
            problems.append(f"expected silence, got {[r.body[:60] for r in replies]}")
    elif expect == "answer":
        if not replies:
            problems.append("expected an answer, got silence")
        elif any(error_code(r) == "internal" for r in replies):
            problems.append("answered with an internal error")
        elif not all(r.body.strip() for r in replies):
            problems.append("empty answer")
    elif expect.startswith("error:"):
        codes = [error_code(r) for r in replies]
        if expect.removeprefix("error:") not in codes:
            problems.append(f"expected {expect}, got codes {codes}")
    else:
        problems.append(f"unknown expectation {expect}")
    return problems


@ASYNC
async def test_hostile_input(tmp_path, synapse, register_user, make_user, caplog, reliability):
    caplog.set_level(logging.INFO, logger="lotsenbot")
    cases = load_corpus()
    assert len(cases) >= 60
    testers = [await make_user("feind") for _ in range(4)]
    group_tester = await make_user("gruppe")
    coordinator = await make_user("koord")
    silent = await make_user("still")
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        coordinators=[coordinator.user_id],
        departments=[{"id": "it", "name": "IT-Service", "pilots": [coordinator.user_id],
                      "keywords": ["drucker", "passwort"]}],
        matrix={"cross_signing": False},
    )  # fmt: skip
    bot_id = runner.config.matrix.user_id
    app = await runner.start()
    assert app.dispatcher is not None
    try:
        dms = []
        for tester in testers:
            dms.append(await open_dm(tester, bot_id, timeout=20))
        group = await group_room(group_tester, [silent], bot_id)
        commands_room = await group_room(coordinator, [silent], bot_id)

        dm_cases = [c for c in cases if c.room == "dm"]
        group_cases = [c for c in cases if c.room == "group"]

        async def worker(person: MatrixUser, room: str, mine: list[Case]) -> list[dict[str, Any]]:
            return [await run_case(person, room, bot_id, case) for case in mine]

        lanes = [worker(t, dms[i], dm_cases[i :: len(testers)]) for i, t in enumerate(testers)]
        lanes.append(worker(group_tester, group, group_cases))
        results = [r for lane in await asyncio.gather(*lanes) for r in lane]

        # Every command of the build, with garbage arguments, by someone allowed to run it.
        command_events: dict[str, str] = {}
        coordinator.mark()
        for command in app.dispatcher.table.commands:
            for args in GARBAGE_ARGS:
                body = f"!{command.name} {args}".rstrip()
                command_events[await coordinator.send_text(commands_room, body)] = body
        await coordinator.send_text(commands_room, "!hilfe hilfe")
        await coordinator.wait_for_message(commands_room, sender=bot_id,
                                           predicate=is_barrier_reply, timeout=90)  # fmt: skip

        async def settled() -> bool:
            rows = await app.db.fetchall(
                "SELECT (SELECT count(*) FROM inbox WHERE status = 'pending') AS inbox,"
                " (SELECT count(*) FROM outbox WHERE status = 'pending') AS outbox"
            )
            return rows[0]["inbox"] == 0 and rows[0]["outbox"] == 0

        for _ in range(100):
            if await settled():
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)

        failures = {r["case"].id: p for r in results if (p := judge(r))}
        # Generated commands: each handled (no internal error), every message safe.
        everyone = [*testers, group_tester, coordinator, silent]
        bot_messages = [m for person in everyone for m in person.messages()
                        if m.sender == bot_id]  # fmt: skip
        unsafe = {f"{m.room_id} {m.body[:60]!r}": p for m in bot_messages
                  if (p := safety_problems(m))}  # fmt: skip
        replies_to: dict[str, list[Received]] = {}
        for message in coordinator.messages(commands_room):
            relates = message.content.get("m.relates_to")
            target = (relates or {}).get("m.in_reply_to", {}).get("event_id") if isinstance(
                relates, dict) else None  # fmt: skip
            if message.sender == bot_id and target:
                replies_to.setdefault(target, []).append(message)
        internal = [
            body
            for event, body in command_events.items()
            if any(error_code(m) == "internal" for m in replies_to.get(event, []))
        ]
        statuses = {row["event_id"]: row["status"] for row in await app.db.fetchall(
            f"SELECT event_id, status FROM inbox WHERE event_id IN "
            f"({','.join('?' * len(command_events))})", tuple(command_events))}  # fmt: skip
        not_done = {command_events[e]: statuses.get(e) for e in command_events
                    if statuses.get(e) != "done"}  # fmt: skip
        integrity = await app.db.fetchone("PRAGMA integrity_check")
        foreign_keys = await app.db.fetchall("PRAGMA foreign_key_check")
        left_over = await app.db.fetchall(
            "SELECT event_id, status, error FROM inbox WHERE status IN ('pending', 'failed')"
        )
        # The bot's own log (libraries are kept quiet by lotsenbot.logs, see its unit test).
        logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records
                           if r.name.startswith("lotsenbot"))  # fmt: skip
        leaked = [c for c in LOG_CANARIES if c in logged]

        assert failures == {}, json.dumps(failures, ensure_ascii=False, indent=1)
        assert unsafe == {}, unsafe
        assert internal == [], internal
        assert not_done == {}, not_done
        assert integrity is not None and integrity[0] == "ok"
        assert foreign_keys == []
        assert [dict(r) for r in left_over] == []
        assert leaked == []
        assert runner._task is not None and not runner._task.done()

        # Still alive and answering.
        reply = await ask(testers[0], dms[0], bot_id, "!hilfe")
        assert "de.lotsenbot.help" in reply.content

        outcomes: dict[str, int] = {}
        for result in results:
            outcomes[result["case"].expect.split(":")[0]] = (
                outcomes.get(result["case"].expect.split(":")[0], 0) + 1)  # fmt: skip
        reliability.record(
            "hostile_corpus", kind="hostile",
            title="Feindliche und kaputte Nachrichten aus tests/data/hostile/",
            inputs=len(results), by_expectation=outcomes, failures=0,
            generated_command_inputs=len(command_events),
            commands=len(app.dispatcher.table.commands),
            generated_replied_in_room=sum(1 for e in command_events if replies_to.get(e)),
            bot_messages_checked=len(bot_messages), unsafe_messages=0, internal_errors=0,
        )  # fmt: skip
    finally:
        await runner.stop()


@ASYNC
async def test_refused_shapes_do_not_break_the_transport(tmp_path):
    """What Synapse refused above may still come from another homeserver (or over
    federation): the transport reduces each shape to nothing or to a well-typed event."""
    from types import SimpleNamespace

    from lotsenbot.config import MatrixConfig
    from lotsenbot.matrix.transport import MatrixTransport

    config = MatrixConfig(homeserver="http://127.0.0.1:9", user_id="@bot:lotsen.test",
                          password="x", store_path=tmp_path / "store")  # fmt: skip
    transport = MatrixTransport(config)
    refused = [c for c in load_corpus() if c.expect == "rejected"]
    assert len(refused) >= 10
    try:
        for case in refused:
            source = {
                "type": case.type,
                "sender": "@feind:lotsen.test",
                "event_id": f"${case.id}",
                "origin_server_ts": 1,
                "content": expand(case.content, "$vorher"),
            }
            event = SimpleNamespace(source=source)
            incoming = transport._incoming("!raum:lotsen.test", event, True)
            if incoming is None:
                continue
            assert isinstance(incoming.body, str) and isinstance(incoming.msgtype, str), case.id
            assert incoming.relates_to is None or isinstance(incoming.relates_to, str), case.id
            assert all(isinstance(a, str) for a in incoming.answers), case.id
    finally:
        await transport.close()
