"""A consistent copy of the database while the bot keeps running.

Copying the file is not safe in WAL mode (recent commits live in the ``-wal`` file). The
SQLite online backup API copies from a read transaction instead: in one step (``pages=-1``)
the copy is a single consistent snapshot, and because readers do not block the writer in
WAL mode, the bot goes on writing meanwhile. A stepwise copy would restart whenever the bot
writes and might never finish on a busy bot.

The copy is written under a temporary name, checked with ``PRAGMA integrity_check``,
switched to a single-file journal mode, made readable for the owner only (it holds personal
data) and only then renamed to the requested name – a failed backup never leaves a
half-written file that looks like a good one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BUSY_TIMEOUT_S = 10.0


class BackupError(Exception):
    """Already phrased for the admin."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    schema_version: int
    seconds: float


def backup_database(source: Path, target: Path, *, force: bool = False) -> BackupResult:
    if not source.is_file():
        raise BackupError(f"Datenbank {source} nicht gefunden")
    if target.exists() and not force:
        raise BackupError(f"{target} existiert bereits (überschreiben mit --force)")
    if target.resolve() == source.resolve():
        raise BackupError("Ziel und Datenbank sind dieselbe Datei")
    if target.is_dir():
        raise BackupError(f"{target} ist ein Ordner; bitte einen Dateinamen angeben")
    temporary = target.with_name(f".{target.name}.tmp")  # replaced by a unique name below
    started = time.monotonic()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A unique name, private from the first byte (mkstemp: mode 0600): the copy holds
        # personal data, and a crashed run's leftover must not block the next one.
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        temporary = Path(name)
        src = sqlite3.connect(str(source), timeout=BUSY_TIMEOUT_S)
        try:
            dst = sqlite3.connect(str(temporary))
            try:
                src.backup(dst, pages=-1)
                dst.execute("PRAGMA journal_mode = DELETE")
                result = dst.execute("PRAGMA integrity_check").fetchall()
                if [tuple(r) for r in result] != [("ok",)]:
                    raise BackupError(f"Integritätsprüfung der Kopie fehlgeschlagen: {result[:5]}")
                version = _schema_version(dst)
            finally:
                dst.close()
        finally:
            src.close()
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except sqlite3.Error as exc:
        raise BackupError(f"Sicherung fehlgeschlagen: {exc}") from exc
    except OSError as exc:  # no permission, disk full, a folder in the way
        raise BackupError(f"Sicherung fehlgeschlagen: {exc.strerror or exc} ({target})") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return BackupResult(target, target.stat().st_size, version, time.monotonic() - started)


def _schema_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0] or 0)
