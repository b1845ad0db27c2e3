"""Announcement fan-out: how long until every recipient has their copy, and exactly one?

Starts its own Synapse on loopback in a temporary folder, registers the recipients as pilots
of one department, runs the real bot in-process, and has a coordinator announce to them
through Matrix (``!ankündigung`` + ``!senden``). Measured from sending ``!senden`` until no
copy is pending in the outbox any more; then every recipient's direct chat is read through
Synapse's admin API and the copies of the announcement counted (must be exactly one each).

Three runs on the same server:

* ``relaxed``: rate limits out of reach; the bot also creates every direct chat on demand.
* ``relaxed`` again, to the same people: their direct chats exist now, so this isolates the
  cost of sending from the cost of creating chats.
* ``default``: Synapse's own limits (``rc_message`` 0.2/s, burst 10) after a restart of the
  homeserver; direct chats exist from the first runs (the usual case: people who use the bot
  have a chat with it). At 0.2 messages/s a full 500-recipient run would take about
  40 minutes, so this run uses a sample (``--default-recipients``); the result adds an
  extrapolation to the full number at the measured steady rate, marked as not measured.

With ``--encrypted`` the bot opens encrypted direct chats (``encrypt_direct_chats``, the
product default; the plain runs set it off to read each copy's announcement id). The
recipients are plain clients without device keys, so the bot encrypts every copy but shares
the room key with no device: this measures encrypted rooms and Megolm, not the key claims
and to-device messages real recipients' devices would add. ``--devices`` adds those: every
recipient logs in once with an encrypting client and uploads its device and one-time keys,
so for each copy the bot queries the person's device, claims a one-time key, sets up an Olm
session and sends the room key to the device. ``--readers`` of them, spread over the list,
stay logged in and decrypt their copy after each run (the proof that the keys reached the
devices; in the second run the chats' room keys are reused, so it shows nothing new).
``--default-recipients 0`` skips the run under default limits.

Usage::

    python bench/announce_fanout.py [--recipients 500] [--default-recipients 60]
        [--encrypted [--devices [--readers 10]]]

Writes ``bench/results/announce_fanout.json`` (``announce_fanout_encrypted.json`` with
``--encrypted``, ``announce_fanout_devices.json`` with ``--devices``). Everything is
bounded in time (``--budget``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import platform
import secrets
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
    MegolmEvent,
    RoomCreateError,
    RoomPreset,
    RoomSendResponse,
)

from lotsenbot.app import App
from lotsenbot.config import Config
from lotsenbot.core.clock import parse_iso
from lotsenbot.devserver import Synapse

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "announce_fanout.json"
RESULTS_ENCRYPTED = ROOT / "bench" / "results" / "announce_fanout_encrypted.json"
RESULTS_DEVICES = ROOT / "bench" / "results" / "announce_fanout_devices.json"
META = "de.lotsenbot.announcement"
SYNAPSE_DEFAULT_BURST = 10  # rc_message burst_count in Synapse's defaults
log = logging.getLogger("bench.announce_fanout")


class BenchTimeout(Exception):
    pass


def deadline_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise BenchTimeout("time budget exhausted")
    return left


async def register_many(server: Synapse, prefix: str, count: int) -> list[str]:
    """Register accounts ``count`` at a time-bounded concurrency; returns their user ids."""
    semaphore = asyncio.Semaphore(16)
    tag = secrets.token_hex(2)

    async def one(index: int) -> str:
        async with semaphore:
            name = f"{prefix}{index:04d}_{tag}"
            return await server.register(name, f"pw-{name}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def upload_device_keys(
    server: Synapse, recipients: list[str], folder: Path, readers: int
) -> list[AsyncClient]:
    """Log every recipient in once with an encrypting client and upload its device keys and
    one-time keys; returns ``readers`` of the clients, spread over the list, still logged
    in, the rest closed (their keys stay on the server, as a phone's do while it sleeps)."""
    semaphore = asyncio.Semaphore(16)
    # Readers spread over the whole list, not only the chats the bot opens first.
    step = max(1, len(recipients) // readers) if readers > 0 else len(recipients) + 1
    picked = range(0, len(recipients), step)[: max(readers, 0)]
    chosen = {index: slot for slot, index in enumerate(picked)}
    kept: list[AsyncClient | None] = [None] * len(chosen)

    async def one(index: int, user_id: str) -> None:
        localpart = user_id[1:].split(":", 1)[0]
        store = folder / localpart
        store.mkdir(parents=True)
        client = AsyncClient(
            server.url, user_id, store_path=str(store),
            # nio retries timeouts for ever by default; the budget must end a stuck run.
            config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False,
                                     max_timeouts=2, request_timeout=15),
        )  # fmt: skip
        async with semaphore:
            response = await client.login(f"pw-{localpart}")
            if client.access_token is None:
                raise RuntimeError(f"login of {user_id} failed: {response}")
            await client.keys_upload()
        if index in chosen:
            kept[chosen[index]] = client
        else:
            await client.close()

    await asyncio.gather(*(one(i, user_id) for i, user_id in enumerate(recipients)))
    return [client for client in kept if client is not None]


async def decrypted_by_readers(
    server: Synapse, admin_token: str, app: App, readers: list[AsyncClient], run: dict[str, Any]
) -> dict[str, int]:
    """Each reader syncs (receiving the room key sent to its device), fetches the bot's
    events in its direct chat through the admin API and decrypts them; counts the readers
    who find their copy of this run's announcement."""
    announcement_id = run["announcement_id"]
    found = 0
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        for client in readers:
            await client.sync(timeout=0, full_state=True)
            row = await app.db.fetchone(
                "SELECT room_id FROM dm_rooms WHERE user_id = ?", (client.user_id,)
            )
            if row is None:
                continue
            room_id = str(row["room_id"])
            url = (
                f"{server.url}/_synapse/admin/v1/rooms/{quote(room_id, safe='')}/messages"
                "?dir=b&limit=50"
            )
            async with http.get(url, headers=headers) as response:
                body = await response.json()
            for raw in body.get("chunk", []):
                if raw.get("type") != "m.room.encrypted":
                    continue
                event = Event.parse_event(raw)
                if not isinstance(event, MegolmEvent):
                    continue
                event.room_id = room_id
                try:
                    plain = client.decrypt_event(event)
                except Exception:  # not decryptable: not counted
                    continue
                data = plain.source.get("content", {}).get(META) or {}
                if data.get("id") == announcement_id:
                    found += 1
                    break
    return {"readers": len(readers), "decrypted_own_copy": found}


async def start_bot(config: Config) -> tuple[App, asyncio.Task[None]]:
    app = App(config)
    await app.start()
    task = asyncio.create_task(app.run(), name="bot")
    await asyncio.wait_for(app.ready.wait(), timeout=60)
    return app, task


async def stop_bot(app: App, task: asyncio.Task[None]) -> None:
    app.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, timeout=30)


