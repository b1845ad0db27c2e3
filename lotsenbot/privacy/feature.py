"""Data protection in chat and on schedule: access, erasure, audit log, reports, retention.

``!meine-daten`` (Art. 15 DSGVO) and ``!daten-löschen`` (Art. 17) ask every feature for its
part through the hooks of :mod:`lotsenbot.core.personal_data`, plus this feature's own part
for the foundation tables. ``!protokoll`` and ``!bericht`` are for coordinators; the report
is also sent every Monday, and a nightly job applies the retention periods of ``[privacy]``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, time, timedelta
from typing import Any

import aiosqlite
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from lotsenbot.config import Config, PrivacyConfig
from lotsenbot.core import personal_data
from lotsenbot.core.clock import iso
from lotsenbot.core.context import Context, audit
from lotsenbot.core.errors import BadArguments, Conflict
from lotsenbot.core.feature import Feature
from lotsenbot.core.markdown import escape
from lotsenbot.core.outbox import Envelope
from lotsenbot.core.personal_data import ErasureReport
from lotsenbot.core.router import fold
from lotsenbot.core.services import Services
from lotsenbot.core.types import Attachment, OutMessage, Role
from lotsenbot.privacy import report as reports
from lotsenbot.privacy.audit_summary import summarize
from lotsenbot.privacy.store import FoundationData, recent_audit
from lotsenbot.texts import Catalogue

log = logging.getLogger(__name__)

META = "de.lotsenbot.privacy"
REPORT_META = "de.lotsenbot.report"
ERASE_CHOICE = "privacy.erase"
ERASE_YES = frozenset({"bestaetigen", "bestatigen", "confirm", "ja", "yes", "ja bitte"})
ERASE_NO = frozenset({"abbrechen", "cancel", "nein", "no", "nein danke"})
ERASE_CONFIRM_WITHIN = timedelta(minutes=10)
AUDIT_DEFAULT, AUDIT_MAX = 20, 200
# Features whose personal-data part lives in a module of its own (registered on import).
FEATURE_MODULES = ("faq", "tickets", "meetups", "announcements")
CORE = "core"


def load_feature_handlers(names: Sequence[str] = FEATURE_MODULES) -> list[str]:
    """Import ``lotsenbot.<feature>.personal_data`` for each feature present in this build;
    a missing module means the feature (or its part) is not there, which is fine."""
    loaded: list[str] = []
    for name in names:
        try:
            importlib.import_module(f"lotsenbot.{name}.personal_data")
        except ImportError as exc:
            log.debug("Kein Datenschutz-Teil für %s: %s", name, exc)
            continue
        loaded.append(name)
    return loaded


def all_handlers(features: Mapping[str, object]) -> list[tuple[str, object]]:
    """Every handler of personal data: the foundation tables, then the features'."""
    load_feature_handlers()
    return personal_data.handlers(features, extra=[(CORE, FoundationData())])


async def _each_hook(
    handlers: Sequence[tuple[str, object]], hook_name: str, *args: Any
) -> AsyncIterator[tuple[str, Any]]:
    """Call the hook ``hook_name`` of every handler that has it, one after the other and in
    the handlers' order, yielding each handler's name with its result.

    Sequential on purpose: all hooks share one connection (usually one transaction), and the
    erasure relies on the order in which the features see the person's rows."""
    for name, handler in handlers:
        method = personal_data.hook(handler, hook_name)
        if method is not None:
            yield name, await method(*args)


async def export_person(
    conn: aiosqlite.Connection, handlers: Sequence[tuple[str, object]], user_id: str
) -> dict[str, Any]:
    return {name: part async for name, part in _each_hook(handlers, "export_person", conn, user_id)}


async def erase_person(
    conn: aiosqlite.Connection,
    handlers: Sequence[tuple[str, object]],
    user_id: str,
    now: datetime,
) -> ErasureReport:
    """Erase across all features; the foundation goes last, after the features have used
    whatever they still needed to find the person's rows."""
    total = ErasureReport()
    ordered = [h for h in handlers if h[0] != CORE] + [h for h in handlers if h[0] == CORE]
    async for name, part in _each_hook(ordered, "erase_person", conn, user_id, now):
        total.merge(part, prefix=f"{name}.")
    return total


