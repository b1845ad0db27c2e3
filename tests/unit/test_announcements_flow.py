"""The announcement commands and the fan-out job against a real database, without Matrix.

The dispatcher and the feature run exactly as in the bot; "delivery" is simulated by marking
outbox rows as sent, which is all the feature ever sees of the sender.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lotsenbot.announcements import AnnouncementsFeature, store
from lotsenbot.config import Config
from lotsenbot.core.clock import Clock, iso
from lotsenbot.core.dispatch import Dispatcher
from lotsenbot.core.inbox import Inbox
from lotsenbot.core.services import Services
from lotsenbot.core.types import Incoming
from lotsenbot.storage.db import Database
from lotsenbot.storage.migrate import migrate

BOT = "@lotsenbot:stadt.example"
CEM = "@cem:stadt.example"  # coordinator
ANNA, BEN = "@anna:stadt.example", "@ben:stadt.example"  # pilots of "it"
DORA, EVA = "@dora:stadt.example", "@eva:stadt.example"  # staff
IT_ROOM = "!it:stadt.example"
DM = "!dm-cem:stadt.example"
META = "de.lotsenbot.announcement"
_events = itertools.count(1)


@dataclass
class Harness:
    db: Database
    clock: Clock
    feature: AnnouncementsFeature
    dispatcher: Dispatcher

    async def say(self, sender: str, body: str, room: str = DM) -> str:
        event_id = f"$e{next(_events)}"
        incoming = Incoming(event_id, room, sender, "message", body=body, is_direct=room == DM)
        await self.dispatcher.handle(incoming)
        return event_id

    async def react(self, sender: str, event_id: str, key: str = "👍") -> None:
        incoming = Incoming(
            f"$r{next(_events)}",
            DM,
            sender,
            "reaction",
            relates_to=event_id,
            key=key,
            is_direct=True,
        )
        await self.dispatcher.handle(incoming)

    async def rows(self, like: str = "%") -> list[dict[str, Any]]:
        found = await self.db.fetchall(
            "SELECT * FROM outbox WHERE dedup_key LIKE ? ORDER BY id", (like,)
        )
        return [dict(r) for r in found]

    async def replies(self, event_id: str) -> list[dict[str, Any]]:
        """What the bot answered to one event, as (target, meta, markdown)."""
        out = []
        for row in await self.rows(f"evt:{event_id}:%"):
            content = json.loads(row["content"])
            out.append(
                {
                    "target": row["target"],
                    "meta": content["meta"],
                    "markdown": content["markdown"],
                    "key": row["dedup_key"],
                }
            )
        return out

    async def reply(self, event_id: str) -> dict[str, Any]:
        found = await self.replies(event_id)
        assert len(found) == 1, found
        return found[0]

    async def deliver_all(self, status: str = "sent") -> None:
        """What the sender would do: settle every pending row, with a fresh event id."""
        for row in await self.rows():
            if row["status"] == "pending":
                await self.db.execute(
                    "UPDATE outbox SET status = ?, event_id = ? WHERE id = ?",
                    (status, f"$sent{row['id']}", row["id"]),
                )

    async def state(self, announcement_id: int) -> str:
        announcement = await store.get(self.db.conn, announcement_id)
        assert announcement is not None
        return announcement.state


@pytest_asyncio.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    config = Config.model_validate(
        {
            "matrix": {"homeserver": "http://127.0.0.1:9", "user_id": BOT, "password": "x"},
            "bot": {"coordinators": [CEM]},
            "departments": [
                {"id": "it", "name": "IT-Service", "pilots": [ANNA, BEN], "room": IT_ROOM}
            ],
        }
    )
    db = Database(tmp_path / "bot.db")
    await db.open()
    await migrate(db)
    clock = Clock()
    services = Services.create(config, db, clock)
    feature = AnnouncementsFeature()
    services.features[feature.name] = feature
    dispatcher = Dispatcher(services, [feature.router], Inbox(db))
    await feature.start(services)
    try:
        yield Harness(db, clock, feature, dispatcher)
    finally:
        await feature.stop()
        await db.close()


async def create(h: Harness, command: str) -> tuple[int, dict[str, Any]]:
    event_id = await h.say(CEM, command)
    preview = await h.reply(event_id)
    assert preview["meta"][META]["preview"] is True, preview
    return preview["meta"][META]["id"], preview


async def test_preview_send_fan_out_and_summary(harness: Harness) -> None:
    h = harness
    announcement_id, preview = await create(h, "!ankündigung lotsen **Hallo** zusammen\n\nZeile 2")
    meta = preview["meta"][META]
    assert meta["recipients"] == 2 and meta["audience"] == "lotsen" and meta["send_at"] is None
    assert "**Hallo** zusammen" in preview["markdown"]  # coordinator Markdown is not escaped
    assert await h.rows("ann:%") == []  # nothing goes out before the confirmation
    assert await h.state(announcement_id) == "draft"

    confirm = await h.reply(await h.say(CEM, f"!senden {announcement_id}"))
    assert confirm["meta"][META] == {"id": announcement_id, "state": "sending"}
    await h.feature.tick()
    rows = await h.rows("ann:%")
    assert [(r["target_kind"], r["target"]) for r in rows] == [("user", ANNA), ("user", BEN)]
    assert {r["dedup_key"] for r in rows} == {
        f"ann:{announcement_id}:{ANNA}",
        f"ann:{announcement_id}:{BEN}",
    }
    content = json.loads(rows[0]["content"])
    assert content["meta"][META] == {"id": announcement_id, "important": False}
    assert content["mentions"] == []
    assert "**Hallo** zusammen\n\nZeile 2" in content["markdown"]
    assert await h.state(announcement_id) == "sending"

    await h.feature.tick()  # running again adds nothing and reports nothing yet
    assert len(await h.rows("ann:%")) == 2
    assert await h.rows("ann-summary:%") == []

    status = await h.reply(await h.say(CEM, f"!ankündigung status {announcement_id}"))
    assert status["meta"][META]["status"] == {
        "state": "sending",
        "recipients": 2,
        "pending": 2,
        "sent": 0,
        "failed": 0,
    }

    await h.deliver_all()
    await h.db.execute(
        "UPDATE outbox SET status = 'failed' WHERE dedup_key = ?", (f"ann:{announcement_id}:{BEN}",)
    )
    await h.feature.tick()
    assert await h.state(announcement_id) == "done"
    (summary,) = await h.rows("ann-summary:%")
    assert summary["target"] == DM
    summary_meta = json.loads(summary["content"])["meta"][META]
    assert summary_meta == {
        "id": announcement_id,
        "status": {"state": "done", "recipients": 2, "pending": 0, "sent": 1, "failed": 1},
    }
    await h.feature.tick()
    assert len(await h.rows("ann-summary:%")) == 1

    # The final figures survive a purge of the delivery records.
    await h.db.execute("DELETE FROM outbox WHERE dedup_key LIKE 'ann:%'")
    status = await h.reply(await h.say(CEM, f"!announce status #{announcement_id}"))
    assert status["meta"][META]["status"]["sent"] == 1
    assert status["meta"][META]["status"]["failed"] == 1

    actions = [r["action"] for r in await h.db.fetchall("SELECT action FROM audit_log ORDER BY id")]
    assert actions == [
        "announcement.created",
        "announcement.confirmed",
        "announcement.sent",
        "announcement.delivered",
    ]


async def test_thumbs_up_on_the_preview_confirms_only_for_coordinators(harness: Harness) -> None:
    h = harness
    announcement_id, preview = await create(h, "!ankündigung it Wartung heute Abend")
    assert preview["meta"][META]["recipients"] == 3  # two pilots and the department room
    await h.deliver_all()
    (row,) = await h.rows(preview["key"])
    preview_event = row["event_id"]

    await h.react(ANNA, preview_event)  # a pilot's 👍 is applause, not a confirmation
    await h.react(CEM, preview_event, "❤️")
    assert await h.state(announcement_id) == "draft"

    await h.react(CEM, "$some-other-event")
    assert await h.state(announcement_id) == "draft"

    await h.react(CEM, preview_event, "👍🏽")
    assert await h.state(announcement_id) == "scheduled"
    await h.feature.tick()
    assert {r["target"] for r in await h.rows("ann:%")} == {ANNA, BEN, IT_ROOM}

    # A second 👍 finds no draft any more and does nothing.
    before = len(await h.rows())
    await h.react(CEM, preview_event)
    assert len(await h.rows()) == before


async def test_staff_and_pilots_may_not_announce(harness: Harness) -> None:
    h = harness
    for person in (DORA, ANNA):
        answer = await h.reply(await h.say(person, "!ankündigung alle Hallo"))
        assert answer["meta"]["de.lotsenbot.error"]["code"] == "permission_denied"
    assert await h.db.fetchall("SELECT id FROM announcements") == []


async def test_errors_have_codes(harness: Harness) -> None:
    h = harness
    answer = await h.reply(await h.say(CEM, "!ankündigung kantine Eintopf"))
    assert answer["meta"]["de.lotsenbot.error"]["code"] == "bad_arguments"
    assert "`lotsen`" in answer["markdown"] and "`it`" in answer["markdown"]
    answer = await h.reply(await h.say(CEM, "!ankündigung räume Hallo"))  # bot is in no room
    assert answer["meta"]["de.lotsenbot.error"]["code"] == "conflict"
    answer = await h.reply(await h.say(CEM, "!senden 99"))
    assert answer["meta"]["de.lotsenbot.error"]["code"] == "not_found"
    answer = await h.reply(await h.say(CEM, "!senden"))
    assert answer["meta"]["de.lotsenbot.error"]["code"] == "bad_arguments"
    assert "!senden 5" in answer["markdown"]

    announcement_id, _ = await create(h, "!ankündigung lotsen Hallo")
    await h.say(CEM, f"!senden {announcement_id}")
    answer = await h.reply(await h.say(CEM, f"!senden {announcement_id}"))
    assert answer["meta"]["de.lotsenbot.error"]["code"] == "conflict"
    await h.feature.tick()
    answer = await h.reply(await h.say(CEM, f"!verwerfen {announcement_id}"))
    assert answer["meta"]["de.lotsenbot.error"]["code"] == "conflict"
    assert await h.state(announcement_id) == "sending"


async def test_scheduled_announcement_waits_for_its_time_and_can_be_discarded(
    harness: Harness,
) -> None:
    h = harness
    tz = h.feature._services.config.bot.tz
    when = (h.clock.now() + timedelta(hours=2)).astimezone(tz).replace(second=0, microsecond=0)
    stamp = when.strftime("%d.%m.%Y %H:%M")
    first, preview = await create(h, f"!ankündigung lotsen {stamp} Erste")
    assert preview["meta"][META]["send_at"] == iso(when)
    second, _ = await create(h, f"!ankündigung lotsen {stamp}\nZweite")
    for announcement_id in (first, second):
        confirm = await h.reply(await h.say(CEM, f"!senden {announcement_id}"))
        assert confirm["meta"][META]["state"] == "scheduled"
    third, _ = await create(h, "!ankündigung koordination Entwurf")

    listing = await h.reply(await h.say(CEM, "!ankündigungen"))
    assert [(i["id"], i["state"]) for i in listing["meta"][META]["list"]] == [
        (first, "scheduled"),
        (second, "scheduled"),
        (third, "draft"),
    ]
    assert "Erste" in listing["markdown"]

    await h.say(CEM, f"!verwerfen {second}")
    await h.feature.tick()
    assert await h.rows("ann:%") == []  # not due yet

    h.clock.offset = timedelta(hours=2, minutes=1)
    await h.feature.tick()
    assert await h.state(first) == "sending"
    assert await h.state(second) == "discarded"
    assert {r["dedup_key"].split(":")[1] for r in await h.rows("ann:%")} == {str(first)}
    actions = [r["action"] for r in await h.db.fetchall("SELECT action FROM audit_log")]
    assert "announcement.discarded" in actions and "announcement.scheduled" in actions


async def test_confirmed_after_its_time_sends_at_once(harness: Harness) -> None:
    h = harness
    tz = h.feature._services.config.bot.tz
    when = (h.clock.now() + timedelta(minutes=5)).astimezone(tz)
    announcement_id, _ = await create(h, f"!ankündigung lotsen {when:%d.%m.%Y %H:%M:%S} Text")
    h.clock.offset = timedelta(minutes=10)
    confirm = await h.reply(await h.say(CEM, f"!senden {announcement_id}"))
    assert confirm["meta"][META]["state"] == "sending"
    await h.feature.tick()
    assert len(await h.rows("ann:%")) == 2


async def test_opt_out_only_affects_general_announcements(harness: Harness) -> None:
    h = harness
    for person in (DORA, EVA, ANNA):
        await h.say(person, "!hilfe")  # people who have used the bot
    # "!abmelden 3" means meetup 3: pointed to !absage, the subscription left alone.
    for command, other, says in (("!abmelden 3", "!absage", "bestellt allgemeine Ankündigungen ab"),
                                 ("!anmelden Nr. 3", "!zusage", "wieder an")):  # fmt: skip
        answer = await h.reply(await h.say(EVA, command))
        assert answer["meta"]["de.lotsenbot.error"]["code"] == "bad_arguments"
        assert f"`{other} <Nr>`" in answer["markdown"] and says in answer["markdown"]
        assert "ab bzw. an" not in answer["markdown"]
        assert f"`{command.split()[0]}`" in answer["markdown"]  # no escape inside code
    unsubscribed = await h.reply(await h.say(EVA, "!abmelden"))
    assert unsubscribed["meta"][META] == {"subscribed": False}
    again = await h.reply(await h.say(EVA, "!unsubscribe"))
    assert "bereits" in again["markdown"]

    general, _ = await create(h, "!ankündigung alle Sommerfest")
    important, _ = await create(h, "!ankündigung! alle Serverwartung")
    marked, _ = await create(h, "!ankündigung alle Wichtig: Portal gesperrt")
    pilots, _ = await create(h, "!ankündigung lotsen Nur für Lotsen")
    for announcement_id in (general, important, marked, pilots):
        await h.say(CEM, f"!senden {announcement_id}")
    await h.feature.tick()

    def targets(rows: list[dict[str, Any]]) -> set[str]:
        return {r["target"] for r in rows}

    # CEM used the bot too (his commands); EVA unsubscribed.
    assert targets(await h.rows(f"ann:{general}:%")) == {DORA, ANNA, CEM}
    assert targets(await h.rows(f"ann:{important}:%")) == {DORA, EVA, ANNA, CEM}
    assert targets(await h.rows(f"ann:{marked}:%")) == {DORA, EVA, ANNA, CEM}
    assert targets(await h.rows(f"ann:{pilots}:%")) == {ANNA, BEN}
    footer = json.loads((await h.rows(f"ann:{general}:{DORA}"))[0]["content"])["markdown"]
    assert "!abmelden" in footer
    urgent = json.loads((await h.rows(f"ann:{important}:{DORA}"))[0]["content"])
    assert urgent["meta"][META]["important"] is True
    assert "!abmelden" not in urgent["markdown"]

    await h.say(EVA, "!anmelden")
    later, _ = await create(h, "!ankündigung alle Noch ein Fest")
    await h.say(CEM, f"!senden {later}")
    await h.feature.tick()
    assert EVA in targets(await h.rows(f"ann:{later}:%"))


async def test_fan_out_is_all_or_nothing_and_idempotent(harness: Harness) -> None:
    h = harness
    announcement_id, _ = await create(h, "!ankündigung it Hallo")
    await h.say(CEM, f"!senden {announcement_id}")
    announcement = await store.get(h.db.conn, announcement_id)
    assert announcement is not None

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        async with h.db.transaction() as conn:
            assert await h.feature.fan_out(conn, announcement, h.clock.now()) == 3
            raise Crash
    assert await h.rows("ann:%") == []
    assert await h.state(announcement_id) == "scheduled"

    await h.feature.tick()
    assert len(await h.rows("ann:%")) == 3
    async with h.db.transaction() as conn:  # a repeated expansion inserts nothing
        await h.feature.fan_out(conn, announcement, h.clock.now())
    assert len(await h.rows("ann:%")) == 3


async def test_rooms_audience_uses_group_rooms_only(harness: Harness) -> None:
    h = harness
    now = iso(h.clock.now())
    for room, direct, left in (
        ("!g1:stadt.example", 0, None),
        ("!g2:stadt.example", 0, now),
        ("!dm:stadt.example", 1, None),
        ("!x:stadt.example", 0, None),
    ):
        await h.db.execute(
            "INSERT INTO rooms (room_id, is_direct, joined_at, left_at) VALUES (?, ?, ?, ?)",
            (room, direct, now, left),
        )
    # "!x" was joined without the direct flag but is known as someone's direct chat.
    await h.db.execute(
        "INSERT INTO dm_rooms (user_id, room_id, created_at) VALUES (?, ?, ?)",
        (DORA, "!x:stadt.example", now),
    )
    announcement_id, preview = await create(h, "!ankündigung räume Hallo Räume")
    assert preview["meta"][META]["recipients"] == 1
    await h.say(CEM, f"!senden {announcement_id}")
    await h.feature.tick()
    assert [(r["target_kind"], r["target"]) for r in await h.rows("ann:%")] == [
        ("room", "!g1:stadt.example")
    ]