class Coordinator:
    """A plain (unencrypted) client that talks to the bot in a direct chat."""

    def __init__(self, url: str, user_id: str, password: str) -> None:
        self.client = AsyncClient(url, user_id)
        self.password = password
        self.room_id = ""

    async def open(self, bot_id: str, app: App, deadline: float) -> None:
        await self.client.login(self.password)
        response = await self.client.room_create(
            is_direct=True, invite=[bot_id], preset=RoomPreset.trusted_private_chat
        )
        if isinstance(response, RoomCreateError):
            raise RuntimeError(f"room creation failed: {response.message}")
        self.room_id = response.room_id
        while True:  # the bot joins on its own; its rooms table says when
            row = await app.db.fetchone("SELECT 1 FROM rooms WHERE room_id = ?", (self.room_id,))
            if row is not None:
                return
            await asyncio.sleep(min(0.2, deadline_left(deadline)))

    async def say(self, text: str) -> None:
        content = {"msgtype": "m.text", "body": text}
        response = await self.client.room_send(self.room_id, "m.room.message", content)
        if not isinstance(response, RoomSendResponse):
            raise RuntimeError(f"send failed: {response}")

    async def close(self) -> None:
        await self.client.close()


async def wait_for(
    app: App, sql: str, params: tuple[Any, ...], deadline: float, interval: float = 0.1
) -> Any:
    while True:
        row = await app.db.fetchone(sql, params)
        if row is not None:
            return row
        await asyncio.sleep(min(interval, deadline_left(deadline)))


