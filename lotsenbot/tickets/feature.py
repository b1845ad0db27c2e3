"""Chat commands of the requests feature: staff ask, pilots take care, coordinators triage.

A request is routed to a department (``routing.py``), given to one of its pilots
(``assignment.py``) and tracked until it is resolved or withdrawn. Every change is a row
in ``ticket_events`` and, where someone has to know, a message — both in the handler's
transaction, so the history and the notifications never disagree. Who may see a ticket
is decided in one place (:func:`lotsenbot.tickets.store.visibility`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from lotsenbot.config import MATRIX_ID, Config, DepartmentConfig
from lotsenbot.core.context import Context
from lotsenbot.core.errors import BadArguments, Conflict, NotFound, PermissionDenied
from lotsenbot.core.feature import Feature
from lotsenbot.core.markdown import escape, quote
from lotsenbot.core.personal_data import ERASED
from lotsenbot.core.router import fold
from lotsenbot.core.types import OutMessage, Role
from lotsenbot.nlp import has_words
from lotsenbot.tickets import store
from lotsenbot.tickets.assignment import choose_assignee, is_absent
from lotsenbot.tickets.escalation import (
    JOB_ID,
    Deadlines,
    assignee_label,
    coordinator_envelopes,
    department_label,
    department_list,
    job_interval,
    local_time,
    person_label,
    run_job,
    team_envelopes,
    ticket_meta,
)
from lotsenbot.tickets.routing import RoutingDecision, TopicRouter
from lotsenbot.tickets.store import Ticket, Visibility

if TYPE_CHECKING:
    from lotsenbot.core.outbox import Envelope
    from lotsenbot.core.services import Services

log = logging.getLogger(__name__)

TEAM = (Role.PILOT, Role.COORDINATOR)
_NUMBER = re.compile(
    r"^\s*(?:nr\.?\s*)?#?(\d{1,9})(?=\s|$)[ \t]*\n?(.*)$", re.DOTALL | re.IGNORECASE
)
_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")
_MATRIX_LINK = re.compile(r"matrix\.to/#/(@[^\"'<>\s?]+)")
_EXCERPT = 60
_MAX_ABSENCE_DAYS = 366


_TEAM_ONLY_TEXTS = frozenset({"transferred"})


class TicketsFeature(Feature):
    """Requests (tickets). Other features call :meth:`open_ticket`; the FAQ offers it."""

    name = "tickets"

    def __init__(self) -> None:
        super().__init__()
        self._topic_router: TopicRouter | None = None
        self._deadlines: Deadlines | None = None
        self._built_for: Config | None = None
        command = self.router.command
        command("anfrage", aliases=("ticket",), args="<Text> | <Nr>")(self._new)
        command("anfragen", aliases=("tickets",))(self._mine)
        command("antwort", aliases=("reply",), args="<Nr> <Text>")(self._answer)
        command("verlauf", aliases=("history",), args="<Nr>")(self._history)
        command("zurückziehen", aliases=("withdraw",), args="<Nr>")(self._withdraw)
        command("wiedereröffnen", aliases=("reopen",), args="<Nr>")(self._reopen)
        command("abteilung", aliases=("department",), args="[Kürzel]")(self._department)
        command("lotse", aliases=("lotsin", "lotsen", "pilots"), args="[Kürzel]")(self._pilots)
        command("übernehmen", aliases=("claim",), roles=(Role.PILOT,), args="<Nr>")(self._claim)
        command("notiz", aliases=("note",), roles=TEAM, args="<Nr> <Text>")(self._note)
        command("erledigt", aliases=("resolve",), roles=TEAM, args="<Nr> [Text]")(self._resolve)
        command("weiterleiten", aliases=("transfer",), roles=TEAM, args="<Nr> <Abteilung> [Grund]")(
            self._transfer
        )
        command("warteschlange", aliases=("queue",), roles=TEAM)(self._queue)
        command(
            "abwesend",
            aliases=("away",),
            roles=(Role.PILOT,),
            args="bis <TT.MM.JJJJ> [Vertretung @name:server]",
        )(self._away)
        command("anwesend", aliases=("back",), roles=(Role.PILOT,))(self._back)
        self.router.on_message(priority=1)(self._on_reply)
        self.router.on_redaction(self._on_redaction)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, services: Services) -> None:
        """Build the router for the configured departments and start the escalation job."""
        await super().start(services)
        self._build(services.config)
        services.scheduler.add_job(
            run_job,
            "interval",
            args=(services,),
            seconds=job_interval(services.config),
            id=JOB_ID,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
        )

    def _build(self, config: Config) -> tuple[TopicRouter, Deadlines]:
        if self._built_for is not config or self._topic_router is None or self._deadlines is None:
            self._topic_router = TopicRouter(config.departments)
            self._deadlines = Deadlines.from_config(config)
            self._built_for = config
        return self._topic_router, self._deadlines

    # -- public API -------------------------------------------------------------------------

    async def route_text(
        self, ctx: Context, text: str, requester_department: str | None
    ) -> RoutingDecision:
        """Where a request would go: text, FAQ hints (if the FAQ runs) and own department."""
        topic_router, _ = self._build(ctx.services.config)
        hints: list[tuple[str, float]] = []
        faq = ctx.services.feature("faq")
        department_hints = getattr(faq, "department_hints", None)
        if department_hints is not None:
            hints = list(await department_hints(text, ctx.conn))
        return topic_router.route(text, hints, requester_department)

    async def open_ticket(self, ctx: Context, text: str, source: str = "command") -> int:
        """Create a ticket for the sender, route and assign it, notify, answer; return its id.

        Used by ``!anfrage`` and by the FAQ when a colleague accepts the offer to pass an
        unanswered question on to a pilot.
        """
        text = text.strip("\n").rstrip()
        if not text.strip():
            raise BadArguments("tickets.usage.anfrage")
        if not has_words(text):  # "???", "👍👍": nothing a pilot could work on
            raise BadArguments("tickets.usage.anfrage_words")
        ticket_id = await store.create_ticket(
            ctx.conn,
            requester=ctx.sender,
            room_id=ctx.room_id,
            body=text,
            source=source,
            now=ctx.now,
            answer_due_at=None,  # starts when a pilot claims it
        )
        await store.add_event(
            ctx.conn, ticket_id, ctx.now, ctx.sender, "created", details={"source": source}
        )
        own = await store.user_department(ctx.conn, ctx.sender)
        decision = await self.route_text(ctx, text, own)
        if decision.decision == "route" and decision.department is not None:
            ticket = await self._assign(
                ctx, ticket_id, decision.department, event="created", reason=decision.reason
            )
        else:
            ticket = await self._to_triage(ctx, ticket_id, decision)
        key = (
            "tickets.created.triage"
            if ticket.status == "triage"
            else "tickets.created.queued"
            if ticket.assignee is None
            else "tickets.created.assigned"
        )
        params = await self._params(ctx, ticket)
        # Replies to the confirmation are taken in a direct chat only (see _on_reply).
        hint = "add_hint" if ctx.incoming.is_direct else "add_hint_room"
        params["add_hint"] = ctx.t(f"tickets.created.{hint}", **params)
        ctx.reply(ctx.t(key, **params), **ticket_meta(ticket, "created", replyable=True))
        return ticket_id

    async def source_deleted(self, ctx: Context, ticket_id: int, kind: str) -> bool:
        """The message a request came from was deleted (redacted) in Matrix: tell the
        requester in the direct chat that the request stays and how to withdraw it. A
        request pilots may already work on is never dropped silently; a closed one needs no
        word. ``kind``: "command" (``!anfrage …``, "ja") or "question" (the FAQ question
        that was passed on). True if the requester is told."""
        ticket = await store.get_ticket(ctx.conn, ticket_id)
        if ticket is None or ticket.status in ("resolved", "withdrawn"):
            return False
        if ticket.requester == ERASED:
            return False
        params = await self._params(ctx, ticket)
        text = ctx.t(f"tickets.source_deleted.{kind}", **params)
        ctx.send_to_user(
            ticket.requester, OutMessage(text, meta=ticket_meta(ticket, "source_deleted"))
        )
        return True

    async def _on_redaction(self, ctx: Context) -> bool:
        """``!anfrage …`` deleted by its author (or a moderator): the request stays."""
        redacted = ctx.incoming.relates_to
        if not redacted:
            return False
        ticket_id = await store.ticket_created_by(ctx.conn, redacted, ctx.room_id)
        if ticket_id is None:
            return False
        await self.source_deleted(ctx, ticket_id, "command")
        return True

    # -- placing a ticket -----------------------------------------------------------------

    async def _assign(
        self,
        ctx: Context,
        ticket_id: int,
        department_id: str,
        *,
        event: str,
        reason: str,
        headline: str | None = None,
        new_round: bool = False,
    ) -> Ticket:
        """Give the ticket to a pilot of the department (or its queue) and tell them."""
        config = ctx.services.config
        _, deadlines = self._build(config)
        department = config.department(department_id)
        assert department is not None
        requester = (await self._get(ctx, ticket_id)).requester
        choice = choose_assignee(
            department.pilots,
            await store.open_counts(ctx.conn),
            await store.absences(ctx.conn),
            await store.last_assigned(ctx.conn, department_id),
            ctx.now,
            tz=config.bot.tz,
            exclude=requester,  # answering one's own request helps nobody
        )
        await store.place(
            ctx.conn,
            ticket_id,
            department=department_id,
            assignee=choice.assignee,
            deputy_for=choice.via_deputy_of,
            now=ctx.now,
            claim_due_at=deadlines.claim_due(ctx.now),
            route_reason=reason,
            new_round=new_round,
        )
        if choice.rotation_key is not None:
            await store.set_last_assigned(ctx.conn, department_id, choice.rotation_key, ctx.now)
        details = {
            "department": department_id,
            "assignee": choice.assignee,
            "deputy_for": choice.via_deputy_of,
            "reason": reason,
        }
        kind = "assigned" if choice.assignee else "queued"
        await store.add_event(
            ctx.conn, ticket_id, ctx.now, ctx.services.bot_user_id, kind, details=details
        )
        ticket = await self._get(ctx, ticket_id)
        await self._notify_team(ctx, ticket, department, event=event, headline=headline)
        return ticket

    async def _notify_team(
        self,
        ctx: Context,
        ticket: Ticket,
        department: DepartmentConfig,
        *,
        event: str,
        headline: str | None,
    ) -> None:
        """The assignee (directly) and the department room learn of a ticket they now have."""
        t = ctx.t
        params = await self._params(ctx, ticket)
        pilot_event = "assigned" if event == "created" else event
        meta = ticket_meta(ticket, pilot_event)
        parts = [headline or t("tickets.team.new", **params)]
        if ticket.assignee and ticket.deputy_for:
            parts.append(
                t("tickets.team.deputy_note", absent=await ctx.names.label(ticket.deputy_for))
            )
        parts += [quote(ticket.body), t("tickets.team.claim_hint", **params)]
        if ticket.assignee:
            personal = ticket_meta(ticket, pilot_event, replyable=True)
            message = OutMessage("\n\n".join(parts), meta=personal)
            self._send_all(ctx, team_envelopes(None, message, people=[ticket.assignee]))
        if department.room:
            room_parts = [
                *parts[:-1],
                t(
                    "tickets.team.room_assigned" if ticket.assignee else "tickets.team.room_queued",
                    **params,
                ),
            ]
            ctx.send_to_room(department.room, OutMessage("\n\n".join(room_parts), meta=meta))
        if ticket.assignee is None:
            # What coordinators can do about it: give it to a department with someone there.
            hint = t("tickets.coordinators.triage_hint", **params,
                     departments=department_list(ctx.services.config))  # fmt: skip
            text = "\n\n".join([t("tickets.coordinators.queued", **params), quote(ticket.body),
                                 hint])  # fmt: skip
            self._send_all(
                ctx, coordinator_envelopes(ctx.services.config, OutMessage(text, meta=meta))
            )

    async def _to_triage(
        self,
        ctx: Context,
        ticket_id: int,
        decision: RoutingDecision | None,
        *,
        event: str = "created",
    ) -> Ticket:
        """Coordinators decide: a wrong guess costs a colleague more than a short wait."""
        await store.place(
            ctx.conn,
            ticket_id,
            department=None,
            assignee=None,
            deputy_for=None,
            now=ctx.now,
            claim_due_at=None,
            route_reason=decision.reason if decision else None,
        )
        scores = decision.scores if decision else {}
        await store.add_event(
            ctx.conn,
            ticket_id,
            ctx.now,
            ctx.services.bot_user_id,
            "triage",
            details={"scores": scores},
        )
        ticket = await self._get(ctx, ticket_id)
        config, t = ctx.services.config, ctx.t
        ranked = [(d, s) for d, s in sorted(scores.items(), key=lambda i: -i[1]) if s > 0][:3]
        candidates = (
            t(
                "tickets.coordinators.candidates",
                list=", ".join(
                    f"`{d}` ({department_label(config, d, t)}, {s:.1f})" for d, s in ranked
                ),
            )
            if ranked
            else t("tickets.coordinators.no_candidates")
        )
        params = {**await self._params(ctx, ticket), "departments": department_list(config)}
        text = "\n\n".join(
            [
                t("tickets.coordinators.triage", **params),
                quote(ticket.body),
                candidates,
                t("tickets.coordinators.triage_hint", **params),
            ]
        )
        self._send_all(
            ctx, coordinator_envelopes(config, OutMessage(text, meta=ticket_meta(ticket, event)))
        )
        return ticket

    # -- staff commands ---------------------------------------------------------------------

    async def _new(self, ctx: Context, args: str) -> None:
        match = _NUMBER.match(args)
        if match and not match.group(2).strip():
            await self._history(ctx, args)  # "!anfrage 12" shows ticket 12
            return
        # The FAQ's offer to pass a question on is settled by any request: "!anfrage" alone
        # accepts it, "!anfrage <Text>" (the prefilled, perhaps extended question) replaces
        # it, so that a later "ja" does not open the same request a second time.
        take = getattr(ctx.services.feature("faq"), "take_offered_question", None)
        offered = await take(ctx) if take is not None else None
        if not args.strip() and offered:
            await self.open_ticket(ctx, offered, source="faq")
            return
        await self.open_ticket(ctx, args, source="command")

    async def _mine(self, ctx: Context, args: str) -> None:
        tickets = await store.tickets_of(ctx.conn, ctx.sender)
        t = ctx.t
        if not tickets:
            ctx.reply(
                t("tickets.list.empty", prefix=self._prefix(ctx)), **{"de.lotsenbot.tickets": []}
            )
            return
        await ctx.names.load(_people(tickets))
        lines = [t("tickets.list.title")]
        lines += [t("tickets.list.item", **await self._params(ctx, ticket)) for ticket in tickets]
        lines += ["", t("tickets.list.footer", prefix=self._prefix(ctx))]
        ctx.reply_privately(
            "\n".join(lines), **{"de.lotsenbot.tickets": [_summary(t) for t in tickets]}
        )

    async def _history(self, ctx: Context, args: str) -> None:
        number, _ = self._number(ctx, args, "verlauf")
        ticket, side = await self._visible(ctx, number)
        events = await store.history(ctx.conn, ticket.id, include_internal=side == "team")
        t, config = ctx.t, ctx.services.config
        assignees = [e.details.get("assignee") for e in events]
        await ctx.names.load([*_people([ticket]), *(e.actor for e in events),
                              *(a for a in assignees if isinstance(a, str))])  # fmt: skip
        params = await self._params(ctx, ticket)
        lines = [
            t("tickets.detail.title", **params),
            "",
            quote(ticket.body),
            "",
            t("tickets.detail.history"),
        ]
        for item in events:
            what = await self._event_text(ctx, item)
            lines.append(
                t(
                    "tickets.detail.item",
                    date=local_time(config, item.at),
                    actor=(
                        t("tickets.detail.bot")
                        if item.actor == config.matrix.user_id
                        else await person_label(ctx.names, item.actor, t)
                    ),
                    what=what,
                )
            )
            # A transfer's reason is for the team (the requester's notice leaves it out).
            if item.body and (side == "team" or item.kind not in _TEAM_ONLY_TEXTS):
                # indented, so the quote belongs to its list item
                lines += ["  " + line for line in quote(item.body).splitlines()]
        last = next((e.kind for e in reversed(events) if e.kind in _META_EVENTS), "created")
        meta: dict[str, Any] = ticket_meta(ticket, last)
        meta["de.lotsenbot.ticket_history"] = [
            {
                "at": item.at.isoformat(),
                "actor": item.actor,
                "kind": item.kind,
                "internal": item.internal,
            }
            for item in events
        ]
        ctx.reply_privately("\n".join(lines), **meta)

    async def _event_text(self, ctx: Context, item: store.TicketEvent) -> str:
        t, config = ctx.t, ctx.services.config
        details = item.details
        params = {
            "who": await person_label(ctx.names, details.get("assignee"), t),
            "department": department_label(
                config, details.get("department") or details.get("to"), t
            ),
            "kind": t(f"tickets.escalation.kind_{details.get('kind', 'claim')}"),
        }
        key = f"tickets.event.{item.kind}"
        return t(key, **params) if t.has(key) else escape(item.kind)

    async def _answer(self, ctx: Context, args: str) -> None:
        number, text = self._number(ctx, args, "antwort")
        if not text:
            raise BadArguments("tickets.usage.antwort")
        await self._write_to(ctx, number, text)

    async def _on_reply(self, ctx: Context) -> bool:
        """A plain message sent with the reply function on one of the bot's messages about a
        ticket is written to that ticket, exactly as ``!antwort <Nr> <Text>`` would be: the
        same checks, history entry, notifications and errors.

        It comes before every other message handler: the person chose what they answer, so
        a "ja" or "2" in reply to a pilot's question is meant for the pilot, not for an
        offer or a list of suggestions the bot made earlier. A reply to any other message
        is not taken here. The dispatcher has already sent commands to their handlers and
        left out group-room messages that do not address the bot."""
        replied_to = ctx.incoming.reply_to
        if replied_to is None:
            return False
        number = await store.ticket_for_message(ctx.conn, replied_to)
        if number is None:
            return await self._on_reply_to_notice(ctx, replied_to)
        if not ctx.incoming.is_direct:
            # In a group room clients mention the bot in every reply to its message, and
            # colleagues answer such a notice among themselves ("kann das jemand anders
            # machen?"). Such a remark must not reach the requester, nor take the request on
            # the way: there only `!antwort` writes to a request. The requester, whose
            # addition it most likely is, is told so; anyone else's reply is ignored.
            ticket = await store.get_ticket(ctx.conn, number)
            if ticket is not None and ctx.sender == ticket.requester:
                ctx.reply(ctx.t("tickets.reply.room_hint", number=number, prefix=self._prefix(ctx)))
            else:
                log.info("reply to request %s in a group room ignored", number)
            return True
        await self._write_to(ctx, number, ctx.incoming.body.strip())
        return True

    async def _on_reply_to_notice(self, ctx: Context, replied_to: str) -> bool:
        """A pilot's or coordinator's reply, in the direct chat, to one of the bot's notices
        about a request that does not pass replies on (a confirmation such as "Sie haben die
        Anfrage #9 übernommen"): most likely meant as an answer to the requester. It is not
        passed on (a "danke" to a confirmation must not reach the requester), and it is no
        FAQ question either: the sender is told how to write to the request."""
        if not ctx.incoming.is_direct or not (ctx.person.is_pilot or ctx.person.is_coordinator):
            return False
        targets = (ctx.incoming.room_id, ctx.sender)
        number = await store.ticket_of_notice(ctx.conn, replied_to, targets)
        ticket = await store.get_ticket(ctx.conn, number) if number is not None else None
        if (
            ticket is None
            or ticket.is_closed  # nothing to write to any more: an ordinary message ("danke")
            or store.visibility(ticket, ctx.person) != "team"  # e.g. after a transfer
        ):
            return False
        ctx.reply(ctx.t("tickets.reply.not_passed_on", number=number, prefix=self._prefix(ctx)))
        return True

    async def _write_to(self, ctx: Context, number: int, text: str) -> None:
        """The requester's follow-up or the team's answer, by who the sender is."""
        ticket, side = await self._visible(ctx, number)
        if ctx.sender == ticket.requester:
            await self._requester_message(ctx, ticket, text)
        elif side == "team":
            await self._team_answer(ctx, ticket, text)
        else:
            raise PermissionDenied()

    async def _requester_message(self, ctx: Context, ticket: Ticket, text: str) -> None:
        """A follow-up from the requester goes to whoever has the ticket now."""
        if ticket.is_closed:
            await self._after_closing(ctx, ticket, text)
            return
        _, deadlines = self._build(ctx.services.config)
        await store.add_event(ctx.conn, ticket.id, ctx.now, ctx.sender, "reply", text)
        if ticket.status == "answered":
            await store.await_answer(ctx.conn, ticket.id, ctx.now, deadlines.answer_due(ctx.now))
        else:
            await store.touch(ctx.conn, ticket.id, ctx.now)
        ticket = await self._get(ctx, ticket.id)
        t = ctx.t
        params = await self._params(ctx, ticket)

        def to_team(hint: str) -> OutMessage:
            lines = [t("tickets.reply.to_team", **params), quote(text), t(hint, **params)]
            return OutMessage("\n\n".join(lines), meta=ticket_meta(ticket, "reply", replyable=True))

        # A department room gets the command only: replies are taken in direct chats alone.
        in_room = to_team("tickets.reply.team_hint_room")
        envelopes = [
            replace(envelope, message=in_room) if envelope.target_kind == "room" else envelope
            for envelope in self._current_team(ctx, ticket, to_team("tickets.reply.team_hint"))
        ]
        self._send_all(ctx, envelopes)
        ctx.reply(
            t("tickets.reply.sent_requester", **params),
            **ticket_meta(ticket, "reply", replyable=True),
        )

    async def _after_closing(self, ctx: Context, ticket: Ticket, text: str) -> None:
        """The requester writes to a closed request, mostly with the reply function on "Ihre
        Anfrage #N ist erledigt": "danke, hat geklappt", or "geht doch wieder nicht".

        The first such message after a resolution goes to whoever resolved the request (the
        name the requester saw in that message), as a note that needs no action, and is kept
        in the history like any message to the request. The request stays closed: reopening
        is the requester's decision (``!wiedereröffnen``), and the reply says how. Later
        messages are not passed on, so a closed request does not turn into a chat with a
        pilot who is done with it; nor are messages to a withdrawn request, or when who
        resolved it is no longer a pilot or coordinator. Those get the hint alone.
        """
        next_step = self._after_close_hint(ctx, ticket)
        closer, written = (
            await store.after_resolution(ctx.conn, ticket.id, ticket.requester)
            if ticket.status == "resolved"
            else (None, False)
        )
        if closer is None or closer == ctx.sender or not ctx.services.roles.is_team(closer):
            raise Conflict(
                "tickets.error.closed_requester",
                number=ticket.id,
                status=ctx.t(f"tickets.status.{ticket.status}"),
                next=next_step,
            )
        who = await ctx.names.label(closer)
        if written:
            raise Conflict(
                "tickets.error.closed_requester_passed", number=ticket.id, who=who, next=next_step
            )
        await store.add_event(
            ctx.conn, ticket.id, ctx.now, ctx.sender, "reply", text,
            details={"after": "resolved"},
        )  # fmt: skip
        t = ctx.t
        params = {**await self._params(ctx, ticket), "who": who}
        reopen = self._reopen_until(ctx, ticket)
        team_hint = "tickets.closed_reply.team_hint" + ("_reopen" if reopen else "")
        notice = "\n\n".join(
            [t("tickets.closed_reply.to_team", **params), quote(text), t(team_hint, **params)]
        )
        meta = ticket_meta(ticket, "closed_reply")
        ctx.send_to_user(closer, OutMessage(notice, meta=meta))
        ctx.reply("\n\n".join([t("tickets.closed_reply.requester", **params), next_step]), **meta)

    @staticmethod
    def _reopen_until(ctx: Context, ticket: Ticket) -> str | None:
        """Until when the request can be reopened (local time), or None if no longer."""
        days = ctx.services.config.tickets.reopen_days
        if ticket.status != "resolved" or not days or ticket.resolved_at is None:
            return None
        until = ticket.resolved_at + timedelta(days=days)
        return local_time(ctx.services.config, until) if until > ctx.now else None

    def _after_close_hint(self, ctx: Context, ticket: Ticket) -> str:
        """What the requester can do about a closed request: reopen it, or ask anew."""
        until = self._reopen_until(ctx, ticket)
        if until is None:
            return ctx.t("tickets.closed_reply.new", prefix=self._prefix(ctx))
        return ctx.t(
            "tickets.closed_reply.reopen", number=ticket.id, until=until, prefix=self._prefix(ctx)
        )

    async def _team_answer(self, ctx: Context, ticket: Ticket, text: str) -> None:
        """A pilot's answer goes to the requester; answering an untaken ticket takes it."""
        if ticket.is_closed:
            raise Conflict(
                "tickets.error.closed",
                number=ticket.id,
                status=ctx.t(f"tickets.status.{ticket.status}"),
            )
        if (
            ticket.status in store.CLAIMABLE
            and self._may_claim(ctx, ticket)
            and await store.claim(ctx.conn, ticket.id, ctx.sender, ctx.now)
        ):
            await store.add_event(ctx.conn, ticket.id, ctx.now, ctx.sender, "claimed")
        await store.add_event(ctx.conn, ticket.id, ctx.now, ctx.sender, "reply", text)
        await store.mark_answered(ctx.conn, ticket.id, ctx.now)
        ticket = await self._get(ctx, ticket.id)
        t = ctx.t
        params = {**await self._params(ctx, ticket), "who": await ctx.names.label(ctx.sender)}
        ctx.send_to_user(
            ticket.requester,
            OutMessage(
                "\n\n".join(
                    [
                        t("tickets.reply.to_requester", **params),
                        quote(text),
                        t("tickets.reply.requester_hint", **params),
                    ]
                ),
                meta=ticket_meta(ticket, "reply", replyable=True),
            ),
        )
        ctx.reply(
            t("tickets.reply.sent_team", **self._in_room(ctx, params)),
            **ticket_meta(ticket, "reply"),
        )

    async def _withdraw(self, ctx: Context, args: str) -> None:
        number, _ = self._number(ctx, args, "zurückziehen")
        ticket, _side = await self._visible(ctx, number)
        if ctx.sender != ticket.requester:
            raise PermissionDenied("tickets.error.only_requester")
        if not await store.close(ctx.conn, ticket.id, "withdrawn", ctx.now):
            raise Conflict(
                "tickets.error.closed",
                number=ticket.id,
                status=ctx.t(f"tickets.status.{ticket.status}"),
            )
        await store.add_event(ctx.conn, ticket.id, ctx.now, ctx.sender, "withdrawn")
        before, ticket = ticket, await self._get(ctx, ticket.id)
        params = await self._params(ctx, ticket)
        meta = ticket_meta(ticket, "withdrawn")
        # Whoever had it as it stood (its pilot, a department queue or escalation, triage)
        # can stop working on it.
        notice = OutMessage(ctx.t("tickets.withdrawn.team", **params), meta=meta)
        team = self._current_team(ctx, before, notice)
        self._send_all(ctx, [e for e in team if (e.target_kind, e.target) != ("user", ctx.sender)])
        ctx.reply(ctx.t("tickets.withdrawn.requester", **params), **meta)

    async def _reopen(self, ctx: Context, args: str) -> None:
        number, _ = self._number(ctx, args, "wiedereröffnen")
        ticket, side = await self._visible(ctx, number)
        if ctx.sender != ticket.requester and side != "team":
            raise PermissionDenied()
        config = ctx.services.config
        days = config.tickets.reopen_days
        if ticket.requester == ERASED:  # no text, nobody to answer: nothing to reopen
            raise Conflict("tickets.error.anonymised", number=ticket.id)
        if ticket.status != "resolved":
            raise Conflict(
                "tickets.error.not_resolved",
                number=ticket.id,
                status=ctx.t(f"tickets.status.{ticket.status}"),
            )
        _, deadlines = self._build(config)
        since = ctx.now - timedelta(days=days)
        if days == 0 or not await store.reopen(
            ctx.conn, ticket.id, ctx.now, since, deadlines.answer_due(ctx.now)
        ):
            raise Conflict("tickets.error.reopen_too_late", number=ticket.id, days=days)
        await store.add_event(ctx.conn, ticket.id, ctx.now, ctx.sender, "reopened")
        ticket = await self._get(ctx, ticket.id)
        t = ctx.t
        params = {**await self._params(ctx, ticket), "by": await ctx.names.label(ctx.sender)}
        headline = t("tickets.team.reopened", **params)
        if ticket.assignee is not None and await self._still_there(ctx, ticket):
            message = OutMessage(
                "\n\n".join([headline, quote(ticket.body)]), meta=ticket_meta(ticket, "reopened")
            )
            ctx.send_to_user(ticket.assignee, message)
        elif ticket.department and config.department(ticket.department):
            # No pilot to go back to (none, away, or no longer one): the department anew.
            ticket = await self._assign(
                ctx, ticket.id, ticket.department, event="reopened", reason="reopened",
                headline=headline,
            )  # fmt: skip
        else:
            # Closed while still in triage, or its department has left the configuration:
            # placed afresh, as the same request would be today.
            own = await store.user_department(ctx.conn, ticket.requester)
            decision = await self.route_text(ctx, ticket.body, own)
            if decision.decision == "route" and decision.department is not None:
                ticket = await self._assign(
                    ctx, ticket.id, decision.department, event="reopened",
                    reason=decision.reason, headline=headline,
                )  # fmt: skip
            else:
                ticket = await self._to_triage(ctx, ticket.id, decision, event="reopened")
        params = {**await self._params(ctx, ticket), "by": await ctx.names.label(ctx.sender)}
        meta = ticket_meta(ticket, "reopened")
        if ctx.sender == ticket.requester:
            ctx.reply(t("tickets.reopened.requester", **params), **meta)
            return
        ctx.send_to_user(
            ticket.requester, OutMessage(t("tickets.reopened.by_team", **params), meta=meta)
        )
        ctx.reply(t("tickets.reopened.team", **self._in_room(ctx, params)), **meta)

    async def _still_there(self, ctx: Context, ticket: Ticket) -> bool:
        """Whether the ticket's pilot can take it back: still a pilot of its department (or
        the deputy who had it) and not away today."""
        config = ctx.services.config
        department = config.department(ticket.department) if ticket.department else None
        assignee = ticket.assignee
        if assignee is None or department is None or assignee == ticket.requester:
            return False
        if assignee not in department.pilots and ticket.deputy_for is None:
            return False
        today = ctx.now.astimezone(config.bot.tz).date()
        return not is_absent(assignee, await store.absences(ctx.conn), today)

    async def _department(self, ctx: Context, args: str) -> None:
        config, t = ctx.services.config, ctx.t
        listing = department_list(config)
        wanted = args.strip()
        if not wanted:
            current = await store.user_department(ctx.conn, ctx.sender)
            key = "tickets.department.current" if current else "tickets.department.none"
            ctx.reply(
                t(
                    key,
                    department=department_label(config, current, t),
                    departments=listing,
                    prefix=self._prefix(ctx),
                ),
                **{"de.lotsenbot.department": {"id": current}},
            )
            return
        department = self._find_department(config, wanted)
        if department is None:
            raise BadArguments(
                "tickets.error.unknown_department", department=escape(wanted), departments=listing
            )
        await store.set_user_department(ctx.conn, ctx.sender, department.id, ctx.now)
        ctx.reply(
            t("tickets.department.set", department=escape(department.name)),
            **{"de.lotsenbot.department": {"id": department.id}},
        )

    async def _pilots(self, ctx: Context, args: str) -> None:
        """Who the Digitale Lotsinnen und Lotsen are: of the asker's own department, of the
        one named, or of every department when the asker has none."""
        config, t = ctx.services.config, ctx.t
        wanted = args.strip()
        if wanted:
            department = self._find_department(config, wanted)
            if department is None:
                raise BadArguments(
                    "tickets.error.unknown_department",
                    department=escape(wanted),
                    departments=department_list(config),
                )
            shown = [department]
        else:
            own = await store.user_department(ctx.conn, ctx.sender)
            department = config.department(own) if own else None
            shown = [department] if department else list(config.departments)
        if not shown:
            ctx.reply(
                t("tickets.pilots.none_configured"), **{"de.lotsenbot.pilots": {"departments": []}}
            )
            return
        absences = await store.absences(ctx.conn)
        today = ctx.now.astimezone(config.bot.tz).date()
        await ctx.names.load(p for d in shown for p in d.pilots)
        lines = []
        for shown_department in shown:
            people = []
            for pilot in shown_department.pilots:
                label = await ctx.names.label(pilot)
                if is_absent(pilot, absences, today):
                    # Whether, not until when: the date is the pilot's own business (only a
                    # named deputy is told it).
                    label = t("tickets.pilots.away", person=label)
                people.append(label)
            listed = ", ".join(people) if people else t("tickets.pilots.nobody")
            lines.append(f"- **{escape(shown_department.name)}**: {listed}")
        key = "named" if wanted else "own" if department is not None else "all"
        heading = t(
            f"tickets.pilots.{key}", department=escape(shown[0].name), prefix=self._prefix(ctx)
        )
        ctx.reply(
            "\n".join([heading, *lines]),
            **{"de.lotsenbot.pilots": {"departments": [d.id for d in shown]}},
        )

    # -- team commands ----------------------------------------------------------------------

    async def _claim(self, ctx: Context, args: str) -> None:
        number, _ = self._number(ctx, args, "übernehmen")
        ticket, _side = await self._visible(ctx, number)
        if not self._may_claim(ctx, ticket):
            raise PermissionDenied("tickets.error.not_team")
        if ticket.is_closed:
            raise Conflict(
                "tickets.error.closed",
                number=ticket.id,
                status=ctx.t(f"tickets.status.{ticket.status}"),
            )
        if ticket.assignee == ctx.sender and ticket.status in ("claimed", "answered"):
            raise Conflict("tickets.error.already_yours", number=ticket.id)
        previous = ticket.assignee
        _, deadlines = self._build(ctx.services.config)
        answer_due = deadlines.answer_due(ctx.now)
        if not await store.claim(ctx.conn, ticket.id, ctx.sender, ctx.now, answer_due):
            # The arbiter said no: someone else got here first (or it left the queue).
            current = await self._get(ctx, ticket.id)
            if current.assignee and current.status in ("claimed", "answered"):
                raise Conflict(
                    "tickets.error.already_claimed",
                    number=ticket.id,
                    who=await ctx.names.label(current.assignee),
                )
            raise Conflict(
                "tickets.error.not_claimable",
                number=ticket.id,
                status=ctx.t(f"tickets.status.{current.status}"),
            )
        await store.add_event(
            ctx.conn, ticket.id, ctx.now, ctx.sender, "claimed", details={"assignee": ctx.sender}
        )
        ticket = await self._get(ctx, ticket.id)
        t = ctx.t
        params = {**await self._params(ctx, ticket), "who": await ctx.names.label(ctx.sender)}
        meta = ticket_meta(ticket, "claimed")
        to_requester = ticket_meta(ticket, "claimed", replyable=True)
        ctx.send_to_user(
            ticket.requester,
            OutMessage(t("tickets.claimed.requester", **params), meta=to_requester),
        )
        if previous and previous != ctx.sender:
            ctx.send_to_user(
                previous, OutMessage(t("tickets.claimed.previous", **params), meta=meta)
            )
        ctx.reply(t("tickets.claimed.team", **params), **meta)

    async def _note(self, ctx: Context, args: str) -> None:
        number, text = self._number(ctx, args, "notiz")
        if not text:
            raise BadArguments("tickets.usage.notiz")
        ticket, side = await self._visible(ctx, number)
        if side != "team":
            raise PermissionDenied()
        await store.add_event(ctx.conn, ticket.id, ctx.now, ctx.sender, "note", text, internal=True)
        await store.touch(ctx.conn, ticket.id, ctx.now)
        saved = ctx.t("tickets.note.saved", number=ticket.id, prefix=self._prefix(ctx))
        ctx.reply(saved, **ticket_meta(ticket, "note"))

    async def _resolve(self, ctx: Context, args: str) -> None:
        number, text = self._number(ctx, args, "erledigt")
        ticket, side = await self._visible(ctx, number)
        if side != "team":
            raise PermissionDenied()
        if not await store.close(ctx.conn, ticket.id, "resolved", ctx.now):
            raise Conflict(
                "tickets.error.closed",
                number=ticket.id,
                status=ctx.t(f"tickets.status.{ticket.status}"),
            )
        await store.add_event(ctx.conn, ticket.id, ctx.now, ctx.sender, "resolved", text or None)
        ticket = await self._get(ctx, ticket.id)
        t = ctx.t
        days = ctx.services.config.tickets.reopen_days
        params = {
            **await self._params(ctx, ticket),
            "who": await ctx.names.label(ctx.sender),
            "days": days,
        }
        meta = ticket_meta(ticket, "resolved")
        parts = [t("tickets.resolved.requester", **params)]
        if text:
            parts.append(quote(text))
        if days:
            parts.append(t("tickets.resolved.reopen_hint", **params))
        ctx.send_to_user(
            ticket.requester,
            OutMessage("\n\n".join(parts), meta=ticket_meta(ticket, "resolved", replyable=True)),
        )
        if ticket.assignee and ticket.assignee != ctx.sender:
            ctx.send_to_user(
                ticket.assignee, OutMessage(t("tickets.resolved.assignee", **params), meta=meta)
            )
        ctx.reply(t("tickets.resolved.team", **self._in_room(ctx, params)), **meta)

    async def _transfer(self, ctx: Context, args: str) -> None:
        number, rest = self._number(ctx, args, "weiterleiten")
        config = ctx.services.config
        head, _, tail = rest.partition("\n")
        words = head.split(None, 1)
        target_word = words[0] if words else ""
        reason = "\n".join(part for part in (words[1] if len(words) > 1 else "", tail) if part)
        reason = reason.strip()
        if not target_word.strip():
            raise BadArguments("tickets.usage.weiterleiten", departments=department_list(config))
        ticket, side = await self._visible(ctx, number)
        if side != "team" or not (ctx.person.is_coordinator or self._may_claim(ctx, ticket)):
            raise PermissionDenied()
        department = self._find_department(config, target_word.strip())
        if department is None:
            raise BadArguments(
                "tickets.error.unknown_department",
                department=escape(target_word.strip()),
                departments=department_list(config),
            )
        if ticket.is_closed:
            raise Conflict(
                "tickets.error.closed",
                number=ticket.id,
                status=ctx.t(f"tickets.status.{ticket.status}"),
            )
        if ticket.department == department.id and ticket.status != "triage":
            raise Conflict(
                "tickets.error.same_department",
                number=ticket.id,
                department=escape(department.name),
            )
        t = ctx.t
        previous_department, previous_assignee = ticket.department, ticket.assignee
        headline_params = {
            "number": ticket.id,
            "who": await ctx.names.label(ctx.sender),
            "department": escape(department.name),
        }
        headline = t("tickets.team.transferred", **headline_params)
        if reason:
            headline += "\n\n" + t("tickets.team.reason", reason=escape(reason))
        ticket = await self._assign(
            ctx,
            ticket.id,
            department.id,
            event="transferred",
            reason="transfer",
            headline=headline,
            new_round=True,
        )
        await store.add_event(
            ctx.conn,
            ticket.id,
            ctx.now,
            ctx.sender,
            "transferred",
            reason or None,
            details={"from": previous_department, "to": department.id},
        )
        await ctx.audit(
            "ticket.transfer",
            f"ticket:{ticket.id}",
            {
                "from": previous_department,
                "to": department.id,
                "assignee": ticket.assignee,
                "reason": reason or None,
            },
        )
        params = await self._params(ctx, ticket)
        meta = ticket_meta(ticket, "transferred")
        key = "tickets.transferred." + ("requester" if ticket.assignee else "requester_queued")
        ctx.send_to_user(
            ticket.requester,
            OutMessage(t(key, **params), meta=ticket_meta(ticket, "transferred", replyable=True)),
        )
        if previous_assignee and previous_assignee not in (ctx.sender, ticket.assignee):
            ctx.send_to_user(
                previous_assignee,
                OutMessage(t("tickets.transferred.previous", **params), meta=meta),
            )
        ctx.reply(t("tickets.transferred.team", **params), **meta)

    async def _queue(self, ctx: Context, args: str) -> None:
        person = ctx.person
        departments = None if person.is_coordinator else person.departments
        tickets = await store.queue(ctx.conn, departments=departments, assignee=ctx.sender)
        t = ctx.t
        if not tickets:
            ctx.reply(t("tickets.queue.empty"), **{"de.lotsenbot.tickets": []})
            return
        await ctx.names.load(_people(tickets))
        lines = [t("tickets.queue.title", count=len(tickets))]
        lines += [t("tickets.queue.item", **await self._params(ctx, ticket)) for ticket in tickets]
        ctx.reply_privately(
            "\n".join(lines), **{"de.lotsenbot.tickets": [_summary(t) for t in tickets]}
        )

    async def _away(self, ctx: Context, args: str) -> None:
        config, t = ctx.services.config, ctx.t
        words = args.split()
        if words and fold(words[0]) in ("bis", "until"):
            words = words[1:]
        if not words:
            raise BadArguments("tickets.usage.abwesend")
        until = self._parse_date(words[0])
        today = ctx.now.astimezone(config.bot.tz).date()
        if until < today:
            raise BadArguments("tickets.error.date_past", date=until.strftime("%d.%m.%Y"))
        if (until - today).days > _MAX_ABSENCE_DAYS:
            raise BadArguments("tickets.error.date_far")
        deputy = self._deputy(ctx, words[1:])
        if deputy == ctx.sender:
            raise BadArguments("tickets.error.deputy_self")
        if deputy is not None:
            person = ctx.services.roles.person(deputy)
            if person is None or not person.is_pilot:
                raise BadArguments(
                    "tickets.error.deputy_not_pilot", deputy=await ctx.names.label(deputy)
                )
        await store.set_absence(ctx.conn, ctx.sender, until, deputy, ctx.now)
        params = {
            "date": until.strftime("%d.%m.%Y"),
            "deputy": await person_label(ctx.names, deputy, t),
            "pilot": await ctx.names.label(ctx.sender),
            "prefix": self._prefix(ctx),
        }
        if deputy is not None:
            ctx.send_to_user(deputy, OutMessage(t("tickets.absence.deputy_told", **params)))
        absences = await store.absences(ctx.conn)
        colleagues = {
            pilot
            for department in config.departments
            if ctx.sender in department.pilots
            for pilot in department.pilots
            if pilot != ctx.sender and not is_absent(pilot, absences, today)
        }
        key = (
            "tickets.absence.set_deputy"
            if deputy
            else "tickets.absence.set"
            if colleagues
            else "tickets.absence.set_alone"
        )
        ctx.reply(
            t(key, **params),
            **{"de.lotsenbot.absence": {"until": until.isoformat(), "deputy": deputy}},
        )

    async def _back(self, ctx: Context, args: str) -> None:
        removed = await store.clear_absence(ctx.conn, ctx.sender)
        key = "tickets.absence.back" if removed else "tickets.absence.not_away"
        ctx.reply(ctx.t(key), **{"de.lotsenbot.absence": None})

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _prefix(ctx: Context) -> str:
        return ctx.services.config.bot.prefix

    async def _params(self, ctx: Context, ticket: Ticket) -> dict[str, Any]:
        """The placeholders every ticket text may use."""
        t, config = ctx.t, ctx.services.config
        first_line = ticket.body.strip().splitlines()[0] if ticket.body.strip() else ""
        excerpt = first_line if len(first_line) <= _EXCERPT else first_line[:_EXCERPT] + "…"
        return {
            "number": ticket.id,
            "status": t(f"tickets.status.{ticket.status}"),
            "department": department_label(config, ticket.department, t),
            "who": await assignee_label(ctx.names, ticket, t),
            "requester": await ctx.names.label(ticket.requester),
            "date": local_time(config, ticket.created_at),
            "excerpt": escape(excerpt),
            "prefix": self._prefix(ctx),
        }

    @staticmethod
    def _in_room(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` for a confirmation to the team member who typed the command: in a
        group room without the requester's name and Matrix ID, which would tell the room
        who asked the pilots for help."""
        if ctx.incoming.is_direct:
            return params
        return {**params, "requester": ctx.t("tickets.requester_unnamed")}

    @staticmethod
    def _number(ctx: Context, args: str, command: str) -> tuple[int, str]:
        """The ticket number at the start of the arguments, and the rest (line breaks kept)."""
        match = _NUMBER.match(args)
        if match is None:
            word = args.split()[0] if args.split() else ""
            if word:
                raise BadArguments("core.error.bad_number", value=escape(word[:20]))
            raise BadArguments("tickets.usage.number", command=command)
        return int(match.group(1)), match.group(2).strip("\n").rstrip()

    async def _get(self, ctx: Context, ticket_id: int) -> Ticket:
        ticket = await store.get_ticket(ctx.conn, ticket_id)
        if ticket is None:
            raise NotFound("tickets.error.not_found", number=ticket_id)
        return ticket

    async def _visible(self, ctx: Context, number: int) -> tuple[Ticket, Visibility]:
        ticket = await self._get(ctx, number)
        side = store.visibility(ticket, ctx.person)
        if side is None:
            raise PermissionDenied()
        return ticket, side

    @staticmethod
    def _may_claim(ctx: Context, ticket: Ticket) -> bool:
        """Pilots of the ticket's department, and the person it is assigned to (a deputy)."""
        return (
            ticket.department is not None and ticket.department in ctx.person.departments
        ) or ticket.assignee == ctx.sender

    def _current_team(self, ctx: Context, ticket: Ticket, message: OutMessage) -> list[Envelope]:
        """Who hears a requester's follow-up: the assignee, else the department, else triage."""
        config = ctx.services.config
        department = config.department(ticket.department) if ticket.department else None
        if ticket.assignee and not (ticket.status == "escalated" and department is not None):
            return team_envelopes(None, message, people=[ticket.assignee])
        if department is not None:
            # Escalated: offered to the whole department, which hears follow-ups too.
            people = [] if department.room else list(department.pilots)
            if ticket.assignee and ticket.assignee not in people:
                people.append(ticket.assignee)
            return team_envelopes(department, message, people=people)
        return coordinator_envelopes(config, message)

    @staticmethod
    def _send_all(ctx: Context, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            if envelope.target_kind == "room":
                ctx.send_to_room(envelope.target, envelope.message, envelope.purpose)
            else:
                ctx.send_to_user(envelope.target, envelope.message, envelope.purpose)

    @staticmethod
    def _find_department(config: Config, word: str) -> DepartmentConfig | None:
        wanted = fold(word)
        for department in config.departments:
            if wanted in (fold(department.id), fold(department.name)):
                return department
        return None

    @staticmethod
    def _parse_date(word: str) -> date:
        match = _DATE.match(word.strip().rstrip(",;"))  # "24.12.2026, Vertretung …"
        if match is None:
            raise BadArguments("tickets.error.bad_date", value=escape(word[:20]))
        day, month, year = (int(g) for g in match.groups())
        try:
            return date(year, month, day)
        except ValueError:
            raise BadArguments("tickets.error.bad_date", value=escape(word[:20])) from None

    @staticmethod
    def _deputy(ctx: Context, words: list[str]) -> str | None:
        """The deputy's Matrix ID, typed out or as a mention pill (a matrix.to link)."""
        if words and fold(words[0]) in ("vertretung", "vertreter", "vertreterin", "deputy"):
            words = words[1:]
        if not words:
            return None
        candidate = words[0].rstrip(".,;")
        if MATRIX_ID.match(candidate):
            return candidate
        formatted = ctx.incoming.formatted_body or ""
        for link in _MATRIX_LINK.findall(formatted):
            user = link.replace("%40", "@").replace("%3A", ":").replace("%3a", ":")
            if MATRIX_ID.match(user):
                return user
        raise BadArguments("tickets.error.bad_deputy", value=escape(candidate[:60]))


def _people(tickets: list[Ticket]) -> list[str]:
    """Everyone a line about these tickets may name, to read their names at once."""
    found = (p for t in tickets for p in (t.requester, t.assignee, t.deputy_for))
    return [p for p in found if p]


def _summary(ticket: Ticket) -> dict[str, Any]:
    """One ticket of a list, for the structured part of list messages."""
    return {
        "id": ticket.id,
        "status": ticket.status,
        "department": ticket.department,
        "assignee": ticket.assignee,
    }


_META_EVENTS = frozenset(
    {
        "created",
        "assigned",
        "claimed",
        "reply",
        "note",
        "resolved",
        "reopened",
        "transferred",
        "escalated",
        "withdrawn",
    }
)
