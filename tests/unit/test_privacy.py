"""Data protection without Matrix: export, erasure, retention, statistics, report, commands.

The database is real (all migrations); times are constructed explicitly, so retention is
tested by placing rows in the past rather than by waiting. Commands go through the real
:class:`Dispatcher` and the assertions read the outbox rows the transport would deliver.
"""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from lotsenbot.config import Config, PrivacyConfig
from lotsenbot.core import personal_data
from lotsenbot.core.clock import Clock, iso
from lotsenbot.core.dispatch import Dispatcher
from lotsenbot.core.errors import BadArguments
from lotsenbot.core.inbox import Inbox
from lotsenbot.core.markdown import escape
from lotsenbot.core.names import person_label
from lotsenbot.core.outbox import Outbox
from lotsenbot.core.personal_data import ERASED, ErasureReport
from lotsenbot.core.roles import Roles
from lotsenbot.core.services import Services
from lotsenbot.core.types import Incoming
from lotsenbot.privacy import report as reports
from lotsenbot.privacy.feature import (
    PrivacyFeature,
    all_handlers,
    collect_statistics,
    describe_erasure,
    erase_person,
    export_person,
    purge_all,
)
from lotsenbot.privacy.store import status_totals
from lotsenbot.storage.db import Database
from lotsenbot.texts import Catalogue

BOT = "@lotsenbot:stadt.de"
ANNA = "@anna:stadt.de"
BERT = "@bert:stadt.de"
# Other people whose Matrix IDs begin with Anna's: erasing or exporting Anna must not touch them.
ANNA_DEV = "@anna:stadt.dev"
ANNA_LONGER = "@anna:stadt.de.example"
LOTSIN = "@lotsin:stadt.de"
HR = "@hr:stadt.de"
KOORD = "@koord:stadt.de"
DM_ANNA = "!dm-anna:stadt.de"
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # a Monday
BERLIN = ZoneInfo("Europe/Berlin")


def make_config(privacy: dict[str, Any] | None = None) -> Config:
    return Config.model_validate(
        {
            "matrix": {"homeserver": "http://127.0.0.1:1", "user_id": BOT, "password": "x"},
            "bot": {"coordinators": [KOORD]},
            "departments": [
                {"id": "it", "name": "IT-Service", "pilots": [LOTSIN]},
                {"id": "personal", "name": "Personal", "pilots": [HR]},
            ],
            "privacy": privacy or {},
        }
    )


def ago(**delta: float) -> str:
    return iso(NOW - timedelta(**delta))


_ids = itertools.count(1)


async def add_event(db: Database, sender: str, *, handled: str, status: str = "done",
                    room: str = DM_ANNA, body: str = "") -> str:  # fmt: skip
    event_id = f"$e{next(_ids)}"
    payload = json.dumps({"body": body}) if status == "pending" else "{}"
    await db.execute(
        "INSERT INTO inbox (event_id, room_id, sender, kind, payload, origin_ts, received_at,"
        " status, handled_at) VALUES (?, ?, ?, 'message', ?, 0, ?, ?, ?)",
        (event_id, room, sender, payload, handled, status,
         handled if status != "pending" else None),
    )  # fmt: skip
    return event_id


async def add_outbox(db: Database, target_kind: str, target: str, text: str, *, sent: str | None,
                     status: str = "sent", mentions: tuple[str, ...] = ()) -> int:  # fmt: skip
    content = json.dumps({"markdown": text, "meta": {}, "mentions": list(mentions),
                          "reply_to": None})  # fmt: skip
    async with db.transaction() as conn:
        cursor = await conn.execute(
            "INSERT INTO outbox (dedup_key, target_kind, target, room_id, content, status,"
            " next_attempt_at, created_at, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f"k{next(_ids)}", target_kind, target, target if target_kind == "room" else None,
             content, status, sent or iso(NOW), sent or iso(NOW), sent),
        )  # fmt: skip
        return int(cursor.lastrowid or 0)


async def add_ticket(db: Database, requester: str, body: str, *, department: str = "it",
                     status: str = "open", created: str, closed: str | None = None,
                     assignee: str | None = None, answered: str | None = None) -> int:  # fmt: skip
    async with db.transaction() as conn:
        cursor = await conn.execute(
            "INSERT INTO tickets (requester, room_id, body, department, assignee, status,"
            " created_at, updated_at, resolved_at, closed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (requester, DM_ANNA, body, department, assignee, status, created, created,
             closed if status == "resolved" else None, closed),
        )  # fmt: skip
        ticket_id = int(cursor.lastrowid or 0)
        await conn.execute(
            "INSERT INTO ticket_events (ticket_id, at, actor, kind, body) VALUES (?, ?, ?, ?, ?)",
            (ticket_id, created, requester, "created", body),
        )
        if answered and assignee:
            await conn.execute(
                "INSERT INTO ticket_events (ticket_id, at, actor, kind, body)"
                " VALUES (?, ?, ?, 'reply', 'Antwort')",
                (ticket_id, answered, assignee),
            )
    return ticket_id


async def scalar(db: Database, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = await db.fetchone(sql, params)
    return row[0] if row is not None else None


# -- the hook registry ---------------------------------------------------------------------


def test_feature_parts_are_registered_and_a_feature_method_wins() -> None:
    class OwnTickets:
        async def statistics(self, conn: Any, since: Any, until: Any, per_person: bool) -> dict:
            return {}

    chosen = dict(all_handlers({"tickets": OwnTickets(), "privacy": PrivacyFeature()}))
    assert {"core", "tickets", "faq", "meetups", "announcements"} <= set(chosen)
    assert isinstance(chosen["tickets"], OwnTickets)  # the feature's own hooks first
    assert "privacy" not in chosen  # no hooks of its own: nothing to call
    with pytest.raises(TypeError):
        personal_data.register("nothing", object())


# -- export --------------------------------------------------------------------------------


async def test_export_contains_everything_about_the_person_and_nothing_about_others(
    db: Database,
) -> None:
    await db.execute(
        "INSERT INTO users (user_id, first_seen, last_seen, department) VALUES (?, ?, ?, 'it')",
        (ANNA, ago(days=20), ago(days=1)),
    )
    await db.execute("INSERT INTO dm_rooms VALUES (?, ?, ?)", (ANNA, DM_ANNA, ago(days=20)))
    await db.execute(
        "INSERT INTO display_names VALUES (?, 'Anna Schmidt', 'event', ?),"
        " (?, 'Bert Beispiel', 'member', ?)",
        (ANNA, ago(days=1), BERT, ago(days=2)),
    )
    await add_event(db, ANNA, handled=ago(days=1))
    await add_event(db, BERT, handled=ago(days=1), room="!dm-bert:stadt.de")
    await add_outbox(db, "room", DM_ANNA, "Antwort an Anna", sent=ago(days=1))
    await add_outbox(db, "room", "!gruppe:stadt.de", "Hallo Anna", sent=ago(days=1),
                     mentions=(ANNA,))  # fmt: skip
    await add_outbox(db, "room", "!dm-bert:stadt.de", "Antwort an Bert", sent=ago(days=1))
    await add_ticket(db, ANNA, "Drucker kaputt", created=ago(days=2))
    await add_ticket(db, BERT, "Berts Problem", created=ago(days=2))
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO faq_questions (asked_at, user_id, room_id, decision, entry_id, score)"
            " VALUES (?, ?, ?, 'answer', 'vpn', 0.9)",
            (ago(days=3), ANNA, DM_ANNA),
        )
        await conn.execute(
            "INSERT INTO faq_feedback (question_id, user_id, helpful, given_at)"
            " VALUES (1, ?, 1, ?)",
            (ANNA, ago(days=3)),
        )
        await conn.execute("INSERT INTO announcement_optouts VALUES (?, ?)", (ANNA, ago(days=5)))
        sections = await export_person(conn, all_handlers({}), ANNA)
    text = json.dumps(sections, ensure_ascii=False)
    assert sections["core"]["person"]["department"] == "it"
    assert sections["core"]["direct_chat"]["room_id"] == DM_ANNA
    assert sections["core"]["display_name"] == {
        "display_name": "Anna Schmidt",
        "source": "event",
        "learned_at": ago(days=1),
    }
    assert len(sections["core"]["events"]) == 1
    assert {m["text"] for m in sections["core"]["messages"]} == {"Antwort an Anna", "Hallo Anna"}
    assert [t["body"] for t in sections["tickets"]["requests"]] == ["Drucker kaputt"]
    assert sections["tickets"]["requests"][0]["history"][0]["kind"] == "created"
    assert sections["faq"]["feedback"] == [{"question_id": 1, "helpful": True,
                                            "given_at": ago(days=3),
                                            "previous_helpful": None}]  # fmt: skip
    assert sections["announcements"]["opted_out_since"] == ago(days=5)
    assert sections["meetups"]["signups"] == []
    assert "Bert" not in text and BERT not in text


