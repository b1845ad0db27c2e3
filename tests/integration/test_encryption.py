"""Encrypted rooms through a real Synapse: answers, restarts, files, cross-signing, late keys.

The person's client is a real nio client with its own Olm account, so everything the bot
sends here has to survive real Megolm encryption and decryption. Signatures are checked
with Synapse's own `signedjson`, an implementation independent of the bot's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import signedjson.key
import signedjson.sign
from nio import DownloadResponse
from nio.crypto.attachments import decrypt_attachment
from unpaddedbase64 import decode_base64

from lotsenbot.core.context import Context
from lotsenbot.core.feature import Feature
from lotsenbot.core.types import Attachment, OutMessage
from tests.integration.bot import BotRunner, ask, make_bot, open_dm
from tests.integration.conftest import MakeUser
from tests.integration.helpers import MatrixUser, Received

ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//lotsenbot//test//DE\r\nEND:VCALENDAR\r\n"


class FileFeature(Feature):
    """A hidden test command that answers with a calendar file, independent of meetups."""

    name = "testdatei"

    def __init__(self) -> None:
        super().__init__()
        self.router.command("testdatei", hidden=True)(self._file)

    async def _file(self, ctx: Context, args: str) -> None:
        ctx.send_to_room(
            ctx.room_id,
            OutMessage("Hier ist die Datei.", attachment=Attachment("test.ics", "text/calendar",
                                                                    ICS)),
            purpose="reply",
        )  # fmt: skip


# The bot long-polls for 5 s instead of the default 30 s, as these tests always did.
FAST_SYNC = {"sync_timeout_ms": 5000}


async def keys_query(user: MatrixUser, target: str) -> dict[str, Any]:
    response = await user.client.send(
        "POST",
        "/_matrix/client/v3/keys/query",
        json.dumps({"device_keys": {target: []}}),
        {"Authorization": f"Bearer {user.client.access_token}"},
    )
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


def only_key(key_object: dict[str, Any]) -> tuple[str, str]:
    ((key_id, public),) = key_object["keys"].items()
    assert key_id == f"ed25519:{public}"
    return key_id, public


async def verified_chain(user: MatrixUser, bot_id: str, device_id: str,
                         timeout: float = 15.0) -> str:  # fmt: skip
    """Wait until the bot's chain is published, verify every signature, return the master."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = await keys_query(user, bot_id)
        device = body.get("device_keys", {}).get(bot_id, {}).get(device_id, {})
        if bot_id in body.get("master_keys", {}) and len(device.get("signatures", {}).get(
                bot_id, {})) >= 2:  # fmt: skip
            break
        assert asyncio.get_running_loop().time() < deadline, f"no cross-signing: {body}"
        await asyncio.sleep(0.3)
    master_id, master = only_key(body["master_keys"][bot_id])
    ssk_object = body["self_signing_keys"][bot_id]
    ssk_id, ssk = only_key(ssk_object)
    assert ssk_object["usage"] == ["self_signing"]
    signedjson.sign.verify_signed_json(
        ssk_object, bot_id, signedjson.key.decode_verify_key_bytes(master_id, decode_base64(master))
    )
    signedjson.sign.verify_signed_json(
        device, bot_id, signedjson.key.decode_verify_key_bytes(ssk_id, decode_base64(ssk))
    )
    # The device signs itself as well; a forged device key would fail here.
    own_id = f"ed25519:{device_id}"
    signedjson.sign.verify_signed_json(
        device, bot_id,
        signedjson.key.decode_verify_key_bytes(own_id, decode_base64(device["keys"][own_id])),
    )  # fmt: skip
    return master


def decrypted_from(bot_id: str) -> Any:
    def check(item: Received) -> bool:
        return item.sender == bot_id and bool(getattr(item.event, "decrypted", False))

    return check


def answers_help(bot_id: str) -> Any:
    return lambda item: decrypted_from(bot_id)(item) and "de.lotsenbot.help" in item.content


def reports_undecryptable(bot_id: str, event_id: str) -> Any:
    def check(item: Received) -> bool:
        report = item.content.get("de.lotsenbot.error") or {}
        return decrypted_from(bot_id)(item) and event_id in (report.get("events") or [])

    return check


