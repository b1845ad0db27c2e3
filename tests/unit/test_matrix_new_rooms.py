"""Direct chats the bot creates: nothing is sent before nio knows them complete.

A sync that runs while Synapse is still writing a new room's initial state shows the room
without its encryption event or without the invited person; sending then would put a plain
message into an encrypted room (seen in `bench/announce_fanout.py --encrypted`: 16 of 200
copies before this check) or share the room key without the person's devices.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from nio import MatrixRoom

from lotsenbot.config import MatrixConfig
from lotsenbot.matrix.transport import MatrixTransport

BOT = "@lotsenbot:stadt.example"
PILOT = "@lotsin:stadt.example"
ROOM = "!neu:stadt.example"


def transport(tmp_path: Path) -> MatrixTransport:
    config = MatrixConfig(
        homeserver="http://127.0.0.1:1", user_id=BOT, password="x", store_path=tmp_path / "store"
    )
    return MatrixTransport(config)


async def synced(t: MatrixTransport) -> None:
    async with t._synced:
        t._synced.notify_all()


async def test_a_created_encrypted_room_is_ready_only_when_known_encrypted_with_the_invitee(
    tmp_path: Path,
) -> None:
    t = transport(tmp_path)
    t._new_rooms[ROOM] = (PILOT, True)
    assert not t.room_ready(ROOM)  # not seen in any sync yet
    room = t.client.rooms[ROOM] = MatrixRoom(ROOM, BOT)
    room.add_member(BOT, None, None)
    assert not t.room_ready(ROOM)  # seen, but neither encrypted nor with the pilot
    room.add_member(PILOT, None, None, invited=True)
    assert not t.room_ready(ROOM)  # the encryption event has not arrived
    room.encrypted = True
    assert t.room_ready(ROOM)
    assert ROOM not in t._new_rooms and t.room_ready(ROOM)  # checked once, then like any room


async def test_other_rooms_are_ready_when_nio_knows_them(tmp_path: Path) -> None:
    t = transport(tmp_path)
    assert not t.room_ready("!unbekannt:stadt.example")
    t.client.rooms["!gruppe:stadt.example"] = MatrixRoom("!gruppe:stadt.example", BOT)
    assert t.room_ready("!gruppe:stadt.example")
    t._new_rooms[ROOM] = (PILOT, False)  # a plain direct chat needs the pilot only
    room = t.client.rooms[ROOM] = MatrixRoom(ROOM, BOT)
    assert not t.room_ready(ROOM)
    room.add_member(PILOT, None, None, invited=True)
    assert t.room_ready(ROOM)


async def test_waiting_ends_with_the_sync_that_completes_the_room(tmp_path: Path) -> None:
    t = transport(tmp_path)
    t._new_rooms[ROOM] = (PILOT, True)
    room = t.client.rooms[ROOM] = MatrixRoom(ROOM, BOT)
    room.add_member(PILOT, None, None, invited=True)
    waiting = asyncio.create_task(t.wait_for_room(ROOM, timeout=5))
    await synced(t)  # a sync that brought nothing new
    await asyncio.sleep(0.05)
    assert not waiting.done()
    room.encrypted = True
    await synced(t)
    assert await asyncio.wait_for(waiting, 1) is True


async def test_waiting_gives_up_after_the_timeout(tmp_path: Path) -> None:
    t = transport(tmp_path)
    t._new_rooms[ROOM] = (PILOT, True)
    assert await t.wait_for_room(ROOM, timeout=0.1) is False
