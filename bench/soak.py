"""Soak: mixed traffic at a steady rate for a long time; does anything grow that should not?

The bot runs as its own process (``lotsenbot run``), so its resident memory is its alone,
against a private Synapse on loopback. Staff ask FAQ questions and open requests, pilots
claim and resolve the requests assigned to them, pilots sign up for a meetup and withdraw
again — one action every ``1/--rate`` seconds, each answered before the same person acts
again. Every 10 s the bot's RSS and the database size are sampled (its pages; the files on
disk, WAL included, are recorded as well).

The verdict compares like with like:

* memory: RSS in the second half of the run against the first half's end, and the slope
  (MB per minute) over the second half — a leak keeps climbing, a warm cache does not;
* database: the growth of each table (rows and bytes, from SQLite's ``dbstat``) against the
  rows the traffic added; "beyond the data added" is what the file grew more than its tables
  (free pages the WAL checkpoint could not reuse, for instance).

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 1.0]

Writes ``bench/results/soak.json``. Bounded: the run ends after ``--minutes`` plus a fixed
allowance for set-up, and the bot process is stopped (SIGTERM, then SIGKILL) in any case.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common import ROOT, die_with_parent, password, summary, write_result
from reply_latency import questions
from startup import departments, request_texts

from lotsenbot.devserver import Synapse
from tests.integration.bot import write_config
from tests.integration.helpers import MatrixUser, Received

SETUP_ALLOWANCE_S = 240.0
SAMPLE_EVERY_S = 10.0
ANSWER_TIMEOUT_S = 30.0
FAQ_META = "de.lotsenbot.faq"
TICKET_META = "de.lotsenbot.ticket"
MEETUP_META = "de.lotsenbot.meetup"
STAFF, PILOTS = 12, 6
log = logging.getLogger("bench.soak")


@dataclass
class Person:
    user: MatrixUser
    room: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    signed_up: bool = False


@dataclass
class Tally:
    answered: dict[str, list[float]] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # the chosen person was still waiting for the previous answer


def has_meta(key: str, **expected: Any) -> Any:
    def check(item: Received) -> bool:
        meta = item.content.get(key)
        return isinstance(meta, dict) and all(meta.get(k) == v for k, v in expected.items())

    return check


async def act(person: Person, bot_id: str, text: str, predicate: Any) -> Received:
    person.user.mark()
    await person.user.send_text(person.room, text)
    return await person.user.wait_for_message(
        person.room, sender=bot_id, predicate=predicate, timeout=ANSWER_TIMEOUT_S
    )


# -- the bot process and what it leaves on disk -------------------------------------------------


def bot_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def file_bytes(path: Path) -> int:
    """The database file with its WAL and shared-memory file, as they lie on disk."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def db_bytes(path: Path) -> int:
    """The database's own size (pages × page size, committed WAL pages included): the WAL
    file itself is scratch space SQLite reuses after each checkpoint, not data."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        return pages * int(conn.execute("PRAGMA page_size").fetchone()[0])


def table_stats(path: Path) -> dict[str, dict[str, int]]:
    """Rows and bytes per table (indexes counted with their table), read-only."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        owners = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master"))
        sizes: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            owner = owners.get(name, name)
            sizes[owner] = sizes.get(owner, 0) + int(size)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables}
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    stats = {t: {"rows": rows[t], "bytes": sizes.get(t, 0)} for t in tables}
    stats["(free pages)"] = {"rows": 0, "bytes": free * page}
    return stats


def start_bot(folder: Path, config: Path) -> subprocess.Popen[bytes]:
    log_file = (folder / "bot.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "lotsenbot", "run", "--config", str(config)],
        cwd=folder,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=die_with_parent(os.getpid()),
    )