@pytest.mark.asyncio(loop_scope="session")
async def test_encrypted_chat_file_restart_and_cross_signing(tmp_path, synapse, register_user,
                                                             make_user: MakeUser):  # fmt: skip
    anna = await make_user("anna", encryption=True)
    runner = await make_bot(tmp_path, synapse, register_user, departments=(), matrix=FAST_SYNC)
    app = await runner.start(features=[FileFeature()])
    bot_id = app.config.matrix.user_id
    assert app.transport is not None
    device_id = str(app.transport.client.device_id)
    try:
        room = await open_dm(anna, bot_id, encrypted=True)
        reply = await ask(anna, room, bot_id, "!hilfe", decrypted_from(bot_id), timeout=20)
        assert reply.msgtype == "m.notice"
        assert reply.content["de.lotsenbot.help"]["role"] == "staff"

        # The bot's file: encrypted upload, key and URL only inside "file".
        await anna.send_text(room, "!testdatei")
        await anna.wait_for_message(room, predicate=decrypted_from(bot_id), timeout=20)
        file_event = await anna.wait_for_message(
            room, predicate=lambda i: decrypted_from(bot_id)(i) and i.msgtype == "m.file",
            timeout=20,
        )  # fmt: skip
        content = file_event.content
        assert "url" not in content
        assert content["filename"] == "test.ics"
        secret = content["file"]
        assert secret["url"].startswith("mxc://") and secret["v"] == "v2"
        assert secret["key"]["alg"] == "A256CTR" and secret["key"]["ext"] is True
        download = await anna.client.download(mxc=secret["url"])
        assert isinstance(download, DownloadResponse), download
        assert download.body != ICS  # what the server stores is ciphertext
        plain = decrypt_attachment(download.body, secret["key"]["k"], secret["hashes"]["sha256"],
                                   secret["iv"])  # fmt: skip
        assert plain == ICS

        master = await verified_chain(anna, bot_id, device_id)
        store = runner.folder / "store"
        assert (store / "recovery-key.txt").stat().st_mode & 0o077 == 0
        assert json.loads((store / "cross_signing.json").read_text())["public"]["master"] == master

        await runner.stop()
        app = await runner.start(features=[FileFeature()])
        assert app.transport is not None
        assert str(app.transport.client.device_id) == device_id  # same device after restart
        reply = await ask(anna, room, bot_id, "!help", decrypted_from(bot_id), timeout=20)
        assert "de.lotsenbot.help" in reply.content
        assert await verified_chain(anna, bot_id, device_id) == master  # not replaced
    finally:
        await runner.stop()


async def send_withholding_key(person: MatrixUser, room: str, body: str) -> tuple[str, Any]:
    """Send an encrypted message under a fresh Megolm session without sharing its key.

    Returns the event id and the to-device messages that would have carried the key; sending
    those later is exactly a room key that arrives after the message it opens.
    """
    client = person.client
    olm = client.olm
    assert olm is not None
    olm.create_outbound_group_session(room)
    members = list(client.rooms[room].users)
    to_device = list(olm.share_group_session_parallel(room, members,
                                                      ignore_unverified_devices=True))  # fmt: skip
    olm.outbound_group_sessions[room].shared = True
    payload = olm.group_encrypt(room, {"type": "m.room.message",
                                       "content": {"msgtype": "m.text", "body": body}})  # fmt: skip
    path = (f"/_matrix/client/v3/rooms/{quote(room, safe='')}/send/m.room.encrypted/"
            f"{secrets.token_hex(8)}")  # fmt: skip
    response = await client.send("PUT", path, json.dumps(payload),
                                 {"Authorization": f"Bearer {client.access_token}"})  # fmt: skip
    answer = await response.json()
    assert response.status == 200, answer
    return str(answer["event_id"]), to_device


async def deliver_keys(person: MatrixUser, to_device: list[tuple[Any, dict[str, Any]]]) -> None:
    for _, messages in to_device:
        path = f"/_matrix/client/v3/sendToDevice/m.room.encrypted/{secrets.token_hex(8)}"
        response = await person.client.send(
            "PUT", path, json.dumps(messages),
            {"Authorization": f"Bearer {person.client.access_token}"},
        )  # fmt: skip
        assert response.status == 200, await response.text()


