"""The FAQ's part in access, erasure, retention and statistics.

Registered with :mod:`lotsenbot.core.personal_data` on import. The FAQ stores no question
text next to a person: ``faq_questions`` ties the bot's answer to the asker (so feedback can
be matched), ``faq_feedback`` holds verdicts, and ``faq_unanswered`` keeps the wording of
unanswered questions without the asker. Anonymising the asker keeps the hit rate right.

An unanswered question keeps the Matrix event it was asked in (``question_event``, so that
deleting the message deletes the question, migration 0014). While the inbox still records
who sent that event (``[privacy] handled_events_days``), the question can be tied to its
asker: it is then in their export and goes with their erasure; after that the purge drops
the event id and the question is anonymous as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from lotsenbot.config import PrivacyConfig
from lotsenbot.core import personal_data
from lotsenbot.core.clock import iso
from lotsenbot.core.personal_data import ERASED, ErasureReport, table_exists

TOP_UNANSWERED = 10


async def _rows(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    async with conn.execute(sql, params) as cursor:
        return list(await cursor.fetchall())


async def _changes(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> int:
    cursor = await conn.execute(sql, params)
    count = max(cursor.rowcount, 0)
    await cursor.close()
    return count


async def _count(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> int:
    rows = await _rows(conn, sql, params)
    return int(rows[0][0] or 0) if rows else 0


def _verdict(row: Any) -> dict[str, Any]:
    previous = row["previous_helpful"]
    return {**dict(row), "helpful": bool(row["helpful"]),
            "previous_helpful": None if previous is None else bool(previous)}  # fmt: skip


class FaqData:
    async def export_person(self, conn: aiosqlite.Connection, user_id: str) -> dict[str, Any]:
        if not await table_exists(conn, "faq_questions"):
            return {}
        questions = await _rows(
            conn,
            "SELECT id, asked_at, room_id, decision, entry_id, suggestions FROM faq_questions"
            " WHERE user_id = ? ORDER BY id",
            (user_id,),
        )
        feedback = await _rows(
            conn,
            "SELECT question_id, helpful, given_at, previous_helpful FROM faq_feedback"
            " WHERE user_id = ?"
            " ORDER BY given_at",
            (user_id,),
        )
        edited = await _rows(
            conn, "SELECT id, updated_at FROM faq_entries WHERE updated_by = ? ORDER BY id",
            (user_id,),
        )  # fmt: skip
        unanswered = await _rows(
            conn,
            "SELECT u.asked_at, u.question FROM faq_unanswered u JOIN inbox i"
            " ON i.event_id = u.question_event WHERE i.sender = ? ORDER BY u.id",
            (user_id,),
        )
        return {
            "answers_given_to_you": [dict(q) for q in questions],
            "your_unanswered_questions": [dict(u) for u in unanswered],
            "feedback": [_verdict(f) for f in feedback],
            "entries_last_edited_by_you": [dict(e) for e in edited],
        }

    async def erase_person(
        self, conn: aiosqlite.Connection, user_id: str, now: datetime
    ) -> ErasureReport:
        report = ErasureReport()
        if not await table_exists(conn, "faq_questions"):
            return report
        report.count("feedback", await _changes(
            conn, "DELETE FROM faq_feedback WHERE user_id = ?", (user_id,)))  # fmt: skip
        report.count("questions", await _changes(
            conn, "UPDATE faq_questions SET user_id = ?, room_id = '' WHERE user_id = ?",
            (ERASED, user_id)))  # fmt: skip
        report.count("entries_edited", await _changes(
            conn, "UPDATE faq_entries SET updated_by = ? WHERE updated_by = ?",
            (ERASED, user_id)))  # fmt: skip
        await conn.execute(
            "UPDATE faq_unanswered SET resolved_by = ? WHERE resolved_by = ?", (ERASED, user_id)
        )
        # The person's own open questions, while the inbox still ties them to her (the core
        # erasure, which anonymises the inbox, runs after the features'): open ones go, ones
        # a coordinator has dealt with (learned, answered) lose the tie only.
        mine = "SELECT event_id FROM inbox WHERE sender = ?"
        report.count("unanswered_questions", await _changes(
            conn, f"DELETE FROM faq_unanswered WHERE resolved_at IS NULL AND question_event IN"
                  f" ({mine})", (user_id,)))  # fmt: skip
        await conn.execute(
            f"UPDATE faq_unanswered SET question_event = NULL WHERE question_event IN ({mine})",
            (user_id,),
        )
        return report

    async def purge(
        self, conn: aiosqlite.Connection, now: datetime, privacy: PrivacyConfig, dry_run: bool
    ) -> dict[str, int]:
        if not await table_exists(conn, "faq_questions"):
            return {}
        unanswered_before = iso(now - timedelta(days=privacy.unanswered_questions_days))
        events_before = iso(now - timedelta(days=privacy.handled_events_days))
        feedback_before = iso(now - timedelta(days=privacy.feedback_days))
        # After the feedback period an answer can no longer be rated: the asker is not
        # needed any more, the row stays for the hit rate.
        steps = (
            ("unanswered_questions", "FROM faq_unanswered WHERE asked_at < ?",
             "DELETE FROM faq_unanswered WHERE asked_at < ?", (unanswered_before,)),
            ("feedback", "FROM faq_feedback WHERE given_at < ?",
             "DELETE FROM faq_feedback WHERE given_at < ?", (feedback_before,)),
            ("unanswered_question_events",
             "FROM faq_unanswered WHERE asked_at < ? AND question_event IS NOT NULL",
             "UPDATE faq_unanswered SET question_event = NULL WHERE asked_at < ?"
             " AND question_event IS NOT NULL", (events_before,)),
            ("question_askers", "FROM faq_questions WHERE asked_at < ? AND user_id != ?",
             "UPDATE faq_questions SET user_id = ?, room_id = '' WHERE asked_at < ?"
             " AND user_id != ?", (feedback_before, ERASED)),
        )  # fmt: skip
        counts: dict[str, int] = {}
        for category, where, action, params in steps:
            counts[category] = await _count(conn, f"SELECT COUNT(*) {where}", params)
            if not dry_run:
                action_params = (ERASED, *params) if action.count("?") > len(params) else params
                await conn.execute(action, action_params)
        return counts

    async def statistics(
        self, conn: aiosqlite.Connection, since: datetime, until: datetime, per_person: bool
    ) -> dict[str, Any]:
        if not await table_exists(conn, "faq_questions"):
            return {}
        span = (iso(since), iso(until))
        decisions = {
            str(r[0]): int(r[1]) for r in await _rows(
                conn,
                "SELECT decision, COUNT(*) FROM faq_questions WHERE asked_at >= ?"
                " AND asked_at < ? GROUP BY decision",
                span,
            )
        }  # fmt: skip
        questions = sum(decisions.get(d, 0) for d in ("answer", "suggest", "none"))
        if not questions:
            return {}
        helped = decisions.get("answer", 0) + decisions.get("picked", 0)
        feedback = {
            int(r[0]): int(r[1]) for r in await _rows(
                conn,
                "SELECT helpful, COUNT(*) FROM faq_feedback WHERE given_at >= ? AND given_at < ?"
                " GROUP BY helpful",
                span,
            )
        }  # fmt: skip
        top = await _rows(
            conn,
            "SELECT normalized, MIN(question) AS question, COUNT(*) AS n FROM faq_unanswered"
            " WHERE asked_at >= ? AND asked_at < ? AND resolved_at IS NULL"
            " GROUP BY normalized ORDER BY n DESC, MIN(asked_at) LIMIT ?",
            (*span, TOP_UNANSWERED),
        )
        return {
            "questions": questions,
            "answered": decisions.get("answer", 0),
            "suggested": decisions.get("suggest", 0),
            "picked": decisions.get("picked", 0),
            "unanswered": decisions.get("none", 0),
            "hit_rate": min(1.0, helped / questions),
            "helpful": feedback.get(1, 0),
            "not_helpful": feedback.get(0, 0),
            "top_unanswered": [{"question": r["question"], "count": int(r["n"])} for r in top],
        }


personal_data.register("faq", FaqData())
