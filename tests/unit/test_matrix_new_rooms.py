"""Direct chats the bot creates: nothing is sent before nio knows them complete.

A sync that runs while Synapse is still writing a new room's initial state shows the room
without its encryption event or without the invited person; sending then would put a plain
message into an encrypted room (seen in `bench/announce_fanout.py --encrypted`: 16 of 200
copies before this check) or share the room key without the person's devices.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from nio import MatrixRoom, RoomMemberEvent

from lotsenbot.config import MatrixConfig
from lotsenbot.matrix.transport import HistoryUnavailable, MatrixTransport

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


def member_event(user_id: str, membership: str) -> RoomMemberEvent:
    return RoomMemberEvent.from_dict({
        "type": "m.room.member", "state_key": user_id, "sender": user_id, "event_id": "$e",
        "origin_server_ts": 1, "content": {"membership": membership},
    })  # fmt: skip


def sync_with(room_id: str, *events: RoomMemberEvent) -> SimpleNamespace:
    """The part of a nio SyncResponse that _note_declines reads."""
    room = SimpleNamespace(state=[], timeline=SimpleNamespace(events=list(events)))
    return SimpleNamespace(rooms=SimpleNamespace(join={room_id: room}))


async def test_a_person_who_left_an_older_direct_chat_has_left_it(tmp_path: Path) -> None:
    t = transport(tmp_path)
    room = t.client.rooms[ROOM] = MatrixRoom(ROOM, BOT)
    room.add_member(BOT, None, None)
    room.add_member(PILOT, None, None)
    assert not t.partner_left(ROOM, PILOT)
    room.remove_member(PILOT)
    assert t.partner_left(ROOM, PILOT)
    room.add_member(PILOT, None, None, invited=True)  # invited again: not left
    assert not t.partner_left(ROOM, PILOT)
    assert not t.partner_left("!unbekannt:stadt.example", PILOT)  # not judged without nio


async def test_a_new_chat_counts_as_declined_only_once_a_sync_showed_the_leave(
    tmp_path: Path,
) -> None:
    t = transport(tmp_path)
    t._new_rooms[ROOM] = (PILOT, True)
    room = t.client.rooms[ROOM] = MatrixRoom(ROOM, BOT)
    room.add_member(BOT, None, None)
    assert not t.partner_left(ROOM, PILOT)  # the invite may just not have synced yet
    t._note_declines(sync_with(ROOM, member_event("@jemand:stadt.example", "leave")))
    assert not t.partner_left(ROOM, PILOT)  # somebody else's leave says nothing
    t._note_declines(sync_with(ROOM, member_event(PILOT, "invite"), member_event(PILOT, "leave")))
    assert t.partner_left(ROOM, PILOT)


async def test_waiting_for_a_declined_chat_ends_at_once(tmp_path: Path) -> None:
    t = transport(tmp_path)
    t._new_rooms[ROOM] = (PILOT, False)
    t.client.rooms[ROOM] = MatrixRoom(ROOM, BOT)
    waiting = asyncio.create_task(t.wait_for_room(ROOM, timeout=30))
    await asyncio.sleep(0.05)
    t._note_declines(sync_with(ROOM, member_event(PILOT, "leave")))
    await synced(t)
    assert await asyncio.wait_for(waiting, 1) is False


async def test_another_chat_the_person_is_in_is_found(tmp_path: Path) -> None:
    t = transport(tmp_path)
    for room_id, members in (
        ("!alt:stadt.example", [BOT]),
        ("!neu:stadt.example", [BOT, PILOT]),
        ("!gruppe:stadt.example", [BOT, PILOT, "@x:stadt.example"]),
    ):
        room = t.client.rooms[room_id] = MatrixRoom(room_id, BOT)
        for member in members:
            room.add_member(member, None, None)
        t.remember_direct(room_id)
    assert t.live_direct_room(PILOT) == "!neu:stadt.example"
    t.forget_direct("!neu:stadt.example")
    assert t.live_direct_room(PILOT) is None


async def test_the_room_state_tells_a_decline_the_sync_did_not_show(tmp_path: Path) -> None:
    """A decline that came before the room was registered is in no sync looked at; the
    homeserver's member state of the invitee says it."""
    t = transport(tmp_path)
    t._new_rooms[ROOM] = (PILOT, True)
    t.client.rooms[ROOM] = MatrixRoom(ROOM, BOT)
    asked: list[tuple[str, str, str]] = []
    membership = {"membership": "invite"}

    async def member_state(room_id: str, event_type: str, state_key: str) -> SimpleNamespace:
        asked.append((room_id, event_type, state_key))
        return SimpleNamespace(content=dict(membership))

    t.client.room_get_state_event = member_state  # type: ignore[method-assign]
    assert await t.confirm_declined(ROOM) is False  # still invited: not ready yet, no decline
    membership["membership"] = "leave"
    assert await t.confirm_declined(ROOM) is True and t.declined(ROOM)
    assert asked == [(ROOM, "m.room.member", PILOT)] * 2
    assert await t.confirm_declined("!alt:stadt.example") is False  # not a new room: not asked
    assert len(asked) == 2


