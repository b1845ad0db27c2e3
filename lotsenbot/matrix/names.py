"""Looking up display names in the background, for people the bot has to name.

Handlers and jobs never wait for this: when they show someone whose name is not stored (or
not confirmed for a while), :class:`~lotsenbot.core.names.PersonNames` puts the Matrix ID on
the directory's short list and the message shows the ID. This task works through the list:
first what the sync has already told nio (the person's name in a room shared with the bot,
no request at all), and only then one profile request, paced and with a failed person not
asked again for an hour. What it finds goes into the database, the single source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

from lotsenbot.core import names
from lotsenbot.core.names import NameDirectory, NameSource
from lotsenbot.storage.db import Database

log = logging.getLogger(__name__)

PER_PASS = 20  # people per pass; the rest wait for the next one
PAUSE_SECONDS = 0.25  # between two profile requests: well under the homeserver's rate limits
RETRY_AFTER_SECONDS = 3600.0  # a person whose lookup failed is not asked for again sooner
IDLE_SECONDS = 60.0


class NameSourceLike(Protocol):
    """What the transport offers (:class:`~lotsenbot.matrix.transport.MatrixTransport`)."""

    def member_name(self, user_id: str) -> str | None: ...

    async def profile_name(self, user_id: str, timeout: float = 10.0) -> str | None: ...


class NameLookups:
    def __init__(
        self,
        source: NameSourceLike,
        db: Database,
        directory: NameDirectory,
        now: Callable[[], datetime],
        *,
        may_ask: Callable[[str], bool],
        keep_new: Callable[[str], bool] = lambda user_id: False,
        per_pass: int = PER_PASS,
        pause: float = PAUSE_SECONDS,
        retry_after: float = RETRY_AFTER_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.db = db
        self.directory = directory
        self.now = now
        self.may_ask = may_ask  # people of the allowed servers, not the bot itself
        self.keep_new = keep_new  # the configured team, kept even before they write
        self.per_pass = per_pass
        self.pause = pause
        self.retry_after = retry_after
        self.monotonic = monotonic
        self._tried: dict[str, float] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Until :meth:`stop`; one bad pass never ends the task."""
        while not self._stopping.is_set():
            await self.directory.wait_for_wanted(IDLE_SECONDS)
            if self._stopping.is_set():
                return
            try:
                await self.run_once()
            except sqlite3.Error as exc:
                log.warning("Anzeigenamen nicht gespeichert (%s); später erneut", exc)
                await self._sleep(5.0)
            except Exception:
                log.exception("Nachschlagen von Anzeigenamen fehlgeschlagen")
                await self._sleep(5.0)

    async def want_team(self, team: Iterable[str]) -> None:
        """At start: the configured team is named in most messages; put those whose name
        is missing or old on the list."""
        async with self.db.transaction() as conn:
            await self.directory.on(conn, self.now()).load(team)

    async def run_once(self) -> dict[str, str]:
        """One pass over the list; returns what was learned (user ID → name, "" for none)."""
        now_mono = self.monotonic()
        self._tried = {u: t for u, t in self._tried.items() if now_mono - t < self.retry_after}
        found: dict[str, tuple[str, NameSource]] = {}
        asked = 0
        for user_id in self.directory.take_wanted(self.per_pass):
            if user_id in self._tried or not self.may_ask(user_id):
                continue
            self._tried[user_id] = now_mono
            name = self.source.member_name(user_id)
            if name is not None:
                found[user_id] = (name, "member")
                continue
            if asked:
                await self._sleep(self.pause)
                if self._stopping.is_set():
                    break
            asked += 1
            name = await self.source.profile_name(user_id)
            if name is not None:
                found[user_id] = (name, "profile")
        if found:
            now = self.now()
            async with self.db.transaction() as conn:
                for user_id, (name, source) in found.items():
                    # Someone else is kept only if they have written to the bot: an ID
                    # shown in a message (an erased person in the audit log, a deputy a
                    # pilot typed) must not bring a name back or in.
                    await names.learn(conn, user_id, name, source, now,
                                      only_for_users=not self.keep_new(user_id))  # fmt: skip
            log.debug("%d Anzeigename(n) nachgeschlagen", len(found))
        return {user_id: name for user_id, (name, _) in found.items()}

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
