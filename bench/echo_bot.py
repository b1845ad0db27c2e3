"""The baseline: a minimal matrix-nio bot that answers every text message with a notice.

It does what any bot must do (log in, sync, join invites, send a reply) and nothing else,
so lotsenbot's figures divided by these show the cost of lotsenbot's own work. Two details
keep it a fair, not a feeble, baseline:

* it leaves presence out of its syncs, as lotsenbot does (presence changes would wake the
  long-poll for nothing);
* it sends each reply in its own task. nio awaits event callbacks one after another, so a
  bot that awaited the send inside the callback would answer a burst strictly in sequence —
  lotsenbot's sender works concurrently, and the comparison would flatter it.

Run on its own (for the start-up baseline, see ``startup.py``)::

    python bench/echo_bot.py --homeserver URL --user-id @echo:server --password-file FILE

prints ``ready <seconds> <rss_mb> <unix time>`` after login and the first completed sync,
then keeps answering until ``--seconds`` are up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from nio import AsyncClient, InviteMemberEvent, MatrixRoom, RoomMessageText

SYNC_FILTER: dict[str, Any] = {"presence": {"types": []}}


class EchoBot:
    def __init__(self, homeserver: str, user_id: str, password: str) -> None:
        self.client = AsyncClient(homeserver, user_id)
        self.password = password
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[Any]] = set()
        self.ready = asyncio.Event()

    async def start(self) -> None:
        await self.client.login(self.password, device_name="echo")
        # One sync without waiting: history is skipped, and "ready" means caught up.
        await self.client.sync(timeout=0, full_state=True, sync_filter=SYNC_FILTER)
        self.client.add_event_callback(self._on_message, RoomMessageText)  # type: ignore[arg-type]
        self.client.add_event_callback(self._on_invite, InviteMemberEvent)  # type: ignore[arg-type]
        self._task = asyncio.create_task(
            self.client.sync_forever(timeout=30_000, sync_filter=SYNC_FILTER)
        )
        self.ready.set()

    async def _on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == self.client.user_id and event.membership == "invite":
            await self.client.join(room.room_id)

    async def _on_message(self, room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender == self.client.user_id:
            return
        content = {"msgtype": "m.notice", "body": "echo: " + event.body, "m.mentions": {}}
        task = asyncio.create_task(self.client.room_send(room.room_id, "m.room.message", content))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sends:
            await asyncio.wait(self._sends, timeout=5)
        await self.client.close()


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _serve(homeserver: str, user_id: str, password: str, seconds: float) -> None:
    started = time.perf_counter()
    bot = EchoBot(homeserver, user_id, password)
    await bot.start()
    print(
        f"ready {time.perf_counter() - started:.4f} {_rss_mb():.1f} {time.time():.4f}", flush=True
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), seconds)
    await bot.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homeserver", required=True)
    parser.add_argument("--user-id", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=5.0, help="stop by itself after this")
    args = parser.parse_args()
    secret = args.password_file.read_text("utf-8").strip()
    asyncio.run(_serve(args.homeserver, args.user_id, secret, args.seconds))
