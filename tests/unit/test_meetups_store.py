"""The meetup store against a real SQLite database with all migrations applied."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import aiosqlite

from lotsenbot.core.clock import iso
from lotsenbot.meetups import store
from lotsenbot.meetups.capacity import Roster, sign_up, withdraw
from lotsenbot.meetups.form import MeetupDraft
from lotsenbot.meetups.recurrence import OccurrenceChange, occurrence_key, original_on
from lotsenbot.meetups.reminders import ReminderKey
from lotsenbot.storage.db import Database

TZ = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
A, B, C = "@a:stadt.de", "@b:stadt.de", "@c:stadt.de"


def draft(
    start: datetime = datetime(2027, 1, 12, 14, 0, tzinfo=TZ),
    *,
    rrule: str | None = None,
    capacity: int | None = None,
    title: str = "Vernetzungstreffen",
) -> MeetupDraft:
    return MeetupDraft(
        title=title,
        start=start,
        tzid="Europe/Berlin",
        duration=timedelta(minutes=90),
        location="Rathaus, Raum 1.12",
        capacity=capacity,
        rrule=rrule,
    )


async def create(conn: aiosqlite.Connection, value: MeetupDraft | None = None) -> store.Meetup:
    meetup_id = await store.create_meetup(
        conn, value or draft(), audience="lotsen", created_by=A, now=NOW
    )
    meetup = await store.get_meetup(conn, meetup_id)
    assert meetup is not None
    return meetup


async def signup(
    conn: aiosqlite.Connection, meetup: store.Meetup, person: str, event: str | None = None
) -> str:
    occ = meetup.next_occurrence(NOW)
    assert occ is not None
    before = await store.roster(conn, meetup.id, occ.key, meetup.capacity)
    after, result = sign_up(before, person)
    await store.save_roster(
        conn,
        meetup.id,
        occ.key,
        before,
        after,
        starts_at=occ.start,
        now=NOW,
        reaction_event_id=event,
    )
    return result.outcome


async def test_one_off_round_trip_and_listing(db: Database) -> None:
    async with db.transaction() as conn:
        meetup = await create(conn)
        past = await create(conn, draft(NOW.astimezone(TZ) + timedelta(days=1)))
        await conn.execute(
            "UPDATE meetups SET ends_at = ? WHERE id = ?", (iso(NOW - timedelta(hours=1)), past.id)
        )
        cancelled = await create(conn)
        await store.cancel_meetup(conn, cancelled.id, "Krankheit", NOW)
        listed = [m.id for m in await store.open_meetups(conn, NOW)]
        again = await store.get_meetup(conn, cancelled.id)
    assert meetup.title == "Vernetzungstreffen"
    assert meetup.series.start == datetime(2027, 1, 12, 14, 0)  # wall clock, naive
    assert meetup.series.first_start == datetime(2027, 1, 12, 13, 0, tzinfo=UTC)
    assert meetup.location == "Rathaus, Raum 1.12" and meetup.audience == "lotsen"
    assert meetup.sequence == 0 and not meetup.cancelled and not meetup.is_series
    assert listed == [meetup.id]
    assert again is not None and again.cancelled and again.cancel_reason == "Krankheit"
    assert again.sequence == 1
    assert again.next_occurrence(NOW) is None


async def test_series_end_is_stored_and_endless_series_listed(db: Database) -> None:
    async with db.transaction() as conn:
        finite = await create(conn, draft(rrule="FREQ=WEEKLY;BYDAY=TU;COUNT=3"))
        endless = await create(conn, draft(rrule="FREQ=WEEKLY;BYDAY=TU"))
        rows = {
            r["id"]: r["ends_at"]
            for r in await (await conn.execute("SELECT id, ends_at FROM meetups")).fetchall()
        }
        later = [m.id for m in await store.open_meetups(conn, datetime(2027, 2, 1, tzinfo=UTC))]
    # Third Tuesday 26.01.2027 14:00 CET + 90 minutes = 14:30 UTC.
    assert rows[finite.id] == "2027-01-26T14:30:00.000Z"
    assert rows[endless.id] is None
    assert later == [endless.id]


async def test_roster_keeps_order_and_moves_up(db: Database) -> None:
    async with db.transaction() as conn:
        meetup = await create(conn, draft(capacity=1))
        outcomes = [await signup(conn, meetup, p) for p in (A, B, C)]
        occ = meetup.next_occurrence(NOW)
        assert occ is not None
        before = await store.roster(conn, meetup.id, occ.key, 1)
        after, result = withdraw(before, A)
        await store.save_roster(
            conn, meetup.id, occ.key, before, after, starts_at=occ.start, now=NOW
        )
        reloaded = await store.roster(conn, meetup.id, occ.key, 1)
        rows = await store.signups(conn, meetup.id)
    assert outcomes == ["confirmed", "waitlisted", "waitlisted"]
    assert before == Roster(1, (A,), (B, C))
    assert result.promoted == (B,)
    assert reloaded == Roster(1, (B,), (C,))
    assert [(s.user_id, s.status) for s in rows] == [(B, "confirmed"), (C, "waitlisted")]
    assert all(s.starts_at == occ.start for s in rows)


async def test_reaction_mapping_survives_outbox_purge(db: Database) -> None:
    async with db.transaction() as conn:
        meetup = await create(conn)
        await store.record_message(conn, f"meetup:{meetup.id}:ann:{A}", meetup.id)
        await conn.execute(
            "INSERT INTO outbox (dedup_key, target_kind, target, content, next_attempt_at,"
            " created_at, status, event_id) VALUES (?, 'user', ?, '{}', ?, ?, 'sent', ?)",
            (f"meetup:{meetup.id}:ann:{A}", A, iso(NOW), iso(NOW), "$announce"),
        )
        assert await store.meetup_for_event(conn, "$announce") == meetup.id  # via outbox
        assert await store.meetup_for_event(conn, "$other") is None
        assert await store.copy_event_ids(conn) == 1
        assert await store.copy_event_ids(conn) == 0
        await conn.execute("DELETE FROM outbox")
        assert await store.meetup_for_event(conn, "$announce") == meetup.id  # own copy


async def test_reaction_is_remembered_with_the_signup(db: Database) -> None:
    async with db.transaction() as conn:
        meetup = await create(conn)
        await signup(conn, meetup, A, event="$thumbs_a")
        await signup(conn, meetup, B)
        occ = meetup.next_occurrence(NOW)
        assert occ is not None
        await store.attach_reaction(conn, meetup.id, occ.key, B, "$thumbs_b")
        await store.attach_reaction(conn, meetup.id, occ.key, A, "$second")  # keeps the first
        found_a = await store.signup_by_reaction(conn, "$thumbs_a")
        found_b = await store.signup_by_reaction(conn, "$thumbs_b")
        assert await store.signup_by_reaction(conn, "$second") is None
    assert found_a is not None and found_a.user_id == A and found_a.occurrence == occ.key
    assert found_b is not None and found_b.user_id == B


async def test_single_date_of_series_cancelled_and_moved(db: Database) -> None:
    async with db.transaction() as conn:
        meetup = await create(conn, draft(rrule="FREQ=WEEKLY;BYDAY=TU"))
        first = meetup.next_occurrence(NOW)
        assert first is not None
        await signup(conn, meetup, A)
        second = original_on(meetup.series, date(2027, 1, 19))
        assert second is not None
        moved_to = datetime(2027, 1, 20, 15, 0, tzinfo=TZ)
        meetup = await store.set_exception(
            conn,
            meetup.id,
            occurrence_key(second),
            now=NOW,
            change=OccurrenceChange(start=moved_to),
        )
        meetup = await store.set_exception(
            conn,
            meetup.id,
            occurrence_key(second),
            now=NOW,
            change=OccurrenceChange(location="Raum 2"),
        )
        meetup = await store.set_exception(
            conn, meetup.id, first.key, now=NOW, cancelled=True, reason="Feiertag"
        )
        candidates = await store.reminder_candidates(
            conn, since=NOW, until=NOW + timedelta(days=400)
        )
    assert first.original_start in meetup.series.cancelled
    assert meetup.reasons[first.key] == "Feiertag"
    change = meetup.series.changes[second]
    assert change.start == moved_to.astimezone(UTC) and change.location == "Raum 2"
    occ = meetup.next_occurrence(NOW)
    assert occ is not None and occ.original_start == second and occ.start == moved_to
    assert meetup.occurrence(first.key) is None
    assert meetup.sequence == 3
    assert candidates == []  # A's date was cancelled: no reminders for it


async def test_moving_a_one_off_moves_its_signups(db: Database) -> None:
    async with db.transaction() as conn:
        meetup = await create(conn)
        await signup(conn, meetup, A)
        new_start = datetime(2027, 1, 13, 10, 0, tzinfo=TZ)
        updated = await store.update_meetup(
            conn, meetup.id, {"when": new_start, "location": None, "capacity": 5}, NOW
        )
        rows = await store.signups(conn, meetup.id)
    assert updated.series.first_start == new_start.astimezone(UTC)
    assert updated.location is None and updated.capacity == 5 and updated.sequence == 1
    assert [(s.user_id, s.occurrence, s.starts_at) for s in rows] == [
        (A, occurrence_key(new_start), new_start.astimezone(UTC))
    ]


async def test_reminder_candidates_window_and_records(db: Database) -> None:
    soon = NOW + timedelta(minutes=30)
    async with db.transaction() as conn:
        near = await create(conn, draft(soon.astimezone(TZ)))
        far = await create(conn, draft(NOW.astimezone(TZ) + timedelta(days=5)))
        for meetup in (near, far):
            await signup(conn, meetup, A)
        waiting = await create(conn, draft(soon.astimezone(TZ), capacity=1))
        await signup(conn, waiting, B)
        await signup(conn, waiting, C)  # waiting list: no reminders
        occ_key = occurrence_key(soon)
        key = ReminderKey(near.id, occ_key, 3600)
        assert await store.record_reminder(conn, key, A, "sent", NOW)
        assert not await store.record_reminder(conn, key, A, "started", NOW)
        found = await store.reminder_candidates(conn, since=NOW, until=NOW + timedelta(days=1))
    assert [(c.meetup_id, c.user_id) for c in found] == [(near.id, A), (waiting.id, B)]
    assert found[0].handled == frozenset({3600}) and found[1].handled == frozenset()
    assert found[0].starts_at == soon and found[0].signed_up_at == NOW


async def test_poll_votes_latest_counts(db: Database) -> None:
    options = [datetime(2027, 1, 12, 13, tzinfo=UTC), datetime(2027, 1, 19, 13, tzinfo=UTC)]
    async with db.transaction() as conn:
        poll = await store.create_poll(
            conn, title="Treffen", room_id="!r:stadt.de", created_by=A, options=options, now=NOW
        )
        assert poll.dedup_key == f"meetup-poll:{poll.id}" and poll.is_open
        assert [a for a, _ in poll.options] == ["t1", "t2"]
        assert await store.record_vote(conn, poll.id, A, ["t1"], origin_ts=2000, event_id="$1")
        assert not await store.record_vote(
            conn, poll.id, A, ["t2"], origin_ts=1000, event_id="$0"
        )  # older, arrived late
        assert await store.record_vote(conn, poll.id, B, ["t2"], origin_ts=1500, event_id="$2")
        assert await store.record_vote(conn, poll.id, B, ["t1"], origin_ts=2500, event_id="$3")
        assert await store.record_vote(conn, poll.id, C, [], origin_ts=2600, event_id="$4")
        votes = await store.tally(conn, poll)
        await conn.execute(
            "INSERT INTO outbox (dedup_key, target_kind, target, content, next_attempt_at,"
            " created_at, status, event_id) VALUES (?, 'room', '!r:stadt.de', '{}', ?, ?,"
            " 'sent', '$poll')",
            (poll.dedup_key, iso(NOW), iso(NOW)),
        )
        via_outbox = await store.poll_for_event(conn, "$poll")
        await store.copy_event_ids(conn)
        await conn.execute("DELETE FROM outbox")
        via_copy = await store.poll_for_event(conn, "$poll")
        meetup = await create(conn)
        await store.close_poll(conn, poll.id, meetup.id, NOW)
        closed = await store.get_poll(conn, poll.id)
    assert votes == {"t1": 2, "t2": 0}
    assert via_outbox is not None and via_outbox.id == poll.id
    assert via_copy is not None and via_copy.id == poll.id
    assert closed is not None and not closed.is_open and closed.meetup_id == meetup.id


async def test_forget_person_moves_the_waiting_list_up(db: Database) -> None:
    async with db.transaction() as conn:
        meetup = await create(conn, draft(capacity=1))
        for person in (A, B, C):
            await signup(conn, meetup, person)
        occ = meetup.next_occurrence(NOW)
        assert occ is not None
        await store.record_reminder(conn, ReminderKey(meetup.id, occ.key, 60), A, "sent", NOW)
        forgotten = await store.forget_person(conn, A, NOW)
        after = await store.roster(conn, meetup.id, occ.key, 1)
    assert forgotten.deleted == 2
    assert after == Roster(1, (B,), (C,))
    assert [(s.user_id, s.status, s.occurrence) for s in forgotten.moved_up] == [
        (B, "confirmed", occ.key)
    ]


async def test_forget_person_moves_nobody_up_for_a_date_begun_or_cancelled(
    db: Database,
) -> None:
    """As with a withdrawal: nobody is told "a place has become free" for a date that has
    begun or does not take place; the person's sign-up only goes."""
    async with db.transaction() as conn:
        meetup = await create(conn, draft(capacity=1))
        cancelled = await create(conn, draft(capacity=1))
        for each in (meetup, cancelled):
            for person in (A, B):
                await signup(conn, each, person)
        await store.cancel_meetup(conn, cancelled.id, None, NOW)
        occ = meetup.next_occurrence(NOW)
        assert occ is not None
        forgotten = await store.forget_person(conn, A, occ.start + timedelta(minutes=5))
        rows = await conn.execute_fetchall("SELECT meetup_id, user_id, status FROM meetup_signups")
    assert forgotten.moved_up == []
    assert sorted(tuple(r) for r in rows) == [
        (meetup.id, B, "waitlisted"),
        (cancelled.id, B, "waitlisted"),
    ]