# -- erasure -------------------------------------------------------------------------------


async def test_erasure_anonymises_and_keeps_what_an_open_ticket_needs(db: Database) -> None:
    await db.execute(
        "INSERT INTO users (user_id, first_seen, last_seen) VALUES (?, ?, ?)",
        (ANNA, ago(days=20), ago(days=1)),
    )
    await db.execute("INSERT INTO dm_rooms VALUES (?, ?, ?)", (ANNA, DM_ANNA, ago(days=20)))
    await db.execute(
        "INSERT INTO pending_choices VALUES (?, ?, 'x', '{}', ?)", (ANNA, DM_ANNA, ago(days=-1))
    )
    handled = await add_event(db, ANNA, handled=ago(days=1))
    sent = await add_outbox(db, "user", ANNA, "Ihre Anfrage", sent=ago(days=1))
    forwarded = await add_outbox(db, "room", "!it:stadt.de", f"Neue Anfrage von {ANNA}",
                                 sent=ago(days=1))  # fmt: skip
    waiting = await add_outbox(db, "room", DM_ANNA, "kommt gleich", sent=None, status="pending")
    closed = await add_ticket(
        db, ANNA, "Altes Problem", status="resolved", created=ago(days=9), closed=ago(days=8),
        assignee=LOTSIN, answered=ago(days=8, hours=12),
    )  # fmt: skip
    still_open = await add_ticket(db, ANNA, "Drucker kaputt", created=ago(days=1))
    await db.execute(
        "INSERT INTO audit_log (at, actor, action, subject, details) VALUES (?, ?, ?, ?, '{}')",
        (ago(days=1), ANNA, "privacy.export", ANNA),
    )
    async with db.transaction() as conn:
        result = await erase_person(conn, all_handlers({}), ANNA, NOW)

    assert await scalar(db, "SELECT COUNT(*) FROM users WHERE user_id = ?", (ANNA,)) == 0
    assert await scalar(db, "SELECT COUNT(*) FROM pending_choices") == 0
    assert await scalar(db, "SELECT sender FROM inbox WHERE event_id = ?", (handled,)) == ERASED
    for row_id in (sent, forwarded):
        content = await scalar(db, "SELECT content FROM outbox WHERE id = ?", (row_id,))
        assert json.loads(content)["markdown"] == ""
    assert await scalar(db, "SELECT target FROM outbox WHERE id = ?", (sent,)) == ERASED
    kept = await scalar(db, "SELECT content FROM outbox WHERE id = ?", (waiting,))
    assert json.loads(kept)["markdown"] == "kommt gleich"
    old = await db.fetchone("SELECT * FROM tickets WHERE id = ?", (closed,))
    assert (old["requester"], old["body"], old["assignee"]) == (ERASED, "", ERASED)
    assert old["department"] == "it" and old["resolved_at"] is not None  # statistics stay
    assert await scalar(db, "SELECT COUNT(*) FROM ticket_events WHERE ticket_id = ? AND"
                            " (actor != ? OR body IS NOT NULL)", (closed, ERASED)) == 0  # fmt: skip
    current = await db.fetchone("SELECT * FROM tickets WHERE id = ?", (still_open,))
    assert (current["requester"], current["body"]) == (ANNA, "Drucker kaputt")

    assert result.erased["core.person"] == 1
    assert result.erased["tickets.tickets"] == 1
    reasons = {k.category: k for k in result.kept}
    assert reasons["tickets.open_tickets"].reason == "privacy.kept.open_ticket"
    assert reasons["tickets.open_tickets"].params == {"numbers": str(still_open)}
    assert reasons["core.messages"].reason == "privacy.kept.pending_delivery"
    assert reasons["core.audit_log"].count == 1
    assert reasons["core.direct_chat"].count == 1


