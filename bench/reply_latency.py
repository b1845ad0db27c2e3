"""Reply latency and burst: lotsenbot against a minimal echo bot on the same homeserver.

* Sequential: one staff client asks N questions one after another; p50/p99 from sending
  to the answer arriving. The client has a direct chat with each bot and asks them in turn
  (echo, lotsenbot, lotsenbot, echo, …), so both see the same homeserver, the same machine
  load and the same drift; measured back to back, the first bot measured paid for a cold
  homeserver and the ratio said more about the order than about the bots.
* Burst: M clients each send one question at the same moment; wall time until all are
  answered, p99, and how many answers were lost (none within 120 s). The same clients ask
  each bot twice, in the order echo, lotsenbot, lotsenbot, echo, for the same reason.

Both bots run in this process next to the clients, against one Synapse on loopback, so the
ratio lotsenbot / echo is what the figures mean; absolute times drift with the machine.
For each lotsenbot burst round its own records (inbox and outbox timestamps) show where the
time went: homeserver → stored → handled → reply sent. ``--compare-sender-concurrency N``
adds burst rounds in which lotsenbot's sender may have N sends in flight instead of its own
``CONCURRENCY`` (patched for those rounds only; the headline figures use the real value).
Questions are the staff questions of the FAQ evaluation set; lotsenbot answers them from
its starter knowledge base (or suggests, or offers a request — a real answer each time).

    .venv/bin/python bench/reply_latency.py [--questions 200] [--clients 200]
        [--compare-sender-concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import ROOT, password, percentile, summary, write_result
from echo_bot import EchoBot

from lotsenbot.app import App
from lotsenbot.config import load_config
from lotsenbot.core.clock import iso, parse_iso
from lotsenbot.devserver import Synapse
from lotsenbot.matrix import sender
from tests.integration.bot import write_config
from tests.integration.helpers import MatrixUser

DEADLINE_SECONDS = 900
SENDER_CONCURRENCY = sender.CONCURRENCY  # lotsenbot's own value, restored after a trial
ANSWER_TIMEOUT = 120.0
# Only registering the accounts gets faster with fewer rounds; nothing measured hashes.
SYNAPSE_CONFIG = {"bcrypt_rounds": 4}


def questions() -> list[str]:
    """Realistic staff questions from the FAQ evaluation set when present, else help."""
    import yaml

    path = ROOT / "tests" / "data" / "faq_eval" / "dev.yaml"
    if path.exists():
        data = yaml.safe_load(path.read_text("utf-8"))
        items = data.get("queries", data) if isinstance(data, dict) else data
        texts = [q["q"] if isinstance(q, dict) else str(q) for q in items]
        texts = [t for t in texts if t and not t.startswith("!")]
        if texts:
            return texts
    return ["!hilfe"]


async def start_lotsenbot(server: Synapse, folder: Path) -> tuple[App, asyncio.Task[None], str]:
    secret = password()
    user_id = await server.register("lotsenbot", secret)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = write_config(
        folder / "config.toml",
        {
            "matrix": {
                "homeserver": server.url,
                "user_id": user_id,
                "password": secret,
                "store_path": "store",
            },
            "database": {"path": "bot.db"},
            "logging": {"level": "WARNING"},
        },
    )
    app = App(load_config(config_path))
    await app.start()
    faq = app.services.feature("faq") if app.services else None
    if faq is not None and hasattr(faq, "load_starter_kb"):
        await faq.load_starter_kb()
    task = asyncio.create_task(app.run(), name="lotsenbot")
    await asyncio.wait_for(app.ready.wait(), 60)
    return app, task, user_id


async def start_echo(server: Synapse) -> tuple[EchoBot, str]:
    secret = password()
    user_id = await server.register("echobot", secret)
    bot = EchoBot(server.url, user_id, secret)
    await bot.start()
    return bot, user_id


Client = tuple[MatrixUser, dict[str, str]]  # the user and their direct chat per bot id


async def make_clients(
    server: Synapse, prefix: str, count: int, bot_ids: list[str]
) -> list[Client]:
    """``count`` logged-in clients, each with a direct chat every bot has joined."""

    async def one(index: int) -> Client:
        secret = password()
        user_id = await server.register(f"{prefix}{index}", secret)
        user = MatrixUser(server.url, user_id, secret, sync_timeout_ms=10_000)
        await user.login()
        rooms = {}
        for bot_id in bot_ids:
            rooms[bot_id] = await user.create_dm(bot_id)
        for bot_id in bot_ids:
            await user.wait_for_join(rooms[bot_id], bot_id, timeout=90)
        return user, rooms

    clients: list[Client] = []
    for start in range(0, count, 20):  # set-up in batches: not part of the measurement
        clients += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 20))))
    return clients


async def ask(user: MatrixUser, room: str, bot_id: str, text: str) -> float:
    """Seconds from sending ``text`` until the bot's next message in ``room`` arrives."""
    user.mark()
    started = time.perf_counter()
    await user.send_text(room, text)
    await user.wait_for_message(room, sender=bot_id, timeout=30)
    return time.perf_counter() - started


