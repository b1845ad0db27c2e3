"""Who hears about a new meetup: the ``Zielgruppe:`` field, read and stored as a short key.

Every audience word of announcements (``lotsen``, ``koordination``, ``räume``, ``alle``, a
department) is read here by the announcements' own
:func:`~lotsenbot.announcements.audience.resolve_audience` and stored with the same key, so
that coordinators learn one vocabulary. The first four reach the same people and rooms as an
announcement; a department, though, means its pilots here (an announcement to a department
also reaches its staff and room): a network meetup is for the pilots. Meetups add longer
phrasings for the pilots and a department's name, ``raum:<room id>`` for one group room the
bot is in, and ``keine`` for a meetup that is only listed, not announced. Recipients are
expanded when the announcement is sent, never stored: a pilot who leaves the network is not
invited again by a stale list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from lotsenbot.announcements import audience as announcements
from lotsenbot.core.router import fold
from lotsenbot.meetups.dates import MeetupError

AudienceKind = Literal["lotsen", "abteilung", "raum", "keine", "alle", "koordination", "raeume"]
KINDS: tuple[AudienceKind, ...] = get_args(AudienceKind)
# Audiences whose recipients the announcements work out (people who used the bot, group
# rooms, the coordination team), as :func:`lotsenbot.announcements.audience.expand` does.
SHARED_WITH_ANNOUNCEMENTS = frozenset(("alle", "koordination", "raeume"))
# Audiences beyond the network (staff, group rooms): the invitation waits for
# "!treffen senden" after a preview, as an announcement to everyone does.
PREVIEW_AUDIENCES = frozenset(("alle", "raeume"))

DEFAULT_AUDIENCE: AudienceKind = "lotsen"

_PILOT_WORDS = {
    "lotsen",
    "lotsinnen",
    "lotsinnen und lotsen",
    "alle lotsen",
    "alle lotsinnen",
    "alle lotsinnen und lotsen",
    "digitallotsen",
    "digitale lotsinnen und lotsen",
    "alle digitalen lotsinnen und lotsen",
    "pilots",
    "all pilots",
}
_NONE_WORDS = {"keine", "niemand", "nicht ankuendigen", "none", "nobody"}
_ROOM = re.compile(r"^!\S+:\S+$")
_DEPARTMENT_PREFIX = re.compile(r"^(?:abteilung|fachbereich|amt|department)\s*:?\s*", re.I)


@dataclass(frozen=True)
class Audience:
    kind: AudienceKind
    target: str | None = None  # department id or room id

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind

    @classmethod
    def from_key(cls, key: str) -> Audience:
        kind, _, target = key.partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown audience key {key!r}")
        return cls(kind, target or None)  # type: ignore[arg-type]


def parse_audience(text: str | None, departments: Iterable[tuple[str, str]]) -> Audience:
    """Read the ``Zielgruppe:`` value; ``departments`` are (id, name) pairs from the config.

    A department may be named by its id or its name, with or without "Abteilung". Anything
    else is refused with the list of valid values: an invitation that silently goes to the
    wrong people is worse than a question.
    """
    if text is None or not text.strip():
        return Audience(DEFAULT_AUDIENCE)
    raw = text.strip()
    if _ROOM.match(raw):
        return Audience("raum", raw)
    known = list(departments)
    shared = announcements.resolve_audience(raw, [d for d, _ in known])
    if shared is not None:
        return Audience.from_key(shared.key)
    folded = fold(raw)
    if folded in _PILOT_WORDS:
        return Audience("lotsen")
    if folded in _NONE_WORDS:
        return Audience("keine")
    candidate = fold(_DEPARTMENT_PREFIX.sub("", raw))
    for department_id, name in known:
        if candidate in (fold(department_id), fold(name)):
            return Audience("abteilung", department_id)
    words = [spellings[0] for spellings in announcements.KEYWORDS.values()]
    choices = ", ".join([*words, *(d for d, _ in known), "keine", "!raum:server"])
    raise MeetupError("meetups.audience.unknown", text=raw, choices=choices)
