"""From an accepted event to state changes and replies, in one transaction.

For each event: find the person (users of other servers are ignored), then in one write
transaction run the command or the first message handler that takes it, enqueue its
replies, and mark the event handled. A user error rolls back the handler's changes and
answers with the catalogue text and an error code; an unexpected exception does the same
with an apology and is logged with the event id; a database that is busy or failing
leaves the event pending, to be tried again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rapidfuzz.distance import OSA, Levenshtein

from lotsenbot.core import names
from lotsenbot.core.clock import iso
from lotsenbot.core.context import Context
from lotsenbot.core.errors import PermissionDenied, UserError
from lotsenbot.core.inbox import Inbox
from lotsenbot.core.markdown import escape
from lotsenbot.core.roles import Person
from lotsenbot.core.router import CommandTable, Handler, Router, fold, strip_end
from lotsenbot.core.services import Services
from lotsenbot.core.types import Incoming, Role

log = logging.getLogger(__name__)

ERROR_META = "de.lotsenbot.error"


class TransientError(Exception):
    """The event could not be handled now (database busy, write failed); try again later."""


class Dispatcher:
    def __init__(self, services: Services, routers: Iterable[Router], inbox: Inbox) -> None:
        self.services = services
        self.inbox = inbox
        self.routers = [core_router(self._help), *routers]
        self.table = CommandTable(self.routers)
        self._message_handlers = sorted(
            (h for r in self.routers for h in r.message_handlers), key=lambda item: item[0]
        )

    @property
    def prefix(self) -> str:
        return self.services.config.bot.prefix

    async def handle(self, incoming: Incoming, attempts: int = 0) -> None:
        """Handle one inbox event; raise TransientError when it must be tried again."""
        services = self.services
        now = services.clock.now()
        person = services.roles.person(incoming.sender)
        if services.config.logging.log_message_bodies and incoming.body:
            # Only when an admin switched it on for troubleshooting: bodies are personal data.
            log.info("Ereignis %s von %s: %r", incoming.event_id, incoming.sender,
                     incoming.body[:2000])  # fmt: skip
        prepared = await self._prepare(incoming, person, now) if person is not None else None
        try:
            async with services.db.transaction() as conn:
                ctx = Context(incoming, person or _nobody(incoming.sender), conn,
                              services.texts, now, services, prepared=prepared)  # fmt: skip
                status = "ignored"
                error: str | None = None
                if person is not None:
                    await self._touch_user(ctx)
                    newly_named = await self._learn_name(ctx)
                    await conn.execute("SAVEPOINT handler")
                    try:
                        handled = await self._route(ctx)
                        status = "done" if handled else "ignored"
                    except UserError as exc:
                        await conn.execute("ROLLBACK TO handler")
                        ctx.outgoing.clear()
                        self._error_reply(ctx, exc.code, exc.text_key, exc.params,
                                          private=exc.private)  # fmt: skip
                        status = "done"
                    except sqlite3.OperationalError:
                        raise
                    except Exception as exc:
                        await conn.execute("ROLLBACK TO handler")
                        ctx.outgoing.clear()
                        log.exception("Fehler bei Ereignis %s", incoming.event_id)
                        self._error_reply(ctx, "internal", "core.error.internal", {})
                        status, error = "failed", type(exc).__name__
                    await conn.execute("RELEASE handler")
                    if status == "ignored" and newly_named:
                        # Colleagues talking in a group room, not to the bot: their names
                        # are none of its business (only a first name is learned there).
                        await names.forget(conn, incoming.sender)
                for number, envelope in enumerate(ctx.outgoing):
                    key = f"evt:{incoming.event_id}:{number}"
                    await services.outbox.enqueue(conn, key, envelope)
                await self.inbox.finish(conn, incoming.event_id, status, now, error)
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            log.warning("Datenbank nicht verfügbar bei %s: %s", incoming.event_id, exc)
            raise TransientError(str(exc)) from exc
        if ctx.outgoing:
            services.outbox.wake()

    async def _prepare(self, incoming: Incoming, person: Person, now: datetime) -> Any:
        """Run the ``prepare`` step of the command in ``incoming``, if it has one and the
        person may use it, before the write transaction (see :mod:`lotsenbot.core.router`).
        Any failure only means the handler does the work itself, so it is logged, not
        raised; the handler then also gives the person the proper answer to bad input."""
        if incoming.kind != "message":
            return None
        text = self._command_text(incoming.body.strip())
        if text is None or len(incoming.body) > self.services.config.bot.max_message_length:
            return None
        found = self.table.match(text)
        if found is None or not found[0].allowed_for(person.roles):
            return None
        command, args = found
        if command.prepare is None:
            return None
        try:
            return await command.prepare(self.services, args, now)
        except Exception as exc:
            log.debug("Vorbereitung von %s nicht möglich (%s); im Handler", command.name, exc)
            return None

    async def _touch_user(self, ctx: Context) -> None:
        if ctx.incoming.kind != "message":
            return
        await ctx.conn.execute(
            "INSERT INTO users (user_id, first_seen, last_seen) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET last_seen = excluded.last_seen",
            (ctx.sender, iso(ctx.now), iso(ctx.now)),
        )

    async def _learn_name(self, ctx: Context) -> bool:
        """Record the sender's display name before the handler runs, so that its messages
        already show it ("Neue Anfrage #3 von Carla Beispiel (@carla:…)"). True if the
        person was not listed before."""
        incoming = ctx.incoming
        if incoming.sender_name is None:
            return False
        stored = (await names.stored_names(ctx.conn, [incoming.sender])).get(incoming.sender)
        if stored is not None:
            sent = (datetime.fromtimestamp(incoming.origin_ts / 1000, UTC) if incoming.origin_ts
                    else ctx.now)  # fmt: skip
            if stored.learned_at > iso(sent):
                # Learned after this event was sent (a rename from a later sync, while this
                # event waited for a retry): that name is the newer one.
                return False
            if not incoming.is_direct:
                # A group room may give the person a nickname of its own; the name they are
                # known by comes from the direct chat, the sync's renames or their profile.
                return False
            unchanged = stored.display_name == incoming.sender_name[: names.STORED_LENGTH]
            if unchanged and stored.learned_at >= iso(ctx.now - names.CONFIRM_EVERY):
                return False  # nothing new: no write for every message
        await names.learn(ctx.conn, incoming.sender, incoming.sender_name, "event", ctx.now)
        return stored is None

    async def _route(self, ctx: Context) -> bool:
        incoming = ctx.incoming
        if incoming.kind == "reaction":
            return await _first(h(ctx) for r in self.routers for h in r.reaction_handlers)
        if incoming.kind == "redaction":
            return await _first(h(ctx) for r in self.routers for h in r.redaction_handlers)
        if incoming.kind == "poll_response":
            return await _first(h(ctx) for r in self.routers for h in r.poll_handlers)
        if incoming.kind == "file":
            if incoming.is_direct:
                ctx.reply(ctx.t("core.files_unsupported"))
                return True
            return False
        if incoming.kind != "message":
            return False  # edits of earlier messages: ignored on purpose, never re-run
        body = incoming.body.strip()
        if not body:
            return False
        text = self._command_text(body)
        if text is None and not (
            incoming.is_direct or incoming.mentions_bot or await _continues_thread(ctx)
        ):
            return False  # colleagues talking in a group room, long or short
        limit = self.services.config.bot.max_message_length
        if len(incoming.body) > limit:
            raise UserError("core.error.too_long", limit=limit)
        if text is not None:
            return await self._command(ctx, text)
        for _, handler in self._message_handlers:
            if await handler(ctx):
                return True
        if incoming.is_direct:
            ctx.reply(ctx.t("core.not_understood", prefix=self.prefix))
            return True
        return False

    def _command_text(self, body: str) -> str | None:
        """What follows the prefix if ``body`` (stripped) is a command, else None.

        A command word has a letter or digit: "!!!", "!?" or "! …" are someone's emphasis,
        not a command (in a direct chat they are read like any text)."""
        if not body.startswith(self.prefix):
            return None
        text = body[len(self.prefix) :]
        words = text.split(maxsplit=1)
        if not words or not any(ch.isalnum() for ch in words[0]):
            return None
        return text

    async def _command(self, ctx: Context, text: str) -> bool:
        """Run the command in ``text``; False if it is ignored on purpose (see below)."""
        found = self.table.match(text)
        if found is None:
            names = self.table.names_for(ctx.person.roles)
            incoming = ctx.incoming
            if incoming.is_direct or incoming.mentions_bot:
                raise_unknown(ctx, text, names, self.prefix)
                return True
            # In a group room "!wichtig: Besprechung um 10" is colleagues talking, not a
            # command for the bot: only a near typo of a real command gets an answer.
            if closest(command_word(text), names, strict=True) is None:
                return False
            raise_unknown(ctx, text, names, self.prefix, strict=True)
            return True
        command, args = found
        if not command.allowed_for(ctx.person.roles):
            # A feature may say what the person can do instead ("tickets.restricted.erledigt":
            # a requester closes her own request with !zurückziehen).
            hint = f"{command.feature}.restricted.{fold(command.name).replace(' ', '_')}"
            raise PermissionDenied(hint) if ctx.t.has(hint) else PermissionDenied()
        await command.handler(ctx, args)
        return True

    def _error_reply(
        self, ctx: Context, code: str, key: str, params: dict[str, object], *,
        private: bool = False,
    ) -> None:  # fmt: skip
        text = ctx.t(key, prefix=self.prefix, **params)
        if private:
            ctx.reply_privately(text, **{ERROR_META: {"code": code}})
        else:
            ctx.reply(text, **{ERROR_META: {"code": code}})

    async def _help(self, ctx: Context, args: str) -> None:
        roles = ctx.person.roles
        t = ctx.t
        if args.strip():
            wanted = args.strip().removeprefix(self.prefix)
            found = self.table.match(wanted)
            if found is None:
                raise_unknown(ctx, wanted, self.table.names_for(roles), self.prefix)
                return
            if not found[0].allowed_for(roles):
                # The command exists (the README lists it); say who may use it.
                allowed = [t(f"core.help.role_{r.value}") for r in Role if r in found[0].roles]
                who = f" {t('core.help.role_join')} ".join(allowed)
                ctx.reply(t("core.help.restricted", command=f"{self.prefix}{found[0].name}",
                            roles=who, prefix=self.prefix),
                          **{"de.lotsenbot.help": {"command": found[0].name,
                                                   "allowed": False}})  # fmt: skip
                return
            command = found[0]
            lines = [f"**{self.prefix}{command.name}** {command.args}".rstrip(),
                     "", t(command.help_key, prefix=self.prefix)]  # fmt: skip
            if command.aliases:
                lines += ["", t("core.help.aliases", aliases=", ".join(
                    f"`{self.prefix}{a}`" for a in command.aliases))]  # fmt: skip
            ctx.reply("\n".join(lines), **{"de.lotsenbot.help": {"command": command.name}})
            return
        role_key = (
            "coordinator" if Role.COORDINATOR in roles else "pilot" if Role.PILOT in roles
            else "staff"
        )  # fmt: skip
        lines = [t("core.help.title"), "", t(f"core.help.intro_{role_key}"), ""]
        for router in self.routers:
            visible = [c for c in router.commands if c.allowed_for(roles) and not c.hidden]
            if not visible:
                continue
            lines.append(f"**{t(f'{router.feature}.title')}**")
            for command in visible:
                usage = f"{self.prefix}{command.name} {command.args}".rstrip()
                lines.append(f"- `{usage}` – {t(command.help_key, prefix=self.prefix)}")
            lines.append("")
        lines.append(t("core.help.footer", prefix=self.prefix))
        visible_names = [c.name for c in self.table.commands
                         if c.allowed_for(roles) and not c.hidden]  # fmt: skip
        ctx.reply(
            "\n".join(lines),
            **{"de.lotsenbot.help": {"role": role_key, "commands": visible_names}},
        )


def core_router(help_handler: Handler) -> Router:
    """The commands every build has, whatever features it runs."""
    core = Router("core")
    core.command("hilfe", aliases=("help",), args="[Befehl]")(help_handler)
    return core


def command_word(text: str) -> str:
    """The first word of a command text (without prefix), folded and without the
    punctuation a sentence puts after it."""
    words = text.split(maxsplit=1)
    return strip_end(fold(words[0])) if words else ""


def raise_unknown(
    ctx: Context, text: str, names: list[str], prefix: str, *, strict: bool = False
) -> None:
    word = command_word(text)
    suggestion = closest(word, names, strict=strict)
    if suggestion:
        key, params = "core.error.unknown_command_suggest", {"suggestion": f"{prefix}{suggestion}"}
    else:
        key, params = "core.error.unknown_command", {}
    ctx.reply(
        ctx.t(key, prefix=prefix, command=escape(_shorten(word)), **params),
        **{ERROR_META: {"code": "unknown_command", "suggestion": suggestion}},
    )


def closest(word: str, names: list[str], *, strict: bool = False) -> str | None:
    """The known command a mistyped word most likely meant, or None if nothing is close.

    Every name is a candidate as a whole: the first word of a multi-word name alone is no
    command ("nicht" of "nicht hilfreich"), so suggesting it would only propose the word
    just rejected; a word close to that first word suggests the whole name ("nicht" →
    "nicht-hilfreich"). Spellings of one command that differ only by hyphen or space count
    once, as the first listed (its German name). A name that begins with the word's first
    four letters counts as close too.

    ``strict`` (group rooms, where "!wichtig: …" is chat among colleagues) accepts only near
    typos: at most one edit (two for names longer than five characters), a swap of two
    neighbouring letters counting as one.
    """
    if not word or not names:
        return None
    candidates: dict[str, str] = {}
    for name in names:
        candidates.setdefault(fold(name).replace("-", " "), name)
    key = word.replace("-", " ")
    best: tuple[float, str] | None = None
    for candidate, name in candidates.items():
        if candidate == key:
            continue  # the word itself is no suggestion
        score = Levenshtein.normalized_similarity(key, candidate)
        first = candidate.split()[0]
        if first != candidate:
            # "nicht" for "nicht hilfreich": close, but less so than a one-word name as
            # similar ("meetup": "meetups" rather than "meetup ics").
            score = max(score, Levenshtein.normalized_similarity(key, first) - 0.2)
        if strict:
            close = OSA.distance(key, candidate) <= (1 if len(candidate) <= 5 else 2)
        else:
            close = score >= 0.5 or (len(key) >= 4 and candidate.startswith(key[:4]))
        if close and (best is None or score > best[0]):
            best = (score, name)
    return best[1] if best is not None else None


def _shorten(word: str, limit: int = 40) -> str:
    word = "".join(ch for ch in word if ch.isprintable())
    return word if len(word) <= limit else word[:limit] + "…"


async def _first(results: Iterable[object]) -> bool:
    for awaitable in results:
        if await awaitable:  # type: ignore[misc]
            return True
    return False


async def _continues_thread(ctx: Context) -> bool:
    """Whether a message in a thread answers the bot: written in the thread right below the
    bot's message to this person *in that thread* (the client names the thread's latest
    event as the fallback reply), as "1" or "ja" below "Meinten Sie …?" in the thread of the
    question.

    The main timeline's equivalent is the reply function, which mentions the bot; in a
    thread one simply writes on. Not talking to the bot: a colleague writing below the bot's
    answer to someone else; anyone after another message in the thread; someone who opens a
    thread on the bot's message in the main timeline (the client then names that message
    as the fallback: a thread about the answer, among colleagues).
    """
    incoming = ctx.incoming
    if incoming.thread_latest is None or incoming.thread_root is None:
        return False
    async with ctx.conn.execute(
        "SELECT content FROM outbox WHERE event_id = ? AND room_id = ? AND target_kind = 'room'",
        (incoming.thread_latest, incoming.room_id),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return False
    try:
        content = json.loads(row[0])
        mentions = content.get("mentions") or []
        thread_root = content.get("thread_root")
    except (ValueError, AttributeError):
        return False
    return incoming.sender in mentions and thread_root == incoming.thread_root


def _nobody(user_id: str) -> Person:
    return Person(user_id, frozenset(), ())
