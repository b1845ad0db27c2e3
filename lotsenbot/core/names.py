"""People in chat text: display names learned from the homeserver, shown next to the Matrix ID.

Every message that names a person uses :func:`person_label`: "Anna Schmidt (@anna:stadt.de)",
or the bare Matrix ID when no usable name is known. The ID always stays, because a display
name proves nothing: anyone can call themselves "IT-Service" or "Koordination", and two
people may share a name. A name is cleaned before it is shown (control, format and bidi
characters go, whitespace is collapsed, the length is bounded) and left out entirely if it
could pass for a Matrix ID, so "@koordination:stadt.de (@mallory:stadt.de)" cannot happen.

The names live in the ``display_names`` table (migration 0012), the single source of truth.
They come from what the homeserver tells the bot anyway (see :mod:`lotsenbot.matrix.names`):
the dispatcher records the sender's name with each event it handles, the sync records
renames, and a background task looks up people the bot has to name but knows no name of.
Features never wait for the network: :class:`PersonNames` reads the database and only
notes whom to look up, and a message written meanwhile shows the Matrix ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import aiosqlite

from lotsenbot.core.clock import iso
from lotsenbot.core.markdown import escape

NameSource = Literal["event", "member", "profile"]

SHOWN_LENGTH = 40
"""Characters of a display name in a message; longer names are cut with "…"."""
STORED_LENGTH = 256
"""Characters of a display name kept in the database (Synapse allows 256 as well)."""
REFRESH_AFTER = timedelta(days=7)
"""A name the homeserver has not confirmed for this long is looked up again when shown."""
CONFIRM_EVERY = timedelta(days=1)
"""An unchanged name is written again (its confirmation renewed) at most this often."""
MAX_WANTED = 500
"""People waiting for a lookup at most; more are asked for again the next time they are shown."""
_MAX_MARKS = 2  # combining marks per character: enough for any script, not for "Zalgo" text

_DROP = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})  # control, format (bidi, zero width), …
_MARKS = frozenset({"Mn", "Me"})
_SPACES = re.compile(r"\s+")
# A Matrix ID anywhere in the name ("@koordination:stadt.de"), or a word that starts like
# a mention ("@koordination"); e-mail addresses ("anna@stadt.de") are no such word.
_LOOKS_LIKE_ID = re.compile(r"@\S*:\S|(?:^|\s)@")
_USER_ID = re.compile(r"^@[^:\s]+:\S+$")


def _printable(text: str) -> str:
    """``text`` without control, format (bidi overrides, zero-width), private-use and
    unassigned characters, with every kind of whitespace collapsed into single spaces and
    at most a couple of combining marks on any one character."""
    kept: list[str] = []
    marks = 0
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zl", "Zp"):
            kept.append(" ")
            marks = 0
            continue
        if category in _DROP:
            continue
        if category in _MARKS:
            marks += 1
            if marks > _MAX_MARKS:
                continue
        else:
            marks = 0
        kept.append(char)
    return _SPACES.sub(" ", "".join(kept)).strip()


def clean_name(display_name: str | None, user_id: str) -> str | None:
    """The display name as it may be shown next to ``user_id``, or None if there is none
    worth showing: empty once cleaned, the Matrix ID or its localpart again, or something
    that could pass for a Matrix ID or a mention (then only the real ID is shown).

    NFKC folds look-alikes such as fullwidth "＠" and "：" first, so they are caught too.
    """
    if not display_name:
        return None
    name = _printable(unicodedata.normalize("NFKC", display_name))
    if not name or _LOOKS_LIKE_ID.search(name):
        return None
    localpart = user_id[1:].split(":", 1)[0] if user_id.startswith("@") else ""
    if name.casefold() in (user_id.casefold(), localpart.casefold()):
        return None  # adds nothing (Synapse's default name is the localpart)
    if len(name) > SHOWN_LENGTH:
        name = name[: SHOWN_LENGTH - 1].rstrip() + "…"
    return name


def person_label(user_id: str, display_name: str | None = None) -> str:
    """A person for chat text, as Markdown: "Anna Schmidt (@anna:stadt.de)", or the Matrix
    ID alone when no usable name is known. Both parts are escaped."""
    ident = escape(_printable(user_id))
    name = clean_name(display_name, user_id)
    return f"{escape(name)} ({ident})" if name else ident


def is_user_id(value: str) -> bool:
    """Whether ``value`` is shaped like a Matrix user ID (not "[gelöscht]", not "ticket:3")."""
    return bool(_USER_ID.match(value))


# -- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredName:
    user_id: str
    display_name: str  # '' = the person has set no display name
    source: NameSource
    learned_at: str

    def stale(self, now: datetime) -> bool:
        return self.learned_at < iso(now - REFRESH_AFTER)


async def learn(
    conn: aiosqlite.Connection,
    user_id: str,
    display_name: str,
    source: NameSource,
    now: datetime,
    *,
    only_if_known: bool = False,
    only_for_users: bool = False,
) -> bool:
    """Record what the homeserver says a person is called ('' for no name); True if a row
    was written. With ``only_if_known`` an existing row is kept current, but nobody new is
    added. With ``only_for_users`` someone new is added only if they have written to the bot
    (a ``users`` row): a name looked up because an ID was shown — a deputy typed by a pilot,
    or someone whose data was erased and who appears in the audit log — is not kept."""
    name = display_name[:STORED_LENGTH]
    if only_if_known:
        sql = ("UPDATE display_names SET display_name = ?, source = ?, learned_at = ?"
               " WHERE user_id = ?")  # fmt: skip
        params: tuple[Any, ...] = (name, source, iso(now), user_id)
    elif only_for_users:
        sql = (
            "INSERT INTO display_names (user_id, display_name, source, learned_at)"
            " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE user_id = ?)"
            " OR EXISTS (SELECT 1 FROM display_names WHERE user_id = ?)"
            " ON CONFLICT (user_id) DO UPDATE SET"
            " display_name = excluded.display_name, source = excluded.source,"
            " learned_at = excluded.learned_at"
        )
        params = (user_id, name, source, iso(now), user_id, user_id)
    else:
        sql = (
            "INSERT INTO display_names (user_id, display_name, source, learned_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
            " display_name = excluded.display_name, source = excluded.source,"
            " learned_at = excluded.learned_at"
        )
        params = (user_id, name, source, iso(now))
    cursor = await conn.execute(sql, params)
    written = cursor.rowcount > 0
    await cursor.close()
    return written


async def learn_renames(
    conn: aiosqlite.Connection,
    names: Mapping[str, str],
    now: datetime,
    *,
    keep_new: Callable[[str], bool],
) -> int:
    """Names from membership events of a sync: people already listed are kept current;
    someone new is only added if ``keep_new`` says so (the configured team). Everyone else
    in the bot's rooms stays unrecorded. Returns the rows written.

    A first sync, or joining a big room, brings every member's state: one read finds who is
    listed, and only changed names are written (each write holds the database's write lock,
    which event handling waits for)."""
    stored = await stored_names(conn, names.keys())
    written = 0
    for user_id, name in names.items():
        entry = stored.get(user_id)
        if entry is None and not keep_new(user_id):
            continue
        if entry is not None and entry.display_name == name[:STORED_LENGTH]:
            continue  # unchanged: a join or a different room's state, no rename
        if await learn(conn, user_id, name, "member", now):
            written += 1
    return written


async def forget(conn: aiosqlite.Connection, user_id: str) -> int:
    cursor = await conn.execute("DELETE FROM display_names WHERE user_id = ?", (user_id,))
    count = max(cursor.rowcount, 0)
    await cursor.close()
    return count


async def stored_names(
    conn: aiosqlite.Connection, user_ids: Iterable[str]
) -> dict[str, StoredName]:
    wanted = sorted(set(user_ids))
    found: dict[str, StoredName] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        async with conn.execute(
            "SELECT user_id, display_name, source, learned_at FROM display_names"
            f" WHERE user_id IN ({marks})",
            chunk,
        ) as cursor:
            for row in await cursor.fetchall():
                found[str(row[0])] = StoredName(str(row[0]), str(row[1]), row[2], str(row[3]))
    return found


async def export_name(conn: aiosqlite.Connection, user_id: str) -> dict[str, Any] | None:
    found = (await stored_names(conn, [user_id])).get(user_id)
    if found is None:
        return None
    return {"display_name": found.display_name, "source": found.source,
            "learned_at": found.learned_at}  # fmt: skip


# -- the service features use -----------------------------------------------------------------


class NameDirectory:
    """``services.names``: labels for people, and the list of people to look up.

    Features get a :class:`PersonNames` bound to their connection (``ctx.names``, or
    ``services.names.on(conn, now)`` in a job). The application's lookup task takes the
    wanted IDs with :meth:`take_wanted`; without one (tests, the terminal chat) the list
    simply stays short and bounded.
    """

    def __init__(self, max_wanted: int = MAX_WANTED) -> None:
        self._wanted: dict[str, None] = {}
        self._max_wanted = max_wanted
        self._changed: asyncio.Event | None = None

    def on(self, conn: aiosqlite.Connection, now: datetime) -> PersonNames:
        return PersonNames(self, conn, now)

    def want(self, user_ids: Iterable[str]) -> None:
        """Ask for a lookup of these people; never blocks, never grows without bound."""
        added = False
        for user_id in user_ids:
            if user_id in self._wanted or len(self._wanted) >= self._max_wanted:
                continue
            self._wanted[user_id] = None
            added = True
        if added and self._changed is not None:
            self._changed.set()

    def take_wanted(self, limit: int) -> list[str]:
        taken = list(self._wanted)[:limit]
        for user_id in taken:
            del self._wanted[user_id]
        if not self._wanted and self._changed is not None:
            self._changed.clear()
        return taken

    @property
    def wanted(self) -> list[str]:
        return list(self._wanted)

    async def wait_for_wanted(self, timeout: float) -> None:
        """Return once someone is wanted, or after ``timeout`` seconds."""
        if self._changed is None:
            self._changed = asyncio.Event()
            if self._wanted:
                self._changed.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)


class PersonNames:
    """Labels for the people a handler or job shows, read from the database in its
    transaction (cached for that transaction)."""

    def __init__(self, directory: NameDirectory, conn: aiosqlite.Connection, now: datetime):
        self._directory = directory
        self._conn = conn
        self._now = now
        self._known: dict[str, StoredName | None] = {}

    async def load(self, user_ids: Iterable[str]) -> None:
        """Read the names of these people at once; ask for a lookup of those with no name
        or one the homeserver has not confirmed for a while."""
        missing = [u for u in dict.fromkeys(user_ids) if is_user_id(u) and u not in self._known]
        if not missing:
            return
        found = await stored_names(self._conn, missing)
        stale: list[str] = []
        for user_id in missing:
            entry = found.get(user_id)
            self._known[user_id] = entry
            if entry is None or entry.stale(self._now):
                stale.append(user_id)
        self._directory.want(stale)

    async def name(self, user_id: str) -> str | None:
        """The display name as the homeserver has it, or None (also for "no name set")."""
        await self.load([user_id])
        entry = self._known.get(user_id)
        if entry is None:
            return None
        return entry.display_name or None

    async def label(self, user_id: str) -> str:
        """``person_label`` with the stored name; text that is no Matrix ID (such as
        "[gelöscht]") is shown as it is, escaped."""
        if not is_user_id(user_id):
            return escape(_printable(user_id))
        return person_label(user_id, await self.name(user_id))

    async def labels(self, user_ids: Iterable[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(user_ids))
        await self.load(ids)
        return {user_id: await self.label(user_id) for user_id in ids}

    async def join(self, user_ids: Iterable[str], separator: str = ", ") -> str:
        """Several people in one line, in the given order."""
        ids = list(user_ids)
        shown = await self.labels(ids)
        return separator.join(shown[user_id] for user_id in ids)
