"""Chat side of the FAQ: answer questions, suggest, offer a request, learn from what is missing.

Flow of a question (any non-command text in a direct chat, ``!frage`` or a mention in a group):

* confident match → the entry's answer with its question as the title and "War das
  hilfreich?"; 👍/👎 on that message (or ``!hilfreich`` / ``!nicht-hilfreich``, also sent
  as a reply to an older answer) is stored as feedback, one verdict per person and answer.
  👎 on one's own answer, the latest or an older one, offers once to pass its question on
  to a pilot (the question's text is kept for that for a day, see ``ASKED_TTL``);
* close call → "Meinten Sie …?" with up to three numbered entries; the next message ``1``–``3``
  picks one (kept for ten minutes as a pending choice);
* nothing fitting → said plainly, the question is kept for the coordinators (``!faq offen``)
  and the asker is offered to pass it on to a pilot: ``ja`` (or the pre-filled ``!anfrage``)
  opens a request through the tickets feature.

Every such message carries ``"de.lotsenbot.faq": {"entry", "score", "suggestions",
"decision"}`` so tests and tools never read the German prose.

The database is the source of truth for the entries. The in-memory :class:`FaqIndex` is
built from it at start and updated incrementally by this feature's own changes. Each change
also writes a new random token to ``faq_state``; before searching, the feature compares the
token with the one its index was built for and rebuilds on a mismatch. That covers changes
made elsewhere (``lotsenbot faq import`` while the bot runs) and changes of a handler that
was rolled back after it had already touched the index.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import aiosqlite
import yaml
from rapidfuzz import fuzz

from lotsenbot.config import Config, ConfigError
from lotsenbot.core.clock import iso, parse_iso
from lotsenbot.core.context import Context, audit
from lotsenbot.core.errors import BadArguments, Conflict, NotFound
from lotsenbot.core.feature import Feature
from lotsenbot.core.markdown import escape
from lotsenbot.core.outbox import withdraw_replies
from lotsenbot.core.router import fold
from lotsenbot.core.types import OutMessage, Role
from lotsenbot.faq import kb, store
from lotsenbot.faq.editform import (
    FIELD_ORDER,
    Form,
    FormError,
    merge,
    parse_form,
    render_form,
    shown,
    similar_category,
    slug,
)
from lotsenbot.faq.kb import FaqEntry, ImportIssue, render_issue
from lotsenbot.faq.search import FaqIndex, SearchResult
from lotsenbot.faq.synonyms import load_synonyms
from lotsenbot.nlp import (
    SynonymError,
    find_mythes_de,
    has_words,
    is_stopword,
    normalize,
    tokenize,
)
from lotsenbot.nlp.thesaurus import DEFAULT_MYTHES_DIR
from lotsenbot.tickets.hints import department_hints as faq_department_hints

if TYPE_CHECKING:
    from lotsenbot.core.services import Services

log = logging.getLogger(__name__)

__all__ = [
    "META",
    "THESAURUS_DIR",
    "FaqFeature",
    "OpenGroup",
    "group_unanswered",
    "make_index",
    "open_thesaurus",
    "too_long_to_learn",
]

META = "de.lotsenbot.faq"
# The question an offer repeats, when the offer answers a later message ("0", 👎).
QUESTION_EVENT = "question_event"
QUESTION_EVENT_PATH = f'$.meta."{META}".{QUESTION_EVENT}'
COORDINATOR = (Role.COORDINATOR,)

SUGGEST = "faq.suggest"
OFFER = "faq.offer"
ANSWERED = "faq.answered"
ASKED = "faq.asked"  # + ":<faq_questions.id>": the question one answer answered, see ASKED_TTL
OPEN_LIST = "faq.open"
SUGGEST_TTL = timedelta(minutes=10)
OFFER_TTL = timedelta(minutes=10)
ANSWERED_TTL = timedelta(minutes=30)
# How long the text of an answered question is kept with the person, so that 👎 on that answer
# (the latest or an older one) can offer to pass exactly this question on to a pilot. The
# question log itself keeps no question text; after a day the offer asks for the question.
ASKED_TTL = timedelta(days=1)
PREFILL_LIMIT = 300  # characters of a question repeated in the offered "!anfrage …"
OPEN_ITEM_LIMIT = 200  # characters of an open question shown in "!faq offen"
OPEN_LIST_TTL = timedelta(hours=2)
# An open question longer than this is not learnt word for word (``!faq lernen`` asks for a
# phrasing instead). The curated phrasings of the starter knowledge base (177 questions and
# alternatives) have at most 13 words and 84 characters, half of them 5 words or fewer: what
# people type to find an entry is short. A longer question mostly carries its story – who,
# which case, what went wrong ("… dreimal vertippt … Bescheid für Herrn Müller …") – which is
# personal data and, as an alternative, makes unrelated questions match the entry. The
# character limit catches long words and pasted messages with few spaces.
LEARN_MAX_WORDS = 12
LEARN_MAX_CHARS = 120
_QUOTES = {'"': '"', "„": "“", "“": "”", "‚": "‘", "'": "'", "»": "«", "«": "»"}

MAX_SUGGESTIONS = 3
SUGGESTION_SHARE = 0.5
"""A runner-up is offered only if it scores at least this share of the best entry."""
GROUP_SIMILARITY = 85.0
"""rapidfuzz token_set_ratio from which two unanswered questions count as the same."""

_YES = {"ja", "ja bitte", "ja gerne", "gerne", "gern", "ok", "okay", "jawohl", "yes", "j", "y"}
_NO = {"nein", "nein danke", "danke nein", "no", "n"}
_NONE_OF_THEM = {"0", "keine", "keine davon", "keins", "keines", "nichts davon", "none"}
_THANKS = {"danke", "danke schoen", "dankeschoen", "vielen dank", "danke sehr", "super danke",
           "ok danke", "okay danke", "prima danke", "thanks", "thank you", "merci"}  # fmt: skip
_GREETINGS = {"hallo", "hi", "hey", "moin", "servus", "guten morgen", "guten tag", "hello"}
_PICK = re.compile(r"^(?:nr\s*)?(\d{1,2})$")
_THUMBS_UP = re.compile(r"^(?:👍|\+1|:\+1:|:thumbsup:)")
_THUMBS_DOWN = re.compile(r"^(?:👎|-1|:-1:|:thumbsdown:)")
_MENTION_LINK = re.compile(
    r"<a\s[^>]*href=\"https://matrix\.to/#/([^\"?]+)[^\"]*\"[^>]*>(.*?)</a>", re.DOTALL
)


THESAURUS_DIR = DEFAULT_MYTHES_DIR
"""Where OpenThesaurus is looked for (``[faq] thesaurus``)."""


def make_index(config: Config, *, thesaurus: bool = True) -> FaqIndex:
    """An empty index with the configured synonyms, and OpenThesaurus when it is installed,
    ``[faq] thesaurus`` allows it and ``thesaurus`` is true (the feature opens it in its
    worker thread instead, see :meth:`FaqFeature.start`).

    A broken or missing local synonyms file is a configuration error: the admin asked for
    it, so silently searching without it would hide the mistake.
    """
    path = config.faq.synonyms_file
    try:
        synonyms = load_synonyms(path)
    except (OSError, yaml.YAMLError, SynonymError) as exc:
        raise ConfigError(config.source or "config.toml", "faq.synonyms_file", str(exc)) from None
    index = FaqIndex(synonyms=synonyms)
    if thesaurus:
        open_thesaurus(index, config)
    return index


def open_thesaurus(index: FaqIndex, config: Config) -> None:
    """Give the index OpenThesaurus if the configuration allows it and it is installed
    (reading its word list takes about half a second and 12 MB)."""
    if not config.faq.thesaurus:
        return
    try:
        index.analyzer.thesaurus = find_mythes_de(THESAURUS_DIR)
    except (OSError, LookupError, UnicodeError, ValueError) as exc:  # unreadable: do without
        log.warning("OpenThesaurus in %s nicht lesbar, Suche ohne: %s", THESAURUS_DIR, exc)


@dataclass(frozen=True)
class _BadAnswerOffer:
    """What "not helpful" offers (:meth:`FaqFeature._offer_after_bad_answer`)."""

    text: str
    kind: bool | str  # the metadata's "offer": True (the question is offered) or "command"
    question_event: str | None  # the message the offered question was asked in

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"offer": self.kind}
        if self.kind is True and self.question_event is not None:
            meta[QUESTION_EVENT] = self.question_event
        return meta


# -- unanswered questions, grouped -------------------------------------------------------------


@dataclass
class OpenGroup:
    """Unanswered questions that say the same thing, for ``!faq offen``."""

    ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    latest: str = ""
    key: str = ""

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def representative(self) -> str:
        """The wording asked most often (same normalised text); among equally frequent ones
        the latest, and of its spellings preferably one written with capitals."""
        variants = [normalize(text) for text in self.texts]
        counts = Counter(variants)
        best = max(counts.values())
        winner = next(v for v in reversed(variants) if counts[v] == best)
        spellings = [
            (any(ch.isupper() for ch in text), position, " ".join(text.split()))
            for position, (text, variant) in enumerate(zip(self.texts, variants, strict=True))
            if variant == winner
        ]
        return max(spellings)[2]


def _group_key(question: str, normalized: str) -> str:
    words = sorted({token for token in tokenize(question) if not is_stopword(token)})
    return " ".join(words) or normalized


def _similar(a: str, b: str) -> bool:
    return a == b or fuzz.token_set_ratio(a, b) >= GROUP_SIMILARITY


def group_unanswered(rows: Sequence[store.Unanswered]) -> list[OpenGroup]:
    """Group similar questions (same content words, or token_set_ratio ≥ 85), most frequent
    first, then most recent."""
    groups: list[OpenGroup] = []
    for row in rows:
        key = _group_key(row.question, row.normalized)
        target = next((g for g in groups if _similar(g.key, key)), None)
        if target is None:
            target = OpenGroup(key=key)
            groups.append(target)
        target.ids.append(row.id)
        target.texts.append(row.question)
        target.latest = max(target.latest, row.asked_at)
    groups.sort(key=lambda g: g.latest, reverse=True)
    groups.sort(key=lambda g: g.count, reverse=True)  # stable: equal counts stay newest first
    return groups


# -- the feature -------------------------------------------------------------------------------


class FaqFeature(Feature):
    """The FAQ. Other features call :meth:`department_hints`; the demo :meth:`load_starter_kb`."""

    name = "faq"

    def __init__(self) -> None:
        super().__init__()
        self.index = FaqIndex()
        self._token: int | None = None  # faq_state.generation the index was built for
        self._build: asyncio.Future[None] | None = None  # the start-up build, until done
        command = self.router.command
        command("frage", aliases=("ask",), args="<Frage>")(self._ask)
        command("faq", args="[Kategorie]")(self._browse)
        command("faq zeige", aliases=("faq show",), args="<ID>")(self._show)
        command("hilfreich", aliases=("helpful",))(self._helpful)
        command("nicht-hilfreich", aliases=("nicht hilfreich", "unhelpful", "not-helpful"))(
            self._not_helpful
        )
        command("faq offen", aliases=("faq open",), roles=COORDINATOR)(self._open)
        command("faq neu", aliases=("faq new",), roles=COORDINATOR, args="[ID] + Formular")(
            self._new
        )
        command("faq ändern", aliases=("faq edit",), roles=COORDINATOR, args="<ID> [+ Formular]")(
            self._edit
        )
        command("faq löschen", aliases=("faq delete",), roles=COORDINATOR, args="<ID>")(
            self._delete
        )
        command("faq lernen", aliases=("faq learn",), roles=COORDINATOR,
                args="<Nr> <ID> [Formulierung]")(self._learn)  # fmt: skip
        self.router.on_message(priority=10)(self._on_choice)
        self.router.on_message(priority=500)(self._on_question)
        self.router.on_reaction(self._on_reaction)
        self.router.on_redaction(self._on_redaction)

    # -- lifecycle and the index --------------------------------------------------------------

    async def start(self, services: Services) -> None:
        """Read the entries and build the index in a worker thread, without waiting.

        With 10,000 entries the build takes about three seconds; the bot syncs and answers
        everything else meanwhile, and a question in those first seconds waits for the
        index (see :meth:`_built`) instead of meeting an empty one."""
        await super().start(services)
        index = self.index = make_index(services.config, thesaurus=False)
        conn = services.db.conn
        self._token = await store.generation(conn)
        entries = await store.all_entries(conn)

        def prepare() -> None:
            open_thesaurus(index, services.config)
            index.build(entries)

        self._build = asyncio.ensure_future(asyncio.to_thread(prepare))
        log.info("FAQ: %d Einträge, Suchindex wird aufgebaut", len(entries))

    async def _built(self) -> FaqIndex:
        if self._build is not None:
            try:
                await self._build
            except Exception:
                # Not for good: the next question builds the index afresh (the token no
                # longer matches); this one gets the internal-error answer.
                self._build = None
                self._token = None
                raise
            self._build = None
        return self.index

    async def _rebuild(self, conn: aiosqlite.Connection) -> None:
        """A fresh index from the database (after a change made elsewhere, say a CLI import,
        or a rolled-back edit), built in a worker thread and swapped in when complete: about
        2.5 s at 10,000 entries, during which the event loop keeps running."""
        current = await self._built()
        token = await store.generation(conn)
        entries = await store.all_entries(conn)
        assert self.services is not None
        fresh = make_index(self.services.config, thesaurus=False)
        fresh.analyzer.thesaurus = current.analyzer.thesaurus  # read once, at start
        await asyncio.to_thread(fresh.build, entries)
        self.index, self._token = fresh, token

    async def _current_index(self, conn: aiosqlite.Connection) -> FaqIndex:
        """The index, rebuilt first if the entries changed behind its back."""
        await self._built()
        if await store.generation(conn) != self._token:
            await self._rebuild(conn)
        return self.index

    @staticmethod
    def _known_departments(config: Config) -> set[str]:
        """Department ids of the configuration: what an entry may name."""
        return {department.id for department in config.departments}

    async def _changed(
        self, conn: aiosqlite.Connection, upsert: FaqEntry | None = None, remove: str | None = None
    ) -> None:
        """Record one change of the entries and apply it to the index incrementally."""
        await self._current_index(conn)  # first catch up with changes made elsewhere
        self._token = await store.bump_generation(conn)
        if remove is not None:
            self.index.remove(remove)
        if upsert is not None:
            self.index.upsert(upsert)

    # -- API for other features and the demo ----------------------------------------------------

    async def department_hints(
        self, text: str, conn: aiosqlite.Connection | None = None
    ) -> list[tuple[str, float]]:
        """Departments of the FAQ entries closest to ``text`` with their scores, best first.

        The hints the tickets router weighs, from :func:`lotsenbot.tickets.hints.department_hints`
        (the function ``bench/routing_eval.py`` measures, so the bot routes as measured; the
        router decides from which score a hint counts). Departments the configuration does not
        know are left out. With ``conn`` the index first catches up with changes made elsewhere
        (a CLI import).
        """
        config = self.services.config if self.services is not None else None
        known = self._known_departments(config) if config is not None else None
        index = await (self._current_index(conn) if conn is not None else self._built())
        return [
            (department, score)
            for department, score in faq_department_hints(index, text)
            if known is None or department in known
        ]

    async def load_starter_kb(self) -> int:
        """Put the shipped starter knowledge base into an empty FAQ; return the entry count.

        Idempotent: a FAQ that has entries is left alone. Departments the configuration does
        not know are dropped from the entries, so the database never names a department that
        routing and validation would reject.
        """
        services = self.services
        if services is None:
            raise RuntimeError("feature not started")
        known = self._known_departments(services.config)
        now = services.clock.now()
        async with services.db.transaction() as conn:
            if await store.count_entries(conn) == 0:
                entries = [
                    entry if entry.department in known
                    else entry.model_copy(update={"department": None})
                    for entry in kb.load_starter_kb()
                ]  # fmt: skip
                outcome = await store.import_entries(
                    conn, entries, replace=False, now=now, actor="starter"
                )
                await audit(conn, now, services.bot_user_id, "faq.starter_import", None,
                            {"new": outcome.new})  # fmt: skip
            count = await store.count_entries(conn)
            await self._rebuild(conn)
        return count

    async def take_offered_question(self, ctx: Context) -> str | None:
        """The question the sender was just offered to pass on (consumed), if any.

        For ``!anfrage`` without text: the tickets feature can call this to open the
        request for the question the FAQ could not answer.
        """
        offer = await ctx.recall_choice(OFFER, consume=True)
        return str(offer["question"]) if offer else None

    # -- asking -----------------------------------------------------------------------------

    async def _ask(self, ctx: Context, args: str) -> None:
        question = args.strip()
        if not question:
            raise BadArguments("faq.usage.frage")
        await self._answer(ctx, question)

    async def _on_question(self, ctx: Context) -> bool:
        question = self._question_text(ctx)
        if not question:
            return False
        await self._answer(ctx, question)
        return True

    def _question_text(self, ctx: Context) -> str:
        """The message without the bot's name, when the bot was addressed by a mention."""
        incoming = ctx.incoming
        text = incoming.body.strip()
        if not incoming.mentions_bot:
            return text
        bot_id = ctx.services.bot_user_id
        names = {bot_id, bot_id.split(":", 1)[0], bot_id.split(":", 1)[0].lstrip("@")}
        for target, label in _MENTION_LINK.findall(incoming.formatted_body or ""):
            if unquote(target) == bot_id:
                names.add(html.unescape(re.sub(r"<[^>]+>", "", label)).strip())
        for name in sorted((n for n in names if n), key=len, reverse=True):
            text = re.sub(rf"(?<![\w@]){re.escape(name)}(?!\w)[:,]?", " ", text,
                          flags=re.IGNORECASE)  # fmt: skip
        return " ".join(text.split()).strip(" :,;-")

    async def _answer(self, ctx: Context, question: str) -> None:
        if not has_words(question):
            # "!frage 👍👍👍", "!frage ???": nothing to search for, and nothing for the open
            # questions or a request either.
            self._no_words(ctx)
            return
        index = await self._current_index(ctx.conn)
        result = index.search(question, limit=MAX_SUGGESTIONS)
        await ctx.forget_choice(SUGGEST)
        await ctx.forget_choice(OFFER)
        best = result.best
        if result.decision == "answer" and best is not None:
            entry = index.entry(best[0])
            assert entry is not None
            await self._give_answer(ctx, entry, best[1], "answer", question)
        elif result.decision == "suggest":
            await self._suggest(ctx, index, result, question)
        else:
            await self._no_answer(ctx, question, result)

    async def _give_answer(
        self, ctx: Context, entry: FaqEntry, score: float, decision: store.Decision, question: str,
        question_event: str | None = None,
    ) -> None:  # fmt: skip
        """``question_event``: the message the question was asked in, if not the current one
        (a picked suggestion); kept with the question's wording so that deleting the
        question drops it (:meth:`_question_redacted`)."""
        key = self._next_key(ctx)
        question_event = question_event or ctx.incoming.event_id
        question_id = await store.log_question(
            ctx.conn, now=ctx.now, user_id=ctx.sender, room_id=ctx.room_id, decision=decision,
            entry_id=entry.id, score=score, answer_key=key,
        )  # fmt: skip
        answered = {"question": question, "id": question_id, "question_event": question_event,
                    **ctx.here_and_now()}  # fmt: skip
        await ctx.remember_choice(ANSWERED, answered, ANSWERED_TTL)
        if self._can_open_tickets(ctx):  # kept only where it can be passed on
            asked = {"question": question, "offered": False, "at": iso(ctx.now),
                     "question_event": question_event}  # fmt: skip
            await ctx.remember_choice(f"{ASKED}:{question_id}", asked, ASKED_TTL)
        text = "\n\n".join(
            [
                ctx.t("faq.answer.title", title=escape(entry.question)),
                entry.answer.strip(),
                ctx.t("faq.answer.helpful", prefix=self._prefix(ctx)),
            ]
        )
        ctx.reply(text, **self._meta(decision, entry.id, score, []))

    async def _suggest(
        self, ctx: Context, index: FaqIndex, result: SearchResult, question: str
    ) -> None:
        best_score = result.results[0][1]
        options = [
            (entry_id, score) for entry_id, score in result.results[:MAX_SUGGESTIONS]
            if score >= best_score * SUGGESTION_SHARE and index.entry(entry_id) is not None
        ]  # fmt: skip
        lines = [ctx.t("faq.suggest.title")]
        for number, (entry_id, _) in enumerate(options, start=1):
            entry = index.entry(entry_id)
            assert entry is not None
            lines.append(f"{number}. {escape(entry.question)}")
        # In a group room only what addresses the bot reaches it: a reply does (clients
        # mention the replied-to sender), a bare "2" among colleagues' messages does not.
        hint = "faq.suggest.hint" if ctx.incoming.is_direct else "faq.suggest.hint_group"
        lines.append(ctx.t(hint, count=len(options), prefix=self._prefix(ctx)))
        key = self._next_key(ctx)
        ids = [entry_id for entry_id, _ in options]
        await store.log_question(
            ctx.conn, now=ctx.now, user_id=ctx.sender, room_id=ctx.room_id, decision="suggest",
            entry_id=None, score=best_score, suggestions=ids, answer_key=key,
        )  # fmt: skip
        suggestion = {"question": question, "options": [list(o) for o in options],
                      "event": ctx.incoming.event_id}  # fmt: skip
        await ctx.remember_choice(SUGGEST, suggestion, SUGGEST_TTL)
        ctx.reply("\n".join(lines), **self._meta("suggest", None, best_score, ids))

    async def _no_answer(
        self, ctx: Context, question: str, result: SearchResult | None,
        question_event: str | None = None,
    ) -> None:  # fmt: skip
        """``result`` None: the asker rejected every suggestion ("0"); the question is then
        already in the log as a suggestion and is not counted a second time.
        ``question_event``: the message the question was asked in, if not the current one."""
        best = result.best if result is not None else None
        question_event = question_event or ctx.incoming.event_id
        unanswered_id = await store.record_unanswered(
            ctx.conn, now=ctx.now, question=question, normalized=normalize(question),
            best_entry=best[0] if best else None, best_score=best[1] if best else 0.0,
            question_event=question_event,
        )  # fmt: skip
        score = best[1] if best else 0.0
        if result is not None:
            await store.log_question(
                ctx.conn, now=ctx.now, user_id=ctx.sender, room_id=ctx.room_id, decision="none",
                entry_id=None, score=score, answer_key=self._next_key(ctx),
            )  # fmt: skip
        lines = [ctx.t("faq.none.text")]
        offered = self._can_open_tickets(ctx)
        if offered:
            offer = {"question": question, "unanswered": unanswered_id,
                     "question_event": question_event, **ctx.here_and_now()}  # fmt: skip
            await ctx.remember_choice(OFFER, offer, OFFER_TTL)
            lines.append(self._offer_text(ctx, question))
        else:
            lines.append(ctx.t("faq.none.no_tickets", prefix=self._prefix(ctx)))
        meta = self._meta("none", None, score, [])
        meta[META]["offer"] = offered
        if offered:
            # The offer repeats the question: deleting it takes the offer back, also when
            # the offer answers a later message ("0" to "Meinten Sie …?").
            meta[META][QUESTION_EVENT] = question_event
        ctx.reply("\n\n".join(lines), **meta)

    def _offer_text(self, ctx: Context, question: str) -> str:
        prefilled = " ".join(question.split()).replace("`", "'")
        key = "faq.offer.text" if ctx.incoming.is_direct else "faq.offer.text_group"
        if len(prefilled) > PREFILL_LIMIT:
            # A pasted page is not repeated back; "ja" passes the whole text on.
            key += "_long"
        return ctx.t(key, prefix=self._prefix(ctx), question=prefilled)

    # -- choices: "1"–"3", "0", "ja" / "nein" ---------------------------------------------------

    async def _on_choice(self, ctx: Context) -> bool:
        raw = self._question_text(ctx).strip()
        text = " ".join(re.sub(r"[^\w\s]", " ", fold(raw)).split())
        if not has_words(text):
            # Only emoji or punctuation: 👍/👎 typed after an answer is a verdict; anything
            # else has no words to search for (and would land in the open questions).
            verdict = True if _THUMBS_UP.match(raw) else False if _THUMBS_DOWN.match(raw) else None
            if verdict is not None and await self._answer_meant(ctx):
                await self._feedback_command(ctx, helpful=verdict)
                return True
            if not raw:
                return False
            self._no_words(ctx)
            return True
        suggestion = await ctx.recall_choice(SUGGEST)
        if suggestion is not None:
            pick = _PICK.match(text)
            options: list[list[Any]] = suggestion["options"]
            if pick and int(pick.group(1)) != 0:
                number = int(pick.group(1))
                if not 1 <= number <= len(options):
                    raise BadArguments("faq.suggest.out_of_range", count=len(options))
                await ctx.forget_choice(SUGGEST)
                entry_id, score = str(options[number - 1][0]), float(options[number - 1][1])
                entry = (await self._current_index(ctx.conn)).entry(entry_id)
                if entry is None:
                    raise NotFound("faq.suggest.gone")
                await self._give_answer(ctx, entry, score, "picked", suggestion["question"],
                                        suggestion.get("event"))  # fmt: skip
                return True
            if text in _NONE_OF_THEM or text in _NO:
                await ctx.forget_choice(SUGGEST)
                await self._no_answer(ctx, suggestion["question"], None, suggestion.get("event"))
                return True
        offer = await ctx.recall_choice(OFFER)
        yes_or_no = text in _YES or text in _NO
        if offer is not None and yes_or_no and await ctx.refers_to(offer):
            await ctx.forget_choice(OFFER)
            if text in _YES:
                await self._pass_on(ctx, offer)
            else:
                ctx.reply(ctx.t("faq.offer.declined"), **{META: {"offer": "declined"}})
            return True
        if yes_or_no and await self._answer_meant(ctx):
            # "ja" / "nein" to "War das hilfreich?"
            await self._feedback_command(ctx, helpful=text in _YES)
            return True
        if yes_or_no and suggestion is not None:
            # A "ja" to "Meinten Sie …?" (a "nein" means none of them, see above).
            count = len(suggestion["options"])
            hint = "faq.suggest.hint" if ctx.incoming.is_direct else "faq.suggest.hint_group"
            which = " ".join([ctx.t("faq.suggest.which"), ctx.t(hint, count=count)])
            ctx.reply(which, **{META: {"smalltalk": "pick_number"}})
            return True
        if yes_or_no and offer is not None:
            # The offer still stands, but something else came in between: which is meant?
            unclear = ctx.t("faq.offer.unclear", prefix=self._prefix(ctx))
            ctx.reply(unclear, **{META: {"smalltalk": "offer_unclear"}})
            return True
        return self._small_talk(ctx, text)

    async def _answer_meant(self, ctx: Context) -> bool:
        """Whether a bare "ja", "nein" or 👍 rates an answer: one of this room's answers it
        replies to with the chat's reply function, or else the bot's reply to the person's
        last message here, if that was an answer (not one further back)."""
        if ctx.incoming.reply_to is not None and await self._replied_answer(ctx) is not None:
            return True
        answered = await ctx.recall_choice(ANSWERED)
        return answered is not None and await ctx.refers_to(answered)

    def _small_talk(self, ctx: Context, text: str) -> bool:
        """ "Danke", "Hallo", or a "ja"/"2" whose question has expired: a short friendly answer
        instead of a failed search that would also land in the coordinators' open list."""
        if text in _THANKS or _is_thanks(text):
            key = "faq.smalltalk.thanks"
        elif text in _GREETINGS:
            key = "faq.smalltalk.hello"
        elif text in _YES or text in _NO or text in _NONE_OF_THEM or _PICK.match(text):
            key = "faq.smalltalk.expired"
        else:
            return False
        kind = key.rsplit(".", 1)[1]
        ctx.reply(ctx.t(key, prefix=self._prefix(ctx)), **{META: {"smalltalk": kind}})
        return True

    def _no_words(self, ctx: Context) -> None:
        ctx.reply(ctx.t("faq.smalltalk.no_words", prefix=self._prefix(ctx)),
                  **{META: {"smalltalk": "no_words"}})  # fmt: skip

    def _can_open_tickets(self, ctx: Context) -> bool:
        return getattr(ctx.services.feature("tickets"), "open_ticket", None) is not None

    async def _pass_on(self, ctx: Context, offer: dict[str, Any]) -> None:
        open_ticket = getattr(ctx.services.feature("tickets"), "open_ticket", None)
        if open_ticket is None:
            ctx.reply(ctx.t("faq.offer.unavailable"), **{META: {"offer": "unavailable"}})
            return
        ticket_id = await open_ticket(ctx, str(offer["question"]), source="faq")
        if offer.get("unanswered"):
            await store.set_unanswered_ticket(ctx.conn, int(offer["unanswered"]), int(ticket_id))

    # -- feedback ---------------------------------------------------------------------------

    async def _helpful(self, ctx: Context, args: str) -> None:
        await self._feedback_command(ctx, helpful=True)

    async def _not_helpful(self, ctx: Context, args: str) -> None:
        await self._feedback_command(ctx, helpful=False)

    async def _feedback_command(self, ctx: Context, *, helpful: bool) -> None:
        """The verdict on the answer the message replies to (the chat's reply function on an
        older answer), or else on the sender's last answer in this room."""
        answer = await self._replied_answer(ctx) or await store.last_answer(
            ctx.conn, ctx.room_id, ctx.sender
        )
        if answer is None:
            raise NotFound("faq.feedback.nothing")
        await store.set_feedback(ctx.conn, answer.id, ctx.sender, helpful, ctx.now)
        meta: dict[str, Any] = {META: {"feedback": {"entry": answer.entry_id, "helpful": helpful}}}
        if helpful:
            ctx.reply(ctx.t("faq.feedback.thanks"), **meta)
            return
        lines = [ctx.t("faq.feedback.sorry")]
        offer = await self._offer_after_bad_answer(ctx, answer)
        if offer is not None:
            lines.append(offer.text)
            meta[META].update(offer.meta())
        ctx.reply("\n\n".join(lines), **meta)

    async def _replied_answer(self, ctx: Context) -> store.LoggedQuestion | None:
        """The answer of this room that the message replies to, if it replies to one."""
        replied_to = ctx.incoming.reply_to
        if replied_to is None:
            return None
        answer = await store.question_for_event(ctx.conn, replied_to)
        return answer if answer is not None and answer.room_id == ctx.room_id else None

    async def _offer_after_bad_answer(
        self, ctx: Context, answer: store.LoggedQuestion
    ) -> _BadAnswerOffer | None:
        """After "not helpful" on one of the sender's own answers, the latest or an older
        one: the text offering to pass its question on, with the offer's metadata value
        (True: "ja" or the pre-filled ``!anfrage`` passes it on; "command": the question's
        text is no longer kept, the person writes ``!anfrage`` herself) and the message the
        question was asked in (deleting it takes the offer back, :meth:`_question_redacted`).

        Once per answer: a second 👎, or 👎 taken back and given again, offers nothing new
        (the first offer still stands). Someone else's answer in a group room offers nothing.
        """
        if answer.user_id != ctx.sender or not self._can_open_tickets(ctx):
            return None
        kind = f"{ASKED}:{answer.id}"
        asked = await ctx.recall_choice(kind)
        if asked is not None and asked.get("offered"):
            return None
        question = asked.get("question") if asked is not None else None
        question_event = asked.get("question_event") if asked is not None else None
        if question is None:
            # Answered before questions were kept per answer: the latest answer's is known.
            answered = await ctx.recall_choice(ANSWERED)
            if answered and answered.get("id") == answer.id:
                question = answered["question"]
                question_event = answered.get("question_event")
        if question_event is None:
            # Kept before the question's message was: the answer replied to it, unless the
            # answer was a picked suggestion (it replied to the "1").
            question_event = await store.question_event_of(ctx.conn, answer.id)
        # Remembered as offered (without the text, which the offer itself now holds) until
        # the question's text would have gone, or for a day.
        since = parse_iso(str(asked["at"])) if asked is not None else ctx.now
        await ctx.remember_choice(
            kind, {"question": None, "offered": True, "at": iso(since),
                   "question_event": question_event},
            max(since + ASKED_TTL - ctx.now, timedelta(minutes=1)),
        )  # fmt: skip
        if not question:
            text = ctx.t("faq.offer.text_forgotten", prefix=self._prefix(ctx))
            return _BadAnswerOffer(text, "command", None)
        offer = {"question": str(question), "unanswered": None,
                 "question_event": question_event, **ctx.here_and_now()}  # fmt: skip
        await ctx.remember_choice(OFFER, offer, OFFER_TTL)
        return _BadAnswerOffer(self._offer_text(ctx, str(question)), True, question_event)

    async def _on_reaction(self, ctx: Context) -> bool:
        """👍/👎 on an answer; other reactions and other messages are not ours."""
        incoming = ctx.incoming
        key = incoming.key or ""
        if not incoming.relates_to or not (_THUMBS_UP.match(key) or _THUMBS_DOWN.match(key)):
            return False
        answer = await store.question_for_event(ctx.conn, incoming.relates_to)
        if answer is None:
            return False
        helpful = bool(_THUMBS_UP.match(key))
        await store.set_feedback(ctx.conn, answer.id, ctx.sender, helpful, ctx.now,
                                 reaction_event=incoming.event_id)  # fmt: skip
        if helpful or answer.room_id != ctx.room_id:
            return True
        offer = await self._offer_after_bad_answer(ctx, answer)
        if offer is not None:
            text = "\n\n".join([ctx.t("faq.feedback.sorry"), offer.text])
            latest = await store.last_answer(ctx.conn, ctx.room_id, ctx.sender)
            # An offer about an older answer replies to it, so it is clear which question
            # it would pass on.
            reply_to = (
                None if latest is not None and latest.id == answer.id else incoming.relates_to
            )
            mentions = () if incoming.is_direct else (ctx.sender,)
            meta = {META: {**offer.meta(), "entry": answer.entry_id}}
            # An answer in a thread gets the offer in that thread (a reaction names none).
            thread_root = await store.answer_thread_root(ctx.conn, answer.id)
            message = OutMessage(text, meta=meta, mentions=mentions, reply_to=reply_to,
                                 thread_root=thread_root)  # fmt: skip
            ctx.send_to_room(ctx.room_id, message, purpose="reply")
        return True

    async def _on_redaction(self, ctx: Context) -> bool:
        """Taking back a 👍/👎 withdraws that verdict; deleting a question takes back what
        the bot said and kept about it (:meth:`_question_redacted`)."""
        redacted = ctx.incoming.relates_to
        if not redacted:
            return False
        if await store.withdraw_feedback(ctx.conn, redacted, ctx.sender):
            return True
        return await self._question_redacted(ctx, redacted)

    async def _question_redacted(self, ctx: Context, redacted: str) -> bool:
        """A question the bot took up was deleted (redacted) in Matrix: its replies in the
        room, which may repeat the question word for word (the offered ``!anfrage …``), are
        redacted, and the open question for the coordinators and what is pending about it
        (an offer, "Meinten Sie …?", the wording kept for 👎) are dropped.

        The homeserver lets only the author or a moderator (someone with the power to
        redact other people's messages) delete a message; both count. A moderator deletes a
        message for what it says, and the bot's copy must not keep it in the room. A request
        already passed on to a pilot stays: the asker is told how to withdraw it.
        The redactions go through the outbox in this transaction, so they are sent once,
        also across a crash; a reply not sent yet is not sent at all."""
        asked = await store.questions_asked_in(ctx.conn, redacted, ctx.room_id)
        if not asked:
            return False  # not a question the bot took up here (colleagues' chat, a command …)
        dropped = await store.drop_unanswered(ctx.conn, redacted, ctx.room_id)
        asker = asked[0].user_id
        questions = [row.question for row in dropped]
        await store.forget_choices_about(
            ctx.conn, asker, ctx.room_id, event_id=redacted,
            question_ids=[row.id for row in asked], questions=questions,
        )  # fmt: skip
        # Their text goes now, sent or not; the sender redacts what went out, and holds back
        # what did not. Taken back once: deleting the question again finds nothing new.
        reason = ctx.t("faq.redacted.reason")
        taken_back = await withdraw_replies(ctx.conn, redacted, ctx.room_id,
                                            meta_path=QUESTION_EVENT_PATH)  # fmt: skip
        for key in taken_back:
            ctx.send_to_room(ctx.room_id, OutMessage(reason, redacts=key), purpose="redact")
        hint = getattr(ctx.services.feature("tickets"), "source_deleted", None)
        for row in dropped:
            if row.ticket_id is not None and hint is not None:
                await hint(ctx, row.ticket_id, "question")
        log.info("FAQ: Frage %s wurde gelöscht; Antworten zurückgenommen, %d offene Frage(n)"
                 " verworfen", redacted, len(dropped))  # fmt: skip
        return True

    # -- browsing ---------------------------------------------------------------------------

    async def _browse(self, ctx: Context, args: str) -> None:
        wanted = " ".join(args.split())
        categories = await store.categories(ctx.conn)
        if not wanted:
            if not categories:
                ctx.reply(ctx.t("faq.browse.empty"), **{META: {"categories": []}})
                return
            lines = [ctx.t("faq.browse.title")]
            lines += [
                ctx.t("faq.browse.category", number=number, name=escape(name), count=count)
                for number, (name, count) in enumerate(categories, start=1)
            ]
            lines.append(ctx.t("faq.browse.hint", prefix=self._prefix(ctx)))
            ctx.reply("\n".join(lines), **{META: {"categories": [n for n, _ in categories]}})
            return
        category = _find_category(wanted, [name for name, _ in categories])
        if category is None and wanted.isascii() and wanted.isdigit():
            # A number refers to the list of `!faq`; as a question it would only end up in
            # the open questions, with a suggested "!anfrage 99" that shows request 99.
            raise BadArguments("faq.browse.no_such_number", number=wanted,
                               count=len(categories))  # fmt: skip
        if category is None:
            await self._answer(ctx, wanted)  # "!faq wie ändere ich mein Passwort"
            return
        entries = await store.entries_in_category(ctx.conn, category)
        lines = [ctx.t("faq.browse.category_title", name=escape(category))]
        lines += [
            ctx.t("faq.browse.entry", id=entry.id, question=escape(entry.question))
            for entry in entries
        ]
        lines.append(ctx.t("faq.browse.show_hint", prefix=self._prefix(ctx)))
        ctx.reply(
            "\n".join(lines),
            **{META: {"category": category, "entries": [entry.id for entry in entries]}},
        )

    async def _show(self, ctx: Context, args: str) -> None:
        entry_id = args.strip().lower()
        if not entry_id:
            raise BadArguments("faq.usage.zeige")
        entry = await store.get_entry(ctx.conn, entry_id)
        if entry is None:
            raise NotFound("faq.show.not_found", id=escape(entry_id))
        text = "\n\n".join(
            [
                ctx.t("faq.answer.title", title=escape(entry.question)),
                entry.answer.strip(),
                ctx.t("faq.show.footer", id=entry.id, category=escape(entry.category)),
            ]
        )
        ctx.reply(text, **{META: {"entry": entry.id, "view": True}})

    # -- coordinators: unanswered questions --------------------------------------------------

    async def _open(self, ctx: Context, args: str) -> None:
        """The open questions, word for word: what people asked, also in direct chats, with
        names and case details. Like every list with personal content, only in the direct
        chat; ``!faq lernen`` refers to its numbers in any room."""
        groups = group_unanswered(await store.open_unanswered(ctx.conn))
        if not groups:
            await ctx.forget_choice(OPEN_LIST, anywhere=True)
            ctx.reply(ctx.t("faq.open.empty"), **{META: {"open": []}})
            return
        tz = ctx.services.config.bot.tz
        lines = [ctx.t("faq.open.title", count=sum(g.count for g in groups))]
        for number, group in enumerate(groups, start=1):
            lines.append(
                ctx.t(
                    "faq.open.item",
                    number=number,
                    question=escape(_excerpt(group.representative, OPEN_ITEM_LIMIT)),
                    count=group.count,
                    date=parse_iso(group.latest).astimezone(tz).strftime("%d.%m.%Y"),
                )
            )
        lines.append(ctx.t("faq.open.hint", prefix=self._prefix(ctx)))
        await ctx.remember_choice(OPEN_LIST, [g.ids for g in groups], OPEN_LIST_TTL,
                                  anywhere=True)  # fmt: skip
        ctx.reply_privately(
            "\n".join(lines),
            **{META: {"open": [{"number": n, "count": g.count, "ids": g.ids}
                               for n, g in enumerate(groups, start=1)]}},
        )  # fmt: skip

    async def _learn(self, ctx: Context, args: str) -> None:
        """``!faq lernen <Nr> <ID> [Formulierung]``: the open question (or the coordinator's
        phrasing of it) becomes another alternative of the entry.

        A question is learnt word for word only when it is short (see :func:`too_long_to_learn`):
        an alternative stays in the knowledge base for good, while the open question it came
        from is deleted after the retention period, so a long one would keep its story (names,
        case details) and make unrelated questions match the entry. For a long question the
        coordinator gives the phrasing; only that is stored, in the entry and the audit log.
        """
        parts = args.split(maxsplit=2)
        if len(parts) < 2 or not parts[0].lstrip("#").isdigit():
            raise BadArguments("faq.usage.lernen")
        number, entry_id = int(parts[0].lstrip("#")), parts[1].lower()
        given = _unquote(" ".join(parts[2].split())) if len(parts) == 3 else ""
        listed: list[list[int]] | None = await ctx.recall_choice(OPEN_LIST, anywhere=True)
        rows = await store.open_unanswered(ctx.conn)
        by_id = {row.id: row for row in rows}
        if listed is None:
            listed = [g.ids for g in group_unanswered(rows)]
        if not 1 <= number <= len(listed):
            raise NotFound("faq.learn.no_such_question", number=number)
        group = OpenGroup()
        for row_id in listed[number - 1]:
            row = by_id.get(row_id)
            if row is not None:
                group.ids.append(row.id)
                group.texts.append(row.question)
        if not group.ids:
            raise Conflict("faq.learn.already_done", number=number)
        old = await store.get_entry(ctx.conn, entry_id)
        if old is None:
            raise NotFound("faq.edit.not_found", id=escape(entry_id))
        question = group.representative
        if not given and too_long_to_learn(question):
            raise BadArguments(
                "faq.learn.too_long", number=number, id=old.id,
                question=escape(_excerpt(question, PREFILL_LIMIT)),
                words=LEARN_MAX_WORDS, chars=LEARN_MAX_CHARS, private=True,
            )  # fmt: skip
        phrase = given or question
        known = {fold(text) for text in (old.question, *old.alternatives)}
        new = old
        if fold(phrase) not in known:
            new = FaqEntry.model_validate(
                {**old.model_dump(), "alternatives": [*old.alternatives, phrase]}
            )
            await store.update_entry(ctx.conn, new, ctx.now, ctx.sender)
            await self._changed(ctx.conn, upsert=new)
        resolved = await store.resolve_unanswered(ctx.conn, group.ids, ctx.now, ctx.sender, old.id)
        await ctx.audit("faq.learn", old.id, {
            "old": store.entry_snapshot(old), "new": store.entry_snapshot(new),
            "phrase": phrase, "unanswered": group.ids,
        })  # fmt: skip
        # The list shown stays as it was, so "!faq lernen 2 …" next still means its line 2
        # (a line already learnt answers "schon erledigt").
        lines = [
            ctx.t("faq.learn.done" if new != old else "faq.learn.known",
                  phrase=escape(phrase), id=old.id),
            ctx.t("faq.learn.resolved", count=resolved),
            ctx.t("faq.learn.no_personal_data", prefix=self._prefix(ctx), id=old.id),
        ]  # fmt: skip
        learned = {"entry": old.id, "phrase": phrase, "resolved": resolved,
                   "added": new != old, "given": bool(given)}  # fmt: skip
        # The phrase may be an open question word for word: not for a group room.
        ctx.reply_privately(" ".join(lines), **{META: {"learned": learned}})

    # -- coordinators: editing ----------------------------------------------------------------

    async def _new(self, ctx: Context, args: str) -> None:
        first, rest = _split_first_line(args)
        entry_id: str | None = None
        form_text = args
        stray: FormError | None = None
        if first and not _looks_like_field(first):
            form_text = rest
            if len(first.split()) == 1:
                entry_id = first.lower()
            else:  # "!faq neu Mein Eintrag!": neither an id nor a field
                stray = self._command_line_text(ctx, first, "text_after_new", example=slug(first))
        if not form_text.strip() and stray is None:
            self._reply_template(ctx, "faq.edit.template_new", entry_id or "", None)
            return
        form = self._parse(ctx, form_text, new_entry=True, stray=stray)
        if entry_id is not None and form.values.get("id") not in (None, entry_id):
            raise BadArguments("faq.form.id_change")
        entry_id = entry_id or form.values.get("id")
        if not entry_id:
            existing = {entry.id for entry in await store.all_entries(ctx.conn)}
            entry_id = slug(str(form.values.get("question", "")), existing)
        entry_id = entry_id.lower()
        entry = self._validated(ctx, None, form, entry_id)
        if await store.get_entry(ctx.conn, entry_id) is not None:
            raise Conflict("faq.edit.exists", id=escape(entry_id))
        await store.insert_entry(ctx.conn, entry, ctx.now, ctx.sender)
        await self._changed(ctx.conn, upsert=entry)
        await ctx.audit("faq.create", entry.id, {"old": None, "new": store.entry_snapshot(entry)})
        notes, extra = await self._saved_notes(ctx, entry, form, category_changed=True)
        ctx.reply(
            "\n\n".join([ctx.t("faq.edit.created", id=entry.id, prefix=self._prefix(ctx)), *notes]),
            **{META: {"edit": {"action": "created", "entry": entry.id, **extra}}},
        )

    async def _edit(self, ctx: Context, args: str) -> None:
        first, rest = _split_first_line(args)
        if not first:
            raise BadArguments("faq.usage.aendern")
        entry_id, _, same_line = first.partition(" ")
        entry_id = entry_id.lower()
        old = await store.get_entry(ctx.conn, entry_id)
        if old is None:
            raise NotFound("faq.edit.not_found", id=escape(entry_id))
        form_text = f"{same_line}\n{rest}" if same_line.strip() else rest
        stray: FormError | None = None
        if same_line.strip() and not _looks_like_field(same_line):
            form_text = rest  # "!faq ändern <ID> neue Antwort": not a field
            stray = self._command_line_text(ctx, same_line, "text_after_edit", id=entry_id)
        if not form_text.strip() and stray is None:
            self._reply_template(ctx, "faq.edit.template_edit", entry_id, old)
            return
        form = self._parse(ctx, form_text, new_entry=False, stray=stray)
        if form.values.get("id") not in (None, entry_id):
            raise BadArguments("faq.form.id_change")
        new = self._validated(ctx, old, form, entry_id)
        if new == old:
            ctx.reply(
                ctx.t("faq.edit.unchanged", id=entry_id),
                **{META: {"edit": {"action": "unchanged", "entry": entry_id}}},
            )
            return
        await store.update_entry(ctx.conn, new, ctx.now, ctx.sender)
        await self._changed(ctx.conn, upsert=new)
        changed = [name for name in kb.COLUMNS if getattr(old, name) != getattr(new, name)]
        await ctx.audit("faq.update", entry_id, {
            "old": store.entry_snapshot(old), "new": store.entry_snapshot(new), "fields": changed,
        })  # fmt: skip
        labels = ", ".join(ctx.t(f"faq.form.label.{name}") for name in changed)
        notes, extra = await self._saved_notes(
            ctx, new, form, category_changed=new.category != old.category
        )
        ctx.reply(
            "\n\n".join([ctx.t("faq.edit.updated", id=entry_id, fields=labels), *notes]),
            **{META: {"edit": {"action": "updated", "entry": entry_id, "fields": changed,
                               **extra}}},
        )  # fmt: skip

    async def _delete(self, ctx: Context, args: str) -> None:
        entry_id = args.strip().lower()
        if not entry_id or len(entry_id.split()) != 1:
            raise BadArguments("faq.usage.loeschen")
        old = await store.get_entry(ctx.conn, entry_id)
        if old is None:
            raise NotFound("faq.edit.not_found", id=escape(entry_id))
        await store.delete_entry(ctx.conn, entry_id)
        await self._changed(ctx.conn, remove=entry_id)
        await ctx.audit("faq.delete", entry_id, {"old": store.entry_snapshot(old), "new": None})
        ctx.reply(
            ctx.t("faq.edit.deleted", id=entry_id),
            **{META: {"edit": {"action": "deleted", "entry": entry_id}}},
        )

    async def _saved_notes(
        self, ctx: Context, entry: FaqEntry, form: Form, *, category_changed: bool
    ) -> tuple[list[str], dict[str, Any]]:
        """What the coordinator should look at after saving, with its metadata.

        A category no other entry has is named as new, and if it is close to an existing one
        ("Arbietsplatz"), that one is offered with the command to fix it: staff would
        otherwise see both next to each other in ``!faq``. Alternatives the form gave with a
        comma are named too, since a comma does not separate alternatives.
        """
        notes: list[str] = []
        extra: dict[str, Any] = {}
        if category_changed:
            counts = dict(await store.categories(ctx.conn))  # this entry saved already
            if counts.get(entry.category, 0) <= 1:
                similar = similar_category(entry.category, counts)
                extra["new_category"] = {"name": entry.category, "similar": similar}
                if similar is None:
                    notes.append(ctx.t("faq.edit.category_new", category=escape(entry.category)))
                else:
                    notes.append(ctx.t(
                        "faq.edit.category_similar", category=escape(entry.category),
                        similar=escape(similar), prefix=self._prefix(ctx), id=entry.id,
                        fix=similar.replace("`", "'"),
                    ))  # fmt: skip
        with_comma = [item for item in form.values.get("alternatives", ()) if "," in item]
        if with_comma:
            extra["alternatives_with_comma"] = with_comma
            quoted = [ctx.t("faq.edit.quoted", text=escape(item)) for item in with_comma]
            notes.append(ctx.t("faq.edit.alternative_comma", alternatives=", ".join(quoted),
                               count=len(with_comma)))  # fmt: skip
        return notes, extra

    @staticmethod
    def _command_line_text(ctx: Context, text: str, code: str, **params: Any) -> FormError:
        """Text after the command on its own line that is no field: said as such, since
        "Vor dem ersten Feld steht Text" pointed at the command itself."""
        return FormError(code, _line_in_message(ctx.incoming.body, text),
                         {"text": shown(text), **params})  # fmt: skip

    def _parse(
        self, ctx: Context, form_text: str, *, new_entry: bool, stray: FormError | None = None
    ) -> Form:
        line = _line_in_message(ctx.incoming.body, form_text)
        form = parse_form(form_text, line, new_entry=new_entry)
        if stray is not None:
            form.errors.insert(0, stray)
        return form

    def _validated(
        self, ctx: Context, base: FaqEntry | None, form: Form, entry_id: str
    ) -> FaqEntry:
        """The entry the form makes, or every problem of the form at once, each with its
        line: those of its shape and those of the entry's rules. A form without a single
        field is answered with its shape problem alone ("Frage fehlt", "Antwort fehlt" …
        would only repeat that nothing was understood)."""
        problems = [(error.line, self._form_error_text(ctx, error)) for error in form.errors]
        result = None
        if form.values or not form.errors:
            result = merge(base, form, self._known_departments(ctx.services.config),
                           entry_id=entry_id)  # fmt: skip
            problems += [(self._issue_line(i, form), self._issue_text(ctx, i, form))
                         for i in result.errors]  # fmt: skip
        if problems:
            # By line; problems without one (a field missing altogether) last.
            problems.sort(key=lambda item: (item[0] is None, item[0] or 0))
            raise BadArguments("faq.form.invalid", count=len(problems),
                               problems="\n".join(f"- {text}" for _, text in problems))  # fmt: skip
        assert result is not None
        return result.entries[0]

    def _form_error_text(self, ctx: Context, error: FormError) -> str:
        # What the coordinator wrote is shown as text, never read as Markdown.
        params = {key: escape(value) if key in ("text", "label") else value
                  for key, value in error.params.items()}  # fmt: skip
        if error.code == "unknown_label":
            names = ("id", *FIELD_ORDER)
            params["known"] = ", ".join(ctx.t(f"faq.form.label.{name}") for name in names)
        problem = ctx.t(f"faq.form.{error.code}", prefix=self._prefix(ctx), **params)
        if error.line is None:
            return problem
        return ctx.t("faq.import.location", line=error.line, message=problem)

    @staticmethod
    def _issue_line(issue: ImportIssue, form: Form) -> int | None:
        """The line a problem of the entry's rules is about; a field missing altogether has
        none (the file's importer would name the entry's first line)."""
        if issue.code == "missing_field":
            return None
        if issue.code in ("empty_field", "missing_answer"):
            name = "answer" if issue.code == "missing_answer" else str(issue.params["field"])
            return form.lines.get(name)
        return issue.line

    def _issue_text(self, ctx: Context, issue: ImportIssue, form: Form) -> str:
        """Problems about missing fields name the form's label, not the file's field name,
        and the line of the empty field if the form has it."""
        if issue.code in ("missing_field", "empty_field", "missing_answer"):
            name = "answer" if issue.code == "missing_answer" else str(issue.params["field"])
            problem = ctx.t("faq.form.missing", label=ctx.t(f"faq.form.label.{name}"))
            line = self._issue_line(issue, form)
            if line is None:
                return problem
            return ctx.t("faq.import.location", line=line, message=problem)
        return render_issue(issue, ctx.t.lang)

    def _reply_template(
        self, ctx: Context, key: str, entry_id: str, entry: FaqEntry | None
    ) -> None:
        labels = {name: ctx.t(f"faq.form.label.{name}") for name in kb.COLUMNS}
        # The blank form shows a list line for the alternatives: one per line.
        blank = FaqEntry(id="x", category="…", question="…", answer="…", alternatives=["…"],
                         tags=["…"])  # fmt: skip
        body = render_form(entry or blank, labels)
        fence = "`" * max(3, _longest_backtick_run(body) + 1)
        command = f"faq ändern {entry_id}" if entry is not None else "faq neu"
        form = f"{fence}\n{self._prefix(ctx)}{command}\n{body}\n{fence}"
        ctx.reply(
            "\n\n".join([ctx.t(key, id=entry_id, prefix=self._prefix(ctx)), form]),
            **{META: {"template": entry.id if entry is not None else None}},
        )

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _prefix(ctx: Context) -> str:
        return ctx.services.config.bot.prefix

    @staticmethod
    def _next_key(ctx: Context) -> str:
        """The outbox key the next reply will get (the dispatcher numbers a handler's
        messages), so a reaction to the delivered message can be traced back."""
        return f"evt:{ctx.incoming.event_id}:{len(ctx.outgoing)}"

    @staticmethod
    def _meta(
        decision: str, entry_id: str | None, score: float, suggestions: list[str]
    ) -> dict[str, Any]:
        return {
            META: {
                "entry": entry_id,
                "score": round(float(score), 4),
                "suggestions": suggestions,
                "decision": decision,
            }
        }


