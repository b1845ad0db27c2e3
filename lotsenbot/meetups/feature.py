"""Network meetups: create, announce, sign up (👍 or command), remind, change, cancel, poll.

How the pieces fit:

* ``!treffen neu`` parses the message (:mod:`.form`), stores the meetup (:mod:`.store`) and
  writes the announcement for every recipient into the outbox in the same transaction, with
  dedup keys ``meetup:<id>:ann:<target>`` (text) and ``meetup:<id>:ics:<target>`` (calendar
  file; a separate message, because the sender records the event id of the *file* for
  messages with attachments, and people react to the text). Both keys are remembered, so a
  👍 on either — found via ``outbox.event_id`` — is a sign-up.
* Sign-ups are per date. For a series a sign-up is for its next date at the time of signing
  up; the confirmation says so. Withdrawing (``!absage``, or removing the 👍) frees the place,
  and the first on the waiting list moves up and is told. So does an erasure of a person's
  data (``!daten-löschen``): the feature answers for its personal data itself (delegating to
  :mod:`.personal_data`), and enqueues the same notice in the erasure's transaction, keyed
  ``meetup:<id>:promoted:<date>:<signed up at>:<user>`` (one per place moved up into).
* Reminders are never scheduled per person: a periodic job asks the database which confirmed
  people have a date coming up and which reminders (:mod:`.reminders`) are due, records each
  as sent or skipped, and enqueues it with the key ``rem:<meetup>:<date>:<offset s>:<user>``
  (plus ``:<new start>`` for a moved date, whose earlier reminders are forgotten on the move).
  After a restart the same question gives the same answer, so nothing is lost or doubled.
* A date poll is a native Matrix poll; responses are stored (latest per person counts) and
  ending the poll creates the meetup at the date with the most votes (earlier date on a tie).

Every message about a meetup carries ``"de.lotsenbot.meetup": {"id", "event", "starts_at"}``;
poll messages carry ``"poll"`` (the poll number) and, once a meetup exists, its ``"id"``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import aiosqlite

from lotsenbot.announcements import audience as announcements
from lotsenbot.announcements.feature import directory
from lotsenbot.config import PrivacyConfig
from lotsenbot.core.clock import iso
from lotsenbot.core.context import Context
from lotsenbot.core.errors import BadArguments, Conflict, NotFound
from lotsenbot.core.feature import Feature
from lotsenbot.core.markdown import escape, quote
from lotsenbot.core.outbox import Envelope
from lotsenbot.core.personal_data import ErasureReport
from lotsenbot.core.types import Attachment, OutMessage, Poll, Role
from lotsenbot.meetups import store
from lotsenbot.meetups.audience import (
    PREVIEW_AUDIENCES,
    SHARED_WITH_ANNOUNCEMENTS,
    Audience,
    parse_audience,
)
from lotsenbot.meetups.capacity import change_capacity, sign_up, withdraw
from lotsenbot.meetups.dates import (
    MAX_DURATION,
    MeetupError,
    format_duration,
    format_when,
    parse_date,
    parse_when,
)
from lotsenbot.meetups.form import MAX_LENGTH, MeetupDraft, parse_changes, parse_meetup
from lotsenbot.meetups.ics import build_calendar
from lotsenbot.meetups.personal_data import MeetupsData
from lotsenbot.meetups.recurrence import (
    Occurrence,
    OccurrenceChange,
    expand,
    occurrence_key,
    occurrence_of,
    original_on,
)
from lotsenbot.meetups.reminders import ReminderKey, due_reminders, parse_offsets
from lotsenbot.texts import Catalogue

if TYPE_CHECKING:
    from lotsenbot.core.services import Services

log = logging.getLogger(__name__)

META = "de.lotsenbot.meetup"
COORDINATORS = (Role.COORDINATOR,)
REMINDER_JOB = "meetups.reminders"
# Dates that began up to this long ago are still looked at, so that reminders missed while
# the bot was down are recorded (and logged) as skipped instead of silently forgotten.
LOOKBACK = timedelta(days=1)
MAX_POLL_OPTIONS = 20  # what Matrix clients render
MAX_REASON = 500
LIST_LIMIT = 25
# Changes that alter what a calendar file says about the meetup (capacity does not).
CALENDAR_FIELDS = frozenset(("title", "when", "duration", "location", "link", "description"))

_DATA = MeetupsData()

_THUMBS_UP = re.compile("^\U0001f44d[\U0001f3fb-\U0001f3ff]?\ufe0f?$")
_NUMBER = re.compile(r"^\s*(?:nr\.?\s*|#)?(\d{1,9})(?=\s|$)(.*)$", re.IGNORECASE | re.DOTALL)
_ON_DATE = re.compile(r"^\s*am\s+(\S+)(.*)$", re.IGNORECASE | re.DOTALL)


def is_thumbs_up(key: str | None) -> bool:
    return bool(key) and bool(_THUMBS_UP.match(key or ""))


def reminder_interval(offsets: Iterable[timedelta]) -> float:
    """Seconds between reminder checks: tight when an offset is short (tests, demos),
    relaxed for the usual hours, so that a reminder is at most a few percent late."""
    return 1.0 if min(offsets, default=timedelta(hours=1)) < timedelta(minutes=5) else 30.0


def _bad(err: MeetupError) -> BadArguments:
    """A parse error as the core's user error; user text in the parameters is escaped."""
    params: dict[str, Any] = {
        k: escape(v) if isinstance(v, str) else v for k, v in err.params.items()
    }
    return BadArguments(err.code, **params)


@dataclass(frozen=True)
class Addressee:
    """Someone a change or cancellation notice goes to, and why: signed up (``confirmed``),
    on the waiting list (``waitlisted``), only invited (``invited``), or a group room the
    invitation went to (``room``). ``starts_at`` is the date the notice names; a sign-up
    also has the identity of its date (``occurrence``)."""

    kind: str  # outbox target kind: "user" | "room"
    target: str
    state: str
    starts_at: datetime
    occurrence: str | None = None


_WEEKDAY = re.compile(
    r"^(?:n(?:ä|ae)chsten\s+)?(?:montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonntag)$",
    re.I,
)


