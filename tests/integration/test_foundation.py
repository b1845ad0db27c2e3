"""The foundation through a real Synapse: help by role, invites, restarts, unknown commands."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.bot import ask, make_bot, open_dm, run_cli, write_config
from tests.integration.conftest import MakeUser


def is_bot_reply(bot_id: str):
    return lambda item: item.sender == bot_id


@pytest.mark.asyncio(loop_scope="session")
async def test_help_differs_by_role(tmp_path, synapse, register_user, make_user: MakeUser):
    staff = await make_user("staff")
    pilot = await make_user("pilot")
    coordinator = await make_user("coord")
    runner = await make_bot(tmp_path, synapse, register_user,
                            coordinators=[coordinator.user_id], pilots=[pilot.user_id])  # fmt: skip
    app = await runner.start()
    bot_id = app.config.matrix.user_id
    try:
        roles = {}
        for person in (staff, pilot, coordinator):
            room = await open_dm(person, bot_id)
            reply = await ask(person, room, bot_id, "!hilfe", timeout=10)
            assert reply.msgtype == "m.notice"
            assert reply.content["m.mentions"] == {"user_ids": []}
            assert "Lotsenbot" in reply.body
            assert "<h2>" in (reply.formatted_body or "")
            roles[person.user_id] = reply.content["de.lotsenbot.help"]["role"]
        assert roles == {staff.user_id: "staff", pilot.user_id: "pilot",
                         coordinator.user_id: "coordinator"}  # fmt: skip
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_english_alias_and_unknown_command(tmp_path, synapse, register_user, make_user):
    staff = await make_user("staff")
    runner = await make_bot(tmp_path, synapse, register_user)
    app = await runner.start()
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(staff, bot_id)
        reply = await ask(staff, room, bot_id, "!help", timeout=10)
        assert "de.lotsenbot.help" in reply.content
        await staff.send_text(room, "!hilfr")
        reply = await staff.wait_for_message(room, sender=bot_id)
        assert reply.content["de.lotsenbot.error"]["code"] == "unknown_command"
        assert "Meinten Sie `!hilfe`?" in reply.body or "!hilfe" in reply.body
        assert reply.content["de.lotsenbot.error"]["suggestion"] == "hilfe"
        await staff.send_text(room, "!<b>x</b>@room")
        reply = await staff.wait_for_message(room, sender=bot_id)
        assert reply.content["de.lotsenbot.error"]["code"] == "unknown_command"
        assert "<b>" not in (reply.formatted_body or "")
        assert "@room" not in reply.body  # defused with a word joiner
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_foreign_server_invite_declined(tmp_path, synapse, register_user, make_user):
    """Users of servers outside allowed_servers get nothing; their invites are declined."""
    stranger = await make_user("stranger")
    runner = await make_bot(tmp_path, synapse, register_user)
    text = runner.config_path.read_text("utf-8").replace(
        f'allowed_servers = ["{synapse.server_name}"]', 'allowed_servers = ["stadt.example"]'
    )
    runner.config_path.write_text(text, "utf-8")
    app = await runner.start()
    bot_id = app.config.matrix.user_id
    try:
        mark = stranger.mark()
        room = await stranger.create_dm(bot_id)

        def bot_left(item):
            return (
                item.type == "m.room.member"
                and item.source.get("state_key") == bot_id
                and item.content.get("membership") == "leave"
            )

        await stranger.wait_for_event(bot_left, room_id=room, timeout=15)
        await stranger.send_text(room, "!hilfe")
        await asyncio.sleep(1.5)
        assert [m for m in stranger.messages(room, since=mark) if m.sender == bot_id] == []
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_restart_does_not_answer_again(tmp_path, synapse, register_user, make_user):
    staff = await make_user("staff")
    runner = await make_bot(tmp_path, synapse, register_user)
    app = await runner.start()
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(staff, bot_id)
        await ask(staff, room, bot_id, "!hilfe", timeout=10)
        await runner.stop()
        mark = staff.mark()
        await runner.start()
        await staff.send_text(room, "!help")
        await staff.wait_for_message(room, sender=bot_id)
        await asyncio.sleep(1.5)
        answers = [m for m in staff.messages(room, since=mark) if m.sender == bot_id]
        assert len(answers) == 1, [a.body[:40] for a in answers]
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_messages_before_first_start_are_ignored(tmp_path, synapse, register_user,
                                                        make_user):  # fmt: skip
    staff = await make_user("staff")
    runner = await make_bot(tmp_path, synapse, register_user)
    bot_id = runner.config.matrix.user_id
    room = await staff.create_dm(bot_id)
    await staff.send_text(room, "!hilfe")  # before the bot ever ran
    mark = staff.mark()
    await runner.start()
    try:
        await staff.wait_for_join(room, bot_id, timeout=15)
        await staff.send_text(room, "!help")
        await staff.wait_for_message(room, sender=bot_id)
        await asyncio.sleep(1.0)
        answers = [m for m in staff.messages(room, since=mark) if m.sender == bot_id]
        assert len(answers) == 1
    finally:
        await runner.stop()


def test_bad_config_exits_2(tmp_path):
    path = write_config(tmp_path / "config.toml", {
        "matrix": {"homeserver": "matrix.stadt.de", "user_id": "@bot:stadt.de",
                   "password": "x"},
    })  # fmt: skip
    result = run_cli(["check-config", "--config", str(path)])
    assert result.returncode == 2
    assert "matrix.homeserver" in result.stderr
    assert "http://" in result.stderr
    assert "Traceback" not in result.stderr
