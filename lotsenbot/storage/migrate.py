"""Numbered SQL migrations, each applied in its own transaction and recorded.

Files are ``lotsenbot/migrations/NNNN_name.sql``; they are append-only once released.
A database whose schema is newer than the newest migration this code knows is refused,
because running old code on it could silently lose data.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from lotsenbot.storage.db import Database

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaTooNew(Exception):
    def __init__(self, found: int, known: int) -> None:
        self.found = found
        self.known = known
        super().__init__(
            f"Die Datenbank hat Schema-Version {found}, dieser lotsenbot kennt nur bis {known}. "
            "Bitte die neuere lotsenbot-Version verwenden oder ein passendes Backup einspielen."
        )


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def discover(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations: list[Migration] = []
    for file in sorted(folder.glob("*.sql")):
        match = _NAME.match(file.name)
        if not match:
            raise ValueError(f"Migrationsdatei mit ungültigem Namen: {file.name}")
        migrations.append(Migration(int(match.group(1)), match.group(2), file.read_text("utf-8")))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"Migrationsnummern kommen doppelt vor: {versions}")
    return migrations


async def applied_versions(db: Database) -> set[int]:
    await db.conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    rows = await db.fetchall("SELECT version FROM schema_version")
    return {int(row["version"]) for row in rows}


async def current_version(db: Database) -> int:
    return max(await applied_versions(db), default=0)


def _statements(sql: str) -> list[str]:
    """Split a migration into statements; aiosqlite has no executescript inside a transaction."""
    import sqlite3

    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not buffer.strip().startswith("--"):
        statements.append(buffer.strip())
    return statements


async def migrate(db: Database, folder: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations; return the versions applied."""
    migrations = discover(folder)
    known = migrations[-1].version if migrations else 0
    done = await applied_versions(db)
    found = max(done, default=0)
    if found > known:
        raise SchemaTooNew(found, known)
    applied: list[int] = []
    for migration in migrations:
        if migration.version in done:
            continue
        async with db.transaction() as conn:
            for statement in _statements(migration.sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version, name, applied_at)"
                " VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (migration.version, migration.name),
            )
        log.info("Migration %04d_%s angewendet", migration.version, migration.name)
        applied.append(migration.version)
    return applied