async def test_forget_person_erases_even_from_a_roster_the_bot_would_not_write(
    db: Database,
) -> None:
    """Someone waits although a place is free (a hand-edited database, an old bug): the
    erasure still deletes the sign-up; it only moves nobody up on that date."""
    async with db.transaction() as conn:
        meetup = await create(conn, draft(capacity=1))
        for person in (A, B):
            await signup(conn, meetup, person)
        await conn.execute("UPDATE meetups SET capacity = 3 WHERE id = ?", (meetup.id,))
        forgotten = await store.forget_person(conn, A, NOW)
        rows = await conn.execute_fetchall("SELECT user_id, status FROM meetup_signups")
    assert forgotten.moved_up == []
    assert [tuple(r) for r in rows] == [(B, "waitlisted")]


async def test_forget_person_drops_the_keys_of_their_announcement_copies(db: Database) -> None:
    async with db.transaction() as conn:
        meetup = await create(conn)
        # Matrix IDs that begin with A's are other people, whose 👍 still signs them up.
        longer = (A + "v", A + ".example", A + ":8448")
        for target in (A, B, "!raum:stadt.de", *longer):
            await store.record_message(conn, f"meetup:{meetup.id}:ann:{target}", meetup.id)
            await store.record_message(conn, f"meetup:{meetup.id}:ics:{target}", meetup.id)
        await store.forget_person(conn, A, NOW)
        rows = await conn.execute_fetchall("SELECT dedup_key FROM meetup_messages")
    assert sorted(r[0] for r in rows) == sorted(
        f"meetup:{meetup.id}:{kind}:{target}"
        for kind in ("ann", "ics")
        for target in (B, "!raum:stadt.de", *longer)
    )