class MeetupsFeature(Feature):
    name = "meetups"

    def __init__(self) -> None:
        super().__init__()
        command = self.router.command
        command("treffen", aliases=("meetups",), args="[Nr]")(self._list_or_show)
        command(
            "treffen neu",
            aliases=("meetup new",),
            roles=COORDINATORS,
            args="<TT.MM.JJJJ> <HH:MM> <Titel>",
        )(self._create)
        command(
            "treffen ändern",
            aliases=("meetup edit",),
            roles=COORDINATORS,
            args="<Nr> [am <TT.MM.JJJJ>] <Feld>: <Wert>",
        )(self._change)
        command(
            "treffen streichen",
            aliases=("meetup cancel",),
            roles=COORDINATORS,
            args="<Nr> [am <TT.MM.JJJJ>] [Grund]",
        )(self._cancel)
        command("treffen senden", aliases=("meetup send",), roles=COORDINATORS, args="<Nr>")(
            self._send
        )
        command("treffen ics", aliases=("meetup ics",), args="<Nr>")(self._ics)
        command(
            "treffen umfrage",
            aliases=("meetup poll",),
            roles=COORDINATORS,
            args="<Titel> | <Termin 1> | <Termin 2> …",
        )(self._poll)
        command(
            "treffen umfrage beenden", aliases=("meetup poll end",), roles=COORDINATORS, args="<Nr>"
        )(self._poll_end)
        command("zusage", aliases=("rsvp",), args="<Nr>")(self._rsvp)
        command("absage", aliases=("rsvp cancel",), args="<Nr>")(self._withdraw)
        self.router.on_reaction(self._on_reaction)
        self.router.on_redaction(self._on_redaction)
        self.router.on_poll_response(self._on_poll_response)
        self.offsets: tuple[timedelta, ...] = ()
        self._tick_lock = asyncio.Lock()
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, services: Services) -> None:
        """Declare the reminder job; it runs at once, so reminders missed while the bot was
        down are handled right after start-up."""
        await super().start(services)
        try:
            self.offsets = parse_offsets(services.config.meetups.reminders)
        except MeetupError as err:  # config validation only checks the syntax
            raise ValueError(f"[meetups] reminders: {err}") from None
        self._stopped = False
        services.scheduler.add_job(
            self.tick,
            "interval",
            seconds=reminder_interval(self.offsets),
            next_run_time=datetime.now(UTC),
            id=REMINDER_JOB,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

    async def stop(self) -> None:
        """Wait for a running check to finish, so it never meets a closed database."""
        async with self._tick_lock:
            self._stopped = True

    @property
    def _services(self) -> Services:
        if self.services is None:
            raise RuntimeError("feature not started")
        return self.services

    @property
    def tz(self) -> ZoneInfo:
        return self._services.config.bot.tz

    # -- small helpers -----------------------------------------------------------------------

    def _when(self, moment: datetime) -> str:
        return format_when(moment, self.tz)

    def _meta(
        self, meetup_id: int | None, event: str, starts_at: datetime | None, **extra: Any
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"id": meetup_id, "event": event}
        if starts_at is not None:
            data["starts_at"] = starts_at.astimezone(self.tz).isoformat()
        data.update(extra)
        return {META: data}

    def _prefix(self) -> str:
        return self._services.config.bot.prefix

    @staticmethod
    def _number(args: str, usage: str) -> tuple[int, str]:
        match = _NUMBER.match(args)
        if match is None:
            raise BadArguments(usage)
        return int(match.group(1)), match.group(2).strip()

    async def _load(self, conn: aiosqlite.Connection, meetup_id: int) -> store.Meetup:
        meetup = await store.get_meetup(conn, meetup_id)
        if meetup is None:
            raise NotFound("meetups.not_found", id=meetup_id)
        return meetup

    def _split_date(self, rest: str, meetup: store.Meetup, now: datetime) -> tuple[str | None, str]:
        """``am TT.MM.JJJJ …`` at the start of ``rest``: the occurrence key of that date."""
        match = _ON_DATE.match(rest)
        if match is None:
            return None, rest
        try:
            day: date = parse_date(match.group(1), tz=self.tz, now=now)
        except MeetupError as err:
            raise _bad(err) from None
        original = original_on(meetup.series, day)
        if original is not None and self._begun(meetup, original, now):
            if _WEEKDAY.match(match.group(1).strip()):
                # "am Dienstag" after this Tuesday's meeting: the coming Tuesday is meant,
                # as everywhere else a weekday names a day still ahead.
                original = original_on(meetup.series, day + timedelta(days=7))
            else:
                upcoming = meetup.next_occurrence(now)
                example = f"am {upcoming.start.astimezone(self.tz):%d.%m.%Y}" if upcoming else ""
                raise BadArguments(
                    "meetups.date.past", when=self._when(original), example=example or "–"
                )
        if original is None:
            raise NotFound("meetups.date_not_found", id=meetup.id, date=escape(match.group(1)))
        return occurrence_key(original), match.group(2).strip()

    @staticmethod
    def _begun(meetup: store.Meetup, original: datetime, now: datetime) -> bool:
        """Whether the date (at its moved time, if it was moved) has begun by ``now``."""
        current = meetup.occurrence(occurrence_key(original))
        return (current.start if current is not None else original) <= now

    def _link(self, link: str) -> str:
        # An autolink stays clickable although linkify is off; odd characters stay text.
        return f"<{link}>" if not re.search(r"[<>\s]", link) else escape(link)

    def _details(
        self, t: Catalogue, meetup: store.Meetup, occ: Occurrence | None, free: int | None = None
    ) -> list[str]:
        """The description of a meetup as Markdown lines (announcement, details)."""
        lines = [f"**{escape(meetup.title)}**", ""]
        if occ is not None:
            lines.append(
                t(
                    "meetups.details.when",
                    when=self._when(occ.start),
                    duration=format_duration(occ.end - occ.start),
                )
            )
        if meetup.is_series:
            lines.append(t("meetups.details.series"))
        change = occ.change if occ is not None else None
        location = (change.location if change and change.location else None) or meetup.location
        link = (change.link if change and change.link else None) or meetup.link
        if location:
            lines.append(t("meetups.details.where", location=escape(location)))
        if link:
            lines.append(t("meetups.details.link", link=self._link(link)))
        if meetup.capacity is None:
            lines.append(t("meetups.details.places_unlimited"))
        elif free is None:
            lines.append(t("meetups.details.places", capacity=meetup.capacity))
        else:
            lines.append(t("meetups.details.places_free", capacity=meetup.capacity, free=free))
        if meetup.description:
            lines += ["", quote(meetup.description)]
        return lines

    def _calendar(self, meetup: store.Meetup) -> Attachment:
        data = build_calendar(
            [meetup.calendar_entry()],
            server_name=self._services.config.matrix.server_name,
            dtstamp=meetup.updated_at,
        )
        return Attachment(f"treffen-{meetup.id}.ics", "text/calendar", data)

    # -- creating and announcing -------------------------------------------------------------

    async def _create(self, ctx: Context, args: str) -> None:
        config = self._services.config
        try:
            draft = parse_meetup(args, tz=self.tz, now=ctx.now)
            audience = parse_audience(draft.audience, ((d.id, d.name) for d in config.departments))
        except MeetupError as err:
            raise _bad(err) from None
        await self._check_audience(ctx.conn, audience)
        preview = audience.kind in PREVIEW_AUDIENCES
        meetup_id = await self.create(
            ctx.conn, draft, audience, ctx.sender, ctx.now, send_pending=preview
        )
        meetup = await self._load(ctx.conn, meetup_id)
        occ = meetup.next_occurrence(ctx.now)
        assert occ is not None  # parse_meetup only accepts future starts
        if preview:
            await self._preview(ctx, meetup, audience, occ)
            return
        count = await self.announce(ctx.conn, meetup, ctx.now)
        invited = await store.invitations(ctx.conn, meetup_id)
        rooms = sum(kind == "room" for kind, _ in invited)
        await ctx.audit("meetup.create", str(meetup_id), {"title": meetup.title})
        t = ctx.t
        lines = [
            t("meetups.created", id=meetup_id, prefix=self._prefix()),
            "",
            *self._details(t, meetup, occ),
            "",
            self._audience_line(t, audience, count, rooms, meetup_id),
        ]
        ctx.reply("\n".join(lines), **self._meta(meetup_id, "created", occ.start, recipients=count))

    async def create(
        self,
        conn: aiosqlite.Connection,
        draft: MeetupDraft,
        audience: Audience,
        created_by: str,
        now: datetime,
        *,
        send_pending: bool = False,
    ) -> int:
        """Store a meetup (without announcing it); for the commands and for tests."""
        return await store.create_meetup(
            conn, draft, audience=audience.key, created_by=created_by, now=now,
            send_pending=send_pending,
        )  # fmt: skip

    async def _preview(
        self, ctx: Context, meetup: store.Meetup, audience: Audience, occ: Occurrence
    ) -> None:
        """A meetup for everyone or for all group rooms waits for ``!treffen senden``: the
        coordinator first sees the invitation and whom it would reach, as with an
        announcement to everyone."""
        recipients = await self._recipients(ctx.conn, audience)
        rooms = sum(kind == "room" for kind, _ in recipients)
        await ctx.audit("meetup.create", str(meetup.id), {"title": meetup.title})
        t = ctx.t
        lines = [
            t("meetups.preview.created", id=meetup.id),
            "",
            *self._details(t, meetup, occ),
            "",
            t("meetups.preview.reach"),
            f"- {t('meetups.preview.people', count=len(recipients) - rooms)}",
            f"- {t('meetups.preview.rooms', count=rooms)}",
            "",
            t("meetups.preview.send", id=meetup.id, prefix=self._prefix()),
        ]
        ctx.reply(
            "\n".join(lines),
            **self._meta(meetup.id, "preview", occ.start, recipients=len(recipients)),
        )

    async def _send(self, ctx: Context, args: str) -> None:
        """``!treffen senden <Nr>``: send the invitation a wide audience waited for."""
        meetup_id, _ = self._number(args, "meetups.usage.send")
        meetup = await self._load(ctx.conn, meetup_id)
        if meetup.cancelled:
            raise Conflict("meetups.change.cancelled", id=meetup.id)
        occ = meetup.next_occurrence(ctx.now)
        if occ is None:
            raise Conflict("meetups.send.over", id=meetup.id)
        if not await store.mark_sent(ctx.conn, meetup.id, ctx.now):
            raise Conflict("meetups.send.already", id=meetup.id)
        audience = Audience.from_key(meetup.audience)
        count = await self.announce(ctx.conn, meetup, ctx.now)
        invited = await store.invitations(ctx.conn, meetup.id)
        rooms = sum(kind == "room" for kind, _ in invited)
        await ctx.audit("meetup.send", str(meetup.id), {"recipients": count})
        text = "\n".join([
            ctx.t("meetups.send.done", id=meetup.id, title=escape(meetup.title)),
            self._audience_line(ctx.t, audience, count, rooms, meetup.id),
        ])  # fmt: skip
        ctx.reply(text, **self._meta(meetup.id, "created", occ.start, recipients=count))

    async def _check_audience(self, conn: aiosqlite.Connection, audience: Audience) -> None:
        if audience.kind != "raum":
            return
        async with conn.execute(
            "SELECT 1 FROM rooms WHERE room_id = ? AND left_at IS NULL AND is_direct = 0",
            (audience.target,),
        ) as cursor:
            if await cursor.fetchone() is None:
                raise BadArguments(
                    "meetups.audience.room_unknown", room=escape(audience.target or "")
                )

    def _audience_line(
        self, t: Catalogue, audience: Audience, count: int, rooms: int = 0, meetup_id: int = 0
    ) -> str:
        """Whom the invitation went to: ``count`` recipients, ``rooms`` of them group rooms
        (``alle``, ``räume`` and ``koordination`` can reach rooms, too)."""
        if audience.kind == "keine":
            return t("meetups.audience.none")
        if audience.kind == "raum":
            return t("meetups.audience.room", room=escape(audience.target or ""))
        if count == 0:
            return t("meetups.audience.nobody", prefix=self._prefix(), id=meetup_id)
        if count == rooms:
            return t("meetups.audience.rooms_only", count=rooms)
        line = t("meetups.audience.people", count=count - rooms)
        return f"{line} {t('meetups.audience.rooms_too', count=rooms)}" if rooms else line

    async def _recipients(
        self, conn: aiosqlite.Connection, audience: Audience
    ) -> list[tuple[str, str]]:
        """(target kind, target) for each recipient of the announcement: pilots from the
        config; for ``alle``, ``räume`` and ``koordination`` whom an announcement to them
        reaches now (people who opted out of general announcements are not invited)."""
        config = self._services.config
        if audience.kind == "keine":
            return []
        if audience.kind in SHARED_WITH_ANNOUNCEMENTS:
            found = announcements.expand(
                announcements.Audience.from_key(audience.key),
                await directory(conn, self._services),
                important=False,
            )
            return [(r.kind, r.target) for r in found]
        if audience.kind == "raum":
            return [("room", audience.target or "")]
        if audience.kind == "abteilung":
            department = config.department(audience.target or "")
            pilots = sorted(set(department.pilots)) if department else []
            return [("user", p) for p in pilots]
        return [("user", p) for p in self._services.roles.pilots()]

    async def announce(
        self, conn: aiosqlite.Connection, meetup: store.Meetup, now: datetime
    ) -> int:
        """Enqueue the announcement (text and calendar file) for every recipient; returns
        the number of recipients. Keys are per meetup and target, so this is idempotent."""
        services = self._services
        t = services.texts
        occ = meetup.next_occurrence(now)
        if occ is None:
            return 0
        audience = Audience.from_key(meetup.audience)
        roster = await store.roster(conn, meetup.id, occ.key, meetup.capacity)
        text = "\n".join(
            [
                t("meetups.announce.intro"),
                "",
                *self._details(t, meetup, occ, roster.free),
                "",
                t("meetups.announce.howto", id=meetup.id, prefix=self._prefix()),
            ]
        )
        meta = self._meta(meetup.id, "created", occ.start)
        calendar = self._calendar(meetup)
        recipients = await self._recipients(conn, audience)
        # As for announcements to everyone: people invited as part of "alle" learn how to
        # stop general announcements (which also ends such invitations); rooms do not.
        optout = "\n\n" + t("announcements.message.footer_optout", prefix=self._prefix())
        for kind, target in recipients:
            text_key = f"meetup:{meetup.id}:ann:{target}"
            body = text + optout if kind == "user" and audience.kind == "alle" else text
            await services.outbox.enqueue(
                conn, text_key, Envelope(kind, target, OutMessage(body, meta=meta), "announce")
            )
            await store.record_message(conn, text_key, meetup.id)
            file_key = f"meetup:{meetup.id}:ics:{target}"
            file_message = OutMessage(
                t("meetups.announce.calendar", title=escape(meetup.title)),
                meta=self._meta(meetup.id, "created", occ.start, calendar=True),
                attachment=calendar,
            )
            await services.outbox.enqueue(
                conn, file_key, Envelope(kind, target, file_message, "announce")
            )
            await store.record_message(conn, file_key, meetup.id)
            await store.record_invitation(conn, meetup.id, kind, target, now)
        return len(recipients)

    async def _audience_now(
        self, conn: aiosqlite.Connection, meetup: store.Meetup
    ) -> set[tuple[str, str]]:
        """Who the meetup's audience is today: pilots who have left the network or their
        department, and rooms the bot has left, are not written to about it any more."""
        audience = Audience.from_key(meetup.audience)
        current = set(await self._recipients(conn, audience))
        if audience.kind == "raum":
            async with conn.execute(
                "SELECT 1 FROM rooms WHERE room_id = ? AND left_at IS NULL",
                (audience.target,),
            ) as cursor:
                if await cursor.fetchone() is None:
                    return set()
        return current

    async def _addressees(
        self,
        conn: aiosqlite.Connection,
        meetup: store.Meetup,
        signups: Iterable[store.Signup],
        invited_start: datetime | None,
    ) -> list[Addressee]:
        """Everyone a notice about the meetup goes to, each once: the people signed up or
        waiting (named with their own date), then, when ``invited_start`` is given, those
        who got the invitation's calendar file and are still in its audience.

        The order is fixed by the database (sign-up order, then recipient), so a notice
        handled again after a restart gets the same outbox keys.
        """
        found: list[Addressee] = []
        seen: set[tuple[str, str]] = set()
        for signup in signups:
            if ("user", signup.user_id) in seen:
                continue
            seen.add(("user", signup.user_id))
            found.append(
                Addressee(
                    "user", signup.user_id, signup.status, signup.starts_at, signup.occurrence
                )
            )
        if invited_start is None:
            return found
        audience = await self._audience_now(conn, meetup)
        for kind, target in await store.invitations(conn, meetup.id):
            if (kind, target) in seen or (kind, target) not in audience:
                continue
            seen.add((kind, target))
            found.append(
                Addressee(kind, target, "room" if kind == "room" else "invited", invited_start)
            )
        return found

    def _told_line(self, t: Catalogue, told: list[Addressee]) -> str:
        """For the coordinator: how many people were told, by how they stand, and rooms."""
        people = [a for a in told if a.kind == "user"]
        parts = [
            t(f"meetups.told.{state}", count=n)
            for state in ("confirmed", "waitlisted", "invited")
            if (n := sum(a.state == state for a in people))
        ]
        rooms = ", ".join(escape(a.target) for a in told if a.kind == "room")
        if not people:
            return t("meetups.told.rooms_only", rooms=rooms) if rooms else t("meetups.told.nobody")
        line = t("meetups.told.people", count=len(people), parts=", ".join(parts))
        return f"{line} {t('meetups.told.rooms', rooms=rooms)}" if rooms else line

    @staticmethod
    def _told_meta(told: list[Addressee]) -> dict[str, Any]:
        people = [a for a in told if a.kind == "user"]
        return {
            "notified": len(people),
            "notified_by_status": {
                state: sum(a.state == state for a in people)
                for state in ("confirmed", "waitlisted", "invited")
            },
            "notified_rooms": [a.target for a in told if a.kind == "room"],
        }

    # -- listing and details -----------------------------------------------------------------

    async def _list_or_show(self, ctx: Context, args: str) -> None:
        if args.strip():
            meetup_id, _ = self._number(args, "meetups.usage.show")
            await self._show(ctx, meetup_id)
            return
        t = ctx.t
        upcoming: list[tuple[store.Meetup, Occurrence]] = []
        for meetup in await store.open_meetups(ctx.conn, ctx.now):
            occ = meetup.next_occurrence(ctx.now)
            if occ is not None:
                upcoming.append((meetup, occ))
        upcoming.sort(key=lambda pair: (pair[1].start, pair[0].id))
        upcoming = upcoming[:LIST_LIMIT]
        if not upcoming:
            ctx.reply(t("meetups.list.empty"), **{"de.lotsenbot.meetups": {"items": []}})
            return
        numbers = await store.counts(ctx.conn, [(m.id, o.key) for m, o in upcoming])
        lines = [t("meetups.list.title"), ""]
        items = []
        for meetup, occ in upcoming:
            confirmed, waiting = numbers[(meetup.id, occ.key)]
            free = None if meetup.capacity is None else max(0, meetup.capacity - confirmed)
            if free is None:
                places = t("meetups.list.unlimited", confirmed=confirmed)
            elif free > 0:
                places = t("meetups.list.free", free=free, capacity=meetup.capacity)
            else:
                places = t("meetups.list.full", waiting=waiting)
            series = " " + t("meetups.list.series") if meetup.is_series else ""
            lines.append(
                t(
                    "meetups.list.item",
                    id=meetup.id,
                    title=escape(meetup.title),
                    when=self._when(occ.start),
                    places=places,
                    series=series,
                )
            )
            items.append(
                {
                    "id": meetup.id,
                    "starts_at": occ.start.astimezone(self.tz).isoformat(),
                    "free": free,
                    "confirmed": confirmed,
                    "waitlisted": waiting,
                }
            )
        lines += ["", t("meetups.list.footer", prefix=self._prefix())]
        ctx.reply("\n".join(lines), **{"de.lotsenbot.meetups": {"items": items}})

    @staticmethod
    def _running(meetup: store.Meetup, now: datetime) -> Occurrence | None:
        """The date of ``meetup`` under way at ``now`` (begun, not yet ended), if any."""
        window = expand(meetup.series, after=now - MAX_DURATION, before=now, limit=50)
        return next((occ for occ in window if occ.start <= now < occ.end), None)

    async def _show(self, ctx: Context, meetup_id: int) -> None:
        t = ctx.t
        meetup = await self._load(ctx.conn, meetup_id)
        occ = meetup.next_occurrence(ctx.now)
        running = None if meetup.cancelled else self._running(meetup, ctx.now)
        if running is not None and (occ is None or not meetup.is_series):
            # Under way: not "over", and no sign-up for a date that has begun.
            end = running.end.astimezone(self.tz)
            lines = [*self._details(t, meetup, running), "", t("meetups.show.running",
                                                               end=f"{end:%H:%M}")]  # fmt: skip
            ctx.reply("\n".join(lines), **self._meta(meetup.id, "details", running.start,
                                                      status="running"))  # fmt: skip
            return
        if meetup.cancelled or occ is None:
            key = "meetups.show.cancelled" if meetup.cancelled else "meetups.show.over"
            # A one-off date still says when it was (or would have been).
            series = meetup.series
            shown = None if meetup.is_series else occurrence_of(series, series.first_start)
            lines = [*self._details(t, meetup, shown), "", t(key)]
            ctx.reply(
                "\n".join(lines), **self._meta(meetup.id, "details", None, status=meetup.status)
            )
            return
        roster = await store.roster(ctx.conn, meetup.id, occ.key, meetup.capacity)
        lines = self._details(t, meetup, occ, roster.free)
        if running is not None:  # a series: today's date is under way, the next one follows
            end = running.end.astimezone(self.tz)
            lines += ["", t("meetups.show.running_series", end=f"{end:%H:%M}")]
        status = roster.status(ctx.sender)
        lines += [
            "",
            t(
                f"meetups.show.you_{status}",
                position=roster.position(ctx.sender) or 0,
                id=meetup.id,
                prefix=self._prefix(),
            ),
        ]
        extra: dict[str, Any] = {
            "status": meetup.status,
            "free": roster.free,
            "confirmed": len(roster.confirmed),
            "waitlisted": len(roster.waitlist),
        }
        if not ctx.person.is_coordinator:
            ctx.reply("\n".join(lines), **self._meta(meetup.id, "details", occ.start, **extra))
            return
        await ctx.names.load([*roster.confirmed, *roster.waitlist])
        people = await ctx.names.join(roster.confirmed) or "–"
        roster_lines = [
            "",
            t("meetups.show.participants", count=len(roster.confirmed), people=people),
        ]
        if roster.waitlist:
            waiting = await ctx.names.join(roster.waitlist)
            roster_lines.append(
                t("meetups.show.waitlist", count=len(roster.waitlist), people=waiting)
            )
        full = self._meta(meetup.id, "details", occ.start, **extra,
                          participants=list(roster.confirmed),
                          waitlist=list(roster.waitlist))  # fmt: skip
        if ctx.incoming.is_direct:
            ctx.reply("\n".join([*lines, *roster_lines]), **full)
            return
        # Who comes (names and Matrix IDs) is no business of the group room: the details
        # stay here for everyone, the coordinator gets them with the lists in the direct chat.
        ctx.reply(
            "\n".join([*lines, "", t("meetups.show.participants_private")]),
            **self._meta(meetup.id, "details", occ.start, **extra),
        )
        ctx.send_to_user(
            ctx.sender, OutMessage("\n".join([*lines, *roster_lines]), meta=full), "reply"
        )

    async def _ics(self, ctx: Context, args: str) -> None:
        meetup_id, _ = self._number(args, "meetups.usage.ics")
        meetup = await self._load(ctx.conn, meetup_id)
        occ = meetup.next_occurrence(ctx.now)
        ctx.reply_message(
            OutMessage(
                ctx.t("meetups.ics.text", title=escape(meetup.title)),
                meta=self._meta(meetup.id, "calendar", occ.start if occ else None),
                attachment=self._calendar(meetup),
            )
        )

    # -- signing up and withdrawing ----------------------------------------------------------

    async def _rsvp(self, ctx: Context, args: str) -> None:
        meetup_id, _ = self._number(args, "meetups.usage.rsvp")
        meetup = await self._load(ctx.conn, meetup_id)
        text, meta = await self._sign_up(ctx.conn, ctx.t, meetup, ctx.sender, ctx.now, None)
        ctx.reply(text, **meta)

    async def _sign_up(
        self,
        conn: aiosqlite.Connection,
        t: Catalogue,
        meetup: store.Meetup,
        user_id: str,
        now: datetime,
        reaction_event_id: str | None,
    ) -> tuple[str, dict[str, Any]]:
        """Sign up for the next date; the answer text and metadata for the person."""
        if meetup.cancelled:
            raise Conflict("meetups.signup.cancelled", title=escape(meetup.title))
        occ = meetup.next_occurrence(now)
        if occ is None:
            raise Conflict("meetups.signup.over", title=escape(meetup.title))
        before = await store.roster(conn, meetup.id, occ.key, meetup.capacity)
        after, result = sign_up(before, user_id)
        if result.changed:
            await store.save_roster(
                conn,
                meetup.id,
                occ.key,
                before,
                after,
                starts_at=occ.start,
                now=now,
                reaction_event_id=reaction_event_id,
            )
        elif reaction_event_id is not None:
            await store.attach_reaction(conn, meetup.id, occ.key, user_id, reaction_event_id)
        text = t(
            f"meetups.signup.{result.outcome}",
            title=escape(meetup.title),
            when=self._when(occ.start),
            position=result.position or 0,
        )
        if meetup.is_series:
            text += " " + t("meetups.signup.series_note")
        if result.outcome in ("confirmed", "already_confirmed"):
            text += " " + t("meetups.signup.how_to_withdraw", id=meetup.id, prefix=self._prefix())
        event = "waitlisted" if "waitlisted" in result.outcome else "rsvp"
        return text, self._meta(
            meetup.id, event, occ.start, status=result.outcome, position=result.position
        )

    async def _withdraw(self, ctx: Context, args: str) -> None:
        meetup_id, _ = self._number(args, "meetups.usage.withdraw")
        meetup = await self._load(ctx.conn, meetup_id)
        mine = await store.signups_of(ctx.conn, ctx.sender, meetup.id, after=ctx.now)
        # The next date that takes place first: a sign-up kept for a cancelled date is not
        # what "!absage" means while a real one follows.
        mine.sort(key=lambda signup: (not self._takes_place(meetup, signup), signup.starts_at))
        if not mine:
            occ = meetup.next_occurrence(ctx.now)
            starts = occ.start if occ else meetup.series.first_start
            ctx.reply(
                ctx.t("meetups.withdraw.none", title=escape(meetup.title), when=self._when(starts)),
                **self._meta(meetup.id, "withdrawn", starts, status="none"),
            )
            return
        text, meta = await self._withdraw_signup(ctx, meetup, mine[0])
        ctx.reply(text, **meta)

    async def _withdraw_signup(
        self, ctx: Context, meetup: store.Meetup, signup: store.Signup
    ) -> tuple[str, dict[str, Any]]:
        """Withdraw one sign-up; whoever moves up is told. Returns the answer for the person."""
        when = self._when(signup.starts_at)
        if not self._takes_place(meetup, signup):
            # A date that does not take place: the person goes, and nobody moves up, since
            # "a place has become free" would be false.
            await store.remove_signup(ctx.conn, signup)
            text = ctx.t(f"meetups.withdraw.{signup.status}", title=escape(meetup.title), when=when)
            return text, self._meta(meetup.id, "withdrawn", signup.starts_at, status=signup.status)
        before = await store.roster(ctx.conn, meetup.id, signup.occurrence, meetup.capacity)
        after, result = withdraw(before, signup.user_id)
        await store.save_roster(
            ctx.conn,
            meetup.id,
            signup.occurrence,
            before,
            after,
            starts_at=signup.starts_at,
            now=ctx.now,
        )
        for person in result.promoted:
            ctx.send_to_user(person, self._promotion(ctx.t, meetup, signup.starts_at))
        text = ctx.t(f"meetups.withdraw.{result.was}", title=escape(meetup.title), when=when)
        return text, self._meta(meetup.id, "withdrawn", signup.starts_at, status=result.was)

    @staticmethod
    def _takes_place(meetup: store.Meetup, signup: store.Signup) -> bool:
        return meetup.takes_place(signup.occurrence)

    def _promotion(
        self,
        t: Catalogue,
        meetup: store.Meetup,
        starts_at: datetime,
        summary: list[str] | None = None,
        **extra: Any,
    ) -> OutMessage:
        """The notice for someone who moved up from the waiting list into a place. When
        the same change moved them up (more places) and changed the meetup, ``summary``
        says what else changed: one message with the date and calendar as they are now."""
        # With the calendar file, as a sign-up from the invitation has it: someone who
        # waited may not have imported the date (or only got the meetup by `!treffen`).
        text = t("meetups.signup.promoted", title=escape(meetup.title), when=self._when(starts_at))
        parts = [text]
        if summary:
            parts.append("\n".join([t("meetups.signup.promoted_changed"), *summary]))
        return OutMessage(
            "\n\n".join([*parts, t("meetups.signup.promoted_calendar")]),
            meta=self._meta(meetup.id, "promoted", starts_at, status="confirmed", **extra),
            attachment=self._calendar(meetup),
        )

    async def _on_reaction(self, ctx: Context) -> bool:
        incoming = ctx.incoming
        if not is_thumbs_up(incoming.key) or not incoming.relates_to:
            return False
        meetup_id = await store.meetup_for_event(ctx.conn, incoming.relates_to)
        if meetup_id is None:
            return False
        meetup = await self._load(ctx.conn, meetup_id)
        try:
            text, meta = await self._sign_up(
                ctx.conn, ctx.t, meetup, incoming.sender, ctx.now, incoming.event_id
            )
        except Conflict as exc:
            # Said privately: a reaction in a group room should not get a public answer.
            text = ctx.t(exc.text_key, **exc.params)
            meta = self._meta(meetup.id, "rsvp", None, status=exc.text_key.rsplit(".", 1)[-1])
        ctx.send_to_user(incoming.sender, OutMessage(text, meta=meta))
        return True

    async def _on_redaction(self, ctx: Context) -> bool:
        incoming = ctx.incoming
        if not incoming.relates_to:
            return False
        signup = await store.signup_by_reaction(ctx.conn, incoming.relates_to)
        if signup is None or signup.user_id != incoming.sender:
            return False  # a moderator removing someone's reaction does not withdraw them
        if signup.starts_at <= ctx.now:
            return True  # the date has begun; the sign-up is history now
        meetup = await self._load(ctx.conn, signup.meetup_id)
        text, meta = await self._withdraw_signup(ctx, meetup, signup)
        ctx.send_to_user(incoming.sender, OutMessage(text, meta=meta))
        return True

    # -- personal data (asked by the privacy feature) ----------------------------------------

    async def export_person(self, conn: aiosqlite.Connection, user_id: str) -> dict[str, Any]:
        return await _DATA.export_person(conn, user_id)

    async def erase_person(
        self, conn: aiosqlite.Connection, user_id: str, now: datetime
    ) -> ErasureReport:
        """Erase as :class:`MeetupsData` does, and tell whoever moved up into a place the
        person held, as after ``!absage``: in the erasure's transaction, so the notice is
        sent exactly when the erasure is committed, and once (its outbox key)."""
        report, moved_up = await _DATA.erase(conn, user_id, now)
        services = self._services
        for signup in moved_up:
            meetup = await self._load(conn, signup.meetup_id)
            signed_up = signup.signed_up_at or signup.starts_at
            key = (
                f"meetup:{meetup.id}:promoted:{signup.occurrence}:{iso(signed_up)}:{signup.user_id}"
            )
            message = self._promotion(services.texts, meetup, signup.starts_at)
            await services.outbox.enqueue(
                conn, key, Envelope("user", signup.user_id, message, "notify")
            )
        return report

    async def purge(
        self, conn: aiosqlite.Connection, now: datetime, privacy: PrivacyConfig, dry_run: bool
    ) -> dict[str, int]:
        return await _DATA.purge(conn, now, privacy, dry_run)

    async def statistics(
        self, conn: aiosqlite.Connection, since: datetime, until: datetime, per_person: bool
    ) -> dict[str, Any]:
        return await _DATA.statistics(conn, since, until, per_person)

    # -- changing and cancelling -------------------------------------------------------------

    async def _change(self, ctx: Context, args: str) -> None:
        meetup_id, rest = self._number(args, "meetups.usage.change")
        meetup = await self._load(ctx.conn, meetup_id)
        if meetup.cancelled:
            raise Conflict("meetups.change.cancelled", id=meetup.id)
        occurrence, rest = self._split_date(rest, meetup, ctx.now)
        single = occurrence is not None and meetup.is_series
        try:
            changes = parse_changes(rest, tz=self.tz, now=ctx.now, single_date=single)
        except MeetupError as err:
            raise _bad(err) from None
        previous_start: datetime | None = None
        promoted: dict[str, list[str]] = {}  # person → dates moved up to (more places)
        if single:
            assert occurrence is not None
            current = meetup.occurrence(occurrence)
            if current is None:
                raise Conflict("meetups.change.date_cancelled", id=meetup.id)
            previous_start = current.start
            change = OccurrenceChange(
                start=changes.get("when"),
                duration=changes.get("duration"),
                location=changes.get("location"),
                link=changes.get("link"),
            )
            meetup = await store.set_exception(
                ctx.conn, meetup.id, occurrence, now=ctx.now, change=change
            )
            affected = await store.signups(ctx.conn, meetup.id, occurrence=occurrence)
        else:
            if meetup.is_series and "when" in changes:
                raise Conflict("meetups.change.series_when", id=meetup.id)
            if not meetup.is_series:
                previous_start = meetup.series.first_start
            previous_capacity = meetup.capacity
            meetup = await store.update_meetup(ctx.conn, meetup.id, changes, ctx.now)
            # After the update, so that whoever moves up hears of the meetup as it is now
            # (a new date, its calendar file), not as it was before this change.
            if "capacity" in changes:
                promoted = await self._apply_capacity(ctx, meetup, previous_capacity)
            affected = await store.signups(ctx.conn, meetup.id, after=ctx.now)
        moved = "when" in changes and previous_start not in (None, changes["when"])
        summary = self._change_summary(ctx.t, changes, previous_start if moved else None)
        # Calendar apps update an event they know by its UID when a file with a higher
        # SEQUENCE arrives, so everyone who may have the date in their calendar gets the file
        # again: the people signed up or waiting, and everyone who got the invitation's file.
        # A change that is not in the calendar (places) concerns only those signed up.
        calendar = self._calendar(meetup) if CALENDAR_FIELDS & changes.keys() else None
        occ = (
            meetup.occurrence(occurrence)
            if single and occurrence
            else meetup.next_occurrence(ctx.now)
        )
        invited_start = occ.start if occ is not None and calendar is not None else None
        told = await self._addressees(ctx.conn, meetup, affected, invited_start)
        extra: dict[str, Any] = {"fields": sorted(changes)}
        if moved:
            assert previous_start is not None
            extra["previous_starts_at"] = previous_start.astimezone(self.tz).isoformat()
        for user_id, dates in promoted.items():
            # One message each: the place, what else changed, the calendar file; instead of
            # the change notice, which would repeat it.
            for occurrence in dates:
                moved_up = meetup.occurrence(occurrence)
                assert moved_up is not None  # _apply_capacity skips dates that do not take place
                ctx.send_to_user(
                    user_id, self._promotion(ctx.t, meetup, moved_up.start, summary, **extra)
                )
        for person in told:
            if person.kind == "user" and person.target in promoted:
                continue
            current = meetup.occurrence(person.occurrence) if person.occurrence else None
            starts = current.start if current else person.starts_at
            self._notify(
                ctx,
                person,
                OutMessage(
                    "\n".join(
                        [
                            ctx.t(
                                f"meetups.changed.notice_{person.state}",
                                title=escape(meetup.title),
                                when=self._when(starts),
                            ),
                            "",
                            *summary,
                            *(["", ctx.t("meetups.changed.calendar")] if calendar else []),
                        ]
                    ),
                    meta=self._meta(meetup.id, "changed", starts, status=person.state, **extra),
                    attachment=calendar,
                ),
            )
        await ctx.audit(
            "meetup.change", str(meetup.id), {"fields": sorted(changes), "date": occurrence}
        )
        ctx.reply(
            "\n".join(
                [
                    ctx.t("meetups.changed.done", id=meetup.id)
                    + " "
                    + self._told_line(ctx.t, told),
                    "",
                    *summary,
                ]
            ),
            **self._meta(
                meetup.id,
                "changed",
                occ.start if occ else None,
                fields=sorted(changes),
                **self._told_meta(told),
            ),
        )

    async def _apply_capacity(
        self, ctx: Context, meetup: store.Meetup, previous: int | None
    ) -> dict[str, list[str]]:
        """The capacity of the (already updated) meetup for every coming date, whose rosters
        still stand at the ``previous`` one; returns who moved up, for which dates (they
        are told by the caller, together with the rest of the change)."""
        dates = {
            s.occurrence: s.starts_at
            for s in await store.signups(ctx.conn, meetup.id, after=ctx.now)
        }
        moved_up: dict[str, list[str]] = {}
        for occurrence, starts_at in dates.items():
            if meetup.occurrence(occurrence) is None:
                continue  # a cancelled date: nobody is to move up for it
            before = await store.roster(ctx.conn, meetup.id, occurrence, previous)
            after, promoted = change_capacity(before, meetup.capacity)
            await store.save_roster(
                ctx.conn, meetup.id, occurrence, before, after, starts_at=starts_at, now=ctx.now
            )
            for person in promoted:
                moved_up.setdefault(person, []).append(occurrence)
        return moved_up

    def _change_summary(
        self, t: Catalogue, changes: dict[str, Any], previous_start: datetime | None = None
    ) -> list[str]:
        """One line per changed field; a moved date also says when it was before."""
        lines = []
        for key in ("title", "when", "duration", "location", "link", "capacity", "description"):
            if key not in changes:
                continue
            value = changes[key]
            if value is None:
                shown = t("meetups.changed.removed")
            elif key == "when":
                shown = self._when(value)
            elif key == "duration":
                shown = format_duration(value)
            elif key == "link":
                shown = self._link(value)
            elif key == "capacity":
                shown = str(value)
            else:
                shown = escape(str(value))
            if key == "when" and previous_start is not None:
                lines.append(
                    t(
                        "meetups.changed.field_when_moved",
                        value=shown,
                        old=self._when(previous_start),
                    )
                )
                continue
            lines.append(t(f"meetups.changed.field_{key}", value=shown))
        return lines

    async def _cancel(self, ctx: Context, args: str) -> None:
        meetup_id, rest = self._number(args, "meetups.usage.cancel")
        meetup = await self._load(ctx.conn, meetup_id)
        if meetup.cancelled:
            raise Conflict("meetups.cancel.already", id=meetup.id)
        occurrence, reason_text = self._split_date(rest, meetup, ctx.now)
        reason = reason_text.strip() or None
        if reason and len(reason) > MAX_REASON:
            raise BadArguments("meetups.form.too_long", field="Grund", max=MAX_REASON)
        t = ctx.t
        reason_line = [t("meetups.cancelled.reason", reason=escape(reason))] if reason else []
        starts: datetime | None
        date_only = occurrence is not None and meetup.is_series
        if date_only:
            assert occurrence is not None
            current = meetup.occurrence(occurrence)
            if current is None:
                raise Conflict("meetups.change.date_cancelled", id=meetup.id)
            meetup = await store.set_exception(
                ctx.conn, meetup.id, occurrence, now=ctx.now, cancelled=True, reason=reason
            )
            affected = await store.signups(ctx.conn, meetup.id, occurrence=occurrence)
            notice, starts = "meetups.cancelled.date_notice", current.start
        else:
            occ = meetup.next_occurrence(ctx.now)
            await store.cancel_meetup(ctx.conn, meetup.id, reason, ctx.now)
            meetup = await self._load(ctx.conn, meetup.id)
            affected = await store.signups(ctx.conn, meetup.id, after=ctx.now)
            kind = "series_notice" if meetup.is_series else "notice"
            notice, starts = f"meetups.cancelled.{kind}", occ.start if occ else None
        # Everyone who may have the date in their calendar: the people signed up or waiting,
        # and everyone who got the invitation's calendar file. The file with the raised
        # SEQUENCE takes the date out of their calendars.
        told = await self._addressees(ctx.conn, meetup, affected, starts)
        calendar = self._calendar(meetup) if told else None
        for person in told:
            self._notify(
                ctx,
                person,
                OutMessage(
                    "\n".join(
                        [
                            t(
                                notice,
                                title=escape(meetup.title),
                                when=self._when(person.starts_at),
                            ),
                            *reason_line,
                            "",
                            t("meetups.cancelled.calendar"),
                        ]
                    ),
                    meta=self._meta(
                        meetup.id,
                        "cancelled",
                        person.starts_at,
                        date_only=date_only,
                        status=person.state,
                    ),
                    attachment=calendar,
                ),
            )
        await ctx.audit("meetup.cancel", str(meetup.id), {"date": occurrence, "reason": reason})
        done = "meetups.cancelled.done_date" if date_only else "meetups.cancelled.done"
        ctx.reply(
            " ".join(
                [
                    t(
                        done,
                        id=meetup.id,
                        title=escape(meetup.title),
                        when=self._when(starts) if starts else "–",
                    ),
                    self._told_line(t, told),
                ]
            ),
            **self._meta(meetup.id, "cancelled", starts, **self._told_meta(told)),
        )

    @staticmethod
    def _notify(ctx: Context, addressee: Addressee, message: OutMessage) -> None:
        if addressee.kind == "room":
            ctx.send_to_room(addressee.target, message)
        else:
            ctx.send_to_user(addressee.target, message)

    # -- date polls ----------------------------------------------------------------------------

    async def _poll(self, ctx: Context, args: str) -> None:
        parts = [part.strip() for part in args.split("|")]
        if len(parts) < 3 or not parts[0] or not all(parts[1:]):
            raise BadArguments("meetups.usage.poll")
        title = " ".join(parts[0].split())
        if len(title) > MAX_LENGTH["title"]:
            raise BadArguments("meetups.form.too_long", field="Titel", max=MAX_LENGTH["title"])
        if len(parts) - 1 > MAX_POLL_OPTIONS:
            raise BadArguments("meetups.poll.too_many", max=MAX_POLL_OPTIONS)
        try:
            options = [parse_when(part, tz=self.tz, now=ctx.now) for part in parts[1:]]
        except MeetupError as err:
            raise _bad(err) from None
        if len(set(options)) != len(options):
            raise BadArguments("meetups.poll.duplicate")
        poll = await store.create_poll(
            ctx.conn,
            title=title,
            room_id=ctx.room_id,
            created_by=ctx.sender,
            options=options,
            now=ctx.now,
        )
        t = ctx.t
        answers = tuple((answer_id, self._when(start)) for answer_id, start in poll.options)
        fallback = "\n".join(
            [
                t("meetups.poll.question", title=escape(title)),
                "",
                *(f"{n}. {label}" for n, (_, label) in enumerate(answers, 1)),
            ]
        )
        meta = self._meta(
            None,
            "poll",
            None,
            poll=poll.id,
            status="open",
            options=[
                {"id": a, "starts_at": s.astimezone(self.tz).isoformat()} for a, s in poll.options
            ],
        )
        await self._services.outbox.enqueue(
            ctx.conn,
            poll.dedup_key,
            Envelope(
                "room",
                ctx.room_id,
                OutMessage(
                    fallback, meta=meta, poll=Poll(t("meetups.poll.question", title=title), answers)
                ),
            ),
        )
        await ctx.audit("meetup.poll", str(poll.id), {"title": title})
        started = t("meetups.poll.started", id=poll.id, prefix=self._prefix())
        if ctx.incoming.is_direct:
            # A poll lives in the room it was started in: here only the coordinator can vote.
            started += "\n\n" + t("meetups.poll.direct_hint", prefix=self._prefix())
        ctx.reply(started, **meta)

    async def _on_poll_response(self, ctx: Context) -> bool:
        incoming = ctx.incoming
        if not incoming.relates_to:
            return False
        poll = await store.poll_for_event(ctx.conn, incoming.relates_to)
        if poll is None:
            return False
        if poll.is_open:
            offered = {answer_id for answer_id, _ in poll.options}
            chosen = [a for a in incoming.answers if a in offered][:1]  # max_selections = 1
            await store.record_vote(
                ctx.conn,
                poll.id,
                incoming.sender,
                chosen,
                origin_ts=incoming.origin_ts,
                event_id=incoming.event_id,
            )
        return True

    async def _poll_end(self, ctx: Context, args: str) -> None:
        poll_id, _ = self._number(args, "meetups.usage.poll_end")
        poll = await store.get_poll(ctx.conn, poll_id)
        if poll is None:
            raise NotFound("meetups.poll.not_found", id=poll_id)
        if not poll.is_open:
            raise Conflict("meetups.poll.closed", id=poll_id, meetup=poll.meetup_id or "–")
        votes = await store.tally(ctx.conn, poll)
        future = [(answer_id, start) for answer_id, start in poll.options if start > ctx.now]
        if not future:
            raise Conflict("meetups.poll.all_past", id=poll_id)
        # Most votes wins; on a tie the earlier date, since it is sooner useful to everyone.
        winner_id, winner = max(future, key=lambda o: (votes[o[0]], -o[1].timestamp()))
        if votes[winner_id] == 0:
            raise Conflict("meetups.poll.no_votes", id=poll_id)
        draft = MeetupDraft(
            title=poll.title,
            start=winner.astimezone(self.tz),
            tzid=self.tz.key,
            duration=timedelta(hours=1),
        )
        audience = Audience.from_key("lotsen")
        meetup_id = await self.create(ctx.conn, draft, audience, ctx.sender, ctx.now)
        await store.close_poll(ctx.conn, poll.id, meetup_id, ctx.now)
        meetup = await self._load(ctx.conn, meetup_id)
        count = await self.announce(ctx.conn, meetup, ctx.now)
        await ctx.audit("meetup.poll_end", str(poll.id), {"meetup": meetup_id})
        t = ctx.t
        results = [
            t("meetups.poll.result_line", when=self._when(start), votes=votes[answer_id])
            for answer_id, start in poll.options
        ]
        text = "\n".join(
            [
                t(
                    "meetups.poll.result",
                    id=poll.id,
                    title=escape(poll.title),
                    when=self._when(winner),
                    meetup=meetup_id,
                ),
                "",
                *results,
                "",
                t("meetups.audience.people", count=count),
            ]
        )
        meta = self._meta(
            meetup_id, "poll", winner, poll=poll.id, status="closed", votes=votes, winner=winner_id
        )
        if poll.room_id == ctx.room_id:
            ctx.reply(text, **meta)
        else:
            ctx.send_to_room(poll.room_id, OutMessage(text, meta=meta))
            ctx.reply(text, **meta)
        start_event = await store.poll_event_id(ctx.conn, poll)
        if start_event is not None:
            # Clients show the poll as ended and take no more votes in it.
            ended = t("meetups.poll.ended", id=poll.id, title=escape(poll.title))
            ctx.send_to_room(poll.room_id, OutMessage(ended, meta=meta, ends_poll=start_event))

    # -- reminders -----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Send due reminders; record missed ones as skipped. Runs every few seconds.

        A cheap read first: the write transaction (which serialises with every event
        handler) is only opened when there is something to record.
        """
        async with self._tick_lock:
            if self._stopped or self.services is None:
                return
            try:
                await self._tick()
            except Exception:
                log.exception("Erinnerungen für Treffen: Prüfung fehlgeschlagen")

    async def _tick(self) -> None:
        services = self._services
        now = services.clock.now()
        db = services.db
        pending_ids = await db.fetchone(
            "SELECT 1 FROM outbox o WHERE o.status = 'sent' AND o.dedup_key IN ("
            " SELECT dedup_key FROM meetup_messages WHERE event_id IS NULL"
            " UNION ALL SELECT dedup_key FROM meetup_polls WHERE event_id IS NULL) LIMIT 1"
        )
        if pending_ids is None and not await self._reminders(db.conn, now, dry_run=True):
            return
        async with db.transaction() as conn:
            await store.copy_event_ids(conn)
            sent = await self._reminders(conn, now, dry_run=False)
        if sent:
            services.outbox.wake()

    async def _reminders(self, conn: aiosqlite.Connection, now: datetime, *, dry_run: bool) -> int:
        """Handle due reminders; with ``dry_run`` only count what would be done."""
        if not self.offsets:
            return 0
        services = self._services
        t = services.texts
        candidates = await store.reminder_candidates(
            conn, since=now - LOOKBACK, until=now + max(self.offsets)
        )
        meetups: dict[int, store.Meetup | None] = {}
        work = 0
        for cand in candidates:
            handled = {ReminderKey(cand.meetup_id, cand.occurrence, s) for s in cand.handled}
            decision = due_reminders(
                cand.meetup_id,
                cand.starts_at,
                self.offsets,
                now,
                handled,
                original_start=store.parse_occurrence_key(cand.occurrence),
                not_before=cand.signed_up_at,
            )
            work += len(decision.send_now) + len(decision.skip_missed)
            if dry_run:
                continue
            for skipped in decision.skip_missed:
                if await store.record_reminder(
                    conn, skipped.key, cand.user_id, skipped.reason, now
                ):
                    log.info(
                        "Erinnerung an Treffen %s (Termin %s, %s s vorher) übersprungen: %s",
                        cand.meetup_id,
                        cand.occurrence,
                        skipped.key.offset_seconds,
                        skipped.reason,
                    )
            for key in decision.send_now:
                if cand.meetup_id not in meetups:
                    meetups[cand.meetup_id] = await store.get_meetup(conn, cand.meetup_id)
                meetup = meetups[cand.meetup_id]
                occ = meetup.occurrence(cand.occurrence) if meetup else None
                if meetup is None or occ is None:
                    continue
                # A moved date is reminded of again, under a key with its new start (also when
                # it was moved back to its original time).
                change = occ.change
                moved = f":{occurrence_key(occ.start)}" if change and change.start else ""
                await services.outbox.enqueue(
                    conn,
                    f"rem:{key.meetup_id}:{key.occurrence}:{key.offset_seconds}:{cand.user_id}"
                    + moved,
                    Envelope(
                        "user",
                        cand.user_id,
                        self._reminder_message(t, meetup, occ, key),
                        "reminder",
                    ),
                )
                await store.record_reminder(conn, key, cand.user_id, "sent", now)
        return work

    def _reminder_message(
        self, t: Catalogue, meetup: store.Meetup, occ: Occurrence, key: ReminderKey
    ) -> OutMessage:
        change = occ.change
        location = (change.location if change and change.location else None) or meetup.location
        link = (change.link if change and change.link else None) or meetup.link
        when = self._when(occ.start)
        if location:
            text = t(
                "meetups.reminder.text_location",
                title=escape(meetup.title),
                when=when,
                location=escape(location),
            )
        else:
            text = t("meetups.reminder.text", title=escape(meetup.title), when=when)
        if link:
            text += "\n" + t("meetups.reminder.link", link=self._link(link))
        text += "\n" + t("meetups.reminder.withdraw", id=meetup.id, prefix=self._prefix())
        return OutMessage(
            text, meta=self._meta(meetup.id, "reminder", occ.start, offset=key.offset_seconds)
        )