async def test_erasure_frees_a_meetup_place_for_the_waiting_list(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO meetups (id, title, start_local, tzid, duration_s, capacity, first_start,"
            " created_by, created_at, updated_at) VALUES (1, 'Lotsentreffen',"
            " '2026-12-10T14:00:00', 'Europe/Berlin', 3600, 1, ?, ?, ?, ?)",
            ("2026-12-10T13:00:00.000Z", KOORD, ago(days=5), ago(days=5)),
        )
        for user, status in ((ANNA, "confirmed"), (BERT, "waitlisted")):
            await conn.execute(
                "INSERT INTO meetup_signups (meetup_id, occurrence, user_id, status, starts_at,"
                " signed_up_at) VALUES (1, '2026-12-10T13:00:00Z', ?, ?, ?, ?)",
                (user, status, "2026-12-10T13:00:00.000Z", ago(days=2)),
            )
        result = await erase_person(conn, all_handlers({}), ANNA, NOW)
    rows = await db.fetchall("SELECT user_id, status FROM meetup_signups")
    assert [tuple(r) for r in rows] == [(BERT, "confirmed")]
    assert result.erased["meetups.signups"] == 1


async def test_meetup_invitations_are_exported_and_erased(db: Database) -> None:
    """Who got a meetup's invitation (0013) is the person's data: it is in the export, and
    after an erasure a cancellation is no longer sent to them on its account."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO meetups (id, title, start_local, tzid, duration_s, first_start,"
            " created_by, created_at, updated_at) VALUES (1, 'Lotsentreffen',"
            " '2026-12-10T14:00:00', 'Europe/Berlin', 3600, ?, ?, ?, ?)",
            ("2026-12-10T13:00:00.000Z", KOORD, ago(days=5), ago(days=5)),
        )
        for user in (ANNA, BERT):
            await conn.execute(
                "INSERT INTO meetup_invitations VALUES (1, 'user', ?, ?)", (user, ago(days=5))
            )
        sections = await export_person(conn, all_handlers({}), ANNA)
        result = await erase_person(conn, all_handlers({}), ANNA, NOW)
    assert sections["meetups"]["invitations"] == [
        {"meetup_id": 1, "title": "Lotsentreffen", "invited_at": ago(days=5)}
    ]
    assert result.erased["meetups.invitations"] == 1
    rows = await db.fetchall("SELECT target FROM meetup_invitations")
    assert [r["target"] for r in rows] == [BERT]


async def test_erasure_finds_a_direct_chat_known_only_from_the_persons_messages(
    db: Database,
) -> None:
    """An older direct chat is no longer in ``dm_rooms``; the person's own messages in the
    inbox tie it to them, so it must be looked up before those lose their sender."""
    await db.execute(
        "INSERT INTO rooms (room_id, is_direct, joined_at) VALUES (?, 1, ?)", (DM_ANNA, ago(days=9))
    )
    await add_event(db, ANNA, handled=ago(hours=1))
    reply = await add_outbox(db, "room", DM_ANNA, "Zu Ihrer Frage zum Urlaub …", sent=ago(hours=1))
    async with db.transaction() as conn:
        result = await erase_person(conn, all_handlers({}), ANNA, NOW)
    content = await scalar(db, "SELECT content FROM outbox WHERE id = ?", (reply,))
    assert json.loads(content)["markdown"] == ""
    assert result.erased["core.messages"] == 1


async def test_erasure_takes_the_person_out_of_delivery_keys_and_others_records(
    db: Database,
) -> None:
    copy = await add_outbox(db, "user", LOTSIN, "Sommerfest", sent=ago(days=1))
    other = await add_outbox(db, "user", HR, "Sommerfest", sent=ago(days=1))
    await db.execute("UPDATE outbox SET dedup_key = 'ann:7:' || target WHERE id IN (?, ?)",
                     (copy, other))  # fmt: skip
    closed = await add_ticket(db, ANNA, "Drucker", status="resolved", created=ago(days=9),
                              closed=ago(days=8), assignee=LOTSIN)  # fmt: skip
    await db.execute(
        "INSERT INTO ticket_events (ticket_id, at, actor, kind, details) VALUES"
        " (?, ?, ?, 'assigned', ?)",
        (closed, ago(days=9), "@lotsenbot:stadt.de",
         json.dumps({"department": "it", "assignee": LOTSIN, "deputy_for": None})),
    )  # fmt: skip
    still_open = await add_ticket(db, BERT, "Scanner", created=ago(days=1), assignee=HR)
    await db.execute(
        "INSERT INTO ticket_events (ticket_id, at, actor, kind, body, internal)"
        " VALUES (?, ?, ?, 'note', 'Rückfrage', 1)",
        (still_open, ago(hours=3), LOTSIN),
    )
    await db.execute(
        "INSERT INTO pilot_absences (user_id, until, deputy, created_at) VALUES (?, ?, ?, ?)",
        (HR, "2026-12-24", LOTSIN, ago(days=1)),
    )
    async with db.transaction() as conn:
        result = await erase_person(conn, all_handlers({}), LOTSIN, NOW)
    keys = {r[0]: r[1] for r in await db.fetchall("SELECT id, dedup_key FROM outbox")}
    assert keys == {copy: f"ann:7:{ERASED}#{copy}", other: f"ann:7:{HR}"}  # counts stay by prefix
    details = await scalar(
        db, "SELECT details FROM ticket_events WHERE ticket_id = ? AND kind = 'assigned'", (closed,)
    )
    assert json.loads(details) == {"department": "it", "assignee": ERASED, "deputy_for": None}
    assert await scalar(db, "SELECT deputy FROM pilot_absences WHERE user_id = ?", (HR,)) is None
    reasons = {k.category: k for k in result.kept}
    assert reasons["tickets.ticket_entries"].params == {"numbers": str(still_open)}
    text = await db.fetchall("SELECT * FROM ticket_events WHERE ticket_id = ?", (closed,))
    assert LOTSIN not in json.dumps([dict(r) for r in text])


async def test_erasure_takes_the_display_name_and_the_messages_that_show_it(
    db: Database,
) -> None:
    """Pilots' notices name the requester as "Anna Schmidt (\\@anna\\:stadt\\.de)" in their
    Markdown: found by the escaped Matrix ID, they lose their text once delivered."""
    await db.execute("INSERT INTO display_names VALUES (?, 'Anna Schmidt', 'event', ?)",
                     (ANNA, ago(days=1)))  # fmt: skip
    anna = person_label(ANNA, "Anna Schmidt")
    naming = await add_outbox(db, "user", LOTSIN, f"Neue Anfrage von {anna}", sent=ago(hours=1))
    other = await add_outbox(db, "user", LOTSIN, f"Neue Anfrage von {person_label(BERT)}",
                             sent=ago(hours=1))  # fmt: skip
    async with db.transaction() as conn:
        result = await erase_person(conn, all_handlers({}), ANNA, NOW)
    assert result.erased["core.display_name"] == 1
    assert await scalar(db, "SELECT COUNT(*) FROM display_names") == 0
    texts = {r[0]: json.loads(r[1])["markdown"]
             for r in await db.fetchall("SELECT id, content FROM outbox")}  # fmt: skip
    assert texts[naming] == "" and "bert" in texts[other]
    assert "Anzeigename" in "\n".join(describe_erasure(result, Catalogue("de")))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (ANNA, True),
        (f"Zuständig: {person_label(ANNA, 'Anna')}.", True),
        (f"_{escape(ANNA)}_", True),
        (f"rem:3:2026-12-10T13:00:00Z:3600:{ANNA}:2026-12-11T13:00:00Z", True),
        (ANNA_DEV, False),
        (escape(ANNA_LONGER), False),
        (f"{ANNA}-mitte", False),
        (f"ann:7:{ANNA}:8448", False),
    ],
)
def test_a_matrix_id_is_found_whole(text: str, named: bool) -> None:
    assert personal_data.names_person(text, ANNA) is named
    if "\\" not in text:  # delivery keys: the plain ID is replaced, a longer one stays
        replaced = personal_data.replace_person(text, ANNA, ERASED)
        assert replaced == (text.replace(ANNA, ERASED) if named else text)


async def test_erasure_matches_the_matrix_id_whole_not_ids_that_begin_with_it(
    db: Database,
) -> None:
    """ "@anna:stadt.de" is a prefix of "@anna:stadt.dev" and "@anna:stadt.de.example":
    erasing Anna must leave their delivered messages, their delivery keys and their
    meetup announcement copies alone, and still catch every message that names Anna."""
    copies = {}
    for person in (ANNA, ANNA_DEV, ANNA_LONGER):
        label = person_label(person, "Anna")
        copies[person] = await add_outbox(db, "user", person, f"Guten Tag {label}!",
                                          sent=ago(hours=2))  # fmt: skip
    await db.execute("UPDATE outbox SET dedup_key = 'ann:7:' || target")
    about = {
        person: await add_outbox(
            db, "user", LOTSIN, f"Neue Anfrage von {person_label(person)}.", sent=ago(hours=1)
        )
        for person in (ANNA, ANNA_DEV, ANNA_LONGER)
    }
    mentioned = {
        person: await add_outbox(
            db, "room", "!gruppe:stadt.de", "Hallo", sent=ago(hours=1), mentions=(person,)
        )
        for person in (ANNA_DEV, ANNA_LONGER)
    }
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO meetups (id, title, start_local, tzid, duration_s, first_start,"
            " created_by, created_at, updated_at) VALUES (1, 'Lotsentreffen',"
            " '2026-12-10T14:00:00', 'Europe/Berlin', 3600, ?, ?, ?, ?)",
            ("2026-12-10T13:00:00.000Z", KOORD, ago(days=5), ago(days=5)),
        )
        for person in (ANNA, ANNA_DEV, ANNA_LONGER):
            await conn.execute("INSERT INTO meetup_messages (dedup_key, meetup_id) VALUES (?, 1)",
                               (f"meetup:1:ann:{person}",))  # fmt: skip
        result = await erase_person(conn, all_handlers({}), ANNA, NOW)

    rows = {r["id"]: r for r in await db.fetchall("SELECT * FROM outbox")}
    text = {row_id: json.loads(row["content"])["markdown"] for row_id, row in rows.items()}
    assert text[copies[ANNA]] == "" and text[about[ANNA]] == ""
    assert rows[copies[ANNA]]["dedup_key"] == f"ann:7:{ERASED}#{copies[ANNA]}"
    for person in (ANNA_DEV, ANNA_LONGER):
        assert person in text[copies[person]].replace("\\", "")
        assert rows[copies[person]]["dedup_key"] == f"ann:7:{person}"
        assert rows[copies[person]]["target"] == person
        assert text[about[person]] != "" and text[mentioned[person]] == "Hallo"
    assert result.erased["core.messages"] == 2
    keys = [r[0] for r in await db.fetchall("SELECT dedup_key FROM meetup_messages ORDER BY 1")]
    assert keys == [f"meetup:1:ann:{ANNA_LONGER}", f"meetup:1:ann:{ANNA_DEV}"]


async def test_erasure_blanks_ids_run_into_other_words_unless_a_known_id_stands_there(
    db: Database,
) -> None:
    """People run IDs into other words ("@anna:stadt.de-Postfach", a missing space after
    a full stop); read as a longer ID, Anna's name would survive her erasure. A text keeps
    its words only where someone's known ID stands ("@anna:stadt.dev", who uses the bot)."""
    await db.execute(
        "INSERT INTO users (user_id, first_seen, last_seen) VALUES (?, ?, ?)",
        (ANNA_DEV, ago(days=3), ago(days=1)),
    )
    texts = {
        "run_in": f"Bitte an {ANNA}-Postfach schreiben.",
        "no_space": f"Kontakt: {escape(ANNA)}.Bitte melden.",
        "port_like": f"Rückruf {ANNA}:3 Uhr",
        "known_longer": f"Neue Anfrage von {person_label(ANNA_DEV)}.",
        "unknown_longer": f"Neue Anfrage von {ANNA_LONGER}.",
    }
    ids = {
        name: await add_outbox(db, "user", LOTSIN, text, sent=ago(hours=1))
        for name, text in texts.items()
    }
    async with db.transaction() as conn:
        await erase_person(conn, all_handlers({}), ANNA, NOW)
    rows = {r["id"]: json.loads(r["content"])["markdown"] for r in await db.fetchall(
        "SELECT id, content FROM outbox")}  # fmt: skip
    blank = {name for name, row_id in ids.items() if rows[row_id] == ""}
    # An unknown longer ID is blanked too: one message too many rather than a name left.
    assert blank == {"run_in", "no_space", "port_like", "unknown_longer"}


async def test_export_holds_nothing_of_people_whose_ids_begin_with_the_persons(
    db: Database,
) -> None:
    await add_outbox(db, "user", ANNA, "Für Anna", sent=ago(hours=2))
    for person in (ANNA_DEV, ANNA_LONGER):
        await add_outbox(db, "user", person, f"Für {person_label(person)}", sent=ago(hours=2))
        await add_outbox(db, "room", "!gruppe:stadt.de", f"Hallo {person_label(person)}",
                         sent=ago(hours=1), mentions=(person,))  # fmt: skip
        await db.execute("INSERT INTO dm_rooms VALUES (?, ?, ?)",
                         (person, f"!dm-{len(person)}:stadt.de", ago(days=3)))  # fmt: skip
    async with db.transaction() as conn:
        sections = await export_person(conn, all_handlers({}), ANNA)
    assert [m["text"] for m in sections["core"]["messages"]] == ["Für Anna"]
    assert sections["core"]["direct_chat"] is None
    text = json.dumps(sections, ensure_ascii=False)
    assert "stadt.dev" not in text and "example" not in text


# -- retention -----------------------------------------------------------------------------


async def test_purge_applies_each_period_and_dry_run_changes_nothing(db: Database) -> None:
    privacy = PrivacyConfig()  # defaults: 30 days events/records, 180 ticket contents, …
    old_event = await add_event(db, ANNA, handled=ago(days=31))
    new_event = await add_event(db, ANNA, handled=ago(days=29))
    waiting = await add_event(db, ANNA, handled=ago(days=60), status="pending", body="hallo")
    await add_outbox(db, "user", ANNA, "alt", sent=ago(days=31))
    await add_outbox(db, "user", ANNA, "neu", sent=ago(days=29))
    await add_outbox(db, "user", ANNA, "hängt", sent=None, status="pending")
    await db.execute(
        "INSERT INTO users (user_id, first_seen, last_seen) VALUES (?, ?, ?), (?, ?, ?)",
        (ANNA, ago(days=800), ago(days=366), BERT, ago(days=800), ago(days=364)),
    )
    # A name goes when the homeserver has not confirmed it for as long as a person's record.
    await db.execute(
        "INSERT INTO display_names (user_id, display_name, source, learned_at)"
        " VALUES (?, 'Anna Alt', 'event', ?), (?, 'Bert Neu', 'member', ?)",
        (ANNA, ago(days=366), BERT, ago(days=364)),
    )
    await db.execute(
        "INSERT INTO audit_log (at, actor, action) VALUES (?, ?, 'x'), (?, ?, 'y')",
        (ago(days=731), KOORD, ago(days=729), KOORD),
    )
    expired = await add_ticket(db, ANNA, "alt", status="resolved", created=ago(days=200),
                               closed=ago(days=181))  # fmt: skip
    recent = await add_ticket(db, ANNA, "neuer", status="resolved", created=ago(days=200),
                              closed=ago(days=179))  # fmt: skip
    old_open = await add_ticket(db, ANNA, "offen seit langem", created=ago(days=400))
    today = NOW.date()
    await db.execute(
        "INSERT INTO pilot_absences (user_id, until, deputy, created_at) VALUES"
        " (?, ?, ?, ?), (?, ?, NULL, ?)",
        (LOTSIN, (today - timedelta(days=3)).isoformat(), HR, ago(days=20),
         HR, (today - timedelta(days=1)).isoformat(), ago(days=5)),
    )  # fmt: skip
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO faq_unanswered (asked_at, question, normalized) VALUES (?, 'a', 'a'),"
            " (?, 'b', 'b')",
            (ago(days=91), ago(days=89)),
        )
    before = await status_totals(db.conn, "inbox")

    async with db.transaction() as conn:
        planned = await purge_all(conn, all_handlers({}), NOW, privacy, dry_run=True)
    assert planned["core"] == {"events": 1, "delivery_records": 1, "expired_choices": 0,
                               "inactive_people": 1, "display_names": 1,
                               "audit_log": 1}  # fmt: skip
    # An absence goes two days after its last day (a local date): the one ended yesterday stays.
    assert planned["tickets"] == {"ticket_contents": 1, "ended_absences": 1}
    assert planned["faq"]["unanswered_questions"] == 1
    assert await scalar(db, "SELECT COUNT(*) FROM inbox") == 3  # dry run: nothing gone

    async with db.transaction() as conn:
        done = await purge_all(conn, all_handlers({}), NOW, privacy, dry_run=False)
    assert done == planned
    events = {r[0] for r in await db.fetchall("SELECT event_id FROM inbox")}
    assert events == {new_event, waiting}
    assert old_event not in events
    texts = {json.loads(r[0])["markdown"] for r in await db.fetchall("SELECT content FROM outbox")}
    assert texts == {"neu", "hängt"}
    assert {r[0] for r in await db.fetchall("SELECT user_id FROM users")} == {BERT}
    assert {r[0] for r in await db.fetchall("SELECT user_id FROM display_names")} == {BERT}
    assert await scalar(db, "SELECT COUNT(*) FROM audit_log") == 1
    bodies = {r[0]: r[1] for r in await db.fetchall("SELECT id, body FROM tickets")}
    assert bodies == {expired: "", recent: "neuer", old_open: "offen seit langem"}
    assert await scalar(db, "SELECT COUNT(*) FROM faq_unanswered") == 1
    assert [r[0] for r in await db.fetchall("SELECT user_id FROM pilot_absences")] == [HR]
    # Prometheus totals do not go down with the purge.
    assert await status_totals(db.conn, "inbox") == before

    async with db.transaction() as conn:
        again = await purge_all(conn, all_handlers({}), NOW, privacy, dry_run=False)
    assert all(n == 0 for part in again.values() for n in part.values())

    # Moving the clock on by a day makes the next records due.
    async with db.transaction() as conn:
        later = await purge_all(conn, all_handlers({}), NOW + timedelta(days=2), privacy, True)
    assert later["core"]["events"] == 1 and later["core"]["delivery_records"] == 1
    assert later["tickets"]["ticket_contents"] == 1
    assert later["tickets"]["ended_absences"] == 1