async def test_purge_takes_votes_of_polls_left_open_once_every_date_is_past(
    db: Database,
) -> None:
    async with db.transaction() as conn:
        polls = []
        for first in (NOW - timedelta(days=200), NOW - timedelta(days=20)):
            poll = await store.create_poll(
                conn, title="Treffen", room_id="!r:stadt.de", created_by=A,
                options=[first, first + timedelta(days=7)], now=first - timedelta(days=30),
            )  # fmt: skip
            await store.record_vote(conn, poll.id, B, ["t1"], origin_ts=1, event_id=f"$v{first}")
            polls.append(poll)
        await store.purge_personal_data(conn, NOW - timedelta(days=180))
        rows = await conn.execute_fetchall("SELECT poll_id FROM meetup_poll_votes")
    assert [r[0] for r in rows] == [polls[1].id]  # nobody closed either poll


async def test_purge_removes_only_old_dates(db: Database) -> None:
    async with db.transaction() as conn:
        old = await create(conn, draft(NOW.astimezone(TZ) + timedelta(hours=2)))
        new = await create(conn, draft(NOW.astimezone(TZ) + timedelta(days=30)))
        for meetup in (old, new):
            await signup(conn, meetup, A)
        removed = await store.purge_personal_data(conn, NOW + timedelta(days=1))
        left = await store.signups(conn, new.id) + await store.signups(conn, old.id)
    assert removed == 1
    assert [s.meetup_id for s in left] == [new.id]