async def sequential(
    client: Client, bots: list[str], texts: list[str], n: int
) -> dict[str, list[float]]:
    """Each bot gets the same ``n`` questions; the order alternates per question."""
    user, rooms = client
    durations: dict[str, list[float]] = {bot_id: [] for bot_id in bots}
    for i in range(n):
        order = bots if i % 2 == 0 else bots[::-1]
        for bot_id in order:
            durations[bot_id].append(await ask(user, rooms[bot_id], bot_id, texts[i % len(texts)]))
    return durations


async def burst(clients: list[Client], bot_id: str, texts: list[str]) -> dict[str, Any]:
    """All clients ask ``bot_id`` at once; wall time until the last answer, and losses."""
    for user, _ in clients:
        user.mark()
    durations: list[float] = []
    lost = 0

    async def one(index: int, user: MatrixUser, room: str, start: float) -> None:
        nonlocal lost
        await user.send_text(room, texts[index % len(texts)])
        try:
            await user.wait_for_message(room, sender=bot_id, timeout=ANSWER_TIMEOUT)
            durations.append(time.perf_counter() - start)
        except TimeoutError:
            lost += 1

    started = time.perf_counter()
    await asyncio.gather(
        *(one(i, u, rooms[bot_id], started) for i, (u, rooms) in enumerate(clients))
    )
    wall = time.perf_counter() - started
    return {"wall_s": round(wall, 3), "lost": lost, "durations": durations}


async def breakdown(app: App, since_ms: int) -> dict[str, Any]:
    """Where lotsenbot's time went in a burst round, from its own records: each message's
    way from the homeserver's timestamp to stored (inbox), handled (reply in the outbox) and
    sent. Seconds after the round started, for the last message of each stage."""
    inbox = await app.db.fetchall(
        "SELECT origin_ts, received_at, handled_at FROM inbox WHERE origin_ts >= ?", (since_ms,)
    )
    since = iso(datetime.fromtimestamp(since_ms / 1000, UTC))
    outbox = await app.db.fetchall(
        "SELECT created_at, sent_at FROM outbox WHERE created_at >= ? AND sent_at IS NOT NULL",
        (since,),
    )

    def after(value: str) -> float:
        return parse_iso(value).timestamp() - since_ms / 1000

    def stage(values: list[float]) -> dict[str, float]:
        return {"p50_s": round(percentile(values, 50), 3), "last_s": round(max(values), 3)}

    if not inbox or not outbox:
        return {}
    return {
        "messages": len(inbox),
        "sent_by_server": stage([row["origin_ts"] / 1000 - since_ms / 1000 for row in inbox]),
        "stored": stage([after(row["received_at"]) for row in inbox]),
        "handled": stage([after(row["handled_at"]) for row in inbox if row["handled_at"]]),
        "reply_sent": stage([after(row["sent_at"]) for row in outbox]),
        "handled_to_sent_p50_s": round(
            percentile([after(r["sent_at"]) - after(r["created_at"]) for r in outbox], 50), 3
        ),
    }


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Burst figures of one bot over its rounds: mean wall time, percentiles of all answers."""
    durations = [d for r in rounds for d in r["durations"]]
    return {
        "wall_s": round(sum(r["wall_s"] for r in rounds) / len(rounds), 3),
        "rounds_wall_s": [r["wall_s"] for r in rounds],
        **(
            {"rounds_breakdown": [r["breakdown"] for r in rounds]}
            if "breakdown" in rounds[0]
            else {}
        ),
        "lost": sum(r["lost"] for r in rounds),
        **summary(durations),
    }


async def settle(seconds: float = 2.0) -> None:
    """A pause between rounds, so one round's stragglers never land in the next."""
    await asyncio.sleep(seconds)