async def purge_all(
    conn: aiosqlite.Connection,
    handlers: Sequence[tuple[str, object]],
    now: datetime,
    privacy: PrivacyConfig,
    dry_run: bool,
) -> dict[str, dict[str, int]]:
    """Apply (or, with ``dry_run``, only count) every retention period; counts per
    feature and category."""
    return {
        name: dict(counts)
        async for name, counts in _each_hook(handlers, "purge", conn, now, privacy, dry_run)
    }


async def collect_statistics(
    conn: aiosqlite.Connection,
    handlers: Sequence[tuple[str, object]],
    since: datetime,
    until: datetime,
    per_person: bool,
) -> dict[str, dict[str, Any]]:
    results = _each_hook(handlers, "statistics", conn, since, until, per_person)
    return {name: dict(result) async for name, result in results if result}


def export_document(user_id: str, now: datetime, sections: Mapping[str, Any]) -> bytes:
    document = {
        "format": "lotsenbot-auskunft/1",
        "user_id": user_id,
        "generated_at": iso(now),
        "legal_basis": "Art. 15 DSGVO",
        "data": sections,
    }
    return json.dumps(document, ensure_ascii=False, indent=2, default=str).encode("utf-8")


def _label(t: Catalogue, prefix: str, category: str) -> str:
    key = f"privacy.{prefix}.{category}"
    return t(key) if t.has(key) else category


def describe_erasure(result: ErasureReport, t: Catalogue) -> list[str]:
    lines: list[str] = []
    if result.erased:
        lines.append(t("privacy.erase.erased_heading"))
        for category, count in sorted(result.erased.items()):
            lines.append(f"- {_label(t, 'category', category)}: {count}")
    else:
        lines.append(t("privacy.erase.nothing"))
    if result.kept:
        lines += ["", t("privacy.erase.kept_heading")]
        for item in result.kept:
            params = {"count": item.count, **item.params}
            reason = t(item.reason, **params) if t.has(item.reason) else item.reason
            lines.append(f"- {_label(t, 'category', item.category)} ({item.count}): {reason}")
    return lines


def department_names(config: Config) -> dict[str, str]:
    return {d.id: d.name for d in config.departments}


