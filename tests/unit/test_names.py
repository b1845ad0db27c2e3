"""Display names: the label shown in chat, the table, the lookup service and where names come
from (the transport, the dispatcher, the background lookups).

The label is what staff read, so its tests are about what a name can do to a message: break
the Markdown, reorder text with bidi controls, pass for someone else, or run on for lines.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from nio import (
    MatrixRoom,
    ProfileGetDisplayNameError,
    ProfileGetDisplayNameResponse,
    RoomMemberEvent,
)

from lotsenbot.config import Config, MatrixConfig
from lotsenbot.core import names
from lotsenbot.core.clock import Clock, iso
from lotsenbot.core.dispatch import Dispatcher
from lotsenbot.core.inbox import Inbox
from lotsenbot.core.names import NameDirectory, clean_name, person_label
from lotsenbot.core.services import Services
from lotsenbot.core.types import Incoming
from lotsenbot.matrix.format import plain_text, render_html
from lotsenbot.matrix.names import NameLookups
from lotsenbot.matrix.transport import MatrixTransport
from lotsenbot.privacy.feature import PrivacyFeature
from lotsenbot.storage.db import Database
from lotsenbot.tickets.feature import TicketsFeature

BOT = "@lotsenbot:stadt.de"
ANNA = "@anna:stadt.de"
CARLA = "@carla:stadt.de"
LOTSIN = "@lotsin:stadt.de"
KOORD = "@koord:stadt.de"
MALLORY = "@mallory:stadt.de"
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
IT_TEXT = "Mein Drucker druckt nicht mehr, und der Laptop findet das VPN nicht"


def shown(markdown: str) -> str:
    """What a person reads: the plain body the transport sends for this Markdown."""
    return plain_text(markdown)


# -- the label ---------------------------------------------------------------------------------


def test_a_name_is_shown_with_the_matrix_id() -> None:
    label = person_label(ANNA, "Anna Schmidt")
    assert shown(label) == "Anna Schmidt (@anna:stadt.de)"
    assert person_label(ANNA, "Anna Schmidt") == "Anna Schmidt (\\@anna\\:stadt\\.de)"


def test_without_a_usable_name_the_matrix_id_alone_is_shown() -> None:
    for name in (None, "", "   ", "\u200b\u202e", "anna", "ANNA", ANNA):
        assert shown(person_label(ANNA, name)) == ANNA, name  # the localpart adds nothing


def test_markdown_in_a_name_is_shown_literally() -> None:
    for name in ("**Chef** [klick](https://x.de)", "`x` # _y_ <b>z</b>", "![b](x.png) ~~s~~"):
        label = person_label(ANNA, name)
        html = render_html(label)
        assert "<a" not in html and "<strong>" not in html and "<img" not in html
        assert "<code>" not in html and "<em>" not in html and "<b>" not in html
        assert "<s>" not in html and "<del>" not in html
        assert shown(label) == f"{name} ({ANNA})"


def test_control_and_bidi_characters_are_removed_and_whitespace_collapsed() -> None:
    # U+202E would show "(@anna…)" reversed after the name; U+2066 isolates, U+200B hides.
    name = "Anna\u202e Schmidt\u2066\u200b\x00\x07\n\n  Zeile\u2028zwei\t"
    assert clean_name(name, ANNA) == "Anna Schmidt Zeile zwei"
    label = person_label(ANNA, name)
    assert "\n" not in label and "\u202e" not in label and "\x00" not in label


def test_names_that_could_pass_for_someone_else_show_only_the_real_id() -> None:
    for name in (
        "@koordination:stadt.de",
        "Anna Schmidt (@anna:stadt.de)",  # the whole label of another person
        "＠koordination：stadt.de",  # fullwidth look-alikes
        "@koordination",  # a mention of nobody
        "IT-Service @it",
    ):
        assert shown(person_label(MALLORY, name)) == MALLORY, name
    # A name like a department is shown, but never without whose it is.
    assert shown(person_label(MALLORY, "IT-Service")) == f"IT-Service ({MALLORY})"
    # An e-mail address is no Matrix ID.
    assert shown(person_label(ANNA, "anna.schmidt@stadt.de")) == f"anna.schmidt@stadt.de ({ANNA})"


def test_long_names_are_cut() -> None:
    label = shown(person_label(ANNA, "Anna " + "Sehr-Lang" * 30))
    name = label.removesuffix(f" ({ANNA})")
    assert len(name) == names.SHOWN_LENGTH and name.endswith("…")
    # Piled-up combining marks ("Zalgo") are cut down to a readable number.
    assert clean_name("Z" + "\u0353" * 50 + "oe", ANNA) == "Z\u0353\u0353oe"
    # Accents and other scripts stay as they are.
    for name in ("Zoë Müller-Lüdenscheidt", "Jürgen Weiß", "Σοφία", "Åsa", "محمد"):
        assert clean_name(name, ANNA) == name


def test_a_strange_matrix_id_is_shown_without_control_characters() -> None:
    assert shown(person_label("@an\u202ena:stadt.de", None)) == "@anna:stadt.de"


# -- the table ---------------------------------------------------------------------------------


async def test_learning_updating_and_forgetting(db: Database) -> None:
    conn = db.conn
    assert await names.learn(conn, ANNA, "Anna Schmidt", "event", NOW)
    assert await names.learn(conn, ANNA, "Anna Schmidt-Meyer", "member", NOW + timedelta(days=1))
    found = await names.stored_names(conn, [ANNA, CARLA])
    assert list(found) == [ANNA]
    assert (found[ANNA].display_name, found[ANNA].source) == ("Anna Schmidt-Meyer", "member")
    assert found[ANNA].learned_at == iso(NOW + timedelta(days=1))
    # Known people only: nobody new is added, a known person is kept current.
    assert not await names.learn(conn, CARLA, "Carla", "member", NOW, only_if_known=True)
    assert await names.learn(conn, ANNA, "", "member", NOW, only_if_known=True)  # name removed
    assert (await names.stored_names(conn, [ANNA]))[ANNA].display_name == ""
    # Stored bounded, even if a server allows longer names.
    await names.learn(conn, CARLA, "C" * 1000, "profile", NOW)
    assert len((await names.stored_names(conn, [CARLA]))[CARLA].display_name) == 256
    assert await names.export_name(conn, ANNA) == {
        "display_name": "", "source": "member", "learned_at": iso(NOW)
    }  # fmt: skip
    assert await names.forget(conn, ANNA) == 1
    assert await names.forget(conn, ANNA) == 0
    assert await names.export_name(conn, ANNA) is None


async def test_renames_keep_known_names_current_and_record_the_team_only(db: Database) -> None:
    conn = db.conn
    await names.learn(conn, ANNA, "Anna Schmidt", "event", NOW)
    seen = {ANNA: "Anna Meyer", CARLA: "Carla aus dem Flur", LOTSIN: "Lotsin Lena"}
    written = await names.learn_renames(conn, seen, NOW, keep_new=lambda u: u == LOTSIN)
    assert written == 2
    stored = await names.stored_names(conn, seen)
    assert {u: s.display_name for u, s in stored.items()} == {
        ANNA: "Anna Meyer", LOTSIN: "Lotsin Lena"
    }  # fmt: skip
    # A room's full state in a later sync (the bot joined another room): nothing changed,
    # nothing written.
    assert await names.learn_renames(conn, seen, NOW, keep_new=lambda u: u == LOTSIN) == 0


async def test_labels_read_the_database_and_ask_for_lookups_without_waiting(db: Database) -> None:
    directory = NameDirectory(max_wanted=3)
    await names.learn(db.conn, ANNA, "Anna Schmidt", "event", NOW)
    await names.learn(db.conn, LOTSIN, "Lena Lotsin", "member", NOW - timedelta(days=8))
    people = directory.on(db.conn, NOW)
    labels = await people.labels([ANNA, LOTSIN, CARLA, "[gelöscht]", "ticket:3"])
    assert {k: shown(v) for k, v in labels.items()} == {
        ANNA: f"Anna Schmidt ({ANNA})",
        LOTSIN: f"Lena Lotsin ({LOTSIN})",  # old, still shown, and looked up again
        CARLA: CARLA,  # unknown: the ID now, a lookup for next time
        "[gelöscht]": "[gelöscht]",
        "ticket:3": "ticket:3",
    }
    assert directory.wanted == [LOTSIN, CARLA]
    assert shown(await people.join([CARLA, ANNA])) == f"{CARLA}, Anna Schmidt ({ANNA})"
    # The list is bounded; what does not fit is asked for again the next time it is shown.
    directory.want(["@a:stadt.de", "@b:stadt.de", "@c:stadt.de"])
    assert directory.wanted == [LOTSIN, CARLA, "@a:stadt.de"]
    assert directory.take_wanted(2) == [LOTSIN, CARLA]
    assert directory.wanted == ["@a:stadt.de"]


# -- background lookups --------------------------------------------------------------------------


class FakeSource:
    def __init__(self, members: dict[str, str], profiles: dict[str, str | None]) -> None:
        self.members = members
        self.profiles = profiles
        self.asked: list[str] = []

    def member_name(self, user_id: str) -> str | None:
        return self.members.get(user_id)

    async def profile_name(self, user_id: str, timeout: float = 10.0) -> str | None:
        self.asked.append(user_id)
        return self.profiles.get(user_id)


async def test_lookups_use_what_the_sync_knows_then_the_profile(db: Database) -> None:
    directory = NameDirectory()
    source = FakeSource({LOTSIN: "Lena Lotsin"}, {CARLA: "Carla Beispiel", KOORD: None})
    clock = [1000.0]
    lookups = NameLookups(source, db, directory, lambda: NOW, may_ask=lambda u: u != BOT,
                          keep_new=lambda u: u in (LOTSIN, KOORD), pause=0,
                          monotonic=lambda: clock[0])  # fmt: skip
    await wrote_to_the_bot(db, CARLA)
    directory.want([LOTSIN, CARLA, KOORD, BOT])
    assert await lookups.run_once() == {LOTSIN: "Lena Lotsin", CARLA: "Carla Beispiel"}
    assert source.asked == [CARLA, KOORD]  # no request for a member, none for the bot
    stored = await names.stored_names(db.conn, [LOTSIN, CARLA, KOORD])
    assert {u: (s.display_name, s.source) for u, s in stored.items()} == {
        LOTSIN: ("Lena Lotsin", "member"), CARLA: ("Carla Beispiel", "profile")
    }  # fmt: skip
    # The homeserver did not answer for KOORD: not asked again within the hour, then again.
    directory.want([KOORD])
    assert await lookups.run_once() == {} and source.asked == [CARLA, KOORD]
    clock[0] += 3601
    source.profiles[KOORD] = ""  # no display name set
    directory.want([KOORD])
    assert await lookups.run_once() == {KOORD: ""}


async def wrote_to_the_bot(db: Database, user_id: str) -> None:
    await db.execute(
        "INSERT INTO users (user_id, first_seen, last_seen) VALUES (?, ?, ?)",
        (user_id, NOW.isoformat(), NOW.isoformat()),
    )


async def test_a_looked_up_name_is_kept_only_for_people_who_wrote_or_the_team(
    db: Database,
) -> None:
    """An ID shown in a message is looked up, but the name is kept only for someone the bot
    may keep data of: an erased person who appears in the audit log, or a deputy a pilot
    typed, gets no row (and an erased name does not come back)."""
    directory = NameDirectory()
    source = FakeSource({CARLA: "Carla Beispiel", ANNA: "Anna Schmidt"}, {})
    lookups = NameLookups(source, db, directory, lambda: NOW, may_ask=lambda u: True,
                          keep_new=lambda u: False, pause=0)  # fmt: skip
    await wrote_to_the_bot(db, CARLA)
    async with db.transaction() as conn:
        await names.learn(conn, ANNA, "Anna Schmidt", "event", NOW)
        await names.forget(conn, ANNA)  # what erasure does (her users row is gone too)
    directory.want([CARLA, ANNA])
    await lookups.run_once()
    stored = await names.stored_names(db.conn, [CARLA, ANNA])
    assert set(stored) == {CARLA}


async def test_lookups_run_in_the_background_until_stopped(db: Database) -> None:
    directory = NameDirectory()
    source = FakeSource({}, {CARLA: "Carla Beispiel"})
    lookups = NameLookups(source, db, directory, lambda: NOW, may_ask=lambda u: True, pause=0)
    await wrote_to_the_bot(db, CARLA)
    task = asyncio.create_task(lookups.run())
    await asyncio.sleep(0.01)
    directory.want([CARLA])
    for _ in range(100):
        if await names.stored_names(db.conn, [CARLA]):
            break
        await asyncio.sleep(0.01)
    assert (await names.stored_names(db.conn, [CARLA]))[CARLA].display_name == "Carla Beispiel"
    lookups.stop()
    directory.want(["@x:stadt.de"])  # wakes it up to notice
    await asyncio.wait_for(task, 1)


# -- the transport -------------------------------------------------------------------------------


def transport(tmp_path: Path) -> MatrixTransport:
    config = MatrixConfig(
        homeserver="http://127.0.0.1:1", user_id=BOT, password="x", store_path=tmp_path / "store"
    )
    return MatrixTransport(config)


def member(user_id: str, name: str | None, membership: str = "join") -> RoomMemberEvent:
    content: dict[str, object] = {"membership": membership}
    if name is not None:
        content["displayname"] = name
    return RoomMemberEvent.from_dict({
        "type": "m.room.member", "state_key": user_id, "sender": user_id, "event_id": "$m",
        "origin_server_ts": 1, "content": content,
    })  # fmt: skip


def text_event(sender: str) -> SimpleNamespace:
    return SimpleNamespace(source={
        "type": "m.room.message", "sender": sender, "event_id": "$t", "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": "!anfragen"},
    })  # fmt: skip


async def test_events_carry_the_senders_name_in_the_room(tmp_path: Path) -> None:
    t = transport(tmp_path)
    room = t.client.rooms["!r:stadt.de"] = MatrixRoom("!r:stadt.de", BOT)
    room.add_member(ANNA, "Anna Schmidt", None)
    room.add_member(CARLA, None, None)
    anna = t._incoming("!r:stadt.de", text_event(ANNA), is_direct=False)
    carla = t._incoming("!r:stadt.de", text_event(CARLA), is_direct=False)
    stranger = t._incoming("!r:stadt.de", text_event(MALLORY), is_direct=False)
    assert anna is not None and anna.sender_name == "Anna Schmidt"
    assert carla is not None and carla.sender_name == ""  # known to have none
    assert stranger is not None and stranger.sender_name is None  # not known here
    # The name survives the inbox (JSON), and rows stored before it existed still load.
    assert Incoming.from_json(anna.to_json()).sender_name == "Anna Schmidt"
    old = json.loads(anna.to_json())
    del old["sender_name"]
    assert Incoming.from_json(json.dumps(old)).sender_name is None
    await t.close()


async def test_membership_events_and_rooms_give_names(tmp_path: Path) -> None:
    t = transport(tmp_path)
    events = [
        member(ANNA, "Anna Schmidt"), member(CARLA, None), member(BOT, "Lotsenbot"),
        member(LOTSIN, "Lena", "invite"), member(KOORD, "Karl", "leave"),
        member(ANNA, "Anna Meyer"),  # renamed later in the same batch: the latest wins
    ]  # fmt: skip
    assert t._member_names(events) == {ANNA: "Anna Meyer", CARLA: ""}
    group = t.client.rooms["!gruppe:stadt.de"] = MatrixRoom("!gruppe:stadt.de", BOT)
    group.add_member(ANNA, "Anna im Gruppenraum", None)
    direct = t.client.rooms["!dm:stadt.de"] = MatrixRoom("!dm:stadt.de", BOT)
    direct.add_member(ANNA, "Anna Schmidt", None)
    direct.add_member(LOTSIN, None, None)
    t.remember_direct("!dm:stadt.de")
    assert t.member_name(ANNA) == "Anna Schmidt"  # the direct chat first
    assert t.member_name(LOTSIN) == ""
    assert t.member_name(MALLORY) is None
    await t.close()


async def test_profile_lookups(tmp_path: Path) -> None:
    t = transport(tmp_path)
    answers: dict[str, object] = {
        ANNA: ProfileGetDisplayNameResponse("Anna Schmidt"),
        CARLA: ProfileGetDisplayNameResponse(None),
        MALLORY: ProfileGetDisplayNameError("nope", "M_NOT_FOUND"),
        KOORD: ProfileGetDisplayNameError("später", "M_LIMIT_EXCEEDED"),
    }

    async def get_displayname(user_id: str) -> object:
        if user_id == LOTSIN:
            raise TimeoutError
        return answers[user_id]

    t.client.get_displayname = get_displayname  # type: ignore[method-assign,assignment]
    assert await t.profile_name(ANNA) == "Anna Schmidt"
    assert await t.profile_name(CARLA) == ""
    assert await t.profile_name(MALLORY) == ""  # no such profile: nothing to learn
    assert await t.profile_name(KOORD) is None  # try later
    assert await t.profile_name(LOTSIN) is None
    await t.close()


# -- the dispatcher records names of the people it handles events for -------------------------


def make_config() -> Config:
    return Config.model_validate(
        {
            "matrix": {"homeserver": "http://127.0.0.1:1", "user_id": BOT, "password": "x"},
            "bot": {"coordinators": [KOORD]},
            "departments": [
                {"id": "it", "name": "IT-Service", "specialist": True,
                 "keywords": ["Drucker", "Laptop", "VPN"], "pilots": [LOTSIN]},
            ],
        }
    )  # fmt: skip


class Env:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.services = Services.create(make_config(), db, Clock())
        self.features = [TicketsFeature(), PrivacyFeature()]
        for feature in self.features:
            self.services.features[feature.name] = feature
        self.dispatcher = Dispatcher(self.services, [f.router for f in self.features], Inbox(db))
        self._ids = 0
        self._seen = 0

    async def start(self) -> None:
        for feature in self.features:
            await feature.start(self.services)

    async def say(self, sender: str, body: str, name: str | None, *, direct: bool = True,
                  room: str | None = None, sent: datetime | None = None,
                  ) -> list[tuple[str, str]]:  # fmt: skip
        self._ids += 1
        room = room or f"!dm-{sender[1:].split(':')[0]}:stadt.de"
        origin_ts = int(sent.timestamp() * 1000) if sent is not None else 0
        await self.dispatcher.handle(Incoming(
            event_id=f"$e{self._ids}", room_id=room, sender=sender, kind="message", body=body,
            is_direct=direct, sender_name=name, origin_ts=origin_ts,
        ))  # fmt: skip
        rows = await self.db.fetchall("SELECT * FROM outbox WHERE id > ? ORDER BY id",
                                      (self._seen,))  # fmt: skip
        if rows:
            self._seen = rows[-1]["id"]
        return [(r["target"], shown(json.loads(r["content"])["markdown"])) for r in rows]

    async def name_of(self, user_id: str) -> str | None:
        found = await names.stored_names(self.db.conn, [user_id])
        return found[user_id].display_name if user_id in found else None


@pytest.fixture
async def env(db: Database) -> AsyncIterator[Env]:
    environment = Env(db)
    await environment.start()
    yield environment
    if environment.services.scheduler.running:
        environment.services.scheduler.shutdown(wait=False)


async def test_the_senders_name_is_in_the_first_notice_about_their_request(env: Env) -> None:
    out = await env.say(CARLA, f"!anfrage {IT_TEXT}", "Carla Beispiel")
    notice = [text for target, text in out if target == LOTSIN]
    assert len(notice) == 1 and f"von Carla Beispiel ({CARLA})" in notice[0]
    assert await env.name_of(CARLA) == "Carla Beispiel"
    # A rename reaches the next message.
    out = await env.say(CARLA, f"!anfrage {IT_TEXT}", "Carla Neu")
    assert any(f"von Carla Neu ({CARLA})" in text for target, text in out if target == LOTSIN)


async def test_group_chatter_is_not_recorded_and_a_rooms_nickname_changes_no_name(
    env: Env,
) -> None:
    group = "!flur:stadt.de"
    assert await env.say(ANNA, "Kaffee?", "Anna Schmidt", direct=False, room=group) == []
    assert await env.name_of(ANNA) is None
    await env.say(ANNA, "!anfragen", "Anna Schmidt")
    assert await env.name_of(ANNA) == "Anna Schmidt"
    # A group room's own nickname for her does not replace her name (renames come from the
    # direct chat, the sync's member events or her profile) ...
    await env.say(ANNA, "Kaffee?", "Anni vom Flur", direct=False, room=group)
    assert await env.name_of(ANNA) == "Anna Schmidt"
    # ... her message in the direct chat does.
    await env.say(ANNA, "!anfragen", "Anna Meyer")
    assert await env.name_of(ANNA) == "Anna Meyer"
    # Without a name from the transport nothing changes.
    await env.say(ANNA, "!anfragen", None)
    assert await env.name_of(ANNA) == "Anna Meyer"


async def test_an_event_older_than_a_known_rename_does_not_undo_it(env: Env) -> None:
    """An event that waited (a retry) while a later sync brought a rename carries the old
    name; the newer one stays."""
    now = env.services.clock.now()
    await names.learn(env.db.conn, ANNA, "Anna Meyer", "member", now)
    await env.say(ANNA, "!anfragen", "Anna Schmidt", sent=now - timedelta(minutes=5))
    assert await env.name_of(ANNA) == "Anna Meyer"
    await env.say(ANNA, "!anfragen", "Anna Meyer-Schmidt", sent=now + timedelta(seconds=1))
    assert await env.name_of(ANNA) == "Anna Meyer-Schmidt"


async def test_erasure_removes_the_name_and_does_not_learn_it_again(env: Env) -> None:
    await env.say(ANNA, "!anfragen", "Anna Schmidt")
    await env.say(ANNA, "!daten-löschen", "Anna Schmidt")
    await env.say(ANNA, "!daten-löschen bestätigen", "Anna Schmidt")
    assert await env.name_of(ANNA) is None