_THANKS_START = re.compile(
    r"^(?:danke|vielen dank|besten dank|herzlichen dank|super danke|ok danke"
    r"|okay danke|prima danke|thanks|thank you)\b"
)
# What may follow the thanks: "hat geklappt", "für die Hilfe", "jetzt funktioniert es".
_THANKS_WORDS = {
    "hat", "es", "das", "jetzt", "wieder", "geklappt", "klappt", "funktioniert", "geht",
    "fuer", "die", "hilfe", "info", "infos", "antwort", "tipp", "schnelle", "nette", "dir",
    "ihnen", "euch", "vielmals", "sehr", "schoen", "super", "prima", "toll", "klasse", "perfekt",
    "ok", "okay", "alles", "klar", "gut", "passt", "erledigt", "laeuft", "so", "und",
    "tschuess", "bis", "dann", "bald",
}  # fmt: skip


def _is_thanks(text: str) -> bool:
    """ "danke, hat geklappt", "vielen dank für die hilfe": thanks and a few words that only
    say it worked; anything else ("danke, outlook stürzt ab") is searched as a question."""
    match = _THANKS_START.match(text)
    if match is None:
        return False
    rest = text[match.end() :].split()
    return len(rest) <= 5 and all(word in _THANKS_WORDS for word in rest)


