"""Operations: online backup while the database is written, the CLI, and the HTTP listener."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from lotsenbot.cli import main
from lotsenbot.config import MetricsConfig
from lotsenbot.core.clock import iso
from lotsenbot.privacy.backup import BackupError, backup_database
from lotsenbot.privacy.metrics import MetricsServer
from lotsenbot.storage.db import Database
from lotsenbot.storage.migrate import migrate


def _writer(path: Path, stop: threading.Event, busy: threading.Event, written: list[int]) -> None:
    """A second process-like writer: small commits as fast as it can, like a busy bot."""
    conn = sqlite3.connect(str(path), timeout=10, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    number = 0
    while not stop.is_set():
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"row{number}", "x" * 200))
        conn.execute("COMMIT")
        number += 1
        written.append(number)
        if number == 200:
            busy.set()
    conn.close()


async def _database(path: Path) -> None:
    db = Database(path)
    await db.open()
    await migrate(db)
    await db.close()


async def test_backup_while_writing_is_consistent(tmp_path: Path) -> None:
    source = tmp_path / "bot.db"
    await _database(source)
    conn = sqlite3.connect(str(source))
    conn.executemany(  # some megabytes, so that a backup takes long enough to be overlapped
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        ((f"fill{n}", "y" * 400) for n in range(20_000)),
    )
    conn.commit()
    conn.close()
    stop, busy = threading.Event(), threading.Event()
    written: list[int] = []
    thread = threading.Thread(target=_writer, args=(source, stop, busy, written))
    thread.start()
    try:
        assert await asyncio.to_thread(busy.wait, 10)
        copies = []
        for number in range(5):
            before = len(written)
            result = await asyncio.to_thread(backup_database, source, tmp_path / f"copy{number}.db")
            copies.append((result, before, len(written)))
    finally:
        stop.set()
        thread.join()
    # The writer kept committing while copies were taken, and nothing waited for the other.
    assert any(after > before for _, before, after in copies)
    for result, before, after in copies:
        conn = sqlite3.connect(str(result.path))
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            rows = conn.execute("SELECT COUNT(*) FROM meta WHERE key LIKE 'row%'").fetchone()[0]
        finally:
            conn.close()
        assert before <= rows <= after  # a snapshot from within the backup's window
        assert result.schema_version >= 1
        assert result.path.stat().st_mode & 0o077 == 0  # personal data: owner only
    assert not list(tmp_path.glob(".*.tmp"))


async def test_backup_refuses_to_overwrite_and_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bot.db"
    await _database(source)
    target = tmp_path / "sicherung.db"
    target.write_text("alt")
    with pytest.raises(BackupError, match="--force"):
        backup_database(source, target)
    assert target.read_text() == "alt"
    config = tmp_path / "config.toml"
    config.write_text(
        '[matrix]\nhomeserver = "http://127.0.0.1:1"\nuser_id = "@bot:stadt.de"\n'
        'password = "x"\n[database]\npath = "bot.db"\n'
    )
    assert await asyncio.to_thread(main, ["backup", str(target), "--config", str(config)]) == 1
    assert "--force" in capsys.readouterr().err
    code = await asyncio.to_thread(
        main, ["backup", str(target), "--force", "--config", str(config)]
    )
    assert code == 0
    assert sqlite3.connect(str(target)).execute("SELECT COUNT(*) FROM meta").fetchone()
    # purge: dry run counts, the real run deletes, both per category
    conn = sqlite3.connect(str(source))
    conn.execute(
        "INSERT INTO inbox (event_id, room_id, sender, kind, payload, origin_ts, received_at,"
        " status, handled_at) VALUES ('$old', '!r:stadt.de', '@a:stadt.de', 'message', '{}', 0,"
        " '2020-01-01T00:00:00.000Z', 'done', '2020-01-01T00:00:00.000Z')"
    )
    conn.commit()
    conn.close()
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["purge", "--dry-run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "Probelauf" in out and "core.events" in out
    assert [line.split()[-1] for line in out.splitlines() if "core.events" in line] == ["1"]
    assert await asyncio.to_thread(main, ["purge", "--config", str(config)]) == 0
    conn = sqlite3.connect(str(source))
    assert conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0] == 0
    assert conn.execute("SELECT actor FROM audit_log").fetchall() == [("cli:purge",)]
    conn.close()


async def test_metrics_and_health_over_http(db: Database) -> None:
    now_ms = int(time.time() * 1000)
    await db.execute(
        "INSERT INTO meta (key, value) VALUES ('sync_token', 's1')"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )
    for number, status in enumerate(("done", "done", "ignored", "pending")):
        await db.execute(
            "INSERT INTO inbox (event_id, room_id, sender, kind, payload, origin_ts, received_at,"
            " status) VALUES (?, '!r:stadt.de', '@a:stadt.de', 'message', '{}', ?, ?, ?)",
            (f"$e{number}", now_ms - 2500, iso_now(), status),
        )
    await db.execute(
        "INSERT INTO outbox (dedup_key, target_kind, target, content, status, next_attempt_at,"
        " created_at) VALUES ('x', 'user', '@a:stadt.de', '{}', 'pending', ?, ?)",
        (iso_now(), iso_now()),
    )
    await db.execute(
        "INSERT INTO tickets (requester, room_id, body, department, status, created_at,"
        " updated_at) VALUES ('@a:stadt.de', '!r:stadt.de', 'x', 'it', 'open', ?, ?)",
        (iso_now(), iso_now()),
    )
    server = MetricsServer("127.0.0.1", 0, db)
    await server.start()
    try:
        assert server.port > 0
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/health") as response:
                assert response.status == 200
                health = json.loads(await response.text())
            assert health["database"] is True and health["outbox_backlog"] == 1
            assert 0 <= health["last_sync_age_seconds"] < 60
            # A reply delivered after the listener started feeds the latency histogram.
            await db.execute(
                "INSERT INTO outbox (dedup_key, target_kind, target, content, status,"
                " next_attempt_at, created_at, sent_at) VALUES ('evt:$e0:0', 'room',"
                " '!r:stadt.de', '{}', 'sent', ?, ?, ?)",
                (iso_now(), iso_now(), iso_now()),
            )
            async with session.get(f"{base}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
            async with session.get(f"{base}/nothing") as response:
                assert response.status == 404
            # No sync for longer than a long-poll and a margin: 503, "stale".
            server.stale_after = 0.0
            async with session.get(f"{base}/health") as response:
                assert response.status == 503
                assert json.loads(await response.text())["status"] == "stale"
    finally:
        await server.stop()
    lines = set(text.splitlines())
    assert 'lotsenbot_events_total{status="done"} 2.0' in lines
    assert 'lotsenbot_events_total{status="ignored"} 1.0' in lines
    assert not any('status="pending"' in line for line in lines)  # not a counter
    assert 'lotsenbot_messages_total{status="sent"} 1.0' in lines
    assert "lotsenbot_outbox_backlog 1.0" in lines
    assert 'lotsenbot_open_tickets{department="it"} 1.0' in lines
    assert "lotsenbot_reply_latency_seconds_count 1.0" in lines
    assert 'lotsenbot_reply_latency_seconds_bucket{le="2.0"} 0.0' in lines
    assert 'lotsenbot_reply_latency_seconds_bucket{le="5.0"} 1.0' in lines


def iso_now() -> str:
    from datetime import UTC, datetime

    return iso(datetime.now(UTC))


def test_listen_address_needs_a_host() -> None:
    assert MetricsConfig().address is None
    assert MetricsConfig(listen="127.0.0.1:9120").address == ("127.0.0.1", 9120)
    assert MetricsConfig(listen="[::1]:9120").address == ("::1", 9120)
    for bad in (":9120", "9120", "127.0.0.1:0x", "127.0.0.1:70000"):
        with pytest.raises(ValueError):
            MetricsConfig(listen=bad)
