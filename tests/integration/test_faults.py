"""Faults the bot must survive without losing or doubling a message, against a real Synapse.

Each scenario counts questions and answers from the users' side and cross-checks them with
the bot's own outbox (which records the event id Synapse gave every answer): an answer in a
room that the outbox does not know, or two answers for one outbox row, is a duplicate; a
question without a delivered answer is a loss. The figures go to the reliability report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lotsenbot.app import default_features
from lotsenbot.core.context import Context
from lotsenbot.core.feature import Feature
from lotsenbot.core.types import Incoming
from lotsenbot.devserver import Synapse
from tests.integration.bot import BotRunner, bot_sections, make_bot, open_dm, write_config
from tests.integration.conftest import Account
from tests.integration.helpers import MatrixUser

ASYNC = pytest.mark.asyncio(loop_scope="session")

FAQ_QUESTIONS = (
    "Wie setze ich mein Passwort zurück?",
    "Wo beantrage ich einen VPN-Zugang für das Homeoffice?",
    "Wie richte ich die Zwei-Faktor-Anmeldung ein?",
    "Wer hilft mir bei Problemen mit dem Drucker?",
    "Wie kann ich eine E-Akte anlegen?",
)


def has_faq() -> bool:
    """The burst sends FAQ questions once the FAQ feature is part of the build."""
    return any(feature.name == "faq" for feature in default_features())


def questions(count: int) -> list[str]:
    if has_faq():
        return [FAQ_QUESTIONS[n % len(FAQ_QUESTIONS)] for n in range(count)]
    return ["!hilfe"] * count


# The bot's own encryption bookkeeping is not under test here.
NO_CROSS_SIGNING = {"cross_signing": False}


def read_db(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Read the bot's database from outside, the way an admin's sqlite3 shell would."""
    conn = sqlite3.connect(path, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float,
                     what: str, interval: float = 0.1) -> None:  # fmt: skip
    """Poll until ``check`` holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(interval)


def delivery_check(
    db_path: Path,
    rooms: dict[str, MatrixUser],
    bot_id: str,
    question_ids: dict[str, str],
    marks: dict[str, int],
) -> dict[str, int]:
    """Compare what people saw with what the outbox says was sent; return loss/dup counts.

    ``question_ids`` maps each question's event id to its room. A question counts as
    answered when at least one outbox row derived from it was delivered and its event is in
    the room; any bot event in a room beyond the outbox rows of that room is a duplicate.
    """
    answered = lost = duplicated = 0
    for room_id, person in rooms.items():
        seen = [m.event_id for m in person.messages(room_id, since=marks[room_id])
                if m.sender == bot_id]  # fmt: skip
        rows = read_db(db_path, "SELECT event_id FROM outbox WHERE room_id = ? AND"
                       " status = 'sent'", (room_id,))  # fmt: skip
        recorded = [r["event_id"] for r in rows]
        duplicated += len(seen) - len(set(seen)) + len(set(seen) - set(recorded))
        for question, room in question_ids.items():
            if room != room_id:
                continue
            replies = read_db(db_path, "SELECT event_id FROM outbox WHERE dedup_key LIKE ?"
                              " AND status = 'sent'", (f"evt:{question}:%",))  # fmt: skip
            if replies and all(r["event_id"] in seen for r in replies):
                answered += 1
            else:
                lost += 1
    return {"answered": answered, "lost": lost, "duplicated": duplicated}


# ------------------------------------------------------------------------- SIGKILL in a burst


async def spawn_bot(config: Path, log_file: Path) -> asyncio.subprocess.Process:
    """The real `lotsenbot run`; its log goes to a file so a full pipe never blocks it."""
    with log_file.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lotsenbot", "run", "--config", str(config),
            stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


@ASYNC
async def test_sigkill_during_burst_answers_every_message_once(
    tmp_path, synapse, register_user, make_user, reliability
):
    account = await register_user("lotsenbot")
    bot_id = account.user_id
    folder = tmp_path / "bot"
    folder.mkdir()
    config = write_config(folder / "config.toml", bot_sections(
        synapse, account, departments=(), matrix=NO_CROSS_SIGNING))  # fmt: skip
    db_path = folder / "bot.db"
    log_file = folder / "bot.log"
    process = await spawn_bot(config, log_file)
    try:
        people = list(await asyncio.gather(*(make_user("burst") for _ in range(20))))
        room_list = await asyncio.gather(*(open_dm(p, bot_id, timeout=20) for p in people))
        rooms = dict(zip(room_list, people, strict=True))
        marks = {room: person.mark() for room, person in rooms.items()}
        texts = questions(5)
        question_ids: dict[str, str] = {}

        async def ask(room: str, person: MatrixUser) -> None:
            for text in texts:
                question_ids[await person.send_text(room, text)] = room

        burst = asyncio.gather(*(ask(room, person) for room, person in rooms.items()))

        def some_sent() -> bool:
            return read_db(db_path, "SELECT count(*) AS n FROM outbox WHERE status = 'sent'")[0][
                "n"] >= 15  # fmt: skip

        await eventually(some_sent, 60, "the bot starts answering the burst", interval=0.02)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        await burst
        assert len(question_ids) == 100
        sent_at_kill = read_db(db_path, "SELECT count(*) AS n FROM outbox WHERE status = 'sent'"
                               " AND dedup_key LIKE 'evt:%'")[0]["n"]  # fmt: skip
        stored = {r["event_id"]: r["status"] for r in read_db(db_path, "SELECT event_id, status"
                                                               " FROM inbox")}  # fmt: skip
        unfinished_at_kill = 100 - sum(
            1 for q in question_ids
            if stored.get(q) == "done" and read_db(db_path,
               "SELECT 1 FROM outbox WHERE dedup_key LIKE ? AND status = 'sent'", (f"evt:{q}:%",))
        )  # fmt: skip
        assert unfinished_at_kill > 0, "the burst was over before the kill: nothing tested"
        # The crash window the transaction id exists for: sent, but not yet marked sent.
        # Turn five delivered rows back into that state; Synapse must drop the resend.
        resent = {
            r["id"]: r["event_id"]
            for r in read_db(
                db_path, "SELECT id, event_id FROM outbox WHERE status = 'sent' ORDER BY id LIMIT 5"
            )
        }
        conn = sqlite3.connect(db_path)
        with conn:
            conn.executemany("UPDATE outbox SET status = 'pending', event_id = NULL WHERE id = ?",
                             [(row_id,) for row_id in resent])  # fmt: skip
        conn.close()

        process = await spawn_bot(config, log_file)

        def all_done() -> bool:
            handled = read_db(db_path, "SELECT count(*) AS n FROM inbox WHERE status = 'done'"
                              f" AND event_id IN ({','.join('?' * len(question_ids))})",
                              tuple(question_ids))[0]["n"]  # fmt: skip
            pending = read_db(db_path, "SELECT count(*) AS n FROM outbox WHERE status != 'sent'")
            return handled == 100 and pending[0]["n"] == 0

        await eventually(all_done, 90, "all 100 questions handled and answered after restart")

        def everyone_saw_everything() -> bool:
            for room, person in rooms.items():
                rows = read_db(db_path, "SELECT count(*) AS n FROM outbox WHERE room_id = ?",
                               (room,))  # fmt: skip
                seen = [m for m in person.messages(room, since=marks[room]) if m.sender == bot_id]
                if len(seen) < rows[0]["n"]:
                    return False
            return True

        await eventually(everyone_saw_everything, 30, "every answer reached its asker")
        await asyncio.sleep(1.5)  # room for a late duplicate to show up
        counts = delivery_check(db_path, rooms, bot_id, question_ids, marks)
        assert counts == {"answered": 100, "lost": 0, "duplicated": 0}, counts
        again = {r["id"]: r["event_id"] for r in read_db(
            db_path, f"SELECT id, event_id FROM outbox WHERE id IN ({','.join('?' * len(resent))})",
            tuple(resent))}  # fmt: skip
        assert again == resent  # the homeserver recognised the transaction ids
        if not has_faq():
            for room, person in rooms.items():
                seen = [m for m in person.messages(room, since=marks[room]) if m.sender == bot_id]
                assert len(seen) == 5
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
        assert process.returncode == 0
        log_text = log_file.read_text("utf-8", errors="replace")
        assert "Traceback" not in log_text, log_text[-3000:]
        reliability.record(
            "sigkill_burst", kind="fault",
            title="SIGKILL mitten in 100 Nachrichten von 20 Personen, Neustart",
            messages=100, unfinished_at_kill=unfinished_at_kill, sent_at_kill=sent_at_kill,
            resends_deduplicated=len(resent), **counts,
        )  # fmt: skip
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# ------------------------------------------------------------------------- homeserver outage


class Slow(Feature):
    """A hidden test command that takes three seconds, so a reply is still due when the
    homeserver goes away. Reuses the core texts (``name = "core"``)."""

    name = "core"

    def __init__(self) -> None:
        super().__init__()
        self.router.command("langsam", hidden=True, help_key="core.cmd.hilfe")(self._slow)

    async def _slow(self, ctx: Context, args: str) -> None:
        await asyncio.sleep(3.0)
        ctx.reply("fertig")


OUTAGE_SECONDS = 30.0


@ASYNC
async def test_homeserver_outage_reconnects_and_answers(tmp_path, caplog, reliability):
    caplog.set_level(logging.INFO, logger="lotsenbot")
    server = Synapse(tmp_path / "hs")
    await server.start()
    password = secrets.token_urlsafe(12)
    bot_id = await server.register("lotsenbot", password)
    staff_id = await server.register("staff", password)
    staff = MatrixUser(server.url, staff_id, password)
    account = Account("lotsenbot", bot_id, password)
    sections = bot_sections(server, account, departments=(), matrix=NO_CROSS_SIGNING)
    runner = BotRunner(tmp_path / "bot", sections)
    try:
        await staff.login()
        app = await runner.start(features=[*default_features(), Slow()])
        room = await open_dm(staff, bot_id, timeout=20)
        mark = staff.mark()
        busy = [await staff.send_text(room, "!langsam") for _ in range(2)]

        async def accepted() -> bool:
            rows = await app.db.fetchall(
                "SELECT event_id FROM inbox WHERE event_id IN (?, ?)", tuple(busy)
            )
            return len(rows) == 2

        await eventually(accepted, 10, "the bot stored both slow questions")
        down_at = time.monotonic()
        await server.stop()
        unsent = await app.db.fetchall(
            "SELECT count(*) AS n FROM outbox WHERE status = 'sent' AND dedup_key LIKE ?",
            (f"evt:{busy[1]}:%",),
        )
        assert unsent[0]["n"] == 0  # the second answer is due while the server is down
        failures_before = _sync_failures(caplog)
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        outage = time.monotonic() - down_at
        sync_attempts = _sync_failures(caplog) - failures_before
        send_attempts = sum("Senden von" in r.getMessage() for r in caplog.records)
        await server.start()
        back_at = time.monotonic()
        # Sent while the bot is still waiting out its backoff.
        after = await staff.send_text(room, "!hilfe")
        replies = []
        for _ in range(3):
            replies.append(await staff.wait_for_message(room, sender=bot_id, timeout=75))
        reconnected_after = time.monotonic() - back_at
        await asyncio.sleep(1.5)
        seen = [m for m in staff.messages(room, since=mark) if m.sender == bot_id]
        assert len(seen) == 3, [m.body[:40] for m in seen]
        assert [m.body for m in seen[:2]] == ["fertig", "fertig"]
        assert "de.lotsenbot.help" in seen[2].content
        assert runner._task is not None and not runner._task.done()  # never gave up
        # Backoff, not a hot loop: a few attempts over the whole outage.
        assert 2 <= sync_attempts <= 12, sync_attempts
        assert send_attempts <= 7 * len(busy), send_attempts
        rows = {q: await app.db.fetchall("SELECT event_id FROM outbox WHERE dedup_key LIKE ?",
                                         (f"evt:{q}:%",)) for q in [*busy, after]}  # fmt: skip
        assert sorted(r[0]["event_id"] for r in rows.values()) == sorted(m.event_id for m in seen)
        reliability.record(
            "homeserver_outage", kind="fault",
            title=f"Homeserver {OUTAGE_SECONDS:.0f} s gestoppt, Antworten offen und Fragen danach",
            messages=3, answered=3, lost=0, duplicated=0, outage_seconds=round(outage, 1),
            sync_attempts_during_outage=sync_attempts, send_attempts_during_outage=send_attempts,
            answered_within_seconds_after_restart=round(reconnected_after, 1),
        )  # fmt: skip
    finally:
        await runner.stop()
        await staff.close()
        await server.stop()


def _sync_failures(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        r.name == "lotsenbot.matrix.transport" and r.getMessage().startswith("Sync")
        for r in caplog.records
    )


# ------------------------------------------------------------------------- rate limits


async def override_rate_limit(synapse: Synapse, admin_token: str, user_id: str,
                              per_second: int, burst: int) -> None:  # fmt: skip
    """Synapse's admin API: a message rate limit for this one account only."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{synapse.url}/_synapse/admin/v1/users/{user_id}/override_ratelimit",
            json={"messages_per_second": per_second, "burst_count": burst},
            headers={"Authorization": f"Bearer {admin_token}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()


@ASYNC
async def test_rate_limited_bot_answers_all_once(tmp_path, synapse, register_user, make_user,
                                                caplog, reliability):  # fmt: skip
    caplog.set_level(logging.INFO, logger="lotsenbot")
    admin = await register_user("admin", admin=True)
    admin_token, _ = await synapse.login(admin.localpart, admin.password)
    runner = await make_bot(tmp_path, synapse, register_user, departments=(),
                            matrix=NO_CROSS_SIGNING)  # fmt: skip
    bot_id = runner.config.matrix.user_id
    app = await runner.start()
    try:
        people = [await make_user("eilig") for _ in range(2)]
        rooms = {await open_dm(p, bot_id, timeout=20): p for p in people}
        marks = {room: person.mark() for room, person in rooms.items()}
        await override_rate_limit(synapse, admin_token, bot_id, per_second=1, burst=2)
        question_ids: dict[str, str] = {}
        started = time.monotonic()
        for _ in range(4):
            for room, person in rooms.items():
                question_ids[await person.send_text(room, "!hilfe")] = room
        for room, person in rooms.items():
            for _ in range(4):
                await person.wait_for_message(room, sender=bot_id, timeout=60)
        duration = time.monotonic() - started
        await asyncio.sleep(1.5)
        counts = delivery_check(app.config.database.path, rooms, bot_id, question_ids, marks)
        assert counts == {"answered": 8, "lost": 0, "duplicated": 0}, counts
        pauses = [
            float(m.group(1))
            for r in caplog.records
            if (m := re.search(r"Ratenbegrenzung: Pause für ([\d.]+) s", r.getMessage()))
        ]
        assert pauses, "the homeserver never rate-limited the bot: the test proves nothing"
        # retry_after_ms from Synapse at 1 message/s is at most about a second.
        assert all(0 < p <= 2.0 for p in pauses), pauses
        # Honouring the pauses paces the answers: 8 messages, 2 at once, then 1 per second.
        assert duration >= 4.0, duration
        # And it does not hammer the server: about one refusal per paced message.
        assert len(pauses) <= 16, pauses
        reliability.record(
            "rate_limit", kind="fault",
            title="Ratenbegrenzung des Bot-Kontos (1 Nachricht/s, Burst 2)",
            messages=8, rate_limit_pauses=len(pauses), seconds=round(duration, 1), **counts,
        )  # fmt: skip
    finally:
        await override_rate_limit(synapse, admin_token, bot_id, per_second=0, burst=0)
        await runner.stop()


# ------------------------------------------------------------------------- database locked


class ExternalLock:
    """Another connection holding ``BEGIN EXCLUSIVE`` on the bot's database, as a backup tool
    or an admin's sqlite3 shell might, for longer than the bot's busy timeout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = 0
        self._release: asyncio.Task[None] | None = None

    async def hold(self, seconds: float) -> None:
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
        await asyncio.to_thread(conn.execute, "BEGIN EXCLUSIVE")
        self.held += 1

        async def release() -> None:
            await asyncio.sleep(seconds)
            await asyncio.to_thread(conn.execute, "ROLLBACK")
            conn.close()

        self._release = asyncio.create_task(release())

    async def released(self) -> None:
        if self._release is not None:
            await self._release


@ASYNC
async def test_locked_database_delays_but_never_loses_or_doubles(
    tmp_path, synapse, register_user, make_user, monkeypatch, caplog, reliability
):
    # A short busy timeout makes a two-second lock a failure instead of a wait.
    monkeypatch.setattr("lotsenbot.storage.db.BUSY_TIMEOUT_MS", 300)
    caplog.set_level(logging.INFO, logger="lotsenbot")
    runner = await make_bot(tmp_path, synapse, register_user, departments=(),
                            matrix=NO_CROSS_SIGNING)  # fmt: skip
    bot_id = runner.config.matrix.user_id
    app = await runner.start()
    assert app.dispatcher is not None and app.transport is not None
    lock = ExternalLock(app.config.database.path)
    staff = await make_user("staff")
    try:
        room = await open_dm(staff, bot_id, timeout=20)
        mark = staff.mark()
        question_ids: dict[str, str] = {}

        # 1. Locked between the inbox and the handler: the event stays pending, is retried.
        original_handle = app.dispatcher.handle
        armed = {"handler": True, "sender": False}

        async def handle(incoming: Incoming, attempts: int = 0) -> None:
            if armed["handler"] and incoming.kind == "message":
                armed["handler"] = False
                await lock.hold(2.0)
            await original_handle(incoming, attempts)

        monkeypatch.setattr(app.dispatcher, "handle", handle)
        question_ids[await staff.send_text(room, "!hilfe")] = room
        await staff.wait_for_message(room, sender=bot_id, timeout=20)
        await lock.released()

        # 2. Locked right after Synapse took the answer, before it is marked sent: the
        #    sender must survive and its resend must be dropped by the homeserver.
        client = app.transport.client
        original_send = client.room_send

        async def room_send(*args: Any, **kwargs: Any) -> Any:
            response = await original_send(*args, **kwargs)
            if armed["sender"]:
                armed["sender"] = False
                await lock.hold(2.0)
            return response

        monkeypatch.setattr(client, "room_send", room_send)
        armed["sender"] = True
        second = await staff.send_text(room, "!hilfe")
        question_ids[second] = room
        await staff.wait_for_message(room, sender=bot_id, timeout=20)
        await lock.released()

        # 3. Locked while a new message arrives: storing the sync batch has to wait.
        await lock.hold(2.0)
        question_ids[await staff.send_text(room, "!hilfe")] = room
        await staff.wait_for_message(room, sender=bot_id, timeout=20)
        await lock.released()

        async def settled() -> bool:
            rows = await app.db.fetchall("SELECT count(*) AS n FROM outbox WHERE status != 'sent'")
            return rows[0]["n"] == 0

        await eventually(settled, 20, "every answer marked as sent")
        await asyncio.sleep(1.5)
        counts = delivery_check(app.config.database.path, {room: staff}, bot_id,
                                question_ids, {room: mark})  # fmt: skip
        assert counts == {"answered": 3, "lost": 0, "duplicated": 0}, counts
        assert len([m for m in staff.messages(room, since=mark) if m.sender == bot_id]) == 3
        messages = [r.getMessage() for r in caplog.records]
        assert any("Datenbank nicht verfügbar bei" in m for m in messages)  # 1: dispatcher
        assert any(m.startswith("Postausgang: Datenbank") for m in messages)  # 2: sender
        assert any("Datenbank nicht verfügbar (Sync" in m for m in messages)  # 3: sync batch
        assert runner._task is not None and not runner._task.done()
        reliability.record(
            "database_locked", kind="fault",
            title="Datenbank von außen gesperrt (vor dem Handler, nach dem Senden, beim Sync)",
            messages=3, locks=lock.held, **counts,
        )  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            await lock.released()
        await runner.stop()


# ------------------------------------------------------------------------- limited timeline


@ASYNC
async def test_backlog_beyond_the_timeline_limit_is_answered_once(
    tmp_path, synapse, register_user, make_user, reliability
):
    """While the bot is down, more messages arrive in one room than its sync timeline holds
    (100): the homeserver returns a "limited" timeline and the rest must be fetched."""
    runner = await make_bot(tmp_path, synapse, register_user, departments=(),
                            matrix=NO_CROSS_SIGNING)  # fmt: skip
    bot_id = runner.config.matrix.user_id
    await runner.start()
    staff = await make_user("staff")
    try:
        room = await open_dm(staff, bot_id, timeout=20)
        await runner.stop()
        mark = staff.mark()
        question_ids = {await staff.send_text(room, "!hilfe hilfe"): room for _ in range(130)}
        app = await runner.start()
        for _ in range(130):
            await staff.wait_for_message(room, sender=bot_id, timeout=60)
        await asyncio.sleep(1.5)
        counts = delivery_check(app.config.database.path, {room: staff}, bot_id, question_ids,
                                {room: mark})  # fmt: skip
        assert counts == {"answered": 130, "lost": 0, "duplicated": 0}, counts
        assert len([m for m in staff.messages(room, since=mark) if m.sender == bot_id]) == 130
        reliability.record(
            "limited_timeline", kind="fault",
            title="130 Nachrichten in einem Raum, während der Bot gestoppt war (Sync-Limit 100)",
            **{"messages": 130, **counts},
        )  # fmt: skip
    finally:
        await runner.stop()