async def fan_out(
    app: App, coordinator: Coordinator, audience: str, expected: int, deadline: float
) -> dict[str, Any]:
    """Announce, confirm, and time until no copy is pending any more."""
    last = await app.db.fetchone("SELECT COALESCE(MAX(id), 0) AS n FROM announcements")
    previous = int(last["n"]) if last else 0
    await coordinator.say(f"!ankündigung {audience} Bench: Ankündigung an {expected} Empfangende")
    row = await wait_for(
        app,
        "SELECT id, recipients FROM announcements WHERE id > ? AND state = 'draft'",
        (previous,),
        deadline,
    )
    announcement_id, previewed = int(row["id"]), int(row["recipients"])
    if previewed != expected:
        raise RuntimeError(f"preview counts {previewed} recipients, expected {expected}")
    low, high = f"ann:{announcement_id}:", f"ann:{announcement_id};"
    started_ms = int(time.time() * 1000)
    started = time.monotonic()
    await coordinator.say(f"!senden {announcement_id}")
    await wait_for(
        app,
        "SELECT 1 FROM announcements WHERE id = ? AND state = 'sending'",
        (announcement_id,),
        deadline,
    )
    expanded = time.monotonic() - started
    progress_at = time.monotonic()
    while True:
        counts = await app.db.fetchone(
            "SELECT SUM(status = 'pending') AS pending, SUM(status = 'sent') AS sent,"
            " SUM(status = 'failed') AS failed FROM outbox WHERE dedup_key >= ? AND dedup_key < ?",
            (low, high),
        )
        assert counts is not None
        if not counts["pending"]:
            break
        if time.monotonic() - progress_at > 30:
            log.warning("… %s sent, %s pending", counts["sent"], counts["pending"])
            progress_at = time.monotonic()
        await asyncio.sleep(min(0.2, deadline_left(deadline)))
    total = time.monotonic() - started
    sent, failed = int(counts["sent"] or 0), int(counts["failed"] or 0)
    rows = await app.db.fetchall(
        "SELECT sent_at FROM outbox WHERE dedup_key >= ? AND dedup_key < ? AND status = 'sent'"
        " ORDER BY sent_at",
        (low, high),
    )
    return {
        "announcement_id": announcement_id,
        "window_ms": [started_ms, int(time.time() * 1000)],
        "recipients": expected,
        "sent": sent,
        "failed": failed,
        "seconds_confirm_to_expanded": round(expanded, 3),
        "seconds_total": round(total, 3),
        "recipients_per_second": round(sent / total, 2) if total else None,
        "steady_recipients_per_second": steady_rate([parse_iso(r["sent_at"]) for r in rows]),
    }


def steady_rate(sent_at: list[datetime], skip: int = SYNAPSE_DEFAULT_BURST) -> float | None:
    """Copies per second after the first ``skip`` (a rate limiter's burst inflates the start)."""
    later = sent_at[skip:]
    if len(later) < 2:
        return None
    seconds = (later[-1] - later[0]).total_seconds()
    return round((len(later) - 1) / seconds, 3) if seconds > 0 else None


