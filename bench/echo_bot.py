"""The baseline: a minimal matrix-nio bot that answers every text message with a notice.

It does what any bot must do (log in, sync, join invites, send a reply) and nothing else,
so lotsenbot's figures divided by these show the cost of lotsenbot's own work.
"""

from __future__ import annotations

import asyncio

from nio import AsyncClient, InviteMemberEvent, MatrixRoom, RoomMessageText


class EchoBot:
    def __init__(self, homeserver: str, user_id: str, password: str) -> None:
        self.client = AsyncClient(homeserver, user_id)
        self.password = password
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        await self.client.login(self.password, device_name="echo")
        await self.client.sync(timeout=0, full_state=True)  # skip history
        self.client.add_event_callback(self._on_message, RoomMessageText)  # type: ignore[arg-type]
        self.client.add_event_callback(self._on_invite, InviteMemberEvent)  # type: ignore[arg-type]
        self._task = asyncio.create_task(self.client.sync_forever(timeout=30_000))
        self.ready.set()

    async def _on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == self.client.user_id and event.membership == "invite":
            await self.client.join(room.room_id)

    async def _on_message(self, room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender == self.client.user_id:
            return
        await self.client.room_send(
            room.room_id,
            "m.room.message",
            {"msgtype": "m.notice", "body": "echo: " + event.body, "m.mentions": {}},
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()