async def test_unanswered_questions_belong_to_their_asker_while_the_inbox_knows_who_asked(
    db: Database,
) -> None:
    """An open question keeps the event it was asked in (so deleting the message deletes
    it). While the inbox records who sent that event, the question is the asker's: in her
    export, gone with her erasure; after ``handled_events_days`` the purge cuts the tie."""
    mine = await add_event(db, ANNA, handled=ago(days=1))
    learned = await add_event(db, ANNA, handled=ago(days=2))
    theirs = await add_event(db, BERT, handled=ago(days=1))
    old = await add_event(db, ANNA, handled=ago(days=40))
    rows = ((ago(days=1), "Meine Kollegin ist krank", mine, None),
            (ago(days=2), "Drucker im Flur", learned, ago(days=1)),
            (ago(days=1), "Wer gießt die Blumen?", theirs, None),
            (ago(days=40), "Alte Frage", old, None))  # fmt: skip
    for asked, question, event, resolved in rows:
        await db.execute(
            "INSERT INTO faq_unanswered (asked_at, question, normalized, question_event,"
            " resolved_at) VALUES (?, ?, ?, ?, ?)",
            (asked, question, question.lower(), event, resolved),
        )
    async with db.transaction() as conn:
        sections = await export_person(conn, all_handlers({}), ANNA)
    exported = [q["question"] for q in sections["faq"]["your_unanswered_questions"]]
    assert exported == ["Meine Kollegin ist krank", "Drucker im Flur", "Alte Frage"]

    async with db.transaction() as conn:
        purged = await purge_all(conn, all_handlers({}), NOW, PrivacyConfig(), dry_run=False)
    assert purged["faq"]["unanswered_question_events"] == 1
    async with db.transaction() as conn:
        result = await erase_person(conn, all_handlers({}), ANNA, NOW)
    assert result.erased["faq.unanswered_questions"] == 1
    left = {r[0]: r[1] for r in await db.fetchall(
        "SELECT question, question_event FROM faq_unanswered")}  # fmt: skip
    # Dealt with by a coordinator: stays, without the tie; someone else's: untouched; the
    # old one was no longer tied to Anna, so it is no longer hers to erase.
    assert left == {"Drucker im Flur": None, "Wer gießt die Blumen?": theirs, "Alte Frage": None}


