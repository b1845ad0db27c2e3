"""Test-side Matrix clients: one `MatrixUser` per simulated person.

Integration tests talk to the bot the way staff do — through a real homeserver with a real
client — and then assert on what came back. Two properties make that reliable:

* Nothing that arrives is lost. Every timeline event is recorded in arrival order, and waits
  scan that record from a position (`mark()`), so an answer that arrives *before* the test
  starts waiting is still found.
* Each event is handed out once. `wait_for_message` consumes what it returns, so two waits in a
  row return two different messages instead of the same one twice.

Assertions should read the structured metadata in `event.content` (for example
`content["de.lotsenbot.error"]["code"]`), never German prose.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
    InviteMemberEvent,
    JoinError,
    LoginResponse,
    MatrixRoom,
    RoomCreateError,
    RoomPreset,
    RoomSendError,
    RoomSendResponse,
    SyncError,
)

logger = logging.getLogger(__name__)

SYNC_FILTER: dict[str, Any] = {"room": {"timeline": {"limit": 200}}}
"""Synapse's default timeline limit is small; a burst of bot messages between two syncs would
otherwise come back as a "limited" timeline with the older messages silently missing."""


class MatrixRequestError(RuntimeError):
    """A Matrix API call failed; `errcode` and `retry_after_ms` let tests assert on the kind."""

    def __init__(self, errcode: str | None, message: str, retry_after_ms: int | None = None):
        super().__init__(f"{errcode}: {message}")
        self.errcode = errcode
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True)
class Received:
    """One timeline event as a person's client saw it, with the room it arrived in."""

    room_id: str
    event: Event
    position: int

    @property
    def source(self) -> dict[str, Any]:
        """The raw event as the server sent it (decrypted, for encrypted rooms)."""
        source: dict[str, Any] = self.event.source
        return source

    @property
    def content(self) -> dict[str, Any]:
        content: dict[str, Any] = self.source.get("content", {})
        return content

    @property
    def type(self) -> str:
        return str(self.source.get("type", ""))

    @property
    def sender(self) -> str:
        return str(self.event.sender)

    @property
    def event_id(self) -> str:
        return str(self.event.event_id)

    @property
    def body(self) -> str:
        return str(self.content.get("body", ""))

    @property
    def msgtype(self) -> str | None:
        msgtype = self.content.get("msgtype")
        return str(msgtype) if msgtype is not None else None

    @property
    def formatted_body(self) -> str | None:
        formatted = self.content.get("formatted_body")
        return str(formatted) if formatted is not None else None


Predicate = Callable[[Received], bool]