async def verify_copies(
    server: Synapse,
    admin_token: str,
    app: App,
    bot_id: str,
    recipients: list[str],
    run: dict[str, Any],
    deadline: float,
    *,
    encrypted: bool = False,
) -> dict[str, Any]:
    """Count the announcement's copies in every recipient's direct chat via the admin API.

    Each chat holds only a handful of bot events, so one page of the newest 50 is enough;
    requests run 16 at a time with a per-request timeout, bounded by the overall budget.
    Plain copies are recognised by their announcement id. Encrypted ones cannot be read
    here: in a recipient's direct chat the bot sends nothing but announcement copies, so
    every encrypted event of the bot's within the run's time window is one.
    """
    announcement_id = run["announcement_id"]
    since_ms, until_ms = run["window_ms"]
    rows = await app.db.fetchall("SELECT user_id, room_id FROM dm_rooms")
    rooms = {r["user_id"]: r["room_id"] for r in rows}
    semaphore = asyncio.Semaphore(16)
    headers = {"Authorization": f"Bearer {admin_token}"}
    counts: dict[str, int] = {}
    timeout = aiohttp.ClientTimeout(total=15)

    async def check(http: aiohttp.ClientSession, user_id: str) -> None:
        room_id = rooms.get(user_id)
        if room_id is None:
            counts[user_id] = 0
            return
        url = (
            f"{server.url}/_synapse/admin/v1/rooms/{quote(room_id, safe='')}/messages"
            "?dir=b&limit=50"
        )
        async with semaphore:
            deadline_left(deadline)
            async with http.get(url, headers=headers) as response:
                body = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"admin API: {response.status} {body}")
        events = [e for e in body.get("chunk", []) if e.get("sender") == bot_id]
        if encrypted:
            counts[user_id] = sum(
                1
                for event in events
                if event.get("type") == "m.room.encrypted"
                and since_ms <= int(event.get("origin_server_ts", 0)) <= until_ms
            )
            return
        counts[user_id] = sum(
            1
            for event in events
            if event.get("type") == "m.room.message"
            and (event.get("content", {}).get(META) or {}).get("id") == announcement_id
            and "preview" not in event["content"][META]
            and "status" not in event["content"][META]
        )

    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.gather(*(check(http, user_id) for user_id in recipients))
    values = list(counts.values())
    return {
        "checked": len(values),
        "exactly_one": sum(1 for v in values if v == 1),
        "missing": sum(1 for v in values if v == 0),
        "duplicated": sum(1 for v in values if v > 1),
    }


