"""The migration runner: all or nothing per migration, and never on a newer database."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lotsenbot.storage.db import Database
from lotsenbot.storage.migrate import (
    MIGRATIONS_DIR,
    SchemaTooNew,
    current_version,
    discover,
    migrate,
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "daten" / "bot.db")
    await database.open()
    try:
        yield database
    finally:
        await database.close()


def write_migrations(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql, encoding="utf-8")
    return folder


async def tables(db: Database) -> set[str]:
    rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row["name"] for row in rows}


async def recorded(db: Database) -> list[tuple[int, str]]:
    rows = await db.fetchall("SELECT version, name FROM schema_version ORDER BY version")
    return [(row["version"], row["name"]) for row in rows]


def test_shipped_migrations_are_numbered_without_gaps() -> None:
    migrations = discover()
    assert migrations, "no migrations found in the package"
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions)), "versions must be unique and in file order"
    assert (migrations[0].version, migrations[0].name) == (1, "initial")
    assert all(m.sql.strip() for m in migrations)


async def test_fresh_database_gets_all_versions(db: Database) -> None:
    known = [m.version for m in discover(MIGRATIONS_DIR)]
    assert await current_version(db) == 0
    assert await migrate(db) == known
    assert [v for v, _ in await recorded(db)] == known
    assert await current_version(db) == known[-1]
    assert {"meta", "inbox", "outbox", "users", "dm_rooms", "rooms", "audit_log"} <= await tables(
        db
    )
    row = await db.fetchone("SELECT applied_at FROM schema_version WHERE version = 1")
    assert row is not None and row["applied_at"].endswith("Z")


async def test_rerun_is_a_no_op(db: Database) -> None:
    await migrate(db)
    before = await recorded(db)
    schema = await db.fetchall("SELECT sql FROM sqlite_master ORDER BY name")
    assert await migrate(db) == []
    assert await recorded(db) == before
    assert await db.fetchall("SELECT sql FROM sqlite_master ORDER BY name") == schema


async def test_only_pending_migrations_are_applied(db: Database, tmp_path: Path) -> None:
    folder = write_migrations(tmp_path / "m", {"0001_eins.sql": "CREATE TABLE eins (x INTEGER);"})
    assert await migrate(db, folder) == [1]
    write_migrations(folder, {"0002_zwei.sql": "CREATE TABLE zwei (y TEXT);\n"})
    assert await migrate(db, folder) == [2]
    assert await recorded(db) == [(1, "eins"), (2, "zwei")]


async def test_newer_database_is_refused(db: Database, tmp_path: Path) -> None:
    known = discover()[-1].version
    applied = len(await migrate(db))
    await db.execute(
        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'zukunft', 'x')",
        (known + 5,),
    )
    with pytest.raises(SchemaTooNew) as info:
        await migrate(db)
    assert (info.value.found, info.value.known) == (known + 5, known)
    assert str(known + 5) in str(info.value)
    # Nothing was touched: the newer version is still recorded, no row was added.
    assert len(await recorded(db)) == applied + 1


async def test_failing_migration_rolls_back_completely(db: Database, tmp_path: Path) -> None:
    folder = write_migrations(
        tmp_path / "m",
        {
            "0001_basis.sql": "CREATE TABLE basis (id INTEGER PRIMARY KEY);\n",
            "0002_kaputt.sql": (
                "CREATE TABLE halb (id INTEGER);\n"
                "INSERT INTO basis (id) VALUES (1);\n"
                "ALTER TABLE basis ADD COLUMN name TEXT;\n"
                "INSERT INTO gibt_es_nicht VALUES (1);\n"
            ),
        },
    )
    with pytest.raises(sqlite3.OperationalError, match="gibt_es_nicht"):
        await migrate(db, folder)
    assert await recorded(db) == [(1, "basis")]
    assert "halb" not in await tables(db)
    assert await db.fetchall("SELECT * FROM basis") == []
    columns = await db.fetchall("PRAGMA table_info(basis)")
    assert [c["name"] for c in columns] == ["id"]
    # Once fixed, the same migration applies cleanly: nothing half-done was left behind.
    (folder / "0002_kaputt.sql").write_text(
        "CREATE TABLE halb (id INTEGER);\nALTER TABLE basis ADD COLUMN name TEXT;\n", "utf-8"
    )
    assert await migrate(db, folder) == [2]
    assert "halb" in await tables(db)


async def test_statement_splitting_respects_strings_comments_and_triggers(
    db: Database, tmp_path: Path
) -> None:
    folder = write_migrations(
        tmp_path / "m",
        {
            "0001_tricky.sql": (
                "-- Kommentar mit ; Semikolon\n"
                "CREATE TABLE t (id INTEGER PRIMARY KEY, text TEXT);\n"
                "CREATE TABLE log (text TEXT);\n"
                "CREATE TRIGGER t_log AFTER INSERT ON t BEGIN\n"
                "    INSERT INTO log (text) VALUES ('neu; ' || new.text);\n"
                "    INSERT INTO log (text) VALUES ('zweite;');\n"
                "END;\n"
                "INSERT INTO t (text) VALUES ('a;b');\n"
                "-- Schlusskommentar ohne Anweisung\n"
            )
        },
    )
    assert await migrate(db, folder) == [1]
    assert [r["text"] for r in await db.fetchall("SELECT text FROM t")] == ["a;b"]
    logged = [r["text"] for r in await db.fetchall("SELECT text FROM log ORDER BY rowid")]
    assert logged == ["neu; a;b", "zweite;"]


def test_discover_rejects_bad_names_and_duplicates(tmp_path: Path) -> None:
    bad_name = write_migrations(tmp_path / "a", {"0001_Gross.sql": "SELECT 1;"})
    with pytest.raises(ValueError, match=r"0001_Gross\.sql"):
        discover(bad_name)
    no_number = write_migrations(tmp_path / "b", {"1_kurz.sql": "SELECT 1;"})
    with pytest.raises(ValueError, match=r"1_kurz\.sql"):
        discover(no_number)
    duplicate = write_migrations(
        tmp_path / "c", {"0002_tickets.sql": "SELECT 1;", "0002_treffen.sql": "SELECT 1;"}
    )
    with pytest.raises(ValueError, match="doppelt"):
        discover(duplicate)
    assert discover(tmp_path / "gibt_es_nicht") == []


async def test_reserved_numbers_may_leave_gaps(db: Database, tmp_path: Path) -> None:
    """Features reserve their numbers, so 0001 and 0010 without 0002-0009 is fine."""
    folder = write_migrations(
        tmp_path / "m",
        {"0001_basis.sql": "CREATE TABLE a (x);", "0010_treffen.sql": "CREATE TABLE b (y);"},
    )
    assert [m.version for m in discover(folder)] == [1, 10]
    assert await migrate(db, folder) == [1, 10]
    assert await current_version(db) == 10


async def test_migration_filling_a_gap_later_is_applied(db: Database, tmp_path: Path) -> None:
    """A reserved number that lands after a higher one must still run on existing databases."""
    folder = write_migrations(
        tmp_path / "m",
        {"0001_basis.sql": "CREATE TABLE a (x);", "0003_treffen.sql": "CREATE TABLE c (z);"},
    )
    assert await migrate(db, folder) == [1, 3]
    write_migrations(folder, {"0002_tickets.sql": "CREATE TABLE b (y);"})
    assert await migrate(db, folder) == [2]
    assert "b" in await tables(db)


async def test_empty_folder_on_migrated_database_is_too_new(db: Database, tmp_path: Path) -> None:
    """Code that knows no migrations must not run on a database that has some."""
    await migrate(db)
    (tmp_path / "leer").mkdir()
    with pytest.raises(SchemaTooNew):
        await migrate(db, tmp_path / "leer")


async def test_meetup_invitations_are_filled_from_the_announcements_already_sent(
    db: Database, tmp_path: Path
) -> None:
    """0013 records who got a meetup's invitation; for meetups announced before it, the
    calendar messages remembered in ``meetup_messages`` tell (an erased person's are gone)."""
    older = tmp_path / "bis-0012"
    older.mkdir()
    for migration in discover():
        if migration.version <= 12:
            (older / f"{migration.version:04d}_{migration.name}.sql").write_text(
                migration.sql, "utf-8"
            )
    await migrate(db, older)
    await db.execute(
        "INSERT INTO meetups (id, title, start_local, tzid, duration_s, first_start, created_by,"
        " created_at, updated_at) VALUES (?, 'T', '2027-01-12T14:00:00', 'Europe/Berlin', 3600,"
        " '2027-01-12T13:00:00.000Z', '@koord:stadt.de', ?, '2026-12-01T09:00:00.000Z')",
        (7, "2026-12-01T09:00:00.000Z"),
    )
    for key in (
        "meetup:7:ann:@anna:stadt.de",
        "meetup:7:ics:@anna:stadt.de",
        "meetup:7:ics:@bert:stadt.de",
        "meetup:7:ics:!gruppe:stadt.de",
    ):
        await db.execute("INSERT INTO meetup_messages (dedup_key, meetup_id) VALUES (?, 7)", (key,))
    assert await migrate(db) == [m.version for m in discover() if m.version > 12]
    rows = await db.fetchall(
        "SELECT meetup_id, target_kind, target, invited_at FROM meetup_invitations ORDER BY target"
    )
    assert [tuple(r) for r in rows] == [
        (7, "room", "!gruppe:stadt.de", "2026-12-01T09:00:00.000Z"),
        (7, "user", "@anna:stadt.de", "2026-12-01T09:00:00.000Z"),
        (7, "user", "@bert:stadt.de", "2026-12-01T09:00:00.000Z"),
    ]
