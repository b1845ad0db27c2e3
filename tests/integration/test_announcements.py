"""Announcements through a real Synapse: preview, confirmation, scheduling across a restart,
opt-out, and exactly one copy per recipient under a tight rate limit and after a crash."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from lotsenbot.app import App
from lotsenbot.devserver import Synapse
from tests.integration.bot import BotRunner, ask, bot_sections, make_bot, open_dm
from tests.integration.conftest import Account, MakeUser, RegisterUser, unique_localpart
from tests.integration.helpers import MatrixUser, Received

META = "de.lotsenbot.announcement"
ERROR = "de.lotsenbot.error"
TIGHT_LIMIT = {"rc_message": {"per_second": 2, "burst_count": 3}}
TIGHT_PILOTS = 10


# The bot long-polls for 5 s instead of the default 30 s, as these tests always did.
FAST_SYNC = {"sync_timeout_ms": 5000}


def meta(item: Received) -> dict[str, Any]:
    value = item.content.get(META)
    return value if isinstance(value, dict) else {}


def is_preview(item: Received) -> bool:
    return meta(item).get("preview") is True


def is_summary(announcement_id: int):  # type: ignore[no-untyped-def]
    def check(item: Received) -> bool:
        status = meta(item).get("status") or {}
        return meta(item).get("id") == announcement_id and status.get("state") == "done"

    return check


def is_started(announcement_id: int):  # type: ignore[no-untyped-def]
    """The confirmation of `!senden` for an announcement that goes out now."""

    def check(item: Received) -> bool:
        return meta(item) == {"id": announcement_id, "state": "sending"}

    return check


async def send_now(coordinator: MatrixUser, room: str, bot_id: str, announcement_id: int) -> None:
    """`!senden` for an announcement that goes out now, and its confirmation."""
    await ask(coordinator, room, bot_id, f"!senden {announcement_id}",
              predicate=is_started(announcement_id))  # fmt: skip


def is_copy(announcement_id: int):  # type: ignore[no-untyped-def]
    """A recipient's copy: the announcement id without preview or status keys."""

    def check(item: Received) -> bool:
        data = meta(item)
        return data.get("id") == announcement_id and "preview" not in data and "status" not in data

    return check


def copies(person: MatrixUser, bot_id: str, announcement_id: int) -> list[Received]:
    check = is_copy(announcement_id)
    return [m for m in person.messages() if m.sender == bot_id and check(m)]


async def announce(person: MatrixUser, room: str, bot_id: str, text: str) -> tuple[int, Received]:
    preview = await ask(person, room, bot_id, text, predicate=is_preview)
    return int(meta(preview)["id"]), preview


async def first_copy(
    person: MatrixUser, bot_id: str, announcement_id: int, timeout: float = 20
) -> Received:
    """Wait for a copy without consuming it, so that later counts still see it."""
    return await person.wait_for_event(
        is_copy(announcement_id),
        sender=bot_id,
        event_type="m.room.message",
        since=0,
        consume=False,
        timeout=timeout,
    )


async def assert_one_copy_each(
    people: Sequence[MatrixUser], bot_id: str, announcement_id: int, timeout: float = 20
) -> None:
    for person in people:
        await first_copy(person, bot_id, announcement_id, timeout)
    await asyncio.sleep(0.7)  # give a duplicate the chance to show up
    for person in people:
        found = copies(person, bot_id, announcement_id)
        assert len(found) == 1, (person.user_id, [m.event_id for m in found])
        assert found[0].msgtype == "m.notice"


