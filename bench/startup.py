"""Start-up: from ``App.start()`` to the first completed sync, with a full database.

The database holds 10,000 FAQ entries (written through the FAQ store, as an import would)
and 100,000 past requests (resolved, each with its history: created, assigned, claimed,
reply, resolved), spread over the last 170 days, so no retention period has removed them.
The bot then starts in a fresh Python process — its resident memory is its own — once on a
new device (first start: login, keys, cross-signing) and then ``--restarts`` times on the
same device and database (the everyday case, and the headline figure).

Baselines in the same run and against the same homeserver:

* the echo bot (``echo_bot.py``) in its own process: login and first sync, and its memory —
  what any Matrix bot pays;
* lotsenbot with an empty database: what the data costs.

Each child reports where its time went (database and migrations, each feature's start,
login, the first sync) and when the FAQ index, which the FAQ feature builds in a worker thread
while the bot logs in and syncs, was ready. ``--profile`` adds a cProfile summary of one
restart.

    .venv/bin/python bench/startup.py [--faq 10000] [--tickets 100000] [--restarts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import ROOT, password, scrub_paths, write_result

from lotsenbot.core.clock import iso
from lotsenbot.devserver import Synapse

BENCH = ROOT / "bench"
CHILD_BUDGET = 90.0  # seconds a single start may take before the child gives up
TARGETS = {"start_to_ready_s": 3.0, "rss_mb": 200.0}
SPAWNED_AT = "LOTSENBENCH_SPAWNED_AT"  # wall clock of the spawn, for the child
PILOT_REPLY = "Danke für Ihre Anfrage – ich habe das erledigt. Bitte probieren Sie es erneut."
REQUEST_TEXTS_FALLBACK = ["Mein Drucker im 2. OG druckt nicht mehr, was kann ich tun?"]


# -- the database ------------------------------------------------------------------------------


def departments() -> list[dict[str, Any]]:
    """The departments of the routing evaluation: a realistic mid-sized town."""
    path = ROOT / "tests" / "data" / "routing_eval" / "departments.toml"
    return list(tomllib.loads(path.read_text("utf-8"))["departments"])


def request_texts() -> list[str]:
    """Real request wording from the routing evaluation set, for ticket bodies."""
    import yaml

    texts: list[str] = []
    for split in ("dev", "heldout"):
        path = ROOT / "tests" / "data" / "routing_eval" / f"{split}.yaml"
        if path.exists():
            texts += [str(item["text"]) for item in yaml.safe_load(path.read_text("utf-8"))]
    return texts or REQUEST_TEXTS_FALLBACK


async def fill_faq(db_path: Path, count: int, seed: int) -> None:
    """``count`` synthetic entries through the FAQ store (one import transaction)."""
    sys.path.insert(0, str(BENCH))
    from faq_engine import synthetic_kb

    from lotsenbot.faq import store
    from lotsenbot.storage.db import Database
    from lotsenbot.storage.migrate import migrate

    db = Database(db_path)
    await db.open()
    try:
        await migrate(db)
        entries = synthetic_kb(count, seed) if count else []
        async with db.transaction() as conn:
            await store.import_entries(
                conn, entries, replace=False, now=datetime.now(UTC), actor="cli:bench"
            )
    finally:
        await db.close()


def fill_tickets(db_path: Path, count: int, seed: int, depts: list[dict[str, Any]]) -> None:
    """``count`` resolved requests with their events, inserted directly (migration 0003)."""
    rng = random.Random(seed)
    texts = request_texts()
    now = datetime.now(UTC)
    people = [f"@mitarbeitende{i:04d}:stadt.example" for i in range(2000)]
    rooms = {person: f"!dm{i:04d}:stadt.example" for i, person in enumerate(people)}
    bot = "@lotsenbot:stadt.example"
    tickets: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    for ticket_id in range(1, count + 1):
        department = rng.choice(depts)
        pilot = rng.choice(department["pilots"])
        requester = rng.choice(people)
        created = now - timedelta(days=170) + timedelta(seconds=rng.uniform(0, 169 * 86400))
        claimed = created + timedelta(minutes=rng.uniform(5, 600))
        answered = claimed + timedelta(minutes=rng.uniform(5, 1440))
        resolved = answered + timedelta(minutes=rng.uniform(10, 4320))
        body = rng.choice(texts)
        tickets.append(
            (
                ticket_id,
                requester,
                rooms[requester],
                body,
                rng.choice(("command", "faq")),
                department["id"],
                pilot,
                "resolved",
                "topic",
                iso(created),
                iso(resolved),
                iso(claimed),
                iso(answered),
                iso(resolved),
                iso(resolved),
                iso(created + timedelta(hours=4)),
            )
        )
        events += [
            (
                ticket_id,
                iso(created),
                requester,
                "created",
                body,
                0,
                json.dumps({"source": "command"}),
            ),
            (
                ticket_id,
                iso(created),
                bot,
                "assigned",
                None,
                0,
                json.dumps({"department": department["id"], "assignee": pilot}),
            ),
            (ticket_id, iso(claimed), pilot, "claimed", None, 0, None),
            (
                ticket_id,
                iso(answered),
                pilot,
                "reply",
                PILOT_REPLY,
                0,
                None,
            ),
            (ticket_id, iso(resolved), pilot, "resolved", None, 0, None),
        ]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        with conn:
            conn.executemany(
                "INSERT INTO tickets (id, requester, room_id, body, source, department, assignee,"
                " status, route_reason, created_at, updated_at, claimed_at, answered_at,"
                " resolved_at, closed_at, claim_due_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tickets,
            )
            conn.executemany(
                "INSERT INTO ticket_events (ticket_id, at, actor, kind, body, internal, details)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                events,
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def file_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6, 1)


# -- the child: one start of the bot ------------------------------------------------------------


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _timed(
    phases: dict[str, float], name: str, call: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    """Wrap a coroutine function so its wall time lands in ``phases`` (bench-side only)."""

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            phases[name] = round(phases.get(name, 0.0) + time.perf_counter() - started, 4)

    return wrapper


async def child(config_path: Path, profile: Path | None) -> dict[str, Any]:
    """Start the bot, wait for its first completed sync, measure, stop."""
    imported = time.perf_counter()
    from lotsenbot.app import App
    from lotsenbot.config import load_config
    from lotsenbot.matrix.transport import MatrixTransport

    import_s = time.perf_counter() - imported
    marks: dict[str, float] = {}
    app = App(load_config(config_path))
    phases: dict[str, float] = {}
    app.open_database = _timed(phases, "database", app.open_database)  # type: ignore[method-assign]
    for feature in app.features:
        feature.start = _timed(phases, f"feature:{feature.name}", feature.start)  # type: ignore[method-assign]
    login = MatrixTransport.login
    MatrixTransport.login = _timed(phases, "login", login)  # type: ignore[method-assign]
    profiler = cProfile.Profile() if profile is not None else None
    if profiler is not None:
        profiler.enable()
    started = time.perf_counter()
    await app.start()
    started_s = time.perf_counter() - started
    faq = app.services.feature("faq") if app.services else None
    build = getattr(faq, "_build", None)
    if isinstance(build, asyncio.Future):  # the index is still being built in its thread

        def index_ready(_: object) -> None:
            marks["index_ready_s"] = round(time.perf_counter() - started, 3)

        build.add_done_callback(index_ready)
    else:
        marks["index_ready_s"] = round(started_s, 3)
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(app.ready.wait(), CHILD_BUDGET)
    ready_s = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
        profile.write_text(scrub_paths(out.getvalue()), "utf-8")
    spawned = float(os.environ.get(SPAWNED_AT, "nan"))
    spawn_to_ready = time.time() - spawned  # interpreter start and imports included
    rss_ready = _status_mb("VmRSS")
    await asyncio.sleep(3)  # the jobs that run at once after start (reminders, announcements)
    if faq is not None and hasattr(faq, "_current_index"):  # the index is in the RSS figure
        await faq._current_index(app.db.conn)
    result = {
        **marks,
        "start_to_ready_s": round(ready_s, 3),
        "start_s": round(started_s, 3),
        "first_sync_s": round(ready_s - started_s, 3),
        "imports_s": round(import_s, 3),
        "spawn_to_ready_s": round(spawn_to_ready, 3),
        "phases_s": phases,
        "rss_mb_ready": rss_ready,
        "rss_mb_settled": _status_mb("VmRSS"),
        "peak_rss_mb": _status_mb("VmHWM"),
    }
    app.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 30)
    return result


# -- the parent --------------------------------------------------------------------------------


def run_child(args: list[str], timeout: float) -> tuple[str, float, float]:
    """Run a child process; return its last output line, its whole wall time, and the wall
    clock of the spawn."""
    started = time.perf_counter()
    spawned = time.time()
    env = {**os.environ, "PYTHONPATH": str(ROOT), SPAWNED_AT: repr(spawned)}
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return lines[-1], wall, spawned


def bot_start(config: Path, profile: Path | None = None) -> dict[str, Any]:
    args = [str(Path(__file__)), "--child", str(config)]
    if profile is not None:
        args += ["--profile-to", str(profile)]
    line, wall, _ = run_child(args, CHILD_BUDGET + 60)
    return {**json.loads(line), "process_wall_s": round(wall, 3)}  # incl. settle and stop


def echo_start(server: Synapse, user_id: str, secret_file: Path) -> dict[str, Any]:
    args = [
        str(BENCH / "echo_bot.py"),
        "--homeserver",
        server.url,
        "--user-id",
        user_id,
        "--password-file",
        str(secret_file),
        "--seconds",
        "0.5",
    ]
    line, wall, spawned = run_child(args, 60)
    _, seconds, rss, ready_at = line.split()
    return {
        "start_to_ready_s": float(seconds),
        "rss_mb_ready": float(rss),
        "spawn_to_ready_s": round(float(ready_at) - spawned, 3),
        "process_wall_s": round(wall, 3),
    }


def write_bot_config(
    folder: Path, server: Synapse, user_id: str, secret: str, depts: list[dict[str, Any]]
) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.integration.bot import write_config

    folder.mkdir(parents=True, exist_ok=True)
    return write_config(
        folder / "config.toml",
        {
            "matrix": {
                "homeserver": server.url,
                "user_id": user_id,
                "password": secret,
                "store_path": "store",
                "allowed_servers": [server.server_name, "stadt.example"],
            },
            "database": {"path": "bot.db"},
            "logging": {"level": "WARNING"},
            "departments": depts,
        },
    )


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 3)


async def measure(
    faq: int,
    tickets: int,
    restarts: int,
    profile: bool,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    depts = departments()
    result: dict[str, Any] = {"faq_entries": faq, "tickets": tickets, "restarts": restarts}
    with tempfile.TemporaryDirectory(prefix="lotsenbench-startup-") as tmp:
        folder = Path(tmp)
        async with Synapse(folder / "synapse", extra_config={"bcrypt_rounds": 4}) as server:
            secret = password()
            echo_secret = folder / "echo-secret"
            echo_secret.write_text(password(), "utf-8")
            echo_id = await server.register("echobot", echo_secret.read_text("utf-8"))
            variants = {"full": (faq, tickets), "empty": (0, 0)}
            configs: dict[str, Path] = {}
            for name, (faq_n, ticket_n) in variants.items():
                user_id = await server.register(f"lotsen{name}", secret)
                configs[name] = write_bot_config(folder / name, server, user_id, secret, depts)
                db_path = folder / name / "bot.db"
                progress(f"start-up: building the {name} database …")
                built = time.perf_counter()
                await fill_faq(db_path, faq_n, seed=7)
                fill_tickets(db_path, ticket_n, seed=7, depts=depts)
                result[f"{name}_database"] = {
                    "build_s": round(time.perf_counter() - built, 1),
                    "size_mb": file_mb(db_path),
                }
            # One start at a time. Each round starts every variant once, so a slow minute of a
            # shared machine hits all of them alike.
            runs: dict[str, list[dict[str, Any]]] = {"full": [], "empty": [], "echo": []}
            first: dict[str, dict[str, Any]] = {}
            for name in variants:
                progress(f"start-up: first start ({name}) …")
                first[name] = bot_start(configs[name])
            for round_no in range(restarts):
                progress(f"start-up: restart round {round_no + 1}/{restarts} …")
                runs["echo"].append(echo_start(server, echo_id, echo_secret))
                for name in variants:
                    runs[name].append(bot_start(configs[name]))
            if profile:
                profile_path = folder / "profile.txt"
                bot_start(configs["full"], profile_path)
                result["profile_top"] = profile_path.read_text("utf-8").splitlines()[:70]
    for name, items in runs.items():
        result[name] = {
            "start_to_ready_s": median_of(items, "start_to_ready_s"),
            "rss_mb": median_of(items, "rss_mb_settled" if name != "echo" else "rss_mb_ready"),
            "spawn_to_ready_s": median_of(items, "spawn_to_ready_s"),
            **({"index_ready_s": median_of(items, "index_ready_s")} if name != "echo" else {}),
            "runs": items,
        }
        if name in first:
            result[name]["first_start"] = first[name]
    full, echo, empty = result["full"], result["echo"], result["empty"]
    result["ratio"] = {
        "start_vs_echo": round(full["start_to_ready_s"] / echo["start_to_ready_s"], 2),
        "rss_vs_echo": round(full["rss_mb"] / echo["rss_mb"], 2),
        "start_vs_empty": round(full["start_to_ready_s"] / empty["start_to_ready_s"], 2),
        "rss_vs_empty": round(full["rss_mb"] / empty["rss_mb"], 2),
    }
    result["targets"] = TARGETS
    result["met"] = {
        "start_to_ready_s": full["start_to_ready_s"] <= TARGETS["start_to_ready_s"],
        "rss_mb": full["rss_mb"] <= TARGETS["rss_mb"],
    }
    return result


def run(
    faq: int = 10_000,
    tickets: int = 100_000,
    restarts: int = 5,
    profile: bool = False,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure (bounded: every child has its own timeout) and write ``startup.json``."""
    work = measure(faq, tickets, restarts, profile, progress)
    result = asyncio.run(asyncio.wait_for(work, 900))
    write_result("startup", result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faq", type=int, default=10_000)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="add a cProfile summary")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("nio", "aiohttp", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if args.child is not None:
        os.chdir(args.child.parent)  # relative paths in the config, as in production
        result = asyncio.run(
            asyncio.wait_for(child(args.child, args.profile_to), CHILD_BUDGET + 30)
        )
        print(json.dumps(result))
        return 0
    outcome = run(args.faq, args.tickets, args.restarts, args.profile)
    summary = {k: outcome[k] for k in ("ratio", "met")}
    print(
        json.dumps(
            {"full": {k: outcome["full"][k] for k in ("start_to_ready_s", "rss_mb")}, **summary},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