def bot_config(
    folder: Path,
    server: Synapse,
    bot: str,
    password: str,
    coordinator: str,
    recipients: list[str],
    sample: list[str],
    encrypted: bool,
) -> Config:
    return Config.model_validate(
        {
            "matrix": {
                "homeserver": server.url,
                "user_id": bot,
                "password": password,
                "store_path": str(folder / "store"),
                "allowed_servers": [server.server_name],
                "sync_timeout_ms": 5000,
                # The recipients are plain clients without device keys: with encryption the
                # bot creates encrypted rooms and encrypts every copy, but shares the room key
                # with no device (real recipients' devices would add key claims).
                "encrypt_direct_chats": encrypted,
            },
            "database": {"path": str(folder / "bot.db")},
            "bot": {"coordinators": [coordinator]},
            "departments": [
                {"id": "bench", "name": "Bench", "pilots": recipients},
                {"id": "stichprobe", "name": "Stichprobe", "pilots": sample},
            ],
            "logging": {"level": "WARNING"},
        }
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.budget
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "recipients": args.recipients,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="lotsenbot-bench-") as tmp:
        folder = Path(tmp)
        # Fewer bcrypt rounds only speed up registering the accounts; sending is unaffected.
        server = Synapse(
            folder / "synapse", rate_limits="relaxed", extra_config={"bcrypt_rounds": 4}
        )
        await server.start()
        app: App | None = None
        task: asyncio.Task[None] | None = None
        coordinator: Coordinator | None = None
        readers: list[AsyncClient] = []
        try:
            log.warning("registering %s recipients …", args.recipients)
            started = time.monotonic()
            recipients = await register_many(server, "empf", args.recipients)
            results["seconds_register"] = round(time.monotonic() - started, 1)
            if args.devices:
                log.warning("uploading device keys of %s recipients …", args.recipients)
                started = time.monotonic()
                async with asyncio.timeout(deadline_left(deadline)):
                    readers = await upload_device_keys(
                        server, recipients, folder / "devices", args.readers
                    )
                results["seconds_device_keys"] = round(time.monotonic() - started, 1)
            bot_password, coord_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
            bot_id = await server.register("benchbot", bot_password)
            coord_id = await server.register("benchkoord", coord_password)
            admin_password = secrets.token_urlsafe(12)
            await server.register("benchadmin", admin_password, admin=True)
            admin_token, _ = await server.login("benchadmin", admin_password)
            sample = recipients[: args.default_recipients]
            config = bot_config(
                folder / "bot", server, bot_id, bot_password, coord_id, recipients, sample,
                args.encrypted,
            )  # fmt: skip
            results["encrypted"] = args.encrypted
            results["recipient_devices"] = 1 if args.devices else 0
            app, task = await start_bot(config)
            coordinator = Coordinator(server.url, coord_id, coord_password)
            await coordinator.open(bot_id, app, deadline)

            async def measured(audience: str, people: list[str], limits: str,
                               chats: str) -> dict[str, Any]:  # fmt: skip
                """One announcement, timed, its copies counted, recorded."""
                log.warning("%s limits, chats %s: fan-out to %s …", limits, chats, len(people))
                run = await fan_out(app, coordinator, audience, len(people), deadline)
                run["verification"] = await verify_copies(
                    server, admin_token, app, bot_id, people, run, deadline,
                    encrypted=args.encrypted,
                )  # fmt: skip
                if readers:
                    async with asyncio.timeout(deadline_left(deadline)):
                        run["readers"] = await decrypted_by_readers(
                            server, admin_token, app, readers, run
                        )
                run.update(rate_limits=limits, direct_chats=chats)
                results["runs"].append(run)
                log.warning("%s, chats %s: %s", limits, chats, run)
                return run

            await measured("bench", recipients, "relaxed", "created on demand")
            await measured("bench", recipients, "relaxed", "already existed")

            if not sample:
                return results
            # Synapse's own limits from here on. The bot keeps running and reconnects.
            await server.stop()
            server.rate_limits = "default"
            await server.start()
            admin_token, _ = await server.login("benchadmin", admin_password)
            default = await measured("stichprobe", sample, "default", "already existed")
            rate = default["steady_recipients_per_second"]
            remaining = args.recipients - len(sample)
            if rate and remaining > 0:
                default["extrapolated_seconds_for_full_count"] = round(
                    default["seconds_total"] + remaining / rate
                )
                default["extrapolation_note"] = (
                    f"not measured: the measured time for {len(sample)} recipients plus the"
                    f" remaining {remaining} at the measured steady rate (after the burst)"
                )
        finally:
            for client in readers:
                await client.close()
            if coordinator is not None:
                await coordinator.close()
            if app is not None and task is not None:
                await stop_bot(app, task)
            await server.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=500)
    parser.add_argument(
        "--default-recipients",
        type=int,
        default=60,
        help="sample size for the run with Synapse's default rate limits",
    )
    parser.add_argument("--budget", type=float, default=900, help="overall time limit in seconds")
    parser.add_argument(
        "--encrypted",
        action="store_true",
        help="the bot opens encrypted direct chats (writes announce_fanout_encrypted.json)",
    )
    parser.add_argument(
        "--devices",
        action="store_true",
        help="every recipient has a device with keys (implies --encrypted; writes"
        " announce_fanout_devices.json)",
    )
    parser.add_argument(
        "--readers", type=int, default=10, help="recipients who decrypt their copy (--devices)"
    )
    args = parser.parse_args()
    args.encrypted = args.encrypted or args.devices
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("nio", "aiohttp", "apscheduler", "peewee"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    results = asyncio.run(run(args))
    path = RESULTS_DEVICES if args.devices else RESULTS_ENCRYPTED if args.encrypted else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", "utf-8")
    json.dump(results, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