def stop_bot(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def load_starter_kb(db_path: Path, known: set[str]) -> int:
    """The shipped starter knowledge base, as ``load_starter_kb`` of the FAQ puts it in."""
    from lotsenbot.faq import kb, store
    from lotsenbot.storage.db import Database
    from lotsenbot.storage.migrate import migrate

    db = Database(db_path)
    await db.open()
    try:
        await migrate(db)
        entries = [
            e if e.department in known else e.model_copy(update={"department": None})
            for e in kb.load_starter_kb()
        ]
        async with db.transaction() as conn:
            await store.import_entries(
                conn, entries, replace=False, now=datetime.now(UTC), actor="starter"
            )
        return len(entries)
    finally:
        await db.close()


# -- traffic -------------------------------------------------------------------------------------


class Traffic:
    def __init__(
        self, bot_id: str, staff: list[Person], pilots: list[Person], meetup: int, seed: int
    ) -> None:
        self.bot_id = bot_id
        self.staff, self.pilots = staff, pilots
        self.meetup = meetup
        self.rng = random.Random(seed)
        self.questions = questions()
        self.requests = request_texts()
        self.by_user = {p.user.user_id: p for p in pilots}
        self.queue: deque[tuple[str, int, str]] = deque()  # (pilot, ticket, next step)
        self.tally = Tally()
        self.tasks: set[asyncio.Task[None]] = set()

    def pick(self) -> tuple[str, Person, str, Any]:
        """The next action: (kind, person, text, what the answer must look like)."""
        roll = self.rng.random()
        if roll < 0.15 and self.queue:
            pilot_id, ticket, step = self.queue.popleft()
            pilot = self.by_user[pilot_id]
            if step == "claim":
                return (
                    "claim",
                    pilot,
                    f"!übernehmen {ticket}",
                    has_meta(TICKET_META, id=ticket, event="claimed"),
                )
            return (
                "resolve",
                pilot,
                f"!erledigt {ticket} Erledigt, danke!",
                has_meta(TICKET_META, id=ticket, event="resolved"),
            )
        if roll < 0.30:
            pilot = self.rng.choice(self.pilots)
            word = "absage" if pilot.signed_up else "zusage"
            return (f"signup-{word}", pilot, f"!{word} {self.meetup}", self._signup_answer)
        if roll < 0.45:
            person = self.rng.choice(self.staff)
            text = self.rng.choice(self.requests)
            return ("request", person, f"!anfrage {text}", has_meta(TICKET_META, event="created"))
        person = self.rng.choice(self.staff + self.pilots)
        return ("question", person, self.rng.choice(self.questions), has_meta(FAQ_META))

    def _signup_answer(self, item: Received) -> bool:
        """The bot's answer to a sign-up or withdrawal for our meetup (not its announcement)."""
        meta = item.content.get(MEETUP_META) or {}
        return bool(meta.get("id") == self.meetup and meta.get("event") != "created")

    async def one(self) -> None:
        kind, person, text, predicate = self.pick()
        if person.lock.locked():
            self.tally.skipped += 1
            return
        async with person.lock:
            started = time.perf_counter()
            try:
                answer = await act(person, self.bot_id, text, predicate)
            except (TimeoutError, RuntimeError):
                self.tally.lost[kind] = self.tally.lost.get(kind, 0) + 1
                return
            self.tally.answered.setdefault(kind, []).append(time.perf_counter() - started)
        if kind.startswith("signup"):
            person.signed_up = kind == "signup-zusage"
        elif kind == "request":
            meta = answer.content[TICKET_META]
            if meta.get("assignee") in self.by_user:
                self.queue.append((meta["assignee"], int(meta["id"]), "claim"))
        elif kind == "claim":
            self.queue.append(
                (person.user.user_id, int(answer.content[TICKET_META]["id"]), "resolve")
            )

    async def run(self, seconds: float, rate: float) -> None:
        """Start one action every 1/rate seconds (open loop: slow answers do not slow it)."""
        started = time.monotonic()
        for n in itertools.count():
            due = started + n / rate
            if due - started >= seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(self.one())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=ANSWER_TIMEOUT_S + 5)


# -- the run --------------------------------------------------------------------------------------