@pytest.mark.asyncio(loop_scope="session")
async def test_late_room_key_is_retried_and_a_missing_one_reported_once(
    tmp_path, synapse, register_user, make_user: MakeUser
):
    anna = await make_user("anna", encryption=True)
    runner = await make_bot(tmp_path, synapse, register_user, departments=(), matrix={
        **FAST_SYNC, "cross_signing": False, "undecryptable_notice_after": "4s"})  # fmt: skip
    app = await runner.start()
    bot_id = app.config.matrix.user_id
    assert app.transport is not None
    kept_store = app.transport.late.store
    try:
        room = await open_dm(anna, bot_id, encrypted=True)
        # The first exchange sets up the Olm channel both ways.
        await ask(anna, room, bot_id, "!hilfe", decrypted_from(bot_id), timeout=20)

        # 1. The key arrives after the message: the bot keeps it, then answers it.
        late_id, to_device = await send_withholding_key(anna, room, "!help")
        for _ in range(50):
            if late_id in [k.event_id for k in await kept_store.all()]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the bot did not keep the undecryptable event")
        await deliver_keys(anna, to_device)
        # If the keys took longer than the grace period, an undecryptable notice for late_id
        # may come first; the answer is what is checked here.
        reply = await anna.wait_for_message(room, predicate=answers_help(bot_id), timeout=20)
        assert "de.lotsenbot.help" in reply.content, reply.content
        assert late_id not in [k.event_id for k in await kept_store.all()]

        # 2. A key that never comes: one notice after the grace period, and only one.
        lost_id, _ = await send_withholding_key(anna, room, "!hilfe")
        notice = await anna.wait_for_message(
            room, predicate=reports_undecryptable(bot_id, lost_id), timeout=20
        )
        assert notice.msgtype == "m.notice"
        assert notice.content["de.lotsenbot.error"]["code"] == "undecryptable"
        assert notice.content["de.lotsenbot.error"]["events"] == [lost_id]
        assert notice.content["m.mentions"] == {"user_ids": []}
        await asyncio.sleep(6)
        later = [m for m in anna.messages(room, since=notice.position + 1) if m.sender == bot_id]
        assert later == []
        # Kept (silently) in case the key still turns up.
        kept = [k for k in await kept_store.all() if k.event_id == lost_id]
        assert kept and kept[0].notified
    finally:
        await runner.stop()


def bootstrap_cli(config: Path, *flags: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lotsenbot", "crypto", "bootstrap", "--config", str(config),
         *flags],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def wait_settled(app: Any) -> None:
    for _ in range(100):
        if app.transport.cross_signing_settled:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("cross-signing check did not finish")