async def test_invitations_are_recorded_once_and_forgotten_with_the_person(
    db: Database,
) -> None:
    room = "!raum:stadt.de"
    async with db.transaction() as conn:
        meetup = await create(conn)
        other = await create(conn)
        for target_kind, target in (("user", B), ("user", A), ("room", room), ("user", A)):
            await store.record_invitation(conn, meetup.id, target_kind, target, NOW)
        await store.record_invitation(conn, other.id, "user", A, NOW)
        assert await store.invitations(conn, meetup.id) == [
            ("user", A),
            ("user", B),
            ("room", room),
        ]
        forgotten = await store.forget_person(conn, A, NOW)
        assert await store.invitations(conn, meetup.id) == [("user", B), ("room", room)]
        assert await store.invitations(conn, other.id) == []
    assert forgotten.deleted == 2


async def test_purge_removes_invitations_of_finished_and_long_cancelled_meetups(
    db: Database,
) -> None:
    """Invitations go with the meetup's sign-ups: ``signups_days`` after its last date, or
    after it was cancelled; an endless series keeps them while it runs."""
    async with db.transaction() as conn:
        over = await create(conn, draft(NOW.astimezone(TZ) + timedelta(hours=2)))
        coming = await create(conn, draft(NOW.astimezone(TZ) + timedelta(days=30)))
        endless = await create(conn, draft(rrule="FREQ=WEEKLY;BYDAY=TU"))
        cancelled = await create(conn, draft(NOW.astimezone(TZ) + timedelta(days=30)))
        await store.cancel_meetup(conn, cancelled.id, None, NOW)
        for meetup in (over, coming, endless, cancelled):
            await store.record_invitation(conn, meetup.id, "user", A, NOW)
        await store.purge_personal_data(conn, NOW - timedelta(days=1))
        assert len(await conn.execute_fetchall("SELECT 1 FROM meetup_invitations")) == 4
        await store.purge_personal_data(conn, NOW + timedelta(days=1))
        rows = await conn.execute_fetchall(
            "SELECT meetup_id FROM meetup_invitations ORDER BY meetup_id"
        )
    assert [r[0] for r in rows] == [coming.id, endless.id]
