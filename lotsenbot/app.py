"""The application object: owns every resource and wires the features together.

Start-up order: database and migrations, features (indexes rebuilt from the database,
jobs declared), Matrix login, then the workers (sync loop, inbox lanes, outbox sender).
Shutdown (SIGTERM, SIGINT) stops taking new work, lets in-flight events finish for a
bounded time, and closes everything; the Matrix device is never logged out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from lotsenbot.announcements import AnnouncementsFeature
from lotsenbot.config import Config
from lotsenbot.core import names
from lotsenbot.core.clock import Clock, iso
from lotsenbot.core.dispatch import Dispatcher, TransientError
from lotsenbot.core.feature import Feature
from lotsenbot.core.inbox import Inbox, InboxItem
from lotsenbot.core.outbox import Outbox, backoff
from lotsenbot.core.services import Services
from lotsenbot.core.types import Incoming
from lotsenbot.faq.feature import FaqFeature
from lotsenbot.matrix.names import NameLookups
from lotsenbot.matrix.sender import Sender
from lotsenbot.matrix.transport import MatrixTransport, SyncBatch
from lotsenbot.meetups.feature import MeetupsFeature
from lotsenbot.privacy.feature import PrivacyFeature
from lotsenbot.storage.db import Database
from lotsenbot.storage.migrate import migrate
from lotsenbot.tickets.feature import TicketsFeature

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 8.0

_T = TypeVar("_T")


def default_features() -> list[Feature]:
    """The features this build runs; each registers its own commands and jobs."""
    return [
        FaqFeature(),
        AnnouncementsFeature(),
        TicketsFeature(),
        MeetupsFeature(),
        PrivacyFeature(),
    ]


class App:
    def __init__(
        self,
        config: Config,
        *,
        features: Sequence[Feature] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.db = Database(config.database.path)
        self.outbox = Outbox(self.clock.now)
        self.inbox = Inbox(self.db)
        self.scheduler = AsyncIOScheduler(timezone=config.bot.tz)
        self.features = list(features) if features is not None else default_features()
        self.transport: MatrixTransport | None = None
        self.sender: Sender | None = None
        self.name_lookups: NameLookups | None = None
        self.dispatcher: Dispatcher | None = None
        self.services: Services | None = None
        self.first_start_ms = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._queued: dict[str, list[InboxItem]] = {}
        self._in_flight: set[str] = set()
        self._inbox_wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()  # set after the first completed sync

    # -- lifecycle -------------------------------------------------------------------------

    async def open_database(self) -> None:
        await self.db.open()
        await migrate(self.db)

    async def start(self) -> None:
        """Everything up to and including login; then call :meth:`run`."""
        await self.open_database()
        self.first_start_ms = await self._first_start()
        self.services = Services.create(
            self.config, self.db, self.clock, outbox=self.outbox, scheduler=self.scheduler
        )
        for feature in self.features:
            self.services.features[feature.name] = feature
        self.dispatcher = Dispatcher(self.services, [f.router for f in self.features], self.inbox)
        for feature in self.features:
            await feature.start(self.services)
        self.transport = MatrixTransport(self.config.matrix, texts=self.services.texts)
        for row in await self.db.fetchall("SELECT room_id FROM dm_rooms"):
            self.transport.remember_direct(row["room_id"])
        await self.transport.login()
        self.sender = Sender(self.db, self.outbox, self.transport, self.clock.now)
        roles, bot_id = self.services.roles, self.config.matrix.user_id
        self.name_lookups = NameLookups(
            self.transport, self.db, self.services.names, self.clock.now,
            may_ask=lambda user_id: user_id != bot_id and roles.is_allowed(user_id),
            keep_new=roles.is_team,
        )  # fmt: skip
        await self.name_lookups.want_team(roles.team())
        self.scheduler.start()
        from lotsenbot.privacy.metrics import start_metrics  # [metrics] listener, if configured

        self.metrics = await start_metrics(self.config, self.db)

    async def run(self) -> None:
        """Run until stop() is called or the access token stops working."""
        assert self.transport is not None and self.sender is not None
        assert self.name_lookups is not None
        token_row = await self.db.fetchone("SELECT value FROM meta WHERE key = 'sync_token'")
        since = token_row["value"] if token_row else None
        self._tasks = [
            asyncio.create_task(self._inbox_pump(), name="inbox"),
            asyncio.create_task(self.sender.run(), name="sender"),
            asyncio.create_task(self._look_up_names(), name="names"),
        ]
        sync = asyncio.create_task(self.transport.sync_forever(since, self._on_batch), name="sync")
        try:
            await sync
        finally:
            await self._shutdown()

    async def _look_up_names(self) -> None:
        """Display names in the background, from the first completed sync on: by then nio
        knows the rooms, and most names need no request of their own."""
        assert self.name_lookups is not None
        await self.ready.wait()
        await self.name_lookups.run()

    def stop(self) -> None:
        """Stop taking new work; run() then finishes what is in flight and returns."""
        self._stopping.set()
        if self.transport is not None:
            self.transport.stop()

    async def _shutdown(self) -> None:
        self._stopping.set()
        self._inbox_wake.set()
        lanes = list(self._lanes.values())
        if lanes:
            _done, pending = await asyncio.wait(lanes, timeout=SHUTDOWN_GRACE_SECONDS)
            for task in pending:
                task.cancel()  # its transaction rolls back; the event stays pending
        if self.sender is not None:
            # The sending loop finishes its pass first; then one last short pass, alone, so
            # that replies to the events just finished go out.
            self.sender.end_loop()
            loop = next((t for t in self._tasks if t.get_name() == "sender"), None)
            if loop is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(loop), timeout=SHUTDOWN_GRACE_SECONDS)
            if loop is None or loop.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.sender.drain_once(), timeout=2.0)
            self.sender.stop()
        if self.name_lookups is not None:
            self.name_lookups.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for feature in self.features:
            with contextlib.suppress(Exception):
                await feature.stop()
        metrics = getattr(self, "metrics", None)  # set in start(), if it got that far
        if metrics is not None:
            with contextlib.suppress(Exception):
                await metrics.stop()
        if self.transport is not None:
            await self.transport.close()
        await self.db.close()

    async def _first_start(self) -> int:
        """When the bot first started: older messages are never answered."""
        row = await self.db.fetchone("SELECT value FROM meta WHERE key = 'first_start_ms'")
        if row is not None:
            return int(row["value"])
        now_ms = int(self.clock.now().timestamp() * 1000)
        await self.db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('first_start_ms', ?)", (str(now_ms),)
        )
        return now_ms

    # -- sync batches ----------------------------------------------------------------------

    async def _on_batch(self, batch: SyncBatch) -> bool:
        """Store the batch's events durably, then (and only then) the new sync token.

        A locked or failing database must not end the sync loop: the write is retried with
        backoff until it succeeds. If the bot is stopped meanwhile, nothing was stored, not
        even the token, so the next start fetches the same events again; False then.
        """
        assert self.transport is not None and self.services is not None
        transport, roles = self.transport, self.services.roles
        for invite in batch.invites:
            await self._on_invite(invite.room_id, invite.inviter, invite.is_direct)
        events = [
            e for e in batch.events
            if e.origin_ts >= self.first_start_ms and roles.is_allowed(e.sender)
        ]  # fmt: skip

        async def store() -> list[Incoming]:
            now = self.clock.now()
            async with self.db.transaction() as conn:
                fresh = await self.inbox.accept(conn, events, now)
                for room_id, other in batch.direct_rooms.items():
                    if roles.is_allowed(other):
                        await conn.execute(
                            "INSERT INTO dm_rooms (user_id, room_id, created_at) VALUES (?, ?, ?)"
                            " ON CONFLICT (user_id) DO NOTHING",
                            (other, room_id, iso(now)),
                        )
                # Renames keep known names current; nobody else in the rooms is recorded.
                renamed = {u: n for u, n in batch.names.items() if roles.is_allowed(u)}
                await names.learn_renames(conn, renamed, now, keep_new=roles.is_team)
                for room_id in batch.left_rooms:
                    transport.forget_direct(room_id)
                    await conn.execute("DELETE FROM dm_rooms WHERE room_id = ?", (room_id,))
                    await conn.execute(
                        "UPDATE rooms SET left_at = ? WHERE room_id = ?", (iso(now), room_id)
                    )
                await conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('sync_token', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (batch.next_batch,),
                )
            return fresh

        stored = await self._write_until_done("Sync-Ergebnis", store)
        if stored is None:
            return False
        if stored:
            self._inbox_wake.set()
        if self.sender is not None:
            self.sender.homeserver_reachable()
        self.ready.set()
        return True

    async def _write_until_done(self, what: str, write: Callable[[], Awaitable[_T]]) -> _T | None:
        """Run a database write until it succeeds; None if the bot stops first.

        SQLite reports a lock held longer than the busy timeout (a backup, an admin's
        ``sqlite3`` shell) as an error; that is a pause, not a reason to crash the bot.
        """
        attempt = 0
        while True:
            try:
                return await write()
            except sqlite3.Error as exc:
                attempt += 1
                delay = backoff(attempt, base=0.5, cap=30).total_seconds()
                level = logging.WARNING if attempt < 5 else logging.ERROR
                log.log(level, "Datenbank nicht verfügbar (%s: %s), neuer Versuch in %.1f s",
                        what, exc, delay)  # fmt: skip
            if self._stopping.is_set():
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return None

    async def _on_invite(self, room_id: str, inviter: str | None, is_direct: bool) -> None:
        assert self.transport is not None and self.services is not None
        if inviter is None or not self.services.roles.is_allowed(inviter):
            log.info("Einladung in %s von %s abgelehnt (Server nicht zugelassen)", room_id, inviter)
            await self.transport.decline(room_id)
            return
        if not await self.transport.join(room_id):
            return
        if is_direct:
            self.transport.remember_direct(room_id)

        async def record() -> None:
            now = self.clock.now()
            async with self.db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO rooms (room_id, is_direct, joined_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (room_id) DO UPDATE SET left_at = NULL,"
                    " is_direct = excluded.is_direct",
                    (room_id, int(is_direct), iso(now)),
                )
                if is_direct:
                    await conn.execute(
                        "INSERT INTO dm_rooms (user_id, room_id, created_at) VALUES (?, ?, ?)"
                        " ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id",
                        (inviter, room_id, iso(now)),
                    )

        await self._write_until_done("Raumbeitritt", record)

    # -- inbox lanes: one task per room, rooms in parallel, events of a room in order --------

    async def _inbox_pump(self) -> None:
        while not self._stopping.is_set():
            self._inbox_wake.clear()
            now = self.clock.now()
            try:
                items = await self.inbox.pending(now)
            except sqlite3.Error as exc:  # unreadable for now: look again on the next round
                log.warning("Posteingang nicht lesbar: %s", exc)
                items = []
            for item in items:
                event_id = item.incoming.event_id
                if event_id in self._in_flight:
                    continue
                self._in_flight.add(event_id)
                room = item.incoming.room_id
                self._queued.setdefault(room, []).append(item)
                if room not in self._lanes:
                    self._lanes[room] = asyncio.create_task(self._lane(room))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._inbox_wake.wait(), timeout=5.0)

    async def _lane(self, room_id: str) -> None:
        assert self.dispatcher is not None
        try:
            while self._queued.get(room_id):
                item = self._queued[room_id].pop(0)
                try:
                    await self.dispatcher.handle(item.incoming, item.attempts)
                except TransientError as exc:
                    await self._retry_later(item, str(exc))
                    # Later events of this room wait for this one: the pump hands them out
                    # again, in order, once it is due (see Inbox.pending).
                    for later in self._queued.pop(room_id, []):
                        self._in_flight.discard(later.incoming.event_id)
                finally:
                    self._in_flight.discard(item.incoming.event_id)
                if self._stopping.is_set():
                    return
        finally:
            self._lanes.pop(room_id, None)
            self._queued.pop(room_id, None)

    async def _retry_later(self, item: InboxItem, error: str) -> None:
        with contextlib.suppress(Exception):
            await self.inbox.retry_later(
                item.incoming.event_id, item.attempts, self.clock.now(), error
            )