def _member(user: str, membership: str, n: int, before: str | None = None) -> dict[str, object]:
    return {
        "type": "m.room.member",
        "state_key": user,
        "sender": user,
        "content": {"membership": membership},
        "event_id": f"$m{n}",
        "origin_server_ts": n,
        "unsigned": {"prev_content": {"membership": before}} if before else {},
    }


def _notice(txn: str, n: int) -> dict[str, object]:
    return {
        "type": "m.room.message",
        "sender": BOT,
        "content": {"msgtype": "m.notice", "body": txn},
        "event_id": f"$n{n}",
        "origin_server_ts": n,
        "unsigned": {"transaction_id": txn},
    }


def history(t: MatrixTransport, *newest_first: dict[str, object]) -> list[str | None]:
    """Serve ``newest_first`` as /messages does backwards, two events a page; returns the
    list of page tokens asked for."""
    from nio import Event, RoomMessagesResponse

    reads: list[str | None] = []

    async def room_messages(room_id: str, start: str | None = None, **_: object) -> object:
        reads.append(start)
        offset = int(start or 0)
        chunk = [Event.parse_event(event) for event in newest_first[offset : offset + 2]]
        end = str(offset + 2) if offset + 2 < len(newest_first) else None
        return RoomMessagesResponse(room_id, chunk, start or "", end)  # type: ignore[arg-type]

    t.client.room_messages = room_messages  # type: ignore[method-assign]
    return reads


async def test_a_message_counts_as_seen_only_during_the_persons_last_stay(
    tmp_path: Path,
) -> None:
    """The pilot joined, got "a", left, rejoined, got "b", left again; "c" came after."""
    t = transport(tmp_path)
    reads = history(
        t,
        _notice("c", 9),
        _member(PILOT, "leave", 8),
        _notice("b", 7),
        _member(PILOT, "join", 6, before="leave"),
        _member(PILOT, "leave", 5),
        _notice("a", 4),
        _member(PILOT, "join", 3),
    )
    assert await t.sent_while_present(ROOM, PILOT, "b") == "$n7"
    assert await t.sent_while_present(ROOM, PILOT, "c") is None  # sent into the empty room
    reads.clear()
    assert await t.sent_while_present(ROOM, PILOT, "a") is None  # an earlier stay
    assert reads == [None, "2", "4"]  # stopped where the last stay began
    assert await t.sent_while_present(ROOM, "@jemand:stadt.example", "b") is None  # never left
    await t.close()


async def test_a_message_to_an_invitation_counts_only_if_the_person_joined(
    tmp_path: Path,
) -> None:
    t = transport(tmp_path)
    # The bot opened the chat and wrote at once; the pilot joined later, then left.
    history(
        t,
        _member(PILOT, "leave", 5, before="join"),
        _member(PILOT, "join", 4, before="join"),  # a new display name, not a join
        _member(PILOT, "join", 3, before="invite"),
        _notice("m", 2),
        _member(PILOT, "invite", 1),
    )
    assert await t.sent_while_present(ROOM, PILOT, "m") == "$n2"
    # The pilot declined the invitation: the message never reached them.
    history(t, _member(PILOT, "leave", 3, before="invite"), _notice("m", 2),
            _member(PILOT, "invite", 1))  # fmt: skip
    assert await t.sent_while_present(ROOM, PILOT, "m") is None
    # A name change after the message is no join of this stay either.
    history(t, _member(PILOT, "leave", 4), _member(PILOT, "join", 3, before="join"),
            _notice("m", 2), _member(PILOT, "invite", 1))  # fmt: skip
    assert await t.sent_while_present(ROOM, PILOT, "m") is None
    await t.close()


async def test_an_unreadable_history_is_not_taken_for_a_missing_message(tmp_path: Path) -> None:
    from nio import RoomMessagesError

    t = transport(tmp_path)

    async def limited(room_id: str, **_: object) -> object:
        return RoomMessagesError("Too Many Requests", "M_LIMIT_EXCEEDED", 2000)

    t.client.room_messages = limited  # type: ignore[method-assign]
    with pytest.raises(HistoryUnavailable) as raised:
        await t.sent_while_present(ROOM, PILOT, "m")
    assert (raised.value.code, raised.value.retry_after_ms) == ("M_LIMIT_EXCEEDED", 2000)

    async def forbidden(room_id: str, **_: object) -> object:
        return RoomMessagesError("not in room", "M_FORBIDDEN")

    t.client.room_messages = forbidden  # type: ignore[method-assign]
    assert await t.sent_while_present(ROOM, PILOT, "m") is None  # nothing the bot can find
    await t.close()