# -- statistics and report -----------------------------------------------------------------


async def _two_departments(db: Database) -> None:
    await add_ticket(db, ANNA, "a", created=ago(days=3), assignee=LOTSIN, status="resolved",
                     answered=ago(days=3, hours=-2), closed=ago(days=2))  # fmt: skip
    await add_ticket(db, BERT, "b", created=ago(days=3), assignee=LOTSIN,
                     answered=ago(days=3, hours=-4))  # fmt: skip
    await add_ticket(db, ANNA, "c", department="personal", created=ago(days=1), assignee=HR,
                     answered=ago(days=1, hours=-1))  # fmt: skip
    await add_ticket(db, ANNA, "d", created=ago(days=40))  # outside the period


async def test_statistics_are_aggregates_per_department_unless_per_person(db: Database) -> None:
    await _two_departments(db)
    since, until = NOW - timedelta(days=30), NOW
    async with db.transaction() as conn:
        figures = await collect_statistics(conn, all_handlers({}), since, until, False)
        personal = await collect_statistics(conn, all_handlers({}), since, until, True)
    tickets = figures["tickets"]
    assert tickets["requests"] == {"it": 2, "personal": 1}
    assert tickets["first_answer_median_s"] == {"it": 3 * 3600, "personal": 3600}
    assert tickets["resolution_median_s"] == {"it": 86400}
    assert tickets["open_now"] == {"it": 2, "personal": 1}
    assert "@" not in json.dumps(figures)  # no Matrix ID anywhere
    assert personal["tickets"]["by_pilot"] == {LOTSIN: {"answered": 2, "resolved": 1},
                                               HR: {"answered": 1}}  # fmt: skip