@pytest.mark.asyncio(loop_scope="session")
async def test_preview_and_confirmation_by_command_and_by_reaction(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    coordinator = await make_user("coord")
    pilots = [await make_user("pilot") for _ in range(3)]
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        coordinators=[coordinator.user_id],
        pilots=[p.user_id for p in pilots],
        matrix=FAST_SYNC,
    )
    app = await runner.start()
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(coordinator, bot_id)
        first, preview = await announce(
            coordinator, room, bot_id, "!ankündigung lotsen Hallo **alle**,\n\nbis bald!"
        )
        assert meta(preview)["recipients"] == 3
        assert "<strong>alle</strong>" in (preview.formatted_body or "")
        await asyncio.sleep(0.5)
        assert all(copies(p, bot_id, first) == [] for p in pilots)  # nothing before confirming

        confirm = await ask(coordinator, room, bot_id, f"!senden {first}")
        assert meta(confirm) == {"id": first, "state": "sending"}

        second, preview = await announce(
            coordinator, room, bot_id, "!announce lotsen Zweite Nachricht"
        )
        coordinator.mark()
        await coordinator.react(room, preview.event_id, "👍")
        # The summary of the first one may arrive in between: wait for this confirmation.
        confirm = await coordinator.wait_for_message(
            room, sender=bot_id, timeout=15, predicate=lambda m: meta(m).get("state") == "sending"
        )
        assert meta(confirm) == {"id": second, "state": "sending"}

        for announcement_id in (first, second):
            summary = await coordinator.wait_for_message(
                room, sender=bot_id, predicate=is_summary(announcement_id), since=0, timeout=30
            )
            status = meta(summary)["status"]
            assert (status["sent"], status["failed"], status["pending"]) == (3, 0, 0)
            await assert_one_copy_each(pilots, bot_id, announcement_id)
        html = copies(pilots[0], bot_id, first)[0].formatted_body or ""
        assert "<strong>alle</strong>" in html

        status = await ask(coordinator, room, bot_id, f"!ankündigung status {first}")
        assert meta(status)["status"]["sent"] == 3
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_staff_may_not_announce(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    staff = await make_user("staff")
    runner = await make_bot(tmp_path, synapse, register_user, matrix=FAST_SYNC)
    app = await runner.start()
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(staff, bot_id)
        answer = await ask(staff, room, bot_id, "!ankündigung alle Hallo")
        assert answer.content[ERROR]["code"] == "permission_denied"
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_scheduled_announcement_fires_after_a_restart(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    coordinator = await make_user("coord")
    pilots = [await make_user("pilot") for _ in range(2)]
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        coordinators=[coordinator.user_id],
        pilots=[p.user_id for p in pilots],
        matrix=FAST_SYNC,
    )
    app = await runner.start()
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(coordinator, bot_id)
        # Preview, confirmation and a graceful stop must all fit before the due time, also on
        # a loaded machine; rounded up so that the headroom is never less than 15 s.
        due = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(seconds=16)).replace(
            microsecond=0
        )
        announcement_id, _ = await announce(
            coordinator, room, bot_id, f"!ankündigung lotsen {due:%d.%m.%Y %H:%M:%S} Geplant"
        )
        confirm = await ask(coordinator, room, bot_id, f"!senden {announcement_id}")
        assert meta(confirm)["state"] == "scheduled"
        await runner.stop()
        assert datetime.now(due.tzinfo) < due, "the bot must be stopped before the due time"
        await asyncio.sleep((due - datetime.now(due.tzinfo)).total_seconds() + 1.0)
        assert all(copies(p, bot_id, announcement_id) == [] for p in pilots)

        await runner.start()
        await assert_one_copy_each(pilots, bot_id, announcement_id)
        await coordinator.wait_for_message(
            room, sender=bot_id, since=0, timeout=20, predicate=is_summary(announcement_id)
        )
    finally:
        await runner.stop()


async def bot_with_people(
    tmp_path: Path,
    synapse: Synapse,
    register_user: RegisterUser,
    make_user: MakeUser,
    *prefixes: str,
) -> tuple[BotRunner, App, list[MatrixUser]]:
    """A running bot, its coordinator and further people (the coordinator first)."""
    coordinator = await make_user("coord")
    people = [coordinator, *[await make_user(prefix) for prefix in prefixes]]
    runner = await make_bot(
        tmp_path, synapse, register_user, coordinators=[coordinator.user_id], matrix=FAST_SYNC
    )
    return runner, await runner.start(), people


