"""SQL of the FAQ feature: entries, the question log, feedback and unanswered questions.

Every function takes the caller's connection: chat handlers run inside the event's write
transaction, the CLI inside its own, and nothing here commits. The entries table is the
source of truth; the search index is rebuilt from it, and :func:`bump_generation` after
every change tells a running bot that its index may be stale (see ``feature.py``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import aiosqlite

from lotsenbot.core.clock import iso
from lotsenbot.faq.kb import FaqEntry

__all__ = [
    "Dropped",
    "ImportOutcome",
    "LoggedQuestion",
    "Unanswered",
    "all_entries",
    "answer_thread_root",
    "bump_generation",
    "categories",
    "count_entries",
    "delete_entry",
    "drop_unanswered",
    "entries_in_category",
    "entry_snapshot",
    "forget_choices_about",
    "generation",
    "get_entry",
    "import_entries",
    "insert_entry",
    "last_answer",
    "log_question",
    "open_unanswered",
    "question_event_of",
    "question_for_event",
    "questions_asked_in",
    "record_unanswered",
    "reply_key_range",
    "resolve_unanswered",
    "set_feedback",
    "set_unanswered_ticket",
    "update_entry",
    "withdraw_feedback",
]

Decision = Literal["answer", "suggest", "none", "picked"]


# -- entries -----------------------------------------------------------------------------------


def _entry(row: aiosqlite.Row) -> FaqEntry:
    return FaqEntry(
        id=row["id"],
        category=row["category"],
        department=row["department"],
        question=row["question"],
        alternatives=json.loads(row["alternatives"]),
        answer=row["answer"],
        tags=json.loads(row["tags"]),
    )


def entry_snapshot(entry: FaqEntry | None) -> dict[str, Any] | None:
    """An entry as plain data for the audit log (old and new values of a change)."""
    return entry.model_dump() if entry is not None else None


async def all_entries(conn: aiosqlite.Connection) -> list[FaqEntry]:
    """Every entry, by category and id (the order of exports and listings)."""
    async with conn.execute("SELECT * FROM faq_entries ORDER BY category, id") as cursor:
        return [_entry(row) for row in await cursor.fetchall()]


async def get_entry(conn: aiosqlite.Connection, entry_id: str) -> FaqEntry | None:
    async with conn.execute("SELECT * FROM faq_entries WHERE id = ?", (entry_id,)) as cursor:
        row = await cursor.fetchone()
    return _entry(row) if row is not None else None


async def count_entries(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT COUNT(*) FROM faq_entries") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0


async def categories(conn: aiosqlite.Connection) -> list[tuple[str, int]]:
    """``(category, number of entries)``, alphabetical (case-insensitive)."""
    async with conn.execute(
        "SELECT category, COUNT(*) FROM faq_entries GROUP BY category"
        " ORDER BY lower(category), category"
    ) as cursor:
        return [(row[0], int(row[1])) for row in await cursor.fetchall()]


async def entries_in_category(conn: aiosqlite.Connection, category: str) -> list[FaqEntry]:
    async with conn.execute(
        "SELECT * FROM faq_entries WHERE category = ? ORDER BY lower(question), id", (category,)
    ) as cursor:
        return [_entry(row) for row in await cursor.fetchall()]


def _values(entry: FaqEntry) -> tuple[Any, ...]:
    return (
        entry.category,
        entry.department,
        entry.question,
        json.dumps(entry.alternatives, ensure_ascii=False),
        entry.answer,
        json.dumps(entry.tags, ensure_ascii=False),
    )


async def insert_entry(
    conn: aiosqlite.Connection, entry: FaqEntry, now: datetime, actor: str
) -> None:
    """Add a new entry; an existing id is an integrity error (callers check first)."""
    await conn.execute(
        "INSERT INTO faq_entries (id, category, department, question, alternatives, answer,"
        " tags, created_at, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.id, *_values(entry), iso(now), iso(now), actor),
    )


async def update_entry(
    conn: aiosqlite.Connection, entry: FaqEntry, now: datetime, actor: str
) -> bool:
    """Replace the fields of an existing entry; False if there is none with this id."""
    cursor = await conn.execute(
        "UPDATE faq_entries SET category = ?, department = ?, question = ?, alternatives = ?,"
        " answer = ?, tags = ?, updated_at = ?, updated_by = ? WHERE id = ?",
        (*_values(entry), iso(now), actor, entry.id),
    )
    changed = cursor.rowcount > 0
    await cursor.close()
    return changed


async def delete_entry(conn: aiosqlite.Connection, entry_id: str) -> bool:
    cursor = await conn.execute("DELETE FROM faq_entries WHERE id = ?", (entry_id,))
    deleted = cursor.rowcount > 0
    await cursor.close()
    return deleted


async def generation(conn: aiosqlite.Connection) -> int:
    """The change token of the knowledge base (0 on a fresh database)."""
    async with conn.execute("SELECT generation FROM faq_state WHERE id = 1") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0


async def bump_generation(conn: aiosqlite.Connection) -> int:
    """Mark a change of the entries; returns the new token.

    A random token rather than a counter: a change that is rolled back must not leave a
    bot believing it has seen the token a later, different change writes.
    """
    token = secrets.randbits(62)
    await conn.execute("UPDATE faq_state SET generation = ? WHERE id = 1", (token,))
    return token


@dataclass
class ImportOutcome:
    """What an import did, with the old values of what it changed (for the audit log)."""

    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    old: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def touched(self) -> bool:
        return bool(self.new or self.changed or self.removed)


async def import_entries(
    conn: aiosqlite.Connection,
    entries: Sequence[FaqEntry],
    *,
    replace: bool,
    now: datetime,
    actor: str,
) -> ImportOutcome:
    """Bring the table in line with validated ``entries``: add new ids, update changed ones,
    leave equal ones alone, and delete the others only when ``replace`` is set.

    Re-importing the same file therefore changes nothing, which makes imports safe to repeat.
    """
    existing = {entry.id: entry for entry in await all_entries(conn)}
    outcome = ImportOutcome()
    for entry in entries:
        before = existing.get(entry.id)
        if before is None:
            await insert_entry(conn, entry, now, actor)
            outcome.new.append(entry.id)
        elif before != entry:
            await update_entry(conn, entry, now, actor)
            outcome.changed.append(entry.id)
            outcome.old[entry.id] = before.model_dump()
        else:
            outcome.unchanged.append(entry.id)
    if replace:
        keep = {entry.id for entry in entries}
        for entry_id, before in existing.items():
            if entry_id not in keep:
                await delete_entry(conn, entry_id)
                outcome.removed.append(entry_id)
                outcome.old[entry_id] = before.model_dump()
    if outcome.touched:
        await bump_generation(conn)
    return outcome


# -- the question log and feedback -------------------------------------------------------------


@dataclass(frozen=True)
class LoggedQuestion:
    id: int
    user_id: str
    room_id: str
    decision: str
    entry_id: str | None
    score: float


def _logged(row: aiosqlite.Row) -> LoggedQuestion:
    return LoggedQuestion(
        id=int(row["id"]),
        user_id=row["user_id"],
        room_id=row["room_id"],
        decision=row["decision"],
        entry_id=row["entry_id"],
        score=float(row["score"]),
    )


async def log_question(
    conn: aiosqlite.Connection,
    *,
    now: datetime,
    user_id: str,
    room_id: str,
    decision: Decision,
    entry_id: str | None,
    score: float,
    suggestions: Iterable[str] = (),
    answer_key: str | None = None,
) -> int:
    """Record an answer or suggestion the bot gave; returns the row id."""
    cursor = await conn.execute(
        "INSERT INTO faq_questions (asked_at, user_id, room_id, decision, entry_id, score,"
        " suggestions, answer_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (iso(now), user_id, room_id, decision, entry_id, score,
         json.dumps(list(suggestions)), answer_key),
    )  # fmt: skip
    row_id = cursor.lastrowid
    await cursor.close()
    assert row_id is not None
    return int(row_id)


async def question_for_event(conn: aiosqlite.Connection, event_id: str) -> LoggedQuestion | None:
    """The answered question whose answer is the Matrix event ``event_id`` (what a 👍 is on)."""
    async with conn.execute(
        "SELECT q.* FROM outbox AS o JOIN faq_questions AS q ON q.answer_key = o.dedup_key"
        " WHERE o.event_id = ? AND q.entry_id IS NOT NULL",
        (event_id,),
    ) as cursor:
        row = await cursor.fetchone()
    return _logged(row) if row is not None else None


async def last_answer(
    conn: aiosqlite.Connection, room_id: str, user_id: str
) -> LoggedQuestion | None:
    """The most recent answer this person got in this room (``!hilfreich`` refers to it)."""
    async with conn.execute(
        "SELECT * FROM faq_questions WHERE room_id = ? AND user_id = ? AND entry_id IS NOT NULL"
        " ORDER BY id DESC LIMIT 1",
        (room_id, user_id),
    ) as cursor:
        row = await cursor.fetchone()
    return _logged(row) if row is not None else None


async def set_feedback(
    conn: aiosqlite.Connection,
    question_id: int,
    user_id: str,
    helpful: bool,
    now: datetime,
    reaction_event: str | None = None,
) -> bool:
    """Store a verdict, replacing this person's earlier one; True if it replaced one.

    A reaction replacing a reaction keeps the earlier one (which still stands in the
    client) as the verdict to return to when the later one is taken back. A command
    replaces both: the reactions that may still stand no longer count. Only one earlier
    reaction is kept: with three standing at once (👍, 👎 and 👍🏻), taking back the last two
    leaves no verdict although the first still stands.
    """
    async with conn.execute(
        "SELECT helpful, reaction_event FROM faq_feedback WHERE question_id = ? AND user_id = ?",
        (question_id, user_id),
    ) as cursor:
        existing = await cursor.fetchone()
    if (
        existing is not None
        and reaction_event is not None
        and (existing["reaction_event"] == reaction_event)
    ):
        return True  # the same reaction again: nothing changes
    previous_helpful: int | None = None
    previous_reaction: str | None = None
    if existing is not None and reaction_event is not None and existing["reaction_event"]:
        previous_helpful, previous_reaction = existing["helpful"], existing["reaction_event"]
    await conn.execute(
        "INSERT INTO faq_feedback (question_id, user_id, helpful, given_at, reaction_event,"
        " previous_helpful, previous_reaction) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (question_id, user_id) DO UPDATE SET"
        " helpful = excluded.helpful, given_at = excluded.given_at,"
        " reaction_event = excluded.reaction_event,"
        " previous_helpful = excluded.previous_helpful,"
        " previous_reaction = excluded.previous_reaction",
        (question_id, user_id, int(helpful), iso(now), reaction_event, previous_helpful,
         previous_reaction),
    )  # fmt: skip
    return existing is not None


async def withdraw_feedback(conn: aiosqlite.Connection, reaction_event: str, user_id: str) -> bool:
    """The reaction ``reaction_event`` of ``user_id`` was taken back (redacted).

    If it is the current verdict, the earlier reaction that still stands becomes the
    verdict again, or else the verdict is removed; if it is that earlier reaction, it is
    forgotten. True if the reaction was one of these (a verdict's, current or earlier).
    """
    changed = False
    for statement in (
        # the earlier reaction taken back: forgotten, the verdict stays
        "UPDATE faq_feedback SET previous_helpful = NULL, previous_reaction = NULL"
        " WHERE previous_reaction = ? AND user_id = ?",
        # the verdict's reaction taken back: the earlier one, if it stands, is the verdict
        "UPDATE faq_feedback SET helpful = previous_helpful, reaction_event = previous_reaction,"
        " previous_helpful = NULL, previous_reaction = NULL"
        " WHERE reaction_event = ? AND user_id = ? AND previous_reaction IS NOT NULL",
        # ... or there is none left
        "DELETE FROM faq_feedback WHERE reaction_event = ? AND user_id = ?",
    ):
        cursor = await conn.execute(statement, (reaction_event, user_id))
        changed = changed or cursor.rowcount > 0
        await cursor.close()
    return changed


# -- unanswered questions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Unanswered:
    id: int
    asked_at: str
    question: str
    normalized: str


async def record_unanswered(
    conn: aiosqlite.Connection,
    *,
    now: datetime,
    question: str,
    normalized: str,
    best_entry: str | None,
    best_score: float,
    question_event: str | None = None,
) -> int:
    """``question_event``: the Matrix event the question was asked in, so that redacting it
    drops the question (:func:`drop_unanswered`)."""
    cursor = await conn.execute(
        "INSERT INTO faq_unanswered (asked_at, question, normalized, best_entry, best_score,"
        " question_event) VALUES (?, ?, ?, ?, ?, ?)",
        (iso(now), question, normalized, best_entry, best_score, question_event),
    )
    row_id = cursor.lastrowid
    await cursor.close()
    assert row_id is not None
    return int(row_id)


async def set_unanswered_ticket(
    conn: aiosqlite.Connection, unanswered_id: int, ticket_id: int
) -> None:
    await conn.execute(
        "UPDATE faq_unanswered SET ticket_id = ? WHERE id = ?", (ticket_id, unanswered_id)
    )


async def open_unanswered(conn: aiosqlite.Connection) -> list[Unanswered]:
    """Unresolved questions, oldest first."""
    async with conn.execute(
        "SELECT id, asked_at, question, normalized FROM faq_unanswered"
        " WHERE resolved_at IS NULL ORDER BY id"
    ) as cursor:
        return [Unanswered(int(row[0]), row[1], row[2], row[3]) for row in await cursor.fetchall()]


async def resolve_unanswered(
    conn: aiosqlite.Connection, ids: Iterable[int], now: datetime, by: str, entry_id: str
) -> int:
    """Mark questions as dealt with (learnt into ``entry_id``); returns how many were open."""
    count = 0
    for unanswered_id in ids:
        cursor = await conn.execute(
            "UPDATE faq_unanswered SET resolved_at = ?, resolved_by = ?, resolved_entry = ?"
            " WHERE id = ? AND resolved_at IS NULL",
            (iso(now), by, entry_id, unanswered_id),
        )
        count += cursor.rowcount
        await cursor.close()
    return count


# -- a question deleted in Matrix ----------------------------------------------------------------


def reply_key_range(event_id: str) -> tuple[str, str]:
    """Bounds of the outbox keys of the bot's replies to ``event_id`` ("evt:<id>:<n>", see
    the dispatcher): every key from the first bound up to, not including, the second (";"
    follows ":"), so that an index on the key serves and "_" or "%" in ids mean nothing."""
    return f"evt:{event_id}:", f"evt:{event_id};"


async def questions_asked_in(
    conn: aiosqlite.Connection, event_id: str, room_id: str
) -> list[LoggedQuestion]:
    """The question log rows of the bot's replies to the message ``event_id``: an answer,
    "Meinten Sie …?" or "keine Antwort", once per question."""
    low, high = reply_key_range(event_id)
    async with conn.execute(
        "SELECT * FROM faq_questions WHERE answer_key >= ? AND answer_key < ? AND room_id = ?"
        " ORDER BY id",
        (low, high, room_id),
    ) as cursor:
        return [_logged(row) for row in await cursor.fetchall()]


@dataclass(frozen=True)
class Dropped:
    id: int
    question: str
    ticket_id: int | None


async def drop_unanswered(
    conn: aiosqlite.Connection, question_event: str, room_id: str
) -> list[Dropped]:
    """Delete the unanswered questions asked in ``question_event`` in ``room_id`` (resolved
    ones too: the wording is what goes); return what was deleted, with the request it
    became, if any. The room is that of the bot's reply to the question in the log: a
    redaction in one room never drops what was asked in another."""
    low, high = reply_key_range(question_event)
    async with conn.execute(
        "DELETE FROM faq_unanswered WHERE question_event = ? AND EXISTS (SELECT 1 FROM"
        " faq_questions WHERE answer_key >= ? AND answer_key < ? AND room_id = ?)"
        " RETURNING id, question, ticket_id",
        (question_event, low, high, room_id),
    ) as cursor:
        rows = await cursor.fetchall()
    return [Dropped(int(row[0]), str(row[1]), row[2]) for row in rows]


async def forget_choices_about(
    conn: aiosqlite.Connection,
    user_id: str,
    room_id: str,
    *,
    event_id: str,
    question_ids: Sequence[int],
    questions: Sequence[str],
) -> None:
    """Drop what ``user_id`` has pending in ``room_id`` about the question asked in
    ``event_id``: the kept wording per answer ("faq.asked:<id>"), and an offer, a
    "Meinten Sie …?" or a last answer that came from that message or carries its wording."""
    kinds = [f"faq.asked:{question_id}" for question_id in question_ids]
    questions = list(questions)
    if kinds:
        marks = ", ".join("?" for _ in kinds)
        async with conn.execute(
            "SELECT json_extract(payload, '$.question') FROM pending_choices WHERE user_id = ?"
            f" AND room_id = ? AND kind IN ({marks}) AND json_valid(payload)",
            (user_id, room_id, *kinds),
        ) as cursor:
            questions += [row[0] for row in await cursor.fetchall() if isinstance(row[0], str)]
        await conn.execute(
            f"DELETE FROM pending_choices WHERE user_id = ? AND room_id = ? AND kind IN ({marks})",
            (user_id, room_id, *kinds),
        )
    marks = ", ".join("?" for _ in questions) or "NULL"
    await conn.execute(
        "DELETE FROM pending_choices WHERE user_id = ? AND room_id = ?"
        " AND kind IN ('faq.offer', 'faq.suggest', 'faq.answered') AND json_valid(payload)"
        " AND (json_extract(payload, '$.event') = ?"
        f" OR json_extract(payload, '$.question') IN ({marks}))",
        (user_id, room_id, event_id, *questions),
    )
    # What names the question's message: an offer after "0" or 👎 (its "$.event" is that
    # later message), the wording kept for a picked suggestion.
    await conn.execute(
        "DELETE FROM pending_choices WHERE user_id = ? AND room_id = ? AND kind LIKE 'faq.%'"
        " AND json_valid(payload) AND json_extract(payload, '$.question_event') = ?",
        (user_id, room_id, event_id),
    )


async def question_event_of(conn: aiosqlite.Connection, question_id: int) -> str | None:
    """The message the logged question ``question_id`` was asked in, read from the key of
    the bot's reply to it ("evt:<event id>:<n>"); None for a picked suggestion, whose
    reply answered the "1"."""
    async with conn.execute(
        "SELECT answer_key, decision FROM faq_questions WHERE id = ?", (question_id,)
    ) as cursor:
        row = await cursor.fetchone()
    if row is None or row[1] == "picked" or not str(row[0] or "").startswith("evt:"):
        return None
    event_id, _, position = str(row[0])[4:].rpartition(":")
    return event_id if event_id and position.isdigit() else None


async def answer_thread_root(conn: aiosqlite.Connection, question_id: int) -> str | None:
    """The thread the bot's answer to the logged question ``question_id`` went to, if any."""
    async with conn.execute(
        "SELECT json_extract(o.content, '$.thread_root') FROM faq_questions AS q"
        " JOIN outbox AS o ON o.dedup_key = q.answer_key WHERE q.id = ? AND json_valid(o.content)",
        (question_id,),
    ) as cursor:
        row = await cursor.fetchone()
    return str(row[0]) if row is not None and row[0] else None
