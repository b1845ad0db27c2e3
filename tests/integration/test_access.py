"""Who may do what, through a real Synapse: the role × command matrix and foreign users.

Every command of the build is tried by staff, a pilot, a pilot of another department and a
coordinator in group rooms (replies there are threaded, so each answer is matched to its
question); exactly the commands whose ``Command.roles`` exclude the asker must answer with
``permission_denied``. Then the same bot, restarted with an ``allowed_servers`` list that no
longer contains this homeserver, is given every command by a stranger who joined the room:
it must say nothing at all and store nothing about them.
"""

from __future__ import annotations

import asyncio

import pytest

from lotsenbot.core.types import Role
from tests.integration.bot import make_bot
from tests.integration.helpers import MatrixUser, Received

ASYNC = pytest.mark.asyncio(loop_scope="session")


def reply_target(item: Received) -> str | None:
    relates = item.content.get("m.relates_to")
    if not isinstance(relates, dict):
        return None
    in_reply_to = relates.get("m.in_reply_to")
    return in_reply_to.get("event_id") if isinstance(in_reply_to, dict) else None


def error_code(item: Received) -> str | None:
    meta = item.content.get("de.lotsenbot.error")
    return meta.get("code") if isinstance(meta, dict) else None


async def group_room(owner: MatrixUser, silent: MatrixUser, bot_id: str) -> str:
    response = await owner.client.room_create(name="Lotsen", invite=[bot_id, silent.user_id])
    room = str(response.room_id)  # type: ignore[union-attr]
    await owner.wait_for_join(room, bot_id, timeout=20)
    await owner.wait_for_join(room, silent.user_id, timeout=20)
    return room


@ASYNC
async def test_role_command_matrix_and_foreign_users(tmp_path, synapse, register_user,
                                                    make_user, reliability):  # fmt: skip
    staff = await make_user("staff")
    pilot = await make_user("lotsin")
    other_pilot = await make_user("lotse")
    coordinator = await make_user("koord")
    stranger = await make_user("fremd")
    silent = await make_user("still")
    runner = await make_bot(
        tmp_path,
        synapse,
        register_user,
        coordinators=[coordinator.user_id],
        departments=[
            {"id": "it", "name": "IT-Service", "pilots": [pilot.user_id]},
            {"id": "bauamt", "name": "Bauamt", "pilots": [other_pilot.user_id]},
        ],
        matrix={"cross_signing": False},
    )
    bot_id = runner.config.matrix.user_id
    app = await runner.start()
    assert app.dispatcher is not None
    people: dict[str, tuple[MatrixUser, frozenset[Role]]] = {
        "staff": (staff, frozenset({Role.STAFF})),
        "pilot": (pilot, frozenset({Role.STAFF, Role.PILOT})),
        "other_pilot": (other_pilot, frozenset({Role.STAFF, Role.PILOT})),
        "coordinator": (coordinator, frozenset({Role.STAFF, Role.COORDINATOR})),
    }
    try:
        # One group room per person (with a silent third member, so it is no direct chat):
        # the bot works through rooms in parallel, which keeps this test short.
        rooms = {who: await group_room(person, silent, bot_id)
                 for who, (person, _) in people.items()}  # fmt: skip
        commands = app.dispatcher.table.commands
        marks = {who: people[who][0].mark() for who in people}
        asked: dict[str, tuple[str, str]] = {}  # event id -> (who, command)

        async def try_all(who: str) -> None:
            person, _ = people[who]
            for command in commands:
                event = await person.send_text(rooms[who], f"!{command.name}")
                asked[event] = (who, command.name)
            barrier = await person.send_text(rooms[who], "!hilfe hilfe")
            await person.wait_for_message(
                rooms[who],
                sender=bot_id,
                timeout=90,
                predicate=lambda m: reply_target(m) == barrier,
            )

        await asyncio.gather(*(try_all(who) for who in people))
        await asyncio.sleep(1.0)
        denied: dict[str, set[str]] = {who: set() for who in people}
        for who, (person, _) in people.items():
            for message in person.messages(rooms[who], since=marks[who]):
                target = reply_target(message)
                if message.sender == bot_id and target in asked and \
                        error_code(message) == "permission_denied":  # fmt: skip
                    denied[asked[target][0]].add(asked[target][1])
        expected = {who: {c.name for c in commands if not c.allowed_for(roles)}
                    for who, (_, roles) in people.items()}  # fmt: skip
        assert denied == expected
        assert expected["staff"], "no command is reserved: the matrix would prove nothing"
        statuses = await app.db.fetchall(
            f"SELECT status FROM inbox WHERE event_id IN ({','.join('?' * len(asked))})",
            tuple(asked),
        )
        assert len(statuses) == len(asked) and {r["status"] for r in statuses} == {"done"}

        # The same room, but this homeserver is no longer allowed: everyone is foreign now.
        await runner.stop()
        text = runner.config_path.read_text("utf-8").replace(
            f'allowed_servers = ["{synapse.server_name}"]', 'allowed_servers = ["stadt.example"]'
        )
        runner.config_path.write_text(text, "utf-8")
        app = await runner.start()
        room = rooms["coordinator"]
        await coordinator.client.room_invite(room, stranger.user_id)
        await coordinator.wait_for_join(room, stranger.user_id, timeout=20)
        token_before = await app.db.fetchone("SELECT value FROM meta WHERE key = 'sync_token'")
        mark = coordinator.mark()
        foreign_events = []
        for command in commands:
            foreign_events.append(await stranger.send_text(room, f"!{command.name}"))
        foreign_events.append(
            await stranger.send(
                room,
                "m.room.message",
                {
                    "msgtype": "m.text",
                    "body": f"{bot_id} hilfe",
                    "m.mentions": {"user_ids": [bot_id]},
                },
            )
        )
        foreign_events.append(await coordinator.send_text(room, "!hilfe"))

        async def token_moved() -> bool:
            row = await app.db.fetchone("SELECT value FROM meta WHERE key = 'sync_token'")
            return row is not None and token_before is not None and row[0] != token_before[0]

        for _ in range(100):
            if await token_moved():
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # a wrong answer would arrive within this time
        from_bot = [m for m in coordinator.messages(room, since=mark) if m.sender == bot_id]
        assert from_bot == []
        stored = await app.db.fetchall(
            f"SELECT event_id FROM inbox WHERE event_id IN ({','.join('?' * len(foreign_events))})",
            tuple(foreign_events),
        )
        assert stored == []
        known = await app.db.fetchall("SELECT user_id FROM users WHERE user_id = ?",
                                      (stranger.user_id,))  # fmt: skip
        assert known == []
        assert runner._task is not None and not runner._task.done()
        reliability.record(
            "access_matrix", kind="access",
            title="Rollen × Befehle (Mitarbeitende, Lotsin, Lotse anderer Abteilung, "
                  "Koordination) und fremde Nutzer",
            commands=len(commands), roles=len(people), tries=len(asked),
            denied_as_expected=sum(len(v) for v in expected.values()),
            foreign_tries=len(foreign_events), foreign_answers=0, mismatches=0,
        )  # fmt: skip
    finally:
        await runner.stop()