async def test_report_text_and_chart(db: Database, tmp_path: Path) -> None:
    await _two_departments(db)
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO faq_questions (asked_at, user_id, room_id, decision, score) VALUES"
            " (?, ?, '', 'answer', 1), (?, ?, '', 'none', 0), (?, ?, '', 'suggest', 0.5),"
            " (?, ?, '', 'answer', 1)",
            (ago(days=1), ANNA) * 4,
        )
        for question in ("Wie geht *E-Akte*?", "wie geht e-akte", "Fax?"):
            await conn.execute(
                "INSERT INTO faq_unanswered (asked_at, question, normalized) VALUES (?, ?, ?)",
                (ago(days=1), question, "fax" if "Fax" in question else "e-akte"),
            )
        figures = await collect_statistics(conn, all_handlers({}), NOW - timedelta(days=30),
                                           NOW, False)  # fmt: skip
    t = Catalogue("de")
    period = reports.rolling(30, NOW, BERLIN)
    names = {"it": "IT-Service", "personal": "Personal"}
    text = reports.render_markdown(figures, period, t, names, BERLIN, per_person=False)
    assert "## Bericht 31.10.2026 – 30.11.2026" in text
    assert "| IT\\-Service | 2 | 3,0 Std. | 24,0 Std. | 2 |" in text, text
    assert "Trefferquote: 50,0 %" in text
    assert "„Wie geht \\*E\\-Akte\\*?“ (2×)" in text  # user text escaped, grouped
    assert "@" not in text
    assert "Treffen" not in text  # no meetup figures: the section is left out
    png = reports.render_chart(figures, period, t, names)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert 10_000 < len(png) < 400_000
    (tmp_path / "bericht.png").write_bytes(png)
    empty = reports.render_chart({}, period, t, names)
    assert empty.startswith(b"\x89PNG") and len(empty) < len(png)


def test_periods() -> None:
    p = reports.parse_period("", NOW, BERLIN)
    assert (p.since, p.until) == (NOW - timedelta(days=30), NOW)
    assert reports.parse_period("7 Tage", NOW, BERLIN).since == NOW - timedelta(days=7)
    assert reports.parse_period("Woche", NOW, BERLIN).since == NOW - timedelta(days=7)
    assert reports.parse_period("2 Wochen", NOW, BERLIN).since == NOW - timedelta(days=14)
    assert reports.parse_period("monat", NOW, BERLIN).since == NOW - timedelta(days=30)
    r = reports.parse_period("01.10.2026 – 31.10.2026", NOW, BERLIN)
    # Local days: 1 October 00:00 CEST is 22:00 UTC the day before; 1 November 00:00 CET.
    assert r.since == datetime(2026, 9, 30, 22, tzinfo=UTC)
    assert r.until == datetime(2026, 10, 31, 23, tzinfo=UTC)
    for bad in ("gestern", "31.02.2026-01.03.2026", "10.10.2026-01.10.2026", "0 Tage"):
        with pytest.raises(BadArguments):
            reports.parse_period(bad, NOW, BERLIN)
    week, name = reports.iso_week_before(NOW, BERLIN)
    assert name == "2026-W48"
    assert (week.first_day.isoformat(), week.last_day.isoformat()) == ("2026-11-23", "2026-11-29")
    assert week.until == datetime(2026, 11, 29, 23, tzinfo=UTC)


# -- the chat commands through the dispatcher ----------------------------------------------


class Harness:
    def __init__(self, db: Database, config: Config) -> None:
        self.clock = Clock(NOW - datetime.now(UTC))
        self.feature = PrivacyFeature()
        self.services = Services(
            config=config, db=db, texts=Catalogue("de"), clock=self.clock, roles=Roles(config),
            outbox=Outbox(self.clock.now), scheduler=AsyncIOScheduler(timezone=config.bot.tz),
            bot_user_id=BOT, features={"privacy": self.feature},
        )  # fmt: skip
        self.feature.services = self.services
        self.inbox = Inbox(db)
        self.dispatcher = Dispatcher(self.services, [self.feature.router], self.inbox)
        self.db = db

    async def say(self, sender: str, body: str, room: str = DM_ANNA, direct: bool = True,
                  name: str | None = None) -> Any:  # fmt: skip
        number = next(_ids)
        event = Incoming(f"$m{number}", room, sender, "message", body, is_direct=direct,
                         origin_ts=1_800_000_000_000 + number, sender_name=name)  # fmt: skip
        async with self.db.transaction() as conn:
            await self.inbox.accept(conn, [event], self.clock.now())
        await self.dispatcher.handle(event)
        rows = await self.db.fetchall(
            "SELECT * FROM outbox WHERE dedup_key LIKE ? ORDER BY id", (f"evt:{event.event_id}:%",)
        )
        return rows


def meta(row: Any, key: str = "de.lotsenbot.privacy") -> dict[str, Any]:
    return json.loads(row["content"])["meta"].get(key) or {}


