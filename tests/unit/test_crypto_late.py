"""Late decryption against real nio/vodozemac objects: keep, retry, notify once, give up.

The room key is withheld by hand (an outbound Megolm session whose key the bot's Olm
machine only learns later), which is exactly the situation of a key that arrives in a later
sync than the message it opens.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from nio import AsyncClient, AsyncClientConfig, MegolmEvent, RoomMessageText
from nio.crypto import InboundGroupSession, OutboundGroupSession
from nio.store import SqliteStore

from lotsenbot.config import MatrixConfig
from lotsenbot.matrix.crypto import LateDecryption, UndecryptedStore
from lotsenbot.matrix.transport import MatrixTransport, SyncBatch

BOT = "@lotsenbot:stadt.example"
ANNA = "@anna:stadt.example"
ROOM = "!dm:stadt.example"
SENDER_KEY = "annas-curve25519-key"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_client(folder: Path) -> AsyncClient:
    config = AsyncClientConfig(
        encryption_enabled=True, store=SqliteStore, store_name="crypto.db", pickle_key="test"
    )
    client = AsyncClient("http://127.0.0.1:9", BOT, store_path=str(folder), config=config)
    client.restore_login(BOT, "BOTDEVICE", "token")  # loads the Olm machine; no network
    return client


def encrypted_event(session: OutboundGroupSession, event_id: str, body: str,
                    origin_ms: int) -> MegolmEvent:  # fmt: skip
    plaintext = {"type": "m.room.message", "room_id": ROOM,
                 "content": {"msgtype": "m.text", "body": body}}  # fmt: skip
    source = {
        "type": "m.room.encrypted",
        "event_id": event_id,
        "sender": ANNA,
        "origin_server_ts": origin_ms,
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": session.encrypt(json.dumps(plaintext)),
            "sender_key": SENDER_KEY,
            "session_id": session.id,
            "device_id": "ANNAPHONE",
        },
    }
    event = MegolmEvent.from_dict(source)
    assert isinstance(event, MegolmEvent)
    return event


@pytest_asyncio.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[AsyncClient, UndecryptedStore, FakeClock]]:
    (tmp_path / "store").mkdir()
    client = make_client(tmp_path / "store")
    store = UndecryptedStore(tmp_path / "store" / "undecrypted.db")
    try:
        yield client, store, FakeClock(1_800_000_000.0)
    finally:
        await store.close()
        await client.close()


def outbound() -> OutboundGroupSession:
    session = OutboundGroupSession()
    session.shared = True  # pretend it went out, so it encrypts; the bot never got the key
    return session


async def test_event_opens_once_the_key_arrives_and_survives_a_restart(setup, caplog) -> None:
    client, store, clock = setup
    late = LateDecryption(client, store, notice_after=60, clock=clock)
    session = outbound()
    room_key = session.session_key  # exported before the first message, as a client shares it
    event = encrypted_event(session, "$one", "!hilfe", int(clock.now * 1000) - 2000)
    with pytest.raises(Exception):  # noqa: B017 - nio raises EncryptionError, proving no key
        client.decrypt_event(_with_room(event))

    kept = await late.keep([(ROOM, event)])
    assert [k.event_id for k in kept] == ["$one"] and kept[0].notify
    clock.now += 10
    caplog.clear()
    outcome = await late.retry()
    assert outcome.decrypted == [] and outcome.to_notify == {}
    assert "no session found" not in caplog.text  # waiting is quiet, not a warning per sync

    # Restart: a new store object on the same file still has the event.
    await store.close()
    late = LateDecryption(client, UndecryptedStore(store.path), notice_after=60, clock=clock)
    client.olm.inbound_group_store.add(
        InboundGroupSession(room_key, "annas-ed25519", SENDER_KEY, ROOM)
    )
    outcome = await late.retry()
    assert len(outcome.decrypted) == 1
    item, decrypted = outcome.decrypted[0]
    assert item.event_id == "$one"
    assert isinstance(decrypted, RoomMessageText) and decrypted.body == "!hilfe"
    assert decrypted.source["event_id"] == "$one"
    # Kept until the caller confirms the event reached the inbox.
    assert [k.event_id for k in await late.store.all()] == ["$one"]
    await late.done([item])
    assert await late.store.all() == []
    await late.store.close()


async def test_sender_is_told_once_after_the_grace_period(setup) -> None:
    client, store, clock = setup
    late = LateDecryption(client, store, notice_after=60, clock=clock)
    session = outbound()
    now_ms = int(clock.now * 1000)
    await late.keep([(ROOM, encrypted_event(session, "$a", "eins", now_ms)),
                     (ROOM, encrypted_event(session, "$b", "zwei", now_ms))])  # fmt: skip
    await late.keep([(ROOM, encrypted_event(session, "$a", "eins", now_ms))])  # seen again
    assert [k.event_id for k in await store.all()] == ["$a", "$b"]
    assert await late.seconds_to_next_notice() == pytest.approx(60)

    clock.now += 59
    assert (await late.retry()).to_notify == {}
    clock.now += 2
    outcome = await late.retry()
    assert list(outcome.to_notify) == [ROOM]
    assert [k.event_id for k in outcome.to_notify[ROOM]] == ["$a", "$b"]
    await store.mark_notified(["$a", "$b"])
    assert (await late.retry()).to_notify == {}
    assert await late.seconds_to_next_notice() is None
    # Still kept: should the key turn up after all, the message is answered late.
    assert len(await store.all()) == 2


async def test_history_is_kept_silently_and_very_old_events_are_given_up(setup) -> None:
    client, store, clock = setup
    late = LateDecryption(client, store, notice_after=60, max_age=3600, clock=clock)
    session = outbound()
    now_ms = int(clock.now * 1000)
    kept = await late.keep([
        (ROOM, encrypted_event(session, "$old", "von gestern", now_ms - 2 * 3600 * 1000)),
        (ROOM, encrypted_event(session, "$history", "vor 20 Minuten", now_ms - 20 * 60 * 1000)),
    ])  # fmt: skip
    assert [(k.event_id, k.notify) for k in kept] == [("$history", False)]
    clock.now += 600
    assert (await late.retry()).to_notify == {}
    clock.now += 3600
    outcome = await late.retry()
    assert outcome.expired == ["$history"]
    assert await store.all() == []


async def test_key_request_goes_out_once_per_session(setup) -> None:
    client, store, clock = setup
    late = LateDecryption(client, store, notice_after=60, clock=clock)
    sent: list[str] = []

    async def fake_request(event: MegolmEvent) -> None:
        if event.session_id in sent:
            from nio.exceptions import LocalProtocolError

            raise LocalProtocolError("already requested")
        sent.append(event.session_id)

    client.request_room_key = fake_request  # type: ignore[method-assign]
    session = outbound()
    now_ms = int(clock.now * 1000)
    kept = await late.keep([(ROOM, encrypted_event(session, "$x", "a", now_ms)),
                            (ROOM, encrypted_event(session, "$y", "b", now_ms))])  # fmt: skip
    await late.request_keys(kept)  # the second request raises inside nio; no error escapes
    assert sent == [session.id]


def _with_room(event: MegolmEvent) -> MegolmEvent:
    event.room_id = ROOM
    return event


async def test_late_events_stay_kept_when_the_bot_stops_before_storing_them(
    tmp_path: Path,
) -> None:
    """The sync loop confirms a late-decrypted event only once the inbox has it: if the
    batch handler declines (the bot is stopping, the database was failing), the event is
    kept and comes again after the next start."""
    config = MatrixConfig(homeserver="http://127.0.0.1:1", user_id=BOT, password="x",
                          store_path=tmp_path / "store")  # fmt: skip
    transport = MatrixTransport(config)
    event = RoomMessageText.from_dict({
        "type": "m.room.message", "event_id": "$late", "sender": ANNA,
        "origin_server_ts": 1_800_000_000_000, "content": {"msgtype": "m.text", "body": "!hilfe"},
    })  # fmt: skip
    kept = SimpleNamespace(room_id=ROOM, event_id="$late")
    confirmed: list[Any] = []

    class Late:
        async def retry(self) -> Any:
            return SimpleNamespace(decrypted=[(kept, event)], to_notify={})

        async def done(self, items: Any) -> None:
            confirmed.extend(items)

    transport.late = Late()  # type: ignore[assignment]
    batches: list[SyncBatch] = []

    def handler(stored: bool) -> Any:
        async def on_batch(batch: SyncBatch) -> bool:
            batches.append(batch)
            return stored

        return on_batch

    try:
        await transport._retry_undecrypted("s1", handler(False))
        assert [e.event_id for e in batches[0].events] == ["$late"]
        assert confirmed == []  # still kept
        await transport._retry_undecrypted("s2", handler(True))
        assert confirmed == [kept]
    finally:
        await transport.client.close()