def _excerpt(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] or flat[:limit]
    return cut.rstrip(" ,;:.-") + " …"


def _find_category(wanted: str, names: Sequence[str]) -> str | None:
    """A category by its number in ``!faq``, its name, a prefix or a close spelling."""
    if wanted.isascii() and wanted.isdigit():
        number = int(wanted)
        return names[number - 1] if 1 <= number <= len(names) else None
    folded = fold(wanted)
    for test in (
        lambda n: fold(n) == folded,
        lambda n: fold(n).startswith(folded),
        lambda n: folded in fold(n).split(),
    ):
        found = [name for name in names if test(name)]
        if len(found) == 1:
            return found[0]
    scored = [(fuzz.ratio(folded, fold(name)), name) for name in names]
    scored.sort(reverse=True)
    if scored and scored[0][0] >= 85 and (len(scored) == 1 or scored[1][0] < scored[0][0]):
        return scored[0][1]
    return None


def too_long_to_learn(question: str) -> bool:
    """Whether ``!faq lernen`` needs a phrasing for this open question (see LEARN_MAX_WORDS)."""
    flat = " ".join(question.split())
    return len(flat.split()) > LEARN_MAX_WORDS or len(flat) > LEARN_MAX_CHARS


def _unquote(text: str) -> str:
    """A phrasing without the quotation marks a coordinator may put around it."""
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        return text[1:-1].strip()
    return text


def _split_first_line(args: str) -> tuple[str, str]:
    head, _, tail = args.partition("\n")
    return head.strip(), tail


def _looks_like_field(line: str) -> bool:
    return ":" in line


def _line_in_message(body: str, fragment: str) -> int:
    """The message line on which ``fragment`` (a form) starts, for error messages."""
    first = next((line.strip() for line in fragment.splitlines() if line.strip()), "")
    position = body.find(first) if first else -1
    if position < 0:
        return 1
    blank_lead = 0
    for line in fragment.splitlines():
        if line.strip():
            break
        blank_lead += 1
    return body.count("\n", 0, position) + 1 - blank_lead


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)