@dataclass
class MatrixUser:
    """A simulated person: logs in, syncs in the background, sends, reacts and waits.

    `store_path` plus `encryption=True` give a client that can take part in encrypted rooms
    (nio keeps its Olm account there); without them the client is plain and faster.
    `max_limit_exceeded=0` makes a rate-limited request fail at once with
    `MatrixRequestError("M_LIMIT_EXCEEDED")` instead of nio silently sleeping and retrying.
    """

    homeserver: str
    user_id: str
    password: str
    device_id: str | None = None
    store_path: Path | None = None
    encryption: bool = False
    auto_join: bool = True
    max_limit_exceeded: int | None = 0
    sync_timeout_ms: int = 3000

    client: AsyncClient = field(init=False, repr=False)
    events: list[Received] = field(init=False, default_factory=list, repr=False)
    _consumed: set[int] = field(init=False, default_factory=set, repr=False)
    _cursor: int = field(init=False, default=0, repr=False)
    _changed: asyncio.Condition = field(init=False, repr=False)
    _sync_task: asyncio.Task[None] | None = field(init=False, default=None, repr=False)
    _side_tasks: set[asyncio.Task[Any]] = field(init=False, default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.encryption and self.store_path is None:
            raise ValueError("encryption needs a store_path for the Olm account")
        if self.store_path is not None:
            self.store_path.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(
            encryption_enabled=self.encryption,
            store_sync_tokens=self.store_path is not None,
            max_limit_exceeded=self.max_limit_exceeded,
            # Outage tests stop the server for a few seconds; reconnect promptly afterwards.
            max_timeout_retry_wait_time=2.0,
            request_timeout=30,
        )
        self.client = AsyncClient(
            self.homeserver,
            self.user_id,
            device_id=self.device_id or "",
            store_path=str(self.store_path) if self.store_path is not None else "",
            config=config,
        )
        self._changed = asyncio.Condition()
        self.client.add_event_callback(self._record, Event)
        self.client.add_event_callback(self._on_invite, InviteMemberEvent)

    # ----------------------------------------------------------------- session

    async def login(self) -> None:
        """Log in, do one full sync, then keep syncing in the background.

        Everything in the rooms before this call counts as history: waits only see what
        arrives afterwards (unless a test passes `since=0`).
        """
        response = await self.client.login(self.password, device_name="lotsenbot-test")
        if not isinstance(response, LoginResponse):
            raise MatrixRequestError(
                getattr(response, "status_code", None), f"login failed: {response}"
            )
        first = await self.client.sync(timeout=0, full_state=True, sync_filter=SYNC_FILTER)
        if isinstance(first, SyncError):
            raise MatrixRequestError(first.status_code, f"first sync failed: {first.message}")
        if self.encryption:
            await self._settle_keys()
        self._cursor = len(self.events)
        self._sync_task = asyncio.create_task(self._sync_loop(), name=f"sync {self.user_id}")

    async def close(self) -> None:
        """Stop syncing and close the HTTP session; safe to call twice."""
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        for task in list(self._side_tasks):
            task.cancel()
        if self._side_tasks:
            await asyncio.gather(*self._side_tasks, return_exceptions=True)
        await self.client.close()

    async def __aenter__(self) -> MatrixUser:
        await self.login()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- rooms

    async def create_dm(self, other_user_id: str, *, encrypted: bool = False) -> str:
        """Open a direct chat the way Element does, and record it in `m.direct`.

        The invitee joins on its own (the bot, or a `MatrixUser` with `auto_join`); use
        `wait_for_join` when the test depends on it.
        """
        initial_state: list[dict[str, Any]] = []
        if encrypted:
            initial_state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            )
        response = await self.client.room_create(
            is_direct=True,
            invite=[other_user_id],
            preset=RoomPreset.trusted_private_chat,
            initial_state=initial_state,
        )
        if isinstance(response, RoomCreateError):
            raise MatrixRequestError(response.status_code, response.message)
        room_id: str = response.room_id
        direct = await self.get_account_data("m.direct") or {}
        rooms = list(direct.get(other_user_id, []))
        if room_id not in rooms:
            rooms.append(room_id)
        direct[other_user_id] = rooms
        await self.set_account_data("m.direct", direct)
        return room_id

    async def join(self, room_id: str) -> None:
        response = await self.client.join(room_id)
        if isinstance(response, JoinError):
            raise MatrixRequestError(response.status_code, response.message)

    async def wait_for_join(self, room_id: str, user_id: str, timeout: float = 10.0) -> None:
        """Wait until `user_id` is a joined member of `room_id` (as seen by this client)."""

        def joined(item: Received) -> bool:
            return (
                item.type == "m.room.member"
                and item.source.get("state_key") == user_id
                and item.content.get("membership") == "join"
            )

        room = self.client.rooms.get(room_id)
        if room is not None and user_id in room.users and user_id not in room.invited_users:
            return
        await self.wait_for_event(joined, room_id=room_id, since=0, consume=False, timeout=timeout)

    # ----------------------------------------------------------------- sending

    async def send(self, room_id: str, event_type: str, content: Mapping[str, Any]) -> str:
        """Send any room event; returns its event id or raises MatrixRequestError.

        In an encrypted room the device lists are brought up to date first, so a member who
        just joined gets the room key instead of an undecryptable message.
        """
        room = self.client.rooms.get(room_id)
        if room is not None and room.encrypted and self.client.should_query_keys:
            await self.client.keys_query()
        response = await self.client.room_send(
            room_id, event_type, dict(content), ignore_unverified_devices=True
        )
        if isinstance(response, RoomSendError):
            raise MatrixRequestError(
                response.status_code, response.message, response.retry_after_ms
            )
        assert isinstance(response, RoomSendResponse)
        return str(response.event_id)

    async def send_text(self, room_id: str, body: str, formatted: str | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if formatted is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = formatted
        return await self.send(room_id, "m.room.message", content)

    async def send_reply(
        self, to: Received, body: str, *, fallback: bool = True, mention: bool = True
    ) -> str:
        """Answer ``to`` with the reply function, the way Element does: ``m.in_reply_to``,
        the replied-to sender in ``m.mentions`` (``mention``), and with ``fallback`` the
        quote in front that clients sent before Matrix 1.13 dropped it."""
        content: dict[str, Any] = {
            "msgtype": "m.text",
            "body": body,
            "m.relates_to": {"m.in_reply_to": {"event_id": to.event_id}},
            "m.mentions": {"user_ids": [to.sender]} if mention else {},
        }
        if fallback:
            first, *rest = to.body.splitlines() or [""]
            quote_lines = [f"> <{to.sender}> {first}", *(f"> {line}" for line in rest)]
            content["body"] = "\n".join(quote_lines) + "\n\n" + body
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = (
                f'<mx-reply><blockquote><a href="https://matrix.to/#/{to.room_id}/'
                f'{to.event_id}">In reply to</a> {html.escape(to.sender)}<br>'
                f"{html.escape(to.body)}</blockquote></mx-reply>{html.escape(body)}"
            )
        return await self.send(to.room_id, "m.room.message", content)

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.send(room_id, "m.reaction", content)

    # ----------------------------------------------------------------- account data

    async def get_account_data(self, event_type: str) -> dict[str, Any] | None:
        path = (
            f"/_matrix/client/v3/user/{quote(self.user_id, safe='')}"
            f"/account_data/{quote(event_type, safe='')}"
        )
        response = await self.client.send("GET", path, headers=self._auth_headers())
        if response.status == 404:
            response.release()
            return None
        body: dict[str, Any] = await response.json()
        if response.status != 200:
            raise MatrixRequestError(body.get("errcode"), str(body.get("error")))
        return body

    async def set_account_data(self, event_type: str, content: Mapping[str, Any]) -> None:
        path = (
            f"/_matrix/client/v3/user/{quote(self.user_id, safe='')}"
            f"/account_data/{quote(event_type, safe='')}"
        )
        headers = {**self._auth_headers(), "Content-Type": "application/json"}
        response = await self.client.send("PUT", path, json.dumps(dict(content)), headers)
        if response.status != 200:
            body = await response.json()
            raise MatrixRequestError(body.get("errcode"), str(body.get("error")))

    # ----------------------------------------------------------------- waiting

    def mark(self) -> int:
        """Remember "now": later waits look only at events after this point.

        Call it before the action whose answer you expect; the answer is then found even if
        it arrives before the wait starts. Returns the position for an explicit `since=`.
        """
        self._cursor = len(self.events)
        return self._cursor

    async def wait_for_event(
        self,
        predicate: Predicate | None = None,
        *,
        room_id: str | None = None,
        sender: str | None = None,
        event_type: str | None = None,
        since: int | None = None,
        consume: bool = True,
        include_own: bool = False,
        timeout: float = 10.0,
    ) -> Received:
        """First not yet consumed event after `since` (default: the last `mark()`) that matches.

        Own events are skipped unless `include_own` is set or `sender` is this user: a
        person waiting for an answer does not want the echo of their own question.
        """
        start = self._cursor if since is None else since

        def matches(item: Received) -> bool:
            if item.position in self._consumed and consume:
                return False
            if room_id is not None and item.room_id != room_id:
                return False
            if sender is not None and item.sender != sender:
                return False
            if sender is None and not include_own and item.sender == self.user_id:
                return False
            if event_type is not None and item.type != event_type:
                return False
            return predicate is None or predicate(item)

        def find() -> Received | None:
            for item in self.events[start:]:
                if matches(item):
                    return item
            return None

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: find() is not None)
        except TimeoutError:
            seen = [
                f"{item.type} from {item.sender}: {item.body[:80]!r}"
                for item in self.events[start:]
            ]
            raise TimeoutError(
                f"{self.user_id}: no matching event within {timeout} s "
                f"(room={room_id}, sender={sender}, type={event_type}); seen since mark: {seen}"
            ) from None
        found = find()
        assert found is not None
        if consume:
            self._consumed.add(found.position)
        return found

    async def wait_for_message(
        self,
        room_id: str | None = None,
        sender: str | None = None,
        predicate: Predicate | None = None,
        timeout: float = 10.0,
        *,
        since: int | None = None,
    ) -> Received:
        """The next `m.room.message` (from someone else, by default) matching the filters."""
        return await self.wait_for_event(
            predicate,
            room_id=room_id,
            sender=sender,
            event_type="m.room.message",
            since=since,
            timeout=timeout,
        )

    def messages(self, room_id: str | None = None, *, since: int = 0) -> list[Received]:
        """All recorded `m.room.message` events, for assertions about what was *not* sent."""
        return [
            item
            for item in self.events[since:]
            if item.type == "m.room.message" and (room_id is None or item.room_id == room_id)
        ]

    # ----------------------------------------------------------------- internals

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.client.access_token}"}

    async def _record(self, room: MatrixRoom, event: Event) -> None:
        async with self._changed:
            self.events.append(Received(room.room_id, event, len(self.events)))
            self._changed.notify_all()

    async def _on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if (
            self.auto_join
            and event.state_key == self.user_id
            and event.membership == "invite"
            and room.room_id not in self.client.rooms
        ):
            task = asyncio.create_task(self._join_quietly(room.room_id))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def _join_quietly(self, room_id: str) -> None:
        response = await self.client.join(room_id)
        if isinstance(response, JoinError):
            logger.warning("%s could not join %s: %s", self.user_id, room_id, response.message)

    async def _settle_keys(self) -> None:
        """Upload device keys before the first message so others can encrypt to us."""
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.client.should_query_keys:
            await self.client.keys_query()

    async def _sync_loop(self) -> None:
        """Keep syncing until cancelled; transport errors are retried by nio itself."""
        while True:
            try:
                await self.client.sync_forever(
                    timeout=self.sync_timeout_ms, sync_filter=SYNC_FILTER
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: sync failed, retrying", self.user_id)
                await asyncio.sleep(0.5)