def test_a_reply_is_read_without_the_quote_of_the_message_it_answers(tmp_path: Path) -> None:
    """Many clients put the answered message in front of a reply; "2" or "!übernehmen 5"
    must still be read as such."""
    t = transport(tmp_path)
    fallback = {
        "type": "m.room.message",
        "sender": PILOT,
        "event_id": "$antwort",
        "origin_server_ts": 1,
        "content": {
            "msgtype": "m.text",
            "body": f"> <{BOT}> Neue Anfrage Nr. 5\n> zweite Zeile\n\n!übernehmen 5",
            "format": "org.matrix.custom.html",
            "formatted_body": "<mx-reply><blockquote>Neue Anfrage</blockquote></mx-reply>"
            "!übernehmen 5",
            "m.relates_to": {"m.in_reply_to": {"event_id": "$anfrage"}},
        },
    }
    incoming = t._incoming(ROOM, SimpleNamespace(source=fallback), is_direct=False)
    assert incoming is not None
    assert (incoming.body, incoming.formatted_body) == ("!übernehmen 5", "!übernehmen 5")
    assert incoming.mentions_bot  # a reply to the bot addresses it (no m.mentions sent)
    # A person's own leading quote stays: without a reply relation, and in a reply from a
    # client that sends no fallback.
    own = {"msgtype": "m.text", "body": "> Zitat\n\nFrage"}
    for content in (own, {**own, "m.relates_to": {"m.in_reply_to": {"event_id": "$x"}}}):
        plain = {**fallback, "content": content}
        incoming = t._incoming(ROOM, SimpleNamespace(source=plain), is_direct=True)
        assert incoming is not None and incoming.body == "> Zitat\n\nFrage"


class FakeAccountData:
    """A homeserver's m.direct endpoint: GET answers with ``status`` (200 once stored)."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.stored: dict[str, list[str]] | None = None
        self.puts = 0

    async def send(self, method: str, path: str, data: str | None = None, **_: object) -> object:
        await asyncio.sleep(0.01)  # lets two updates interleave, as over a network
        if method == "PUT":
            self.stored = json.loads(data or "{}")
            self.puts += 1
            return SimpleNamespace(status=200, release=lambda: None)

        async def body() -> object:
            return self.stored

        status = 200 if self.stored is not None else self.status
        return SimpleNamespace(status=status, json=body, release=lambda: None)


async def test_m_direct_is_never_overwritten_with_a_guess(tmp_path: Path) -> None:
    t = transport(tmp_path)
    server = FakeAccountData(status=500)
    t.client.send = server.send  # type: ignore[method-assign]
    await t._mark_direct(PILOT, ROOM)
    assert server.puts == 0  # unknown state: nothing written (it would erase the others)
    server.status = 404  # none yet
    other = "@kollege:stadt.example"
    await asyncio.gather(t._mark_direct(PILOT, ROOM), t._mark_direct(other, "!b:stadt.example"))
    assert server.stored == {PILOT: [ROOM], other: ["!b:stadt.example"]}  # neither lost
    await t.close()


def test_secret_files_are_replaced_whole_and_private(tmp_path: Path) -> None:
    from lotsenbot.matrix.transport import _write_private

    target = tmp_path / "store" / "session.json"
    _write_private(target, '{"device_id": "ALT"}')
    _write_private(target, '{"device_id": "NEU"}')
    assert target.read_text() == '{"device_id": "NEU"}'
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["session.json"]  # no temporary left


async def test_undecryptable_events_of_a_fetched_gap_are_kept_for_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a downtime the missed events come from /messages; one without its room key yet
    must be kept like one in the sync itself, not dropped."""
    from nio import Event, MegolmEvent

    from lotsenbot.matrix import transport as module

    encrypted = Event.parse_event(
        {
            "type": "m.room.encrypted",
            "sender": PILOT,
            "event_id": "$verschluesselt",
            "origin_server_ts": 1,
            "content": {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgA",
                "sender_key": "schluessel",
                "session_id": "sitzung",
                "device_id": "GERAET",
            },
        }
    )
    assert isinstance(encrypted, MegolmEvent)

    async def gap(*_: object) -> list[object]:
        return [encrypted]

    monkeypatch.setattr(module, "fetch_gap", gap)
    t = transport(tmp_path)
    timeline = SimpleNamespace(events=[], limited=True, prev_batch="p1")
    response = SimpleNamespace(
        rooms=SimpleNamespace(
            join={ROOM: SimpleNamespace(state=[], timeline=timeline)}, invite={}, leave={}
        ),
        next_batch="s2",
    )
    batch, undecrypted = await t._convert(response, "s1")  # type: ignore[arg-type]
    assert batch.events == [] and undecrypted == [(ROOM, encrypted)]
    await t.close()
