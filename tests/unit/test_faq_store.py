"""FAQ store: entries round-trip, idempotent imports, the change token, feedback, open questions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lotsenbot.core.clock import iso
from lotsenbot.faq import store
from lotsenbot.faq.kb import FaqEntry
from lotsenbot.storage.db import Database

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ANNA = "@anna:stadt.de"
BERT = "@bert:stadt.de"


def entry(entry_id: str, **changes: object) -> FaqEntry:
    data: dict[str, object] = {
        "id": entry_id,
        "category": "Konto",
        "department": "it",
        "question": f"Frage {entry_id}?",
        "alternatives": ["Eine Variante", "Noch eine; mit Semikolon"],
        "answer": "**Antwort** mit\n\nzwei Absätzen",
        "tags": ["passwort"],
    }
    data.update(changes)
    return FaqEntry.model_validate(data)


async def test_entries_round_trip_with_lists_and_markdown(db: Database) -> None:
    original = entry("pw", department=None)
    async with db.transaction() as conn:
        await store.insert_entry(conn, original, NOW, ANNA)
    loaded = await store.get_entry(db.conn, "pw")
    assert loaded == original
    assert loaded is not None and loaded.department is None
    row = await db.fetchone("SELECT created_at, updated_at, updated_by FROM faq_entries")
    assert row is not None and tuple(row) == (iso(NOW), iso(NOW), ANNA)
    assert await store.get_entry(db.conn, "nope") is None


async def test_update_and_delete_report_whether_the_entry_existed(db: Database) -> None:
    later = NOW + timedelta(hours=1)
    async with db.transaction() as conn:
        await store.insert_entry(conn, entry("a"), NOW, ANNA)
        assert await store.update_entry(conn, entry("a", answer="Neu"), later, BERT)
        assert not await store.update_entry(conn, entry("b"), later, BERT)
    row = await db.fetchone("SELECT answer, created_at, updated_at, updated_by FROM faq_entries")
    assert row is not None and tuple(row) == ("Neu", iso(NOW), iso(later), BERT)
    async with db.transaction() as conn:
        assert await store.delete_entry(conn, "a")
        assert not await store.delete_entry(conn, "a")
    assert await store.count_entries(db.conn) == 0


async def test_categories_and_their_entries_are_sorted(db: Database) -> None:
    async with db.transaction() as conn:
        await store.insert_entry(conn, entry("z", category="drucken", question="Zebra?"), NOW, ANNA)
        await store.insert_entry(conn, entry("y", category="Konto", question="Beta?"), NOW, ANNA)
        await store.insert_entry(conn, entry("x", category="Konto", question="alpha?"), NOW, ANNA)
    assert await store.categories(db.conn) == [("drucken", 1), ("Konto", 2)]
    in_konto = await store.entries_in_category(db.conn, "Konto")
    assert [e.id for e in in_konto] == ["x", "y"]  # by question, case-insensitive
    assert [e.id for e in await store.all_entries(db.conn)] == ["x", "y", "z"]


async def test_import_is_idempotent_and_removes_only_with_replace(db: Database) -> None:
    first = [entry("a"), entry("b"), entry("c")]
    async with db.transaction() as conn:
        outcome = await store.import_entries(conn, first, replace=False, now=NOW, actor="cli")
    assert (outcome.new, outcome.changed, outcome.unchanged) == (["a", "b", "c"], [], [])
    token = await store.generation(db.conn)
    assert token != 0

    async with db.transaction() as conn:
        again = await store.import_entries(conn, first, replace=False, now=NOW, actor="cli")
    assert again.unchanged == ["a", "b", "c"] and not again.touched
    assert await store.generation(db.conn) == token  # nothing changed, index stays valid

    second = [entry("a", answer="Geändert"), entry("d")]
    async with db.transaction() as conn:
        merged = await store.import_entries(conn, second, replace=False, now=NOW, actor="cli")
    assert (merged.new, merged.changed, merged.removed) == (["d"], ["a"], [])
    assert merged.old["a"]["answer"] == "**Antwort** mit\n\nzwei Absätzen"
    assert await store.count_entries(db.conn) == 4
    assert await store.generation(db.conn) != token

    async with db.transaction() as conn:
        replaced = await store.import_entries(conn, second, replace=True, now=NOW, actor="cli")
    assert sorted(replaced.removed) == ["b", "c"] and replaced.unchanged == ["a", "d"]
    assert set(replaced.old) == {"b", "c"}
    assert [e.id for e in await store.all_entries(db.conn)] == ["a", "d"]


async def test_a_rolled_back_change_leaves_the_token_alone(db: Database) -> None:
    before = await store.generation(db.conn)
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            token = await store.bump_generation(conn)
            assert await store.generation(conn) == token
            raise RuntimeError("handler failed")
    assert await store.generation(db.conn) == before


async def answer_logged(db: Database, user: str = ANNA, room: str = "!dm:stadt.de",
                        entry_id: str | None = "pw", key: str = "evt:$q:0") -> int:  # fmt: skip
    async with db.transaction() as conn:
        return await store.log_question(
            conn, now=NOW, user_id=user, room_id=room, decision="answer",
            entry_id=entry_id, score=0.8, answer_key=key,
        )  # fmt: skip


async def test_reaction_target_is_found_through_the_delivered_outbox_row(db: Database) -> None:
    question_id = await answer_logged(db)
    await db.execute(
        "INSERT INTO outbox (dedup_key, target_kind, target, content, next_attempt_at,"
        " created_at, status, event_id) VALUES ('evt:$q:0', 'room', '!dm:stadt.de', '{}', ?, ?,"
        " 'sent', '$answer')",
        (iso(NOW), iso(NOW)),
    )
    found = await store.question_for_event(db.conn, "$answer")
    assert found is not None and found.id == question_id and found.entry_id == "pw"
    assert await store.question_for_event(db.conn, "$other") is None


async def test_one_verdict_per_person_and_answer(db: Database) -> None:
    question_id = await answer_logged(db)
    async with db.transaction() as conn:
        assert not await store.set_feedback(conn, question_id, ANNA, True, NOW, "$r1")
        assert await store.set_feedback(conn, question_id, ANNA, False, NOW, "$r2")
        assert not await store.set_feedback(conn, question_id, BERT, True, NOW)
    rows = await db.fetchall("SELECT user_id, helpful, reaction_event FROM faq_feedback"
                             " ORDER BY user_id")  # fmt: skip
    assert [tuple(r) for r in rows] == [(ANNA, 0, "$r2"), (BERT, 1, None)]

    async def verdicts() -> list[tuple[Any, ...]]:
        rows = await db.fetchall("SELECT user_id, helpful, reaction_event FROM faq_feedback"
                                 " ORDER BY user_id")  # fmt: skip
        return [tuple(r) for r in rows]

    async with db.transaction() as conn:
        assert not await store.withdraw_feedback(conn, "$r2", BERT)  # not Bert's reaction
        # Anna's 👍 ($r1) still stands: taking back the 👎 makes it the verdict again.
        assert await store.withdraw_feedback(conn, "$r2", ANNA)
    assert await verdicts() == [(ANNA, 1, "$r1"), (BERT, 1, None)]
    async with db.transaction() as conn:
        assert await store.withdraw_feedback(conn, "$r1", ANNA)  # and then none is left
    assert await verdicts() == [(BERT, 1, None)]

    # Taking back the earlier reaction leaves the later verdict and forgets the earlier one.
    async with db.transaction() as conn:
        await store.set_feedback(conn, question_id, ANNA, True, NOW, "$r3")
        await store.set_feedback(conn, question_id, ANNA, False, NOW, "$r4")
        assert await store.set_feedback(conn, question_id, ANNA, False, NOW, "$r4")  # again
        assert await store.withdraw_feedback(conn, "$r3", ANNA)
        assert await store.withdraw_feedback(conn, "$r4", ANNA)
    assert await verdicts() == [(BERT, 1, None)]

    # A command replaces the reactions: taking one back afterwards changes nothing.
    async with db.transaction() as conn:
        await store.set_feedback(conn, question_id, ANNA, True, NOW, "$r5")
        await store.set_feedback(conn, question_id, ANNA, False, NOW, "$r6")
        await store.set_feedback(conn, question_id, ANNA, True, NOW)
        assert not await store.withdraw_feedback(conn, "$r5", ANNA)
        assert not await store.withdraw_feedback(conn, "$r6", ANNA)
    assert await verdicts() == [(ANNA, 1, None), (BERT, 1, None)]


async def test_last_answer_is_per_room_and_person(db: Database) -> None:
    first = await answer_logged(db, key="evt:$1:0")
    second = await answer_logged(db, key="evt:$2:0")
    await answer_logged(db, user=BERT, key="evt:$3:0")
    await answer_logged(db, room="!other:stadt.de", key="evt:$4:0")
    await answer_logged(db, entry_id=None, key="evt:$5:0")  # a suggestion is no answer
    last = await store.last_answer(db.conn, "!dm:stadt.de", ANNA)
    assert last is not None and last.id == second != first
    assert await store.last_answer(db.conn, "!dm:stadt.de", "@carla:stadt.de") is None


async def test_unanswered_questions_are_resolved_once(db: Database) -> None:
    async with db.transaction() as conn:
        ids = [
            await store.record_unanswered(conn, now=NOW + timedelta(minutes=n), question=q,
                                          normalized=q.lower(), best_entry=None, best_score=0.1)
            for n, q in enumerate(["Toner leer?", "Wo gibt es Toner?", "Kantine?"])
        ]  # fmt: skip
        await store.set_unanswered_ticket(conn, ids[2], 7)
    open_rows = await store.open_unanswered(db.conn)
    assert [row.id for row in open_rows] == ids
    async with db.transaction() as conn:
        assert await store.resolve_unanswered(conn, ids[:2], NOW, ANNA, "toner") == 2
        assert await store.resolve_unanswered(conn, ids[:2], NOW, ANNA, "toner") == 0
    assert [row.question for row in await store.open_unanswered(db.conn)] == ["Kantine?"]
    row = await db.fetchone("SELECT ticket_id FROM faq_unanswered WHERE id = ?", (ids[2],))
    assert row is not None and row[0] == 7