class PrivacyFeature(Feature):
    name = "privacy"

    def __init__(self) -> None:
        super().__init__()
        r = self.router
        r.command("meine-daten", aliases=("my-data", "meine daten"))(self._my_data)
        r.command("daten-löschen", aliases=("delete-my-data", "daten löschen"),
                  args="[bestätigen]")(self._erase)  # fmt: skip
        # A bare "nein" right after "Möchten Sie wirklich …?" cancels; "ja" asks for the command.
        r.on_message(priority=5)(self._on_erase_answer)
        r.command("protokoll", aliases=("audit-log",), roles=(Role.COORDINATOR,),
                  args="[Anzahl]")(self._audit_log)  # fmt: skip
        r.command("bericht", aliases=("report",), roles=(Role.COORDINATOR,),
                  args="[Zeitraum]", prepare=self._prepare_report)(self._report)  # fmt: skip

    def handlers(self) -> list[tuple[str, object]]:
        assert self.services is not None
        return all_handlers(self.services.features)

    # -- jobs ------------------------------------------------------------------------------

    async def start(self, services: Services) -> None:
        await super().start(services)
        load_feature_handlers()
        tz = services.config.bot.tz
        scheduler = services.scheduler
        scheduler.add_job(self.purge_job, CronTrigger(hour=3, minute=30, timezone=tz),
                          id="privacy.purge", replace_existing=True, coalesce=True,
                          misfire_grace_time=6 * 3600)  # fmt: skip
        if services.config.privacy.weekly_report:
            scheduler.add_job(self.weekly_report_job,
                              CronTrigger(day_of_week="mon", hour=8, minute=0, timezone=tz),
                              id="privacy.weekly_report", replace_existing=True, coalesce=True,
                              misfire_grace_time=6 * 3600)  # fmt: skip
            await self._catch_up_weekly_report(services)
        # matplotlib (about 15 MB and a second to import) is loaded by the first report,
        # not at start-up: most days nobody asks for one.

    async def _catch_up_weekly_report(self, services: Services) -> None:
        """A bot that was down at Monday 08:00 (an update, a reboot) sends the week's report
        when it is back, within two days; the scheduler alone would wait a week. Only if it
        was in service before the slot (a new installation has no week to report), and only
        once (the report's dedup key)."""
        tz = services.config.bot.tz
        now = services.clock.now()
        local = now.astimezone(tz)
        monday = (local - timedelta(days=local.weekday())).date()
        slot = datetime.combine(monday, time(8, 0), tzinfo=tz)
        if not slot <= now < slot + timedelta(days=2):
            return
        row = await services.db.fetchone("SELECT value FROM meta WHERE key = 'last_sync_at'")
        if row is None or datetime.fromisoformat(str(row[0]).replace("Z", "+00:00")) >= slot:
            return
        services.scheduler.add_job(
            self.weekly_report_job, DateTrigger(run_date=now + timedelta(seconds=30)),
            id="privacy.weekly_report_catch_up", replace_existing=True,
        )  # fmt: skip

    async def purge_job(self) -> dict[str, dict[str, int]]:
        assert self.services is not None
        services = self.services
        now = services.clock.now()
        async with services.db.transaction() as conn:
            counts = await purge_all(conn, self.handlers(), now, services.config.privacy, False)
            await audit(conn, now, services.bot_user_id, "privacy.purge", None, counts)
        log.info("Aufbewahrungsfristen angewendet: %s", json.dumps(counts, ensure_ascii=False))
        return counts

    async def weekly_report_job(self) -> bool:
        """Send last week's report once (dedup key ``report:<ISO week>``)."""
        assert self.services is not None
        services = self.services
        config = services.config
        now = services.clock.now()
        period, week = reports.iso_week_before(now, config.bot.tz)
        t = services.texts
        async with services.db.transaction() as conn:
            figures = await self._figures(conn, period, config, now)
            people = await self._people(conn, figures, now)
        message = await self._report_message(figures, period, t, config, week=week, people=people)
        async with services.db.transaction() as conn:
            if config.bot.coordinator_room:
                sent = await services.outbox.enqueue(
                    conn, f"report:{week}",
                    Envelope("room", config.bot.coordinator_room, message, "report"),
                )  # fmt: skip
            else:
                sent = False
                for user_id in services.roles.coordinators():
                    sent = await services.outbox.enqueue(
                        conn, f"report:{week}:{user_id}",
                        Envelope("user", user_id, message, "report"),
                    ) or sent  # fmt: skip
        services.outbox.wake()
        return sent

    async def _report_message(
        self,
        figures: Mapping[str, Mapping[str, Any]],
        period: reports.Period,
        t: Catalogue,
        config: Config,
        week: str | None = None,
        people: Mapping[str, str] | None = None,
    ) -> OutMessage:
        names = department_names(config)
        per_person = config.privacy.per_person_stats
        text = reports.render_markdown(figures, period, t, names, config.bot.tz, per_person,
                                       people)  # fmt: skip
        if week is not None:
            text = t("privacy.report.weekly_intro", week=week) + "\n\n" + text
        png = await asyncio.to_thread(reports.render_chart, figures, period, t, names)
        filename = f"bericht-{period.first_day.isoformat()}-{period.last_day.isoformat()}.png"
        meta = {
            REPORT_META: {
                "since": iso(period.since),
                "until": iso(period.until),
                "sections": sorted(figures),
                "per_person": per_person,
                "week": week,
            }
        }
        return OutMessage(text, meta=meta, attachment=Attachment(filename, "image/png", png))

    # -- commands --------------------------------------------------------------------------

    async def _my_data(self, ctx: Context, args: str) -> None:
        sections = await export_person(ctx.conn, self.handlers(), ctx.sender)
        data = export_document(ctx.sender, ctx.now, sections)
        day = ctx.now.astimezone(ctx.services.config.bot.tz).date().isoformat()
        filename = f"meine-daten-{day}.json"
        meta = {META: {"action": "export", "filename": filename, "bytes": len(data),
                       "sections": sorted(sections)}}  # fmt: skip
        message = OutMessage(
            ctx.t("privacy.export.done", filename=filename),
            meta=meta,
            attachment=Attachment(filename, "application/json", data),
        )
        if ctx.incoming.is_direct:
            ctx.reply_message(message)
        else:
            # Never into a group room: the file goes to the person's direct chat.
            ctx.send_to_user(ctx.sender, message, purpose="privacy")
            ctx.reply(ctx.t("privacy.export.sent_direct"), **{META: {"action": "export_sent"}})
        await ctx.audit("privacy.export", ctx.sender, {"bytes": len(data),
                                                       "sections": sorted(sections)})  # fmt: skip

    async def _erase(self, ctx: Context, args: str) -> None:
        if not ctx.incoming.is_direct:
            # The question, the summary of what is erased and what is kept (with the numbers
            # of open requests) belong in the direct chat, not before the colleagues.
            ctx.reply(ctx.t("privacy.erase.direct_only", prefix=ctx.services.config.bot.prefix),
                      **{META: {"action": "erase_direct_only"}})  # fmt: skip
            return
        word = fold(args)
        if not word:
            expires = ctx.now + ERASE_CONFIRM_WITHIN
            await ctx.remember_choice(ERASE_CHOICE, {"asked_at": iso(ctx.now),
                                                     **ctx.here_and_now()},
                                      ERASE_CONFIRM_WITHIN)  # fmt: skip
            await ctx.audit("privacy.erase_requested", ctx.sender, {})
            ctx.reply(
                ctx.t("privacy.erase.confirm", prefix=ctx.services.config.bot.prefix,
                      minutes=int(ERASE_CONFIRM_WITHIN.total_seconds() // 60)),
                **{META: {"action": "erase_confirm", "expires_at": iso(expires)}},
            )  # fmt: skip
            return
        if word in ERASE_NO:
            await self._cancel_erase(ctx)
            return
        if word not in ERASE_YES:
            raise BadArguments("privacy.usage.daten_loeschen")  # fmt: skip
        if await ctx.recall_choice(ERASE_CHOICE, consume=True) is None:
            raise Conflict("privacy.erase.no_pending")
        await self._carry_out_erasure(ctx)

    async def _on_erase_answer(self, ctx: Context) -> bool:
        """ "ja" / "nein" as the next message after the confirmation question, in the same
        room (with nothing said in between), or sent as a reply to it. "nein" cancels.
        "ja" does not erase: a bare "ja" may be meant for another message of the bot that
        crossed the question (an invitation, a pilot's answer), and an erasure cannot be
        undone, so it asks for the explicit command."""
        word = " ".join(re.sub(r"[^\w\s]", " ", fold(ctx.incoming.body)).split())
        if word not in ERASE_YES and word not in ERASE_NO:
            return False
        pending = await ctx.recall_choice(ERASE_CHOICE)
        if pending is None or not await ctx.refers_to(pending):
            return False
        if word in ERASE_NO:
            await self._cancel_erase(ctx)
        else:
            ctx.reply(ctx.t("privacy.erase.use_command", prefix=ctx.services.config.bot.prefix),
                      **{META: {"action": "erase_needs_command"}})  # fmt: skip
        return True

    async def _cancel_erase(self, ctx: Context) -> None:
        await ctx.forget_choice(ERASE_CHOICE)
        ctx.reply(ctx.t("privacy.erase.cancelled"), **{META: {"action": "erase_cancelled"}})

    async def _carry_out_erasure(self, ctx: Context) -> None:
        result = await erase_person(ctx.conn, self.handlers(), ctx.sender, ctx.now)
        # The audit entry is the evidence that the request was carried out (Art. 5(2)).
        await ctx.audit("privacy.erase", ctx.sender, result.to_dict())
        lines = [ctx.t("privacy.erase.done"), "", *describe_erasure(result, ctx.t)]
        ctx.reply("\n".join(lines), **{META: {"action": "erased", **result.to_dict()}})

    async def _audit_log(self, ctx: Context, args: str) -> None:
        value = args.strip()
        if not value:
            limit = AUDIT_DEFAULT
        elif value.isascii() and value.isdigit() and 1 <= int(value) <= AUDIT_MAX:  # not "²"
            limit = int(value)
        else:
            raise BadArguments("privacy.usage.protokoll", max=AUDIT_MAX)
        entries = await recent_audit(ctx.conn, limit)
        await ctx.audit("privacy.audit_view", None, {"count": limit})
        tz = ctx.services.config.bot.tz
        if not entries:
            ctx.reply(ctx.t("privacy.protokoll.empty"), **{META: {"action": "audit_log",
                                                                  "entries": []}})  # fmt: skip
            return
        lines = [ctx.t("privacy.protokoll.heading", count=len(entries)), ""]
        people = await ctx.names.labels(
            [e.actor for e in entries] + [e.subject for e in entries if e.subject]
        )
        for entry in entries:
            when = datetime.fromisoformat(entry.at.replace("Z", "+00:00")).astimezone(tz)
            summary = summarize(entry.action, entry.details, ctx.t, tz)
            action_key = f"privacy.action.{entry.action}"
            action = ctx.t(action_key) if ctx.t.has(action_key) else entry.action
            key = "privacy.protokoll.line" if entry.subject else "privacy.protokoll.line_no_subject"
            lines.append(ctx.t(
                key, when=when.strftime("%d.%m.%Y %H:%M"), actor=people[entry.actor],
                action=escape(action), subject=people.get(entry.subject or "", ""),
            ) + (f" – {escape(summary)}" if summary else ""))  # fmt: skip
        meta = {META: {"action": "audit_log", "entries": [
            {"at": e.at, "actor": e.actor, "action": e.action, "subject": e.subject}
            for e in entries]}}  # fmt: skip
        ctx.reply_privately("\n".join(lines), **meta)

    async def _prepare_report(
        self, services: Services, args: str, now: datetime
    ) -> tuple[reports.Period, dict[str, dict[str, Any]], OutMessage]:
        """The report, chart included, before the command's write transaction: drawing the
        chart takes a fraction of a second (up to 0.7 s the first time, with importing
        matplotlib), during which no other event could be stored or handled."""
        config = services.config
        period = reports.parse_period(args, now, config.bot.tz)
        async with services.db.transaction() as conn:  # reads only, briefly
            figures = await self._figures(conn, period, config, now)
            people = await self._people(conn, figures, now)
        message = await self._report_message(figures, period, services.texts, config,
                                             people=people)  # fmt: skip
        return period, figures, message

    async def _people(
        self, conn: aiosqlite.Connection, figures: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> dict[str, str]:
        """Labels of the people the per-person figures name (only when they are on)."""
        assert self.services is not None
        by_pilot = (figures.get("tickets") or {}).get("by_pilot") or {}
        if not self.services.config.privacy.per_person_stats or not by_pilot:
            return {}
        return await self.services.names.on(conn, now).labels(by_pilot)

    async def _figures(
        self, conn: aiosqlite.Connection, period: reports.Period, config: Config, now: datetime
    ) -> dict[str, dict[str, Any]]:
        handlers = self.handlers()
        figures = await collect_statistics(
            conn, handlers, period.since, period.until, config.privacy.per_person_stats
        )
        # The event records go after [privacy] handled_events_days: only a period reaching
        # further back can miss some (a new installation has none older, and says nothing).
        core = figures.get("core")
        events_from = now - timedelta(days=config.privacy.handled_events_days)
        if core is not None and period.since >= events_from:
            core.pop("counted_from", None)
        # Sign-ups go after [privacy] signups_days: a period reaching further back shows the
        # older dates without their sign-ups (or not at all), and the report says so.
        kept_from = now - timedelta(days=config.privacy.signups_days)
        if period.since < kept_from and any(name == "meetups" for name, _ in handlers):
            day = kept_from.astimezone(config.bot.tz).date()
            figures.setdefault("meetups", {})["counted_from"] = day.isoformat()
        return figures

    async def _report(self, ctx: Context, args: str) -> None:
        config = ctx.services.config
        period = reports.parse_period(args, ctx.now, config.bot.tz)
        # Counting is quick; the figures are taken here, in the event's transaction, as
        # always (the asker's own visit counts). The prepared chart is used when it shows
        # the same figures, which it does unless something changed in between.
        figures = await self._figures(ctx.conn, period, config, ctx.now)
        prepared = ctx.prepared
        if prepared is not None and prepared[0] == period and prepared[1] == figures:
            message = prepared[2]
        else:
            people = await self._people(ctx.conn, figures, ctx.now)
            message = await self._report_message(figures, period, ctx.t, config, people=people)
        await ctx.audit("privacy.report", None, {"since": iso(period.since),
                                                 "until": iso(period.until)})  # fmt: skip
        # The unanswered questions are staff's own words: not for everyone in a group room.
        ctx.reply_message_privately(message)
