"""Optional HTTP listener for monitoring: ``/health`` (JSON) and Prometheus ``/metrics``.

Off unless ``[metrics] listen`` is set, and then bound only to that address (loopback in
the example): the figures are operational, but nobody outside the server needs them.
Everything is read from the database at scrape time – the inbox and outbox already record
each event and each message – so the core needs no instrumentation. Totals stay monotonic
across the nightly purge because the purge carries the deleted rows' counts over into
``meta`` (see :mod:`lotsenbot.privacy.store`). The reply latency histogram is filled from
replies delivered since the listener started, as Prometheus expects of a process metric.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiosqlite
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lotsenbot.config import Config
from lotsenbot.core.clock import parse_iso
from lotsenbot.privacy import store
from lotsenbot.storage.db import Database

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class _Snapshot(Collector):
    """Hands the figures of the current scrape to prometheus_client."""

    def __init__(self) -> None:
        self.figures: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        f = self.figures
        events = CounterMetricFamily(
            "lotsenbot_events", "Events accepted from Matrix, by handling status", labels=["status"]
        )
        for status, count in sorted(f.get("events", {}).items()):
            if status != "pending":  # goes down as events are handled: not a counter
                events.add_metric([status], count)
        yield events
        messages = CounterMetricFamily(
            "lotsenbot_messages",
            "Bot messages settled by the outbox sender (sent or failed)",
            labels=["status"],
        )
        for status, count in sorted(f.get("messages", {}).items()):
            if status != "pending":
                messages.add_metric([status], count)
        yield messages
        yield GaugeMetricFamily(
            "lotsenbot_outbox_backlog", "Messages waiting in the outbox", value=f.get("backlog", 0)
        )
        age = f.get("sync_age")
        if age is not None:
            yield GaugeMetricFamily(
                "lotsenbot_last_sync_age_seconds", "Seconds since the last completed sync",
                value=age,
            )  # fmt: skip
        open_tickets = f.get("open_tickets")
        if open_tickets is not None:
            gauge = GaugeMetricFamily(
                "lotsenbot_open_tickets", "Open requests per department ('' = triage)",
                labels=["department"],
            )  # fmt: skip
            for department, count in sorted(open_tickets.items()):
                gauge.add_metric([department], count)
            yield gauge


class MetricsServer:
    def __init__(self, host: str, port: int, db: Database, stale_after: float = 120.0) -> None:
        self.host = host
        self.port = port
        self.db = db
        self.registry = CollectorRegistry(auto_describe=False)
        self.snapshot = _Snapshot()
        self.registry.register(self.snapshot)
        self.latency = Histogram(
            "lotsenbot_reply_latency_seconds",
            "Time from a person's message (homeserver timestamp) to the delivery of the reply",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._cursor = ("", 0)
        self._lock = asyncio.Lock()
        self.stale_after = stale_after  # seconds without a completed sync: not healthy
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        row = await self.db.fetchone(
            "SELECT sent_at, id FROM outbox WHERE status = 'sent' AND sent_at IS NOT NULL"
            " ORDER BY sent_at DESC, id DESC LIMIT 1"
        )
        if row is not None:
            self._cursor = (str(row["sent_at"]), int(row["id"]))
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses  # the real port when 0 ("any free port") was given
        if addresses:
            self.port = int(addresses[0][1])
        log.info("Monitoring unter http://%s:%d/health und /metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def health(self, request: web.Request) -> web.Response:
        try:
            async with self.db.reading() as conn:
                figures = await store.health_figures(conn)
        except Exception as exc:  # any database failure means "not healthy", not a 500 page
            body = {"status": "error", "database": False, "error": type(exc).__name__}
            return web.json_response(body, status=503)
        last = figures["last_sync_at"]
        age = _age(last)
        # No sync for longer than a long-poll plus a margin: the bot hears nobody any more.
        stale = age is not None and age > self.stale_after
        body = {
            "status": "stale" if stale else "ok",
            "database": True,
            "last_sync_at": last,
            "last_sync_age_seconds": None if age is None else round(age, 3),
            "outbox_backlog": figures["outbox_backlog"],
        }
        return web.Response(
            text=json.dumps(body), content_type="application/json", status=503 if stale else 200
        )

    async def metrics(self, request: web.Request) -> web.Response:
        async with self._lock:
            try:
                await self._refresh()
            except Exception:
                log.exception("Kennzahlen konnten nicht gelesen werden")
                return web.Response(status=503, text="database unavailable\n")
            payload = generate_latest(self.registry)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _refresh(self) -> None:
        async with self.db.reading() as conn:  # committed rows only, e.g. not mid-purge
            await self._read(conn)

    async def _read(self, conn: aiosqlite.Connection) -> None:
        health = await store.health_figures(conn)
        self.snapshot.figures = {
            "events": await store.status_totals(conn, "inbox"),
            "messages": await store.status_totals(conn, "outbox"),
            "backlog": health["outbox_backlog"],
            "sync_age": _age(health["last_sync_at"]),
            "open_tickets": await store.open_tickets_by_department(conn),
        }
        while True:
            replies = await store.replies_sent_after(conn, *self._cursor)
            if not replies:
                break
            origins = await store.origin_times(conn, sorted({r.event_id for r in replies}))
            for reply in replies:
                origin = origins.get(reply.event_id)
                if origin is not None:
                    sent = parse_iso(reply.sent_at).timestamp()
                    self.latency.observe(max(0.0, sent - origin / 1000))
            self._cursor = (replies[-1].sent_at, replies[-1].row_id)


def _age(value: str | None) -> float | None:
    if not value:
        return None
    return max(0.0, (datetime.now(UTC) - parse_iso(value)).total_seconds())


async def start_metrics(config: Config, db: Database) -> MetricsServer | None:
    """Start the listener if ``[metrics] listen`` is set (called by the application)."""
    address = config.metrics.address
    if address is None:
        return None
    stale_after = config.matrix.sync_timeout_ms / 1000 + 90
    server = MetricsServer(address[0], address[1], db, stale_after=stale_after)
    try:
        await server.start()
    except OSError as exc:
        log.error("Monitoring-Adresse %s nicht verfügbar: %s", config.metrics.listen, exc)
        raise
    return server
