"""Announcements: coordinators write once, the bot delivers to every recipient exactly once.

The life cycle is ``draft → scheduled → sending → done`` (or ``discarded`` before sending).
A command creates a draft and answers with a preview; confirming (``!senden`` or 👍 on the
preview) sets the time the fan-out may start. The fan-out itself is done by a job, never by
the handler: it expands the audience into one outbox row per recipient inside a single
transaction (all rows or none), and the rows' dedup keys ``ann:<id>:<target>`` make a repeated
expansion after a crash a no-op. The outbox sender then delivers with deterministic
transaction ids and honours rate limits; the same job notices when every row is settled and
sends the coordinator a summary. Because the database holds all of this, a restart simply
carries on: overdue scheduled announcements fire on the first tick, half-finished fan-outs
continue where the sender stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiosqlite

from lotsenbot.announcements import store
from lotsenbot.announcements.audience import (
    Audience,
    AudienceKind,
    Directory,
    Recipient,
    dedup_key,
    expand,
    parse_request,
)
from lotsenbot.core.clock import iso
from lotsenbot.core.context import Context, audit
from lotsenbot.core.errors import BadArguments, Conflict, NotFound
from lotsenbot.core.feature import Feature
from lotsenbot.core.markdown import escape
from lotsenbot.core.outbox import Envelope
from lotsenbot.core.types import OutMessage, Role
from lotsenbot.texts import Catalogue

if TYPE_CHECKING:
    from lotsenbot.core.services import Services

log = logging.getLogger(__name__)

META = "de.lotsenbot.announcement"
PURPOSE = "announcement"
TICK_JOB = "announcements-tick"
KICK_JOB = "announcements-kick"
COORDINATORS = (Role.COORDINATOR,)
ANNOUNCE_ARGS = "<Zielgruppe> [TT.MM.JJJJ HH:MM] <Text>"

# 👍 in any skin tone, with or without the emoji variation selector.
_THUMBS_UP = re.compile("^\U0001f44d[\U0001f3fb-\U0001f3ff]?\ufe0f?$")
_NUMBER = re.compile(r"^(?:nr\.?|no\.?|#)?\s*(\d{1,9})$", re.IGNORECASE)


def is_thumbs_up(key: str | None) -> bool:
    return bool(key) and bool(_THUMBS_UP.match(key or ""))


class AnnouncementsFeature(Feature):
    name = "announcements"

    tick_seconds: float = 2.0
    """How often the job looks for due announcements and settled fan-outs. Both queries use
    partial indexes over the few open announcements, so a short interval costs nothing and
    keeps a scheduled announcement within seconds of its time."""

    def __init__(self) -> None:
        super().__init__()
        command = self.router.command
        command("ankündigung", aliases=("announce",), roles=COORDINATORS, args=ANNOUNCE_ARGS)(
            self._announce
        )
        command(
            "ankündigung!",
            aliases=("announce!",),
            roles=COORDINATORS,
            args=ANNOUNCE_ARGS,
            help_key="announcements.cmd.ankuendigung_wichtig",
        )(self._announce_important)
        command(
            "ankündigung status", aliases=("announce status",), roles=COORDINATORS, args="<Nr>"
        )(self._status)
        command("ankündigungen", aliases=("announcements",), roles=COORDINATORS)(self._list)
        command("senden", aliases=("send",), roles=COORDINATORS, args="<Nr>")(self._send)
        command("verwerfen", aliases=("discard",), roles=COORDINATORS, args="<Nr>")(self._discard)
        command("abmelden", aliases=("unsubscribe",))(self._unsubscribe)
        command("anmelden", aliases=("subscribe",))(self._subscribe)
        self.router.on_reaction(self._on_reaction)
        self._tick_lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self, services: Services) -> None:
        """Declare the tick; its first run right after start-up picks up whatever the
        database says is due or in flight (the restart case)."""
        await super().start(services)
        services.scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.tick_seconds,
            id=TICK_JOB,
            replace_existing=True,
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

    async def stop(self) -> None:
        """Let a running tick finish its transaction rather than cut it off."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                async with self._tick_lock:
                    pass

    @property
    def _services(self) -> Services:
        if self.services is None:
            raise RuntimeError("announcements feature not started")
        return self.services

    def _kick(self) -> None:
        """Run the tick now instead of at the next interval. The job waits for the write
        lock, so it sees the handler's transaction only once it has committed."""
        services = self._services
        services.scheduler.add_job(
            self.tick, "date", id=KICK_JOB, replace_existing=True, misfire_grace_time=None
        )

    # -- commands ------------------------------------------------------------------------

    async def _announce(self, ctx: Context, args: str) -> None:
        await self._create(ctx, args, important=False)

    async def _announce_important(self, ctx: Context, args: str) -> None:
        await self._create(ctx, args, important=True)

    async def _create(self, ctx: Context, args: str, *, important: bool) -> None:
        config = ctx.services.config
        departments = [d.id for d in config.departments]
        request = parse_request(
            args, departments=departments, now=ctx.now, tz=config.bot.tz, important=important
        )
        label = self._audience_label(ctx.t, request.audience)
        recipients = expand(
            request.audience, await self._directory(ctx.conn), important=request.important
        )
        if not recipients:
            raise Conflict("announcements.error.no_recipients", audience=label)
        announcement_id = await store.create(
            ctx.conn,
            author=ctx.sender,
            room_id=ctx.room_id,
            room_is_direct=ctx.incoming.is_direct,
            audience=request.audience,
            body=request.body,
            important=request.important,
            send_at=request.send_at,
            recipients=len(recipients),
            now=ctx.now,
        )
        # The preview is the next reply of this event; the dispatcher enqueues replies under
        # "evt:<event id>:<position>". Remembering that key lets a 👍 on the delivered preview
        # find this draft through the outbox row's event id.
        await store.set_preview_key(
            ctx.conn, announcement_id, f"evt:{ctx.incoming.event_id}:{len(ctx.outgoing)}"
        )
        t = ctx.t
        prefix = config.bot.prefix
        facts = [t("announcements.preview.facts", audience=label, recipients=len(recipients))]
        if request.send_at is not None:
            facts.append(
                t("announcements.preview.when_scheduled", when=self._local(request.send_at))
            )
        else:
            facts.append(t("announcements.preview.when_now"))
        if request.important:
            facts.append(t("announcements.preview.important"))
        preview = "\n\n".join(
            [
                t("announcements.preview.title", id=announcement_id),
                "  \n".join(facts),
                "---",
                request.body,
                "---",
                t("announcements.preview.confirm", id=announcement_id, prefix=prefix),
            ]
        )
        details = {
            "audience": request.audience.key,
            "recipients": len(recipients),
            "important": request.important,
            "send_at": iso(request.send_at) if request.send_at else None,
        }
        ctx.reply(preview, **{META: {"id": announcement_id, "preview": True, **details}})
        await ctx.audit("announcement.created", f"announcement:{announcement_id}", details)

    async def _send(self, ctx: Context, args: str) -> None:
        announcement = await self._load(ctx, args, "senden")
        await self._confirm(ctx, announcement)

    async def _on_reaction(self, ctx: Context) -> bool:
        """👍 on a preview confirms it, like ``!senden``; other reactions are not ours."""
        incoming = ctx.incoming
        if not is_thumbs_up(incoming.key) or not incoming.relates_to:
            return False
        announcement = await store.draft_for_preview_event(ctx.conn, incoming.relates_to)
        if announcement is None:
            return False
        if ctx.person.is_coordinator:
            await self._confirm(ctx, announcement)
        return True  # someone else's 👍 on a preview is applause, not a confirmation

    async def _confirm(self, ctx: Context, announcement: store.Announcement) -> None:
        send_at = announcement.send_at
        later = send_at is not None and send_at > ctx.now
        due_at = send_at if later and send_at is not None else ctx.now
        if not await store.confirm(ctx.conn, announcement.id, ctx.sender, due_at, ctx.now):
            raise self._state_conflict(announcement.id, announcement.state)
        prefix = ctx.services.config.bot.prefix
        subject = f"announcement:{announcement.id}"
        if later:
            ctx.reply(
                ctx.t(
                    "announcements.confirm.scheduled",
                    id=announcement.id,
                    when=self._local(due_at),
                    prefix=prefix,
                ),
                **{META: {"id": announcement.id, "state": "scheduled", "send_at": iso(due_at)}},
            )
            await ctx.audit("announcement.scheduled", subject, {"send_at": iso(due_at)})
        else:
            ctx.reply(
                ctx.t("announcements.confirm.now", id=announcement.id, prefix=prefix),
                **{META: {"id": announcement.id, "state": "sending"}},
            )
            await ctx.audit("announcement.confirmed", subject, {})
            self._kick()

    async def _discard(self, ctx: Context, args: str) -> None:
        announcement = await self._load(ctx, args, "verwerfen")
        if not await store.discard(ctx.conn, announcement.id, ctx.sender, ctx.now):
            raise self._state_conflict(announcement.id, announcement.state)
        ctx.reply(
            ctx.t("announcements.discard.done", id=announcement.id),
            **{META: {"id": announcement.id, "state": "discarded"}},
        )
        await ctx.audit(
            "announcement.discarded", f"announcement:{announcement.id}", {"was": announcement.state}
        )

    async def _status(self, ctx: Context, args: str) -> None:
        announcement = await self._load(ctx, args, "ankündigung status")
        t = ctx.t
        counts = await store.delivery_counts(ctx.conn, announcement.id)
        if announcement.state == "done" and counts.total == 0:
            # The outbox rows may have been purged (retention); the final figures remain.
            counts = store.DeliveryCounts(
                0, announcement.sent_count or 0, announcement.failed_count or 0
            )
        state = announcement.state
        recipients = counts.total if state in ("sending", "done") else announcement.recipients
        params: dict[str, Any] = {
            "id": announcement.id,
            "audience": self._audience_label(t, announcement.audience),
            "recipients": recipients,
        }
        if state == "scheduled" and announcement.due_at is not None:
            text = t(
                "announcements.status.scheduled", when=self._local(announcement.due_at), **params
            )
        elif state in ("draft", "discarded"):
            text = t(f"announcements.status.{state}", **params)
        else:
            text = t(
                "announcements.status.text",
                state=t(f"announcements.state.{state}"),
                sent=counts.sent,
                pending=counts.pending,
                failed=counts.failed,
                **params,
            )
        status = {
            "state": state,
            "recipients": recipients,
            "pending": counts.pending,
            "sent": counts.sent,
            "failed": counts.failed,
        }
        ctx.reply(text, **{META: {"id": announcement.id, "status": status}})

    async def _list(self, ctx: Context, args: str) -> None:
        t = ctx.t
        items = await store.open_announcements(ctx.conn)
        listing = [
            {"id": a.id, "state": a.state, "due_at": iso(a.due_at) if a.due_at else None}
            for a in items
        ]
        if not items:
            ctx.reply(t("announcements.list.empty"), **{META: {"list": listing}})
            return
        lines = [t("announcements.list.title"), ""]
        for item in items:
            params = {
                "id": item.id,
                "audience": self._audience_label(t, item.audience),
                "excerpt": _excerpt(item.body),
            }
            if item.state == "scheduled" and item.due_at is not None:
                lines.append(
                    t("announcements.list.item_scheduled", when=self._local(item.due_at), **params)
                )
            else:
                lines.append(t("announcements.list.item_draft", **params))
        lines += ["", t("announcements.list.footer", prefix=ctx.services.config.bot.prefix)]
        ctx.reply("\n".join(lines), **{META: {"list": listing}})

    @staticmethod
    def _meetup_number(args: str, command: str, meetup_command: str) -> None:
        """``!abmelden 3`` means meetup 3, not the announcements: say so, change nothing."""
        if any(ch.isdigit() for ch in args):
            raise BadArguments(
                f"announcements.usage.{command}_meetup",
                command=command,
                meetup_command=meetup_command,
                args=escape(args.strip()),
            )

    async def _unsubscribe(self, ctx: Context, args: str) -> None:
        self._meetup_number(args, "abmelden", "absage")
        prefix = ctx.services.config.bot.prefix
        changed = await store.opt_out(ctx.conn, ctx.sender, ctx.now)
        key = "announcements.optout.done" if changed else "announcements.optout.already"
        ctx.reply(ctx.t(key, prefix=prefix), **{META: {"subscribed": False}})

    async def _subscribe(self, ctx: Context, args: str) -> None:
        self._meetup_number(args, "anmelden", "zusage")
        prefix = ctx.services.config.bot.prefix
        changed = await store.opt_in(ctx.conn, ctx.sender)
        key = "announcements.optin.done" if changed else "announcements.optin.already"
        ctx.reply(ctx.t(key, prefix=prefix), **{META: {"subscribed": True}})

    # -- the job -------------------------------------------------------------------------

    async def tick(self) -> None:
        """Start due fan-outs and report finished ones. Safe to run at any time and any
        number of times: every step re-checks the state inside its own transaction."""
        async with self._tick_lock:
            try:
                await self._start_due()
                await self._report_settled()
            except Exception:
                log.exception("Ankündigungen: Durchlauf fehlgeschlagen")

    async def _start_due(self) -> None:
        services = self._services
        db = services.db
        now = services.clock.now()
        for announcement_id in await store.due(db.conn, now):
            async with db.transaction() as conn:
                announcement = await store.get(conn, announcement_id)
                if (
                    announcement is None
                    or announcement.state != "scheduled"
                    or announcement.due_at is None
                    or announcement.due_at > now
                ):
                    continue
                count = await self.fan_out(conn, announcement, now)
            log.info("Ankündigung %s: %s Nachrichten eingereiht", announcement_id, count)
            services.outbox.wake()

    async def fan_out(
        self, conn: aiosqlite.Connection, announcement: store.Announcement, now: datetime
    ) -> int:
        """Expand the audience into outbox rows and mark the announcement as sending.

        Must run inside one transaction: either every row and the state change commit, or
        none. Running it again for the same announcement inserts nothing (dedup keys)."""
        services = self._services
        recipients = expand(
            announcement.audience, await self._directory(conn), important=announcement.important
        )
        for recipient in recipients:
            await services.outbox.enqueue(
                conn,
                dedup_key(announcement.id, recipient),
                Envelope(
                    recipient.kind,
                    recipient.target,
                    self._message(announcement, recipient),
                    PURPOSE,
                ),
            )
        await store.start_sending(conn, announcement.id, len(recipients), now)
        await audit(
            conn,
            now,
            announcement.confirmed_by or announcement.author,
            "announcement.sent",
            f"announcement:{announcement.id}",
            {
                "recipients": len(recipients),
                "audience": announcement.audience.key,
                "important": announcement.important,
            },
        )
        return len(recipients)

    async def _report_settled(self) -> None:
        services = self._services
        db = services.db
        for announcement_id in await store.sending(db.conn):
            if (await store.delivery_counts(db.conn, announcement_id)).pending:
                continue
            now = services.clock.now()
            async with db.transaction() as conn:
                counts = await store.delivery_counts(conn, announcement_id)
                announcement = await store.get(conn, announcement_id)
                if counts.pending or announcement is None:
                    continue
                if not await store.finish(conn, announcement_id, counts, now):
                    continue
                await services.outbox.enqueue(
                    conn,
                    f"ann-summary:{announcement_id}",
                    Envelope(
                        "room", announcement.room_id, self._summary(announcement, counts), PURPOSE
                    ),
                )
                await audit(
                    conn,
                    now,
                    services.bot_user_id,
                    "announcement.delivered",
                    f"announcement:{announcement_id}",
                    {"sent": counts.sent, "failed": counts.failed},
                )
            services.outbox.wake()

    # -- helpers -------------------------------------------------------------------------

    async def _directory(self, conn: aiosqlite.Connection) -> Directory:
        return await directory(conn, self._services)

    def _message(self, announcement: store.Announcement, recipient: Recipient) -> OutMessage:
        """One recipient's copy. Nobody is mentioned: an announcement informs, it never
        pings a room; the opt-out hint is only for people who could use it."""
        t = self._services.texts
        header = (
            "announcements.message.header_important"
            if announcement.important
            else ("announcements.message.header")
        )
        parts = [t(header), announcement.body]
        if (
            recipient.kind == "user"
            and announcement.audience.kind is AudienceKind.ALL
            and not announcement.important
        ):
            parts.append(
                t("announcements.message.footer_optout", prefix=self._services.config.bot.prefix)
            )
        return OutMessage(
            "\n\n".join(parts),
            meta={META: {"id": announcement.id, "important": announcement.important}},
        )

    def _summary(
        self, announcement: store.Announcement, counts: store.DeliveryCounts
    ) -> OutMessage:
        t = self._services.texts
        text = t(
            "announcements.summary.text",
            id=announcement.id,
            sent=counts.sent,
            failed=counts.failed,
            total=counts.total,
        )
        if counts.failed:
            text += "\n\n" + t("announcements.summary.failed_hint")
        status = {
            "state": "done",
            "recipients": counts.total,
            "pending": 0,
            "sent": counts.sent,
            "failed": counts.failed,
        }
        mentions = () if announcement.room_is_direct else (announcement.author,)
        return OutMessage(
            text, meta={META: {"id": announcement.id, "status": status}}, mentions=mentions
        )

    async def _load(self, ctx: Context, args: str, command: str) -> store.Announcement:
        match = _NUMBER.match(args.strip())
        if match is None:
            raise BadArguments("announcements.usage.number", command=command)
        announcement_id = int(match.group(1))
        announcement = await store.get(ctx.conn, announcement_id)
        if announcement is None:
            raise NotFound("announcements.error.not_found", id=announcement_id)
        return announcement

    @staticmethod
    def _state_conflict(announcement_id: int, state: str) -> Conflict:
        return Conflict(f"announcements.error.state_{state}", id=announcement_id)

    def _audience_label(self, t: Catalogue, audience: Audience) -> str:
        if audience.kind is AudienceKind.DEPARTMENT:
            department = self._services.config.department(audience.department or "")
            name = department.name if department else (audience.department or "")
            return t("announcements.audience.abteilung", name=escape(name))
        return t(f"announcements.audience.{audience.kind.value}")

    def _local(self, moment: datetime) -> str:
        local = moment.astimezone(self._services.config.bot.tz)
        return local.strftime("%d.%m.%Y %H:%M:%S" if local.second else "%d.%m.%Y %H:%M")


async def directory(conn: aiosqlite.Connection, services: Services) -> Directory:
    """Everyone reachable right now: roles from the config, the rest from the database.

    Also what a meetup's invitation to ``alle``, ``räume`` or ``koordination`` reaches, so
    that a word means the same people for announcements and meetups."""
    config = services.config
    roles = services.roles
    known = [u for u in await store.known_users(conn) if roles.is_allowed(u)]
    return Directory(
        pilots=roles.pilots(),
        coordinators=roles.coordinators(),
        coordinator_room=config.bot.coordinator_room,
        departments={d.id: (tuple(d.pilots), d.room) for d in config.departments},
        known_users=known,
        opted_out=await store.opted_out(conn),
        group_rooms=await store.group_rooms(conn),
        bot_user_id=services.bot_user_id,
    )


def _excerpt(body: str, limit: int = 60) -> str:
    """The first line of a body, shortened and escaped, to recognise it in a list."""
    line = next((x.strip() for x in body.splitlines() if x.strip()), "")
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return escape(line)
