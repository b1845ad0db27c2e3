"""Reply latency and burst: lotsenbot against a minimal echo bot on the same homeserver.

* Sequential: one staff client asks N questions one after another; p50/p99 from sending
  to the answer arriving.
* Burst: M clients each send one question at the same moment; wall time until all are
  answered, p99, and how many answers were lost.

Both bots run in this process next to the clients, against one Synapse on loopback, so the
ratio lotsenbot / echo is what the figures mean; absolute times drift with the machine.

    .venv/bin/python bench/reply_latency.py [--questions 200] [--clients 200]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, password, summary, write_result
from echo_bot import EchoBot

from lotsenbot.app import App
from lotsenbot.config import load_config
from lotsenbot.devserver import Synapse
from tests.integration.bot import write_config
from tests.integration.helpers import MatrixUser

DEADLINE_SECONDS = 900
RUNNING: set[asyncio.Task[None]] = set()


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


async def start_lotsenbot(server: Synapse, folder: Path) -> tuple[App, str]:
    secret = password()
    user_id = await server.register("lotsenbot", secret)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = write_config(folder / "config.toml", {
        "matrix": {"homeserver": server.url, "user_id": user_id, "password": secret,
                   "store_path": "store"},
        "database": {"path": "bot.db"},
        "logging": {"level": "WARNING"},
    })  # fmt: skip
    app = App(load_config(config_path))
    await app.start()
    faq = app.services.feature("faq") if app.services else None
    if faq is not None and hasattr(faq, "load_starter_kb"):
        await faq.load_starter_kb()
    RUNNING.add(asyncio.create_task(app.run()))
    await asyncio.wait_for(app.ready.wait(), 30)
    return app, user_id


async def start_echo(server: Synapse) -> tuple[EchoBot, str]:
    secret = password()
    user_id = await server.register("echobot", secret)
    bot = EchoBot(server.url, user_id, secret)
    await bot.start()
    return bot, user_id


async def make_clients(server: Synapse, prefix: str, count: int, bot_id: str
                       ) -> list[tuple[MatrixUser, str]]:  # fmt: skip
    async def one(index: int) -> tuple[MatrixUser, str]:
        secret = password()
        user_id = await server.register(f"{prefix}{index}", secret)
        user = MatrixUser(server.url, user_id, secret, sync_timeout_ms=10_000)
        await user.login()
        room = await user.create_dm(bot_id)
        await user.wait_for_join(room, bot_id, timeout=60)
        return user, room

    clients: list[tuple[MatrixUser, str]] = []
    for start in range(0, count, 20):  # set-up in batches: not part of the measurement
        clients += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 20))))
    return clients


async def sequential(user: MatrixUser, room: str, bot_id: str, texts: list[str], n: int
                     ) -> list[float]:  # fmt: skip
    durations = []
    for i in range(n):
        user.mark()
        started = time.perf_counter()
        await user.send_text(room, texts[i % len(texts)])
        await user.wait_for_message(room, sender=bot_id, timeout=30)
        durations.append(time.perf_counter() - started)
    return durations


async def burst(clients: list[tuple[MatrixUser, str]], bot_id: str, texts: list[str]
                ) -> dict[str, Any]:  # fmt: skip
    for user, _ in clients:
        user.mark()
    durations: list[float] = []
    lost = 0

    async def ask(index: int, user: MatrixUser, room: str, start: float) -> None:
        nonlocal lost
        await user.send_text(room, texts[index % len(texts)])
        try:
            await user.wait_for_message(room, sender=bot_id, timeout=120)
            durations.append(time.perf_counter() - start)
        except TimeoutError:
            lost += 1

    started = time.perf_counter()
    await asyncio.gather(*(ask(i, u, r, started) for i, (u, r) in enumerate(clients)))
    return {"wall_s": round(time.perf_counter() - started, 3), "lost": lost, **summary(durations)}


async def measure(kind: str, server: Synapse, folder: Path, n: int, m: int,
                  texts: list[str]) -> dict[str, Any]:  # fmt: skip
    if kind == "lotsenbot":
        app, bot_id = await start_lotsenbot(server, folder)
        stop = app.stop
    else:
        echo, bot_id = await start_echo(server)
        stop = None
    try:
        [(user, room)] = await make_clients(server, f"{kind}seq", 1, bot_id)
        await sequential(user, room, bot_id, texts, 5)  # warm-up
        seq = summary(await sequential(user, room, bot_id, texts, n))
        clients = await make_clients(server, f"{kind}burst", m, bot_id)
        result = {"sequential": seq, "burst": await burst(clients, bot_id, texts)}
        for client, _ in [(user, room), *clients]:
            await client.close()
        return result
    finally:
        if stop is not None:
            stop()
            await asyncio.sleep(1)
        else:
            await echo.stop()


async def main(n: int, m: int) -> dict[str, Any]:
    texts = questions()
    with tempfile.TemporaryDirectory(prefix="lotsenbench-") as tmp:
        async with Synapse(Path(tmp) / "synapse") as server:
            echo = await measure("echo", server, Path(tmp) / "echo", n, m, texts)
            lotsen = await measure("lotsenbot", server, Path(tmp) / "bot", n, m, texts)
    ratio = {
        "sequential_p50": round(lotsen["sequential"]["p50_ms"] / echo["sequential"]["p50_ms"], 2),
        "sequential_p99": round(lotsen["sequential"]["p99_ms"] / echo["sequential"]["p99_ms"], 2),
        "burst_wall": round(lotsen["burst"]["wall_s"] / echo["burst"]["wall_s"], 2),
        "burst_p99": round(lotsen["burst"]["p99_ms"] / echo["burst"]["p99_ms"], 2),
    }
    return {"questions": n, "clients": m, "question_source": "faq" if texts != ["!hilfe"]
            else "help", "echo": echo, "lotsenbot": lotsen, "ratio": ratio,
            "targets": {"sequential_p50_ratio": 1.3, "burst_wall_ratio": 1.5}}  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(asyncio.wait_for(main(args.questions, args.clients), DEADLINE_SECONDS))
    path = write_result("reply_latency", result)
    print(f"{path.relative_to(ROOT)}: ratio {result['ratio']}")
