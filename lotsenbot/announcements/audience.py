"""Who an announcement reaches, and how the coordinator's command is read.

Pure logic, no database and no Matrix: the feature gathers a :class:`Directory` (people and
rooms as the configuration and the database know them right now) and :func:`expand` turns
an :class:`Audience` into a de-duplicated, stably ordered list of recipients. Expansion runs
twice, for the preview count and for the actual fan-out, so a person who unsubscribes or a
room the bot leaves in between is respected at sending time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from lotsenbot.core.errors import BadArguments
from lotsenbot.core.markdown import escape
from lotsenbot.core.router import fold

MAX_AHEAD = timedelta(days=366)
"""A send time further ahead is almost certainly a typo in the year."""


class AudienceKind(StrEnum):
    PILOTS = "lotsen"
    COORDINATION = "koordination"
    ROOMS = "raeume"
    ALL = "alle"
    DEPARTMENT = "abteilung"


# What coordinators type (folded), per audience; the first spelling is the one shown.
KEYWORDS: dict[AudienceKind, tuple[str, ...]] = {
    AudienceKind.PILOTS: ("lotsen", "lotsinnen", "pilots"),
    AudienceKind.COORDINATION: ("koordination", "koordinatoren", "coordination", "coordinators"),
    AudienceKind.ROOMS: ("räume", "raeume", "raume", "rooms"),
    AudienceKind.ALL: ("alle", "all", "everyone"),
}
_BY_WORD = {fold(word): kind for kind, words in KEYWORDS.items() for word in words}


@dataclass(frozen=True)
class Audience:
    kind: AudienceKind
    department: str | None = None

    @property
    def key(self) -> str:
        """The stored form: the kind, or ``abteilung:<id>`` for a department."""
        if self.kind is AudienceKind.DEPARTMENT:
            return f"{self.kind.value}:{self.department}"
        return self.kind.value

    @classmethod
    def from_key(cls, key: str) -> Audience:
        kind, _, department = key.partition(":")
        return cls(AudienceKind(kind), department or None)


def resolve_audience(word: str, departments: Iterable[str]) -> Audience | None:
    """The audience a word names: a keyword first, then a department id."""
    folded = fold(word)
    kind = _BY_WORD.get(folded)
    if kind is not None:
        return Audience(kind)
    for department in departments:
        if fold(department) == folded:
            return Audience(AudienceKind.DEPARTMENT, department)
    return None


def audience_choices(departments: Sequence[str]) -> str:
    """The valid audiences as one Markdown line, for error messages."""
    words = [f"`{KEYWORDS[kind][0]}`" for kind in KEYWORDS]
    return ", ".join(words + [f"`{d}`" for d in departments])


@dataclass(frozen=True)
class Recipient:
    kind: Literal["user", "room"]
    target: str


@dataclass(frozen=True)
class Directory:
    """Everyone an announcement could reach, as known at one moment.

    ``known_users`` are the people who have used the bot (table ``users``), already limited
    to allowed servers; ``group_rooms`` the group rooms the bot is in.
    """

    pilots: Sequence[str] = ()
    coordinators: Sequence[str] = ()
    coordinator_room: str | None = None
    departments: Mapping[str, tuple[Sequence[str], str | None]] = field(default_factory=dict)
    known_users: Sequence[str] = ()
    opted_out: frozenset[str] = frozenset()
    group_rooms: Sequence[str] = ()
    bot_user_id: str = ""


def expand(audience: Audience, directory: Directory, *, important: bool) -> list[Recipient]:
    """The recipients of an announcement: people first, then rooms; each exactly once.

    The opt-out only applies to ``alle`` (general news); pilots, a department or the
    coordinators are addressed in their role and always reached, as are important
    announcements.
    """
    users: list[str] = []
    rooms: list[str] = []
    kind = audience.kind
    if kind is AudienceKind.PILOTS:
        users += directory.pilots
    elif kind is AudienceKind.COORDINATION:
        users += directory.coordinators
        if directory.coordinator_room:
            rooms.append(directory.coordinator_room)
    elif kind is AudienceKind.ROOMS:
        rooms += directory.group_rooms
    elif kind is AudienceKind.ALL:
        users += [u for u in directory.known_users if important or u not in directory.opted_out]
        rooms += directory.group_rooms
    elif kind is AudienceKind.DEPARTMENT:
        pilots, room = directory.departments.get(audience.department or "", ((), None))
        users += pilots
        if room:
            rooms.append(room)
    result: list[Recipient] = []
    seen: set[tuple[str, str]] = set()
    for target in users:
        if target != directory.bot_user_id and ("user", target) not in seen:
            seen.add(("user", target))
            result.append(Recipient("user", target))
    for target in rooms:
        if ("room", target) not in seen:
            seen.add(("room", target))
            result.append(Recipient("room", target))
    return result


def dedup_key(announcement_id: int, recipient: Recipient) -> str:
    """The outbox key of one copy; Matrix IDs start with @ or !, so kinds never collide."""
    return f"ann:{announcement_id}:{recipient.target}"


def dedup_range(announcement_id: int) -> tuple[str, str]:
    """Bounds of all copies' keys, for an index range scan (``;`` follows ``:`` in ASCII)."""
    return f"ann:{announcement_id}:", f"ann:{announcement_id};"


