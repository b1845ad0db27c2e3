"""Fixtures shared by the unit tests.

Several stores are tested against the real schema rather than hand-written tables, so that a
migration which breaks a query fails here first; one fixture builds that database for all of
them. A module that needs a different database (for example the migration runner's own tests,
which start from an empty file) defines its own ``db`` fixture, which takes precedence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lotsenbot.storage.db import Database
from lotsenbot.storage.migrate import migrate


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, fully migrated database in the test's own directory, closed afterwards."""
    database = Database(tmp_path / "bot.db")
    await database.open()
    await migrate(database)
    try:
        yield database
    finally:
        await database.close()