@pytest.mark.asyncio(loop_scope="session")
async def test_unsubscribe_excludes_from_general_but_not_from_important(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    runner, app, (coordinator, quiet, reader) = await bot_with_people(
        tmp_path, synapse, register_user, make_user, "quiet", "reader"
    )
    bot_id = app.config.matrix.user_id
    try:
        rooms = {}
        for person in (coordinator, quiet, reader):
            rooms[person.user_id] = await open_dm(person, bot_id)
        await ask(reader, rooms[reader.user_id], bot_id, "!hilfe")  # has used the bot
        answer = await ask(quiet, rooms[quiet.user_id], bot_id, "!abmelden")
        assert meta(answer) == {"subscribed": False}

        room = rooms[coordinator.user_id]
        general, preview = await announce(coordinator, room, bot_id, "!ankündigung alle Sommerfest")
        assert meta(preview)["recipients"] == 2  # the reader and the coordinator
        await send_now(coordinator, room, bot_id, general)
        important, preview = await announce(
            coordinator, room, bot_id, "!ankündigung! alle Heute Serverwartung"
        )
        assert meta(preview)["recipients"] == 3 and meta(preview)["important"] is True
        # The first summary may arrive before the second confirmation: each wait names its
        # message, so neither takes the other's.
        await send_now(coordinator, room, bot_id, important)
        for announcement_id in (general, important):
            await coordinator.wait_for_message(
                room, sender=bot_id, since=0, timeout=30, predicate=is_summary(announcement_id)
            )
        await assert_one_copy_each([reader], bot_id, general)
        await assert_one_copy_each([reader, quiet], bot_id, important)
        assert copies(quiet, bot_id, general) == []
        assert copies(quiet, bot_id, important)[0].room_id == rooms[quiet.user_id]
    finally:
        await runner.stop()


# -- a homeserver with a tight message rate limit ------------------------------------------


@dataclass
class TightServer:
    synapse: Synapse
    coordinators: list[Account]
    pilots: list[MatrixUser]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tight(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TightServer]:
    """Its own Synapse with rc_message 2/s, burst 3, and logged-in pilots on it."""
    server = Synapse(tmp_path_factory.mktemp("tight"), rate_limits=TIGHT_LIMIT)
    await server.start()
    pilots: list[MatrixUser] = []
    try:
        coordinators = [await _register(server, "coord") for _ in range(2)]
        for _ in range(TIGHT_PILOTS):
            account = await _register(server, "pilot")
            user = MatrixUser(server.url, account.user_id, account.password)
            await user.login()
            pilots.append(user)
        yield TightServer(server, coordinators, pilots)
    finally:
        for user in pilots:
            await user.close()
        await server.stop()


async def _register(server: Synapse, prefix: str) -> Account:
    localpart = unique_localpart(prefix)
    password = f"pw-{localpart}"
    return Account(localpart, await server.register(localpart, password), password)


async def tight_bot(
    tmp_path: Path, tight: TightServer, coordinator: Account, pilots: Sequence[MatrixUser]
) -> tuple[BotRunner, MatrixUser]:
    bot = await _register(tight.synapse, "lotsenbot")
    config = bot_sections(
        tight.synapse,
        bot,
        coordinators=[coordinator.user_id],
        pilots=[p.user_id for p in pilots],
        matrix=FAST_SYNC,
    )
    client = MatrixUser(tight.synapse.url, coordinator.user_id, coordinator.password)
    await client.login()
    return BotRunner(tmp_path / "bot", config), client


def pending_copies(db_path: Path, announcement_id: int) -> int:
    with sqlite3.connect(db_path) as conn:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND dedup_key LIKE ?",
            (f"ann:{announcement_id}:%",),
        ).fetchone()
    return int(count)


@pytest.mark.asyncio(loop_scope="session")
async def test_tight_rate_limit_still_one_copy_each(tmp_path: Path, tight: TightServer) -> None:
    pilots = tight.pilots[:8]
    runner, coordinator = await tight_bot(tmp_path, tight, tight.coordinators[0], pilots)
    try:
        app = await runner.start()
        bot_id = app.config.matrix.user_id
        room = await open_dm(coordinator, bot_id)
        announcement_id, preview = await announce(
            coordinator, room, bot_id, "!ankündigung lotsen Unter Drosselung"
        )
        assert meta(preview)["recipients"] == 8
        started = time.monotonic()
        await send_now(coordinator, room, bot_id, announcement_id)
        summary = await coordinator.wait_for_message(
            room, sender=bot_id, since=0, timeout=45, predicate=is_summary(announcement_id)
        )
        assert meta(summary)["status"]["sent"] == 8
        # 8 copies plus confirmation and summary at 2/s after a burst of 3 take a while:
        # proof that the limit was really hit and waited out rather than failing rows.
        assert time.monotonic() - started > 2.0
        await assert_one_copy_each(pilots, bot_id, announcement_id)
    finally:
        await runner.stop()
        await coordinator.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_killed_during_fan_out_and_restarted_one_copy_each(
    tmp_path: Path, tight: TightServer
) -> None:
    pilots = tight.pilots
    runner, coordinator = await tight_bot(tmp_path, tight, tight.coordinators[1], pilots)
    try:
        app = await runner.start()
        bot_id = app.config.matrix.user_id
        room = await open_dm(coordinator, bot_id)
        announcement_id, _ = await announce(
            coordinator, room, bot_id, "!ankündigung lotsen Trotz Absturz genau einmal"
        )
        await send_now(coordinator, room, bot_id, announcement_id)
        # Kill as soon as the fan-out is under way: the first copy has arrived somewhere.
        waits = [asyncio.ensure_future(first_copy(p, bot_id, announcement_id, 30)) for p in pilots]
        done, waiting = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        done.pop().result()
        await runner.kill()
        assert pending_copies(runner.folder / "bot.db", announcement_id) > 0, (
            "the kill must interrupt the fan-out"
        )

        await runner.start()
        summary = await coordinator.wait_for_message(
            room, sender=bot_id, since=0, timeout=45, predicate=is_summary(announcement_id)
        )
        assert meta(summary)["status"]["sent"] == len(pilots)
        await assert_one_copy_each(pilots, bot_id, announcement_id)
    finally:
        await runner.stop()
        await coordinator.close()