# -- reading the command ------------------------------------------------------------------

IMPORTANT_MARK = re.compile(r"^\s*(wichtig|important)\s*:", re.IGNORECASE)
_WHEN = re.compile(
    r"^(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4})"
    r"(?:[ \t]+(?P<H>\d{1,2})[:.](?P<M>\d{2})(?::(?P<S>\d{2}))?(?:[ \t]*Uhr)?)?(?=\s|$)"
)


@dataclass(frozen=True)
class Request:
    audience: Audience
    body: str
    important: bool
    send_at: datetime | None  # aware UTC; None means "as soon as it is confirmed"


def parse_request(
    args: str,
    *,
    departments: Sequence[str],
    now: datetime,
    tz: ZoneInfo,
    important: bool = False,
) -> Request:
    """Read ``<Zielgruppe> [TT.MM.JJJJ HH:MM] <Text>``; raise BadArguments with a hint.

    Seconds (``HH:MM:SS``) are accepted too, for the few cases that need them. A first line
    starting with ``Wichtig:`` marks the announcement as important, like ``!ankündigung!``.
    """
    text = args.strip()
    if not text:
        raise BadArguments("announcements.usage.announce")
    word, rest = _first_word(text)
    audience = resolve_audience(word, departments)
    if audience is None:
        raise BadArguments(
            "announcements.error.unknown_audience",
            audience=escape(word[:40]),
            audiences=audience_choices(departments),
        )
    send_at = None
    match = _WHEN.match(rest)
    if match:
        send_at = _moment(match, now, tz)
        rest = _trim_head(rest[match.end() :])
    if not rest:
        raise BadArguments("announcements.usage.announce")
    first_line = rest.lstrip().split("\n", 1)[0]
    return Request(audience, rest, important or bool(IMPORTANT_MARK.match(first_line)), send_at)


def _first_word(text: str) -> tuple[str, str]:
    """The first word and the rest; the rest may start on the next line."""
    parts = text.split(maxsplit=1)
    word = parts[0]
    return word, _trim_head(text[len(word) :])


def _trim_head(text: str) -> str:
    """Drop the separator before the text (blanks, line breaks) and trailing whitespace."""
    return text.lstrip(" \t\r\n").rstrip()


def _moment(match: re.Match[str], now: datetime, tz: ZoneInfo) -> datetime:
    raw = match.group(0)
    if match.group("H") is None:
        raise BadArguments("announcements.error.time_missing", text=escape(raw))
    try:
        local = datetime(
            int(match.group("y")),
            int(match.group("m")),
            int(match.group("d")),
            int(match.group("H")),
            int(match.group("M")),
            int(match.group("S") or 0),
        )
    except ValueError:
        raise BadArguments("announcements.error.time_invalid", text=escape(raw)) from None
    aware = local.replace(tzinfo=tz)
    moment = aware.astimezone(UTC)
    if moment.astimezone(tz).replace(tzinfo=None) != local:
        # A wall-clock time skipped by the switch to summer time does not exist.
        raise BadArguments("announcements.error.time_invalid", text=escape(raw))
    if moment <= now:
        raise BadArguments("announcements.error.time_past", text=escape(raw))
    if moment - now > MAX_AHEAD:
        raise BadArguments("announcements.error.time_far", text=escape(raw))
    return moment