@pytest.mark.asyncio(loop_scope="session")
async def test_foreign_keys_stay_until_reset_and_the_recovery_key_restores_the_master(
    tmp_path, synapse, register_user, make_user: MakeUser, caplog
):
    observer = await make_user("observer")
    first = await make_bot(tmp_path / "first", synapse, register_user, departments=(),
                           matrix=FAST_SYNC)  # fmt: skip
    app = await first.start()
    bot_id = app.config.matrix.user_id
    master = await verified_chain(observer, bot_id, str(app.transport.client.device_id))
    await first.stop()

    # Same account, new installation (empty store, new device): the keys are not its own.
    second = BotRunner(tmp_path / "second", {
        "matrix": {**first.config.matrix.model_dump(mode="json", include={
            "homeserver", "user_id", "password", "allowed_servers"}), "store_path": "store"},
        "database": {"path": "bot.db"},
    })  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="lotsenbot.matrix.transport"):
        app = await second.start()
        await wait_settled(app)
    device = str(app.transport.client.device_id)
    assert any("nicht besitzt" in r.getMessage() and "--reset" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    body = await keys_query(observer, bot_id)
    assert only_key(body["master_keys"][bot_id])[1] == master  # left alone
    assert list(body["device_keys"][bot_id][device]["signatures"][bot_id]) == [f"ed25519:{device}"]
    assert not (second.folder / "store" / "recovery-key.txt").exists()
    await second.stop()

    refused = await asyncio.to_thread(bootstrap_cli, second.config_path)
    assert refused.returncode == 1 and "--reset" in refused.stderr, refused

    # Replacing keys needs user-interactive auth: a wrong password is refused by the server.
    password = str(first.config.matrix.password)
    wrong = second.folder / "wrong.toml"
    wrong.write_text(second.config_path.read_text("utf-8").replace(password, "falsch"), "utf-8")
    denied = await asyncio.to_thread(bootstrap_cli, wrong, "--reset")
    assert denied.returncode == 1 and "401" in denied.stderr, denied

    reset = await asyncio.to_thread(bootstrap_cli, second.config_path, "--reset")
    assert reset.returncode == 0, reset.stderr
    new_master = await verified_chain(observer, bot_id, device)
    assert new_master != master
    recovery = reset.stdout.split("Wiederherstellungsschlüssel")[1].splitlines()[2].strip()
    assert len(recovery.split(" ")) > 8

    again = await asyncio.to_thread(bootstrap_cli, second.config_path)
    assert again.returncode == 0 and "bereits eingerichtet" in again.stdout, again

    # The store is lost: the recovery key brings back the same master (trust is kept).
    (second.folder / "store" / "cross_signing.json").unlink()
    old_ssk = only_key((await keys_query(observer, bot_id))["self_signing_keys"][bot_id])[1]
    typo = await asyncio.to_thread(
        bootstrap_cli,
        second.config_path,
        "--restore",
        stdin=recovery[:-1] + ("2" if recovery[-1] != "2" else "3"),
    )
    assert typo.returncode == 1 and "Wiederherstellungsschlüssel" not in typo.stdout
    restored = await asyncio.to_thread(bootstrap_cli, second.config_path, "--restore",
                                       stdin=recovery + "\n")  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert "Wiederherstellungsschlüssel" not in restored.stdout  # same master, nothing new
    assert await verified_chain(observer, bot_id, device) == new_master
    body = await keys_query(observer, bot_id)
    assert only_key(body["self_signing_keys"][bot_id])[1] != old_ssk


def departments_for(pilot_id: str) -> list[dict[str, Any]]:
    """IT with ``pilot_id`` as its pilot, and a second department, so routing has a choice."""
    it = {
        "id": "it", "name": "IT-Service", "specialist": True,
        "description": "Drucker, Passwörter, VPN und Arbeitsplatz-Rechner.",
        "keywords": ["Drucker", "Passwort", "VPN", "Laptop"], "pilots": [pilot_id],
    }  # fmt: skip
    personal = {"id": "personal", "name": "Personal und Fortbildung", "specialist": True,
                "description": "Urlaub, Fortbildungen, Arbeitszeit.",
                "keywords": ["Urlaub", "Fortbildung", "Schulung"], "pilots": []}  # fmt: skip
    return [it, personal]


def ticket_event(bot_id: str, event: str) -> Any:
    def check(item: Received) -> bool:
        meta = item.content.get("de.lotsenbot.ticket")
        return decrypted_from(bot_id)(item) and isinstance(meta, dict) and meta["event"] == event

    return check


@pytest.mark.asyncio(loop_scope="session")
async def test_request_worked_through_in_encrypted_rooms(tmp_path, synapse, register_user,
                                                         make_user: MakeUser):  # fmt: skip
    """An FAQ answer and a request from an encrypted chat, the request handled by a pilot in
    an encrypted chat: every message on both sides arrives encrypted and decrypts."""
    staff = await make_user("staff", encryption=True)
    pilot = await make_user("pilot", encryption=True)
    runner = await make_bot(tmp_path, synapse, register_user,
                            departments=departments_for(pilot.user_id),
                            matrix=FAST_SYNC)  # fmt: skip
    app = await runner.start()
    bot_id = app.config.matrix.user_id
    assert app.services is not None
    await app.services.feature("faq").load_starter_kb()
    try:
        pilot_room = await open_dm(pilot, bot_id, encrypted=True)
        staff_room = await open_dm(staff, bot_id, encrypted=True)
        answer = await ask(staff, staff_room, bot_id, "wie ändere ich mein passwort",
                           decrypted_from(bot_id), timeout=20)  # fmt: skip
        assert answer.content["de.lotsenbot.faq"]["entry"] is not None
        pilot.mark()
        created = await ask(staff, staff_room, bot_id, "!anfrage Mein Drucker druckt nicht mehr",
                            ticket_event(bot_id, "created"), timeout=20)  # fmt: skip
        ticket = created.content["de.lotsenbot.ticket"]
        assert (ticket["department"], ticket["assignee"]) == ("it", pilot.user_id)
        number = ticket["id"]
        notice = await pilot.wait_for_message(pilot_room, predicate=decrypted_from(bot_id),
                                              timeout=20)  # fmt: skip
        assert notice.content["de.lotsenbot.ticket"]["id"] == number

        await ask(pilot, pilot_room, bot_id, f"!übernehmen {number}",
                  ticket_event(bot_id, "claimed"), timeout=20)  # fmt: skip
        staff.mark()
        await pilot.send_text(pilot_room, f"!antwort {number} Bitte einmal neu starten.")
        relayed = await staff.wait_for_message(staff_room, predicate=ticket_event(bot_id, "reply"),
                                               timeout=20)  # fmt: skip
        assert "neu starten" in relayed.body
        await pilot.send_text(pilot_room, f"!erledigt {number}")
        resolved = await staff.wait_for_message(
            staff_room, predicate=ticket_event(bot_id, "resolved"), timeout=20
        )
        assert resolved.content["de.lotsenbot.ticket"]["status"] == "resolved"
    finally:
        await runner.stop()


@pytest.mark.asyncio(loop_scope="session")
async def test_direct_chat_the_bot_opens_is_encrypted_from_its_first_message(
    tmp_path, synapse, register_user, make_user: MakeUser
):  # fmt: skip
    """A pilot the bot has never talked to gets a new request in a direct chat the bot opens
    (``encrypt_direct_chats``, the default): the room is encrypted from its creation, the
    very first message decrypts on the pilot's device, nothing in it is plain, and the
    pilot works the request in that room."""
    staff = await make_user("staff")
    pilot = await make_user("pilot", encryption=True)
    runner = await make_bot(tmp_path, synapse, register_user,
                            departments=departments_for(pilot.user_id),
                            matrix={**FAST_SYNC, "encrypt_direct_chats": True})  # fmt: skip
    app = await runner.start()
    bot_id = app.config.matrix.user_id
    try:
        staff_room = await open_dm(staff, bot_id)
        pilot.mark()
        has_ticket = lambda item: "de.lotsenbot.ticket" in item.content  # noqa: E731
        created = await ask(staff, staff_room, bot_id, "!anfrage Mein Drucker druckt nicht mehr",
                            has_ticket, timeout=20)  # fmt: skip
        ticket = created.content["de.lotsenbot.ticket"]
        assert ticket["assignee"] == pilot.user_id
        notice = await pilot.wait_for_message(sender=bot_id, predicate=has_ticket, timeout=30)
        assert notice.room_id != staff_room and pilot.client.rooms[notice.room_id].encrypted
        assert getattr(notice.event, "decrypted", False), notice.source
        assert notice.content["de.lotsenbot.ticket"]["id"] == ticket["id"]
        from_bot = [item for item in pilot.events
                    if item.room_id == notice.room_id and item.sender == bot_id
                    and item.type in ("m.room.message", "m.room.encrypted")]  # fmt: skip
        assert from_bot and all(getattr(item.event, "decrypted", False) for item in from_bot)
        # The first send waited for the sync that showed the new room: no failed attempt.
        row = await app.db.fetchone(
            "SELECT MAX(attempts) AS most, COUNT(*) AS sent FROM outbox"
            " WHERE target = ? AND status = 'sent'", (pilot.user_id,))  # fmt: skip
        assert row is not None and row["sent"] >= 1 and row["most"] == 0

        claimed = await ask(pilot, notice.room_id, bot_id, f"!übernehmen {ticket['id']}",
                            ticket_event(bot_id, "claimed"), timeout=20)  # fmt: skip
        assert claimed.content["de.lotsenbot.ticket"]["assignee"] == pilot.user_id
    finally:
        await runner.stop()