async def leave_and_wait(app: App, person: MatrixUser, room_id: str) -> None:
    """``person`` leaves the direct chat; returns once the bot's sync has shown it."""
    left = await person.client.room_leave(room_id)
    assert type(left).__name__ == "RoomLeaveResponse"
    for _ in range(100):
        if person.user_id not in app.transport.client.rooms[room_id].users:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("leave not synced")


def dm_room_of(runner: BotRunner, person: MatrixUser) -> str:
    with sqlite3.connect(runner.config.database.path) as conn:
        (room_id,) = conn.execute(
            "SELECT room_id FROM dm_rooms WHERE user_id = ?", (person.user_id,)
        ).fetchone()
    return str(room_id)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_copy_sent_before_the_person_left_is_not_sent_again(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """A copy went out, but its "sent" mark was lost (the process died, the database was
    locked), and then the person left the chat. The retry must not open a new chat and send
    it a second time: the bot finds its own event in the old chat's history, from before the
    leave, by its transaction id."""
    runner, app, (coordinator, reader) = await bot_with_people(
        tmp_path, synapse, register_user, make_user, "reader"
    )
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(coordinator, bot_id)
        old = await open_dm(reader, bot_id)
        await ask(reader, old, bot_id, "!hilfe")  # has used the bot
        announcement_id, _ = await announce(coordinator, room, bot_id, "!ankündigung alle Fest")
        await send_now(coordinator, room, bot_id, announcement_id)
        first = await first_copy(reader, bot_id, announcement_id)
        assert first.room_id == old
        await leave_and_wait(app, reader, old)

        # As if the "sent" mark had never been committed.
        with sqlite3.connect(runner.config.database.path) as conn:
            conn.execute(
                "UPDATE outbox SET status = 'pending', event_id = NULL, sent_at = NULL,"
                " room_id = NULL WHERE target = ? AND dedup_key LIKE 'ann:%'",
                (reader.user_id,),
            )
        app.outbox.wake()
        for _ in range(100):
            with sqlite3.connect(runner.config.database.path) as conn:
                status, event_id, room_id = conn.execute(
                    "SELECT status, event_id, room_id FROM outbox"
                    " WHERE target = ? AND dedup_key LIKE 'ann:%'",
                    (reader.user_id,),
                ).fetchone()
            if status != "pending":
                break
            await asyncio.sleep(0.1)
        assert (status, event_id, room_id) == ("sent", first.event_id, old)
        await assert_one_copy_each([reader], bot_id, announcement_id)
        assert dm_room_of(runner, reader) == old  # no new chat was opened for it
    finally:
        await runner.stop()
        await coordinator.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_person_who_left_the_direct_chat_gets_the_next_copy_in_a_new_one(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """People tidy up their chat list. A copy sent into the chat they left reaches nobody and
    would still count as sent; the bot opens a new direct chat instead and leaves the old one.
    """
    runner, app, (coordinator, reader) = await bot_with_people(
        tmp_path, synapse, register_user, make_user, "reader"
    )
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(coordinator, bot_id)
        old = await open_dm(reader, bot_id)
        await ask(reader, old, bot_id, "!hilfe")  # has used the bot
        await leave_and_wait(app, reader, old)

        announcement_id, _ = await announce(coordinator, room, bot_id, "!ankündigung alle Fest")
        await send_now(coordinator, room, bot_id, announcement_id)
        summary = await coordinator.wait_for_message(
            room, sender=bot_id, since=0, timeout=30, predicate=is_summary(announcement_id)
        )
        assert meta(summary)["status"]["failed"] == 0
        await assert_one_copy_each([reader], bot_id, announcement_id)
        new = copies(reader, bot_id, announcement_id)[0].room_id
        assert new != old
        assert dm_room_of(runner, reader) == new
        joined = await app.transport.client.joined_rooms()
        assert old not in joined.rooms and new in joined.rooms  # the bot left the empty chat
    finally:
        await runner.stop()
