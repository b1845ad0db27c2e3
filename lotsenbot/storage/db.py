"""The SQLite database: one aiosqlite connection, pragmas, and serialised write transactions.

SQLite allows one writer at a time. Rather than letting concurrent tasks collide on
``database is locked``, writes are serialised inside the process by an asyncio lock, and
every write is a short ``BEGIN IMMEDIATE`` transaction that contains no network I/O.
Readers outside a transaction see the last committed state (WAL mode).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5_000


class Database:
    """Owns the connection; created and closed by the application object."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path) if str(path) != ":memory:" else path
        self._conn: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None  # the task inside transaction()

    async def open(self) -> None:
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(self.path), isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction; commits on success, rolls back on any exception."""
        async with self._write_lock:
            self._owner = asyncio.current_task()
            conn = self.conn
            try:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise
                else:
                    await conn.execute("COMMIT")
            finally:
                self._owner = None

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """Reads share the one connection, so outside a transaction they wait for the
        current writer: otherwise they would see its uncommitted rows (an outbox row that
        is then rolled back, say). Inside its own transaction a task reads directly."""
        if self._owner is not None and self._owner is asyncio.current_task():
            yield self.conn
            return
        async with self._write_lock:
            yield self.conn

    def reading(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """The connection for several reads in a row, each seeing only committed rows."""
        return self._reading()

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self._reading() as conn, conn.execute(sql, tuple(params)) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._reading() as conn, conn.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        """A single write statement in its own transaction."""
        async with self.transaction() as conn:
            await conn.execute(sql, tuple(params))