async def test_commands_export_erase_protocol_and_roles(db: Database) -> None:
    h = Harness(db, make_config())
    await add_ticket(db, ANNA, "Drucker kaputt", created=ago(days=1))
    [reply] = await h.say(ANNA, "!meine-daten")
    assert reply["attachment_mime"] == "application/json"
    assert reply["attachment_name"] == "meine-daten-2026-11-30.json"
    document = json.loads(bytes(reply["attachment"]))
    assert document["user_id"] == ANNA
    assert document["data"]["tickets"]["requests"][0]["body"] == "Drucker kaputt"

    # In a group room the file goes to the direct chat, never into the room.
    private, note = await h.say(ANNA, "!meine-daten", room="!gruppe:stadt.de", direct=False)
    assert (note["target_kind"], note["attachment"]) == ("room", None)
    assert (private["target_kind"], private["target"]) == ("user", ANNA)
    assert private["attachment_name"].endswith(".json")

    # Erasure only in the direct chat: in a group room everyone would see the question and
    # the summary (with the numbers of open requests). Nothing is asked or erased there.
    for words in ("!daten-löschen", "!daten-löschen bestätigen"):
        [elsewhere] = await h.say(ANNA, words, room="!gruppe:stadt.de", direct=False)
        assert (elsewhere["target_kind"], meta(elsewhere)["action"]) == (
            "room",
            "erase_direct_only",
        )
    [answer] = await h.say(ANNA, "!daten-löschen bestätigen")
    assert meta(answer, "de.lotsenbot.error")["code"] == "conflict"  # nothing to confirm yet
    [ask] = await h.say(ANNA, "!daten-löschen")
    assert meta(ask)["action"] == "erase_confirm"
    h.clock.offset += timedelta(minutes=11)  # too late
    [late] = await h.say(ANNA, "!daten-löschen bestätigen")
    assert meta(late, "de.lotsenbot.error")["code"] == "conflict"
    await h.say(ANNA, "!daten-löschen")
    h.clock.offset += timedelta(minutes=9)
    [done] = await h.say(ANNA, "!daten löschen bestaetigen")
    assert meta(done)["action"] == "erased"
    kept = {k["category"]: k for k in meta(done)["kept"]}
    assert kept["tickets.open_tickets"]["reason"] == "privacy.kept.open_ticket"
    assert "offene Anfrage Nr. 1" in json.loads(done["content"])["markdown"]
    actions = [r[0] for r in await db.fetchall("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["privacy.export", "privacy.export", "privacy.erase_requested",
                       "privacy.erase_requested", "privacy.erase"]  # fmt: skip

    [denied] = await h.say(ANNA, "!protokoll")
    assert meta(denied, "de.lotsenbot.error")["code"] == "permission_denied"
    [denied] = await h.say(ANNA, "!bericht")
    assert meta(denied, "de.lotsenbot.error")["code"] == "permission_denied"
    [log] = await h.say(KOORD, "!protokoll 3", room="!dm-koord:stadt.de")
    entries = meta(log)["entries"]
    assert [e["action"] for e in entries] == ["privacy.erase", "privacy.erase_requested",
                                              "privacy.erase_requested"]  # fmt: skip
    assert entries[0]["actor"] == ANNA
    [bad] = await h.say(KOORD, "!protokoll viele", room="!dm-koord:stadt.de")
    assert meta(bad, "de.lotsenbot.error")["code"] == "bad_arguments"
    [report] = await h.say(KOORD, "!bericht 7 Tage", room="!dm-koord:stadt.de")
    assert report["attachment_mime"] == "image/png"
    assert bytes(report["attachment"]).startswith(b"\x89PNG")
    assert meta(report, "de.lotsenbot.report")["sections"] == ["core", "tickets"]
    # Typed in a group room, the report (with staff's unanswered questions) goes privately.
    private, note = await h.say(KOORD, "!bericht 7 Tage", room="!gruppe:stadt.de", direct=False)
    assert (note["target_kind"], note["attachment"]) == ("room", None)
    assert (private["target_kind"], private["target"]) == ("user", KOORD)
    assert bytes(private["attachment"]).startswith(b"\x89PNG")


async def test_the_audit_log_summarises_details_instead_of_showing_json(db: Database) -> None:
    """`!protokoll` showed ``{"old": {"id": "bot-hilfe", …`` cut off after 160 characters."""
    h = Harness(db, make_config())
    old = {
        "id": "bot-hilfe",
        "category": "Lotsennetzwerk",
        "department": None,
        "question": "Was kann der Bot?",
        "alternatives": [],
        "answer": "Alt.",
        "tags": [],
    }
    details = {"old": old, "new": {**old, "answer": "Neu: *siehe* !hilfe"}, "fields": ["answer"]}
    await db.execute(
        "INSERT INTO audit_log (at, actor, action, subject, details) VALUES (?, ?, ?, ?, ?)",
        (ago(hours=1), KOORD, "faq.update", "bot-hilfe", json.dumps(details)),
    )  # fmt: skip
    [log] = await h.say(KOORD, "!protokoll 2", room="!dm-koord:stadt.de")
    markdown = json.loads(log["content"])["markdown"]
    text = re.sub(r"\\(.)", r"\1", markdown)  # Markdown escapes removed
    line = next(line for line in text.splitlines() if "FAQ-Eintrag geändert" in line)
    assert line.endswith(" – Betreff: bot-hilfe – Antwort: „Alt.“ → „Neu: *siehe* !hilfe“")
    assert "\\*siehe\\*" in markdown  # the answer's Markdown is shown, not applied
    assert "{" not in markdown and "`" not in markdown
    assert text.startswith("**Protokoll – der letzte Eintrag**")  # not "die letzten 1 Einträge"
    # Only coordinators, as before.
    [denied] = await h.say(ANNA, "!protokoll")
    assert meta(denied, "de.lotsenbot.error")["code"] == "permission_denied"


async def test_the_audit_log_and_the_per_person_report_name_people(db: Database) -> None:
    h = Harness(db, make_config({"per_person_stats": True}))
    await _two_departments(db)
    await db.execute("INSERT INTO display_names VALUES (?, 'Lena Lotsin', 'member', ?)",
                     (LOTSIN, ago(days=1)))  # fmt: skip
    await h.say(ANNA, "!meine-daten", name="Anna Schmidt")
    [log] = await h.say(KOORD, "!protokoll 1", room="!dm-koord:stadt.de", name="Kim Koord")
    text = json.loads(log["content"])["markdown"]
    anna = person_label(ANNA, "Anna Schmidt")
    action = escape(Catalogue("de")("privacy.action.privacy.export"))
    assert f"– {anna} – {action} – Betreff: {anna}" in text
    assert meta(log)["entries"][0]["actor"] == ANNA  # the metadata keeps the Matrix ID
    [report] = await h.say(KOORD, "!bericht 7 Tage", room="!dm-koord:stadt.de")
    text = json.loads(report["content"])["markdown"]
    assert f"- {person_label(LOTSIN, 'Lena Lotsin')}: 2 Antworten" in text
    assert f"- {person_label(HR)}: 1 Antworten" in text  # no name known: the Matrix ID


async def test_the_report_chart_is_drawn_outside_the_write_transaction(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drawing takes 0.2–0.7 s; meanwhile no other event may wait for the database."""
    h = Harness(db, make_config())
    await add_ticket(db, ANNA, "Drucker kaputt", created=ago(days=1))
    drawn = reports.render_chart
    lock_held: list[bool] = []

    def render(*args: Any, **kwargs: Any) -> bytes:
        lock_held.append(db._write_lock.locked())
        return drawn(*args, **kwargs)

    monkeypatch.setattr(reports, "render_chart", render)
    [report] = await h.say(KOORD, "!bericht 7 Tage", room="!dm-koord:stadt.de")
    assert bytes(report["attachment"]).startswith(b"\x89PNG")
    assert lock_held == [False]
    # Not prepared for someone who may not ask, nor for a period that makes no sense: the
    # handler gives the answer, and nothing is drawn.
    [denied] = await h.say(ANNA, "!bericht 7 Tage")
    assert meta(denied, "de.lotsenbot.error")["code"] == "permission_denied"
    [bad] = await h.say(KOORD, "!bericht gestern", room="!dm-koord:stadt.de")
    assert meta(bad, "de.lotsenbot.error")["code"] == "bad_arguments"
    assert lock_held == [False]
    actions = [r[0] for r in await db.fetchall("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["privacy.report"]


async def test_the_report_counts_as_before_when_the_asker_was_not_active_yet(
    db: Database,
) -> None:
    """The asker's visit is recorded in the event's transaction; the figures are taken
    there, as ever, and a chart prepared before it (without that visit) is not used."""
    h = Harness(db, make_config())
    await h.say(KOORD, "!protokoll", room="!dm-koord:stadt.de")
    await db.execute("UPDATE users SET last_seen = ? WHERE user_id = ?", (ago(days=5), KOORD))
    [report] = await h.say(KOORD, "!bericht 1 Tag", room="!dm-koord:stadt.de")
    assert "1 Personen aktiv" in json.loads(report["content"])["markdown"]


async def test_weekly_report_is_sent_once_per_week(db: Database) -> None:
    h = Harness(db, make_config())
    await add_ticket(db, ANNA, "x", created=ago(days=3))
    assert await h.feature.weekly_report_job() is True
    assert await h.feature.weekly_report_job() is False  # same week: dedup key exists
    rows = await db.fetchall("SELECT dedup_key, target FROM outbox WHERE purpose = 'report'")
    assert [tuple(r) for r in rows] == [(f"report:2026-W48:{KOORD}", KOORD)]


async def test_a_report_after_a_missed_monday_is_sent_when_the_bot_is_back(
    db: Database,
) -> None:
    """NOW is Monday 10:00 in Berlin: the 08:00 slot passed while the bot was down."""
    await db.execute("INSERT INTO meta (key, value) VALUES ('last_sync_at', ?)", (ago(days=1),))
    h = Harness(db, make_config())
    await h.feature.start(h.services)
    job = h.services.scheduler.get_job("privacy.weekly_report_catch_up")
    assert job is not None  # sent shortly after the start, once (dedup key)
    # A new installation has no missed week.
    await db.execute("UPDATE meta SET value = ? WHERE key = 'last_sync_at'", (ago(minutes=5),))
    h.services.scheduler.remove_job("privacy.weekly_report_catch_up")
    await h.feature.start(h.services)
    assert h.services.scheduler.get_job("privacy.weekly_report_catch_up") is None


async def test_report_inputs_that_used_to_fail(db: Database) -> None:
    """Counted from the oldest record when the period reaches beyond the retention; a "$"
    in a label; years at the calendar's edge; a superscript digit."""
    await add_event(db, ANNA, handled=ago(days=3))
    async with db.transaction() as conn:
        figures = await collect_statistics(conn, all_handlers({}), NOW - timedelta(days=90),
                                           NOW, False)  # fmt: skip
    t = Catalogue("de")
    period = reports.rolling(90, NOW, BERLIN)
    text = reports.render_markdown(figures, period, t, {}, BERLIN, per_person=False)
    assert "gezählt ab 27.11.2026" in text
    figures = {"meetups": {"dates": [{"title": "Budget $\\Euro$ und $_$", "confirmed": 3,
                                       "start": "2026-11-20T13:00:00Z"}]}}  # fmt: skip
    assert reports.render_chart(figures, period, t, {}).startswith(b"\x89PNG")
    for bad in ("31.12.9999-31.12.9999", "01.01.0001-02.01.0001"):
        with pytest.raises(BadArguments):
            reports.parse_period(bad, NOW, BERLIN)
    h = Harness(db, make_config())
    [answer] = await h.say(KOORD, "!protokoll ²", room="!dm-koord:stadt.de")
    assert meta(answer, "de.lotsenbot.error")["code"] == "bad_arguments"


def test_erasure_report_merge() -> None:
    a = ErasureReport()
    a.count("x", 2)
    a.count("y", 0)
    a.keep("z", 0, "r")
    b = ErasureReport()
    b.merge(a, prefix="f.")
    assert b.erased == {"f.x": 2} and b.kept == []


async def test_a_report_reaching_beyond_the_signup_retention_says_so(db: Database) -> None:
    """Sign-ups go after [privacy] signups_days: a longer period names from when meetups
    are counted, a shorter one does not."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO meetups (id, title, start_local, tzid, duration_s, capacity, first_start,"
            " created_by, created_at, updated_at) VALUES (1, 'Lotsentreffen',"
            " '2026-11-20T14:00:00', 'Europe/Berlin', 3600, 5, ?, ?, ?, ?)",
            ("2026-11-20T13:00:00.000Z", KOORD, ago(days=50), ago(days=50)),
        )
        await conn.execute(
            "INSERT INTO meetup_signups (meetup_id, occurrence, user_id, status, starts_at,"
            " signed_up_at) VALUES (1, '2026-11-20T13:00:00Z', ?, 'confirmed', ?, ?)",
            (ANNA, "2026-11-20T13:00:00.000Z", ago(days=20)),
        )
    h = Harness(db, make_config({"signups_days": 30}))

    def markdown(report: Any) -> str:
        return str(json.loads(report["content"])["markdown"])

    [long] = await h.say(KOORD, "!bericht 90 Tage", room="!dm-koord:stadt.de")
    assert "Lotsentreffen, 20.11.2026 14:00: Zusagen: 1" in markdown(long)
    assert "Treffen mit Anmeldungen gezählt ab 31.10.2026" in markdown(long)
    [short] = await h.say(KOORD, "!bericht 14 Tage", room="!dm-koord:stadt.de")
    assert "Lotsentreffen, 20.11.2026 14:00: Zusagen: 1" in markdown(short)
    # Within both retention periods nothing can be missing: no note at all (a new
    # installation said older records had been deleted).
    assert "gezählt ab" not in markdown(short)
    # Nothing left in the period: the note alone, no "Keine Treffen im Zeitraum".
    await db.execute("DELETE FROM meetup_signups")
    [empty] = await h.say(KOORD, "!bericht 90 Tage", room="!dm-koord:stadt.de")
    assert "Treffen mit Anmeldungen gezählt ab 31.10.2026" in markdown(empty)
    assert "Keine Treffen im Zeitraum" not in markdown(empty)


async def test_a_bare_no_right_after_the_question_cancels_and_yes_never_erases(
    db: Database,
) -> None:
    """ "nein" directly after "Möchten Sie wirklich …?" cancels. A bare "ja" does not erase
    (it may be meant for another message of the bot that crossed the question); it names
    the command. After anything said in between, neither is taken."""
    h = Harness(db, make_config())
    await h.say(ANNA, "!daten-löschen")
    [cancelled] = await h.say(ANNA, "Nein")
    assert meta(cancelled)["action"] == "erase_cancelled"
    [asked] = await h.say(ANNA, "!daten-löschen")
    assert "nein" in json.loads(asked["content"])["markdown"]
    [hint] = await h.say(ANNA, "ja!")
    assert meta(hint)["action"] == "erase_needs_command"
    assert "`!daten-löschen bestätigen`" in json.loads(hint["content"])["markdown"]
    await h.say(ANNA, "!meine-daten")  # something else in between
    [fallback] = await h.say(ANNA, "nein")  # not taken as an answer to the question
    assert "nicht verstanden" in json.loads(fallback["content"])["markdown"]
    [done] = await h.say(ANNA, "!daten-löschen bestätigen")  # still pending: the command works
    assert meta(done)["action"] == "erased"
    actions = [r[0] for r in await db.fetchall("SELECT action FROM audit_log")]
    assert actions.count("privacy.erase") == 1


def test_every_audited_action_has_a_label_in_every_language() -> None:
    """`!protokoll` showed internal codes such as "meetup.create" for everything but the
    privacy actions; each action written anywhere in the code needs a label."""
    source = Path(__file__).parents[2] / "lotsenbot"
    pattern = re.compile(r'audit\(\s*(?:[\w.]+,\s*){0,3}"([a-z_]+\.[a-z_]+)"')
    actions = {
        action
        for path in source.rglob("*.py")
        for action in pattern.findall(path.read_text("utf-8"))
    }
    assert {"meetup.create", "faq.import", "announcement.delivered", "privacy.purge"} <= actions
    for lang in ("de", "en"):
        catalogue = Catalogue(lang)
        missing = sorted(a for a in actions if not catalogue.has(f"privacy.action.{a}"))
        assert missing == [], lang