def slope_mb_per_min(samples: list[dict[str, float]]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 3:
        return float("nan")
    xs = [s["t_s"] / 60 for s in samples]
    ys = [s["rss_mb"] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den, 3)


def sample(pid: int, db_path: Path, started: float) -> dict[str, float]:
    return {
        "t_s": round(time.monotonic() - started, 1),
        "rss_mb": bot_rss_mb(pid),
        "db_mb": round(db_bytes(db_path) / 1e6, 3),
        "files_mb": round(file_bytes(db_path) / 1e6, 3),
    }


async def sampler(
    pid: int, db_path: Path, started: float, out: list[dict[str, float]], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        out.append(sample(pid, db_path, started))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


async def setup_people(server: Synapse, bot_id: str, names: list[str]) -> list[Person]:
    async def one(name: str) -> Person:
        secret = password()
        user = MatrixUser(
            server.url, await server.register(name, secret), secret, sync_timeout_ms=10_000
        )
        await user.login()
        person = Person(user)
        person.room = await user.create_dm(bot_id)
        await user.wait_for_join(person.room, bot_id, timeout=60)
        return person

    return list(await asyncio.gather(*(one(n) for n in names)))


async def measure(minutes: float, rate: float, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lotsenbench-soak-") as tmp:
        folder = Path(tmp)
        async with Synapse(folder / "synapse", extra_config={"bcrypt_rounds": 4}) as server:
            secret = password()
            bot_id = await server.register("lotsenbot", secret)
            pilot_ids = [server.user_id(f"lotsin{i}") for i in range(PILOTS)]
            coordinator_id = server.user_id("koordination")
            depts = departments()
            for i, dept in enumerate(depts):  # our pilots, two departments each at most
                dept["pilots"] = [pilot_ids[i % PILOTS], pilot_ids[(i + 1) % PILOTS]]
                dept.pop("room", None)
            config = write_config(
                folder / "config.toml",
                {
                    "matrix": {
                        "homeserver": server.url,
                        "user_id": bot_id,
                        "password": secret,
                        "store_path": "store",
                    },
                    "database": {"path": "bot.db"},
                    "bot": {"coordinators": [coordinator_id]},
                    "logging": {"level": "WARNING"},
                    "departments": depts,
                },
            )
            db_path = folder / "bot.db"
            kb_entries = await load_starter_kb(db_path, {d["id"] for d in depts})
            process = start_bot(folder, config)
            people: list[Person] = []
            try:
                staff = await setup_people(
                    server, bot_id, [f"mitarbeiterin{i}" for i in range(STAFF)]
                )
                pilots = await setup_people(server, bot_id, [f"lotsin{i}" for i in range(PILOTS)])
                [coordinator] = await setup_people(server, bot_id, ["koordination"])
                people = [*staff, *pilots, coordinator]
                day = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=60)).date()
                created = await act(
                    coordinator,
                    bot_id,
                    f"!treffen neu {day:%d.%m.%Y} 14:00 Lotsentreffen (Soak)",
                    has_meta(MEETUP_META, event="created"),
                )
                meetup = int(created.content[MEETUP_META]["id"])
                traffic = Traffic(bot_id, staff, pilots, meetup, seed)
                await traffic.run(30, rate)  # warm-up: caches filled, first tickets open
                await asyncio.sleep(3)
                warm_tally, traffic.tally = traffic.tally, Tally()
                before = table_stats(db_path)
                samples: list[dict[str, float]] = []
                stop = asyncio.Event()
                started = time.monotonic()
                sampling = asyncio.create_task(
                    sampler(process.pid, db_path, started, samples, stop)
                )
                await traffic.run(minutes * 60, rate)
                await asyncio.sleep(3)  # last replies and their bookkeeping
                stop.set()
                await sampling
                samples.append(sample(process.pid, db_path, started))
                after = table_stats(db_path)
                alive = process.poll() is None
            finally:
                for person in people:
                    with contextlib.suppress(Exception):
                        await person.user.close()
                stop_bot(process)
    return report(
        minutes, rate, kb_entries, samples, before, after, traffic.tally, warm_tally, alive
    )


def report(
    minutes: float,
    rate: float,
    kb_entries: int,
    samples: list[dict[str, float]],
    before: dict[str, dict[str, int]],
    after: dict[str, dict[str, int]],
    tally: Tally,
    warm: Tally,
    alive: bool,
) -> dict[str, Any]:
    half = [s for s in samples if s["t_s"] >= samples[-1]["t_s"] / 2]
    first, mid, last = samples[0], half[0], samples[-1]
    tables = {
        name: {
            "rows_added": after[name]["rows"] - before.get(name, {"rows": 0})["rows"],
            "bytes_added": after[name]["bytes"] - before.get(name, {"bytes": 0})["bytes"],
        }
        for name in after
    }
    grown = {k: v for k, v in tables.items() if v["rows_added"] or v["bytes_added"]}
    table_bytes = sum(v["bytes_added"] for k, v in tables.items() if k != "(free pages)")
    file_growth = round((last["db_mb"] - first["db_mb"]) * 1e6)
    actions = {k: len(v) for k, v in tally.answered.items()}
    return {
        "minutes": minutes,
        "rate_per_s": rate,
        "faq_entries": kb_entries,
        "actions": actions,
        "actions_total": sum(actions.values()),
        "lost": tally.lost,
        "skipped_busy": tally.skipped,
        "latency": {k: summary(v) for k, v in tally.answered.items()},
        "warm_up_actions": sum(len(v) for v in warm.answered.values()),
        "bot_alive_at_end": alive,
        "rss_mb": {
            "start": first["rss_mb"],
            "middle": mid["rss_mb"],
            "end": last["rss_mb"],
            "max": max(s["rss_mb"] for s in samples),
            "slope_second_half_mb_per_min": slope_mb_per_min(half),
        },
        "db_mb": {"start": first["db_mb"], "end": last["db_mb"]},
        "files_mb": {
            "start": first["files_mb"],
            "end": last["files_mb"],
            "max": max(s["files_mb"] for s in samples),
        },
        "db_growth": {
            "file_bytes": file_growth,
            "tables_bytes": table_bytes,
            "beyond_tables_bytes": file_growth - table_bytes,
            "per_action_bytes": round(file_growth / max(1, sum(actions.values()))),
            "tables": grown,
        },
        "samples": samples,
    }


def run(minutes: float = 30, rate: float = 1.0, seed: int = 7) -> dict[str, Any]:
    budget = minutes * 60 + SETUP_ALLOWANCE_S
    result = asyncio.run(asyncio.wait_for(measure(minutes, rate, seed), budget))
    write_result("soak", result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=1.0, help="actions per second")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("nio", "aiohttp", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    result = run(args.minutes, args.rate, args.seed)
    print({k: result[k] for k in ("minutes", "actions_total", "lost", "rss_mb", "db_mb")})
    print(result["db_growth"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