async def main(
    n: int, m: int, compare: int | None = None, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    texts = questions()
    with tempfile.TemporaryDirectory(prefix="lotsenbench-") as tmp:
        async with Synapse(Path(tmp) / "synapse", extra_config=SYNAPSE_CONFIG) as server:
            echo, echo_id = await start_echo(server)
            app, task, bot_id = await start_lotsenbot(server, Path(tmp) / "bot")
            clients: list[Client] = []
            try:
                progress("reply latency: clients …")
                clients = await make_clients(server, "seq", 1, [echo_id, bot_id])
                await sequential(clients[0], [echo_id, bot_id], texts, 5)  # warm-up
                progress(f"reply latency: {n} sequential questions per bot …")
                seq = await sequential(clients[0], [echo_id, bot_id], texts, n)
                progress(f"burst: setting up {m} clients …")
                clients += await make_clients(server, "burst", m, [echo_id, bot_id])
                # Balanced order (A B C C B A): drift over the rounds hits each kind alike.
                order = (
                    ["echo", "lotsenbot", "lotsenbot"]
                    if compare is None
                    else ["echo", "lotsenbot", "patched", "patched", "lotsenbot"]
                )
                order.append("echo")
                rounds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in order}
                for kind in order:
                    await settle()
                    patch = kind == "patched" and compare is not None
                    sender.CONCURRENCY = compare if patch and compare else SENDER_CONCURRENCY
                    target = echo_id if kind == "echo" else bot_id
                    since_ms = int(time.time() * 1000)
                    result = await burst(clients[1:], target, texts)
                    if target == bot_id:
                        result["breakdown"] = await breakdown(app, since_ms)
                    progress(f"burst {kind}: {result['wall_s']} s, lost {result['lost']}")
                    rounds[kind].append(result)
                sender.CONCURRENCY = SENDER_CONCURRENCY
            finally:
                await close_all(clients, echo.stop, app, task)
    echo_r = {"sequential": summary(seq[echo_id]), "burst": combine(rounds["echo"])}
    lotsen = {"sequential": summary(seq[bot_id]), "burst": combine(rounds["lotsenbot"])}
    ratio = {
        "sequential_p50": round(lotsen["sequential"]["p50_ms"] / echo_r["sequential"]["p50_ms"], 2),
        "sequential_p99": round(lotsen["sequential"]["p99_ms"] / echo_r["sequential"]["p99_ms"], 2),
        "burst_wall": round(lotsen["burst"]["wall_s"] / echo_r["burst"]["wall_s"], 2),
        "burst_p99": round(lotsen["burst"]["p99_ms"] / echo_r["burst"]["p99_ms"], 2),
    }
    if compare is not None:
        patched = combine(rounds["patched"])
        extra = {
            "sender_concurrency_trial": {
                "change": f"lotsenbot.matrix.sender.CONCURRENCY {SENDER_CONCURRENCY} -> {compare}",
                "burst": patched,
                "ratio_burst_wall": round(patched["wall_s"] / echo_r["burst"]["wall_s"], 2),
                "ratio_burst_p99": round(patched["p99_ms"] / echo_r["burst"]["p99_ms"], 2),
            }
        }
    else:
        extra = {}
    return {
        **extra,
        "sender_concurrency": SENDER_CONCURRENCY,
        "questions": n,
        "clients": m,
        "question_source": "faq" if texts != ["!hilfe"] else "help",
        "order": "interleaved (sequential), " + "-".join(order) + " (burst)",
        "echo": echo_r,
        "lotsenbot": lotsen,
        "ratio": ratio,
        "targets": {"sequential_p50_ratio": 1.3, "burst_wall_ratio": 1.5},
    }


async def close_all(
    clients: list[Client],
    stop_echo: Callable[[], Awaitable[None]],
    app: App,
    task: asyncio.Task[None],
) -> None:
    for user, _ in clients:
        with contextlib.suppress(Exception):
            await user.close()
    app.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 30)
    await stop_echo()


def run(n: int = 200, m: int = 200, compare: int | None = None) -> dict[str, Any]:
    """Measure, bounded by DEADLINE_SECONDS, and write ``bench/results/reply_latency.json``."""
    result = asyncio.run(asyncio.wait_for(main(n, m, compare), DEADLINE_SECONDS))
    write_result("reply_latency", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument(
        "--compare-sender-concurrency",
        type=int,
        metavar="N",
        help="add burst rounds with lotsenbot's sender allowed N sends in flight (a proposed "
        "change, patched in for those rounds only)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("nio", "aiohttp", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    outcome = run(args.questions, args.clients, args.compare_sender_concurrency)
    print(f"bench/results/reply_latency.json: ratio {outcome['ratio']}")
