"""Personal data hooks: how each feature answers for the data it stores about people.

Data protection duties (Art. 15 access, Art. 17 erasure, storage limitation, statistics
without performance monitoring) cut across every feature, but only the feature knows its
tables. So each feature contributes four optional methods, and the privacy feature calls
them on everything that has them:

* ``export_person(conn, user_id) -> dict`` – everything stored about that person,
* ``erase_person(conn, user_id, now) -> ErasureReport`` – erase or anonymise, and say what
  had to stay (an open request still needs its text) with a catalogue key as the reason,
* ``purge(conn, now, privacy, dry_run) -> dict[str, int]`` – retention: counts per category,
* ``statistics(conn, since, until, per_person) -> dict`` – aggregates for the report.

A feature may implement them on its :class:`~lotsenbot.core.feature.Feature` class. A
separate module may also register a handler object for a feature by name (the privacy
feature imports ``lotsenbot.<feature>.personal_data``, which calls :func:`register` at
import time); a method on the feature itself wins over a registered one, so a feature can
take over its own part later without anything else changing.

All methods run inside the caller's write transaction and must not commit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import aiosqlite

from lotsenbot.core.markdown import escape

if TYPE_CHECKING:
    from lotsenbot.config import PrivacyConfig

# What an erased person's Matrix ID is replaced with where a row must stay (counts,
# department statistics, the record that an event was handled).
ERASED = "[gelöscht]"

HOOKS = ("export_person", "erase_person", "purge", "statistics")


@dataclass(frozen=True)
class Kept:
    """Data that stays after an erasure request, and why (a catalogue key, e.g.
    ``privacy.kept.open_ticket``, with its parameters)."""

    category: str
    count: int
    reason: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ErasureReport:
    """What one erasure did: rows erased or anonymised per category, and what was kept."""

    erased: dict[str, int] = field(default_factory=dict)
    kept: list[Kept] = field(default_factory=list)

    def count(self, category: str, number: int) -> None:
        if number:
            self.erased[category] = self.erased.get(category, 0) + number

    def keep(self, category: str, count: int, reason: str, **params: Any) -> None:
        if count:
            self.kept.append(Kept(category, count, reason, params))

    def merge(self, other: ErasureReport, prefix: str = "") -> None:
        for category, number in other.erased.items():
            self.count(prefix + category, number)
        for item in other.kept:
            self.kept.append(Kept(prefix + item.category, item.count, item.reason, item.params))

    @property
    def total_erased(self) -> int:
        return sum(self.erased.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "erased": dict(self.erased),
            "kept": [
                {"category": k.category, "count": k.count, "reason": k.reason,
                 "params": dict(k.params)}
                for k in self.kept
            ],
        }  # fmt: skip


class PersonalData(Protocol):
    """The full set of hooks; a handler may implement any subset (looked up by getattr)."""

    async def export_person(self, conn: aiosqlite.Connection, user_id: str) -> dict[str, Any]: ...

    async def erase_person(
        self, conn: aiosqlite.Connection, user_id: str, now: datetime
    ) -> ErasureReport: ...

    async def purge(
        self, conn: aiosqlite.Connection, now: datetime, privacy: PrivacyConfig, dry_run: bool
    ) -> dict[str, int]: ...

    async def statistics(
        self, conn: aiosqlite.Connection, since: datetime, until: datetime, per_person: bool
    ) -> dict[str, Any]: ...


_REGISTRY: dict[str, object] = {}


def register(feature: str, handler: object) -> None:
    """Register the personal-data handler of a feature (called at import time)."""
    if not any(callable(getattr(handler, hook, None)) for hook in HOOKS):
        raise TypeError(f"{type(handler).__name__} implements none of {', '.join(HOOKS)}")
    _REGISTRY[feature] = handler


def registered() -> dict[str, object]:
    return dict(_REGISTRY)


def handlers(features: Mapping[str, object], extra: Iterable[tuple[str, object]] = ()) -> list[
    tuple[str, object]
]:  # fmt: skip
    """Who answers for which feature's data, in a stable order.

    ``features`` are the running features; their own methods come first. A registered
    handler covers a feature that does not implement the hooks itself; it is used even
    when that feature is not running in this build, because its tables (and the data in
    them) exist as soon as its migration has run. ``extra`` are further (name, handler)
    pairs such as the privacy feature's own handler for the foundation tables.
    """
    chosen: dict[str, object] = {}
    for name, handler in extra:
        chosen[name] = handler
    for name, feature in features.items():
        if any(callable(getattr(feature, hook, None)) for hook in HOOKS):
            chosen.setdefault(name, feature)
    for name, handler in sorted(_REGISTRY.items()):
        chosen.setdefault(name, handler)
    return list(chosen.items())


def hook(handler: object, name: str) -> Any | None:
    """The bound hook method ``name`` of a handler, or None if it does not have it."""
    method = getattr(handler, name, None)
    return method if callable(method) else None


async def table_exists(conn: aiosqlite.Connection, table: str) -> bool:
    """Whether a feature's table is there (its migration may not have shipped yet)."""
    async with conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ) as cursor:
        return await cursor.fetchone() is not None


# -- finding a person's Matrix ID in stored text -----------------------------------------------

# What, right after "@anna:stadt.de", would make it part of a longer Matrix ID: more of the
# server name ("@anna:stadt.dev", "@anna:stadt.de.example", "@anna:stadt.de-mitte") or a
# port ("@anna:stadt.de:8448"). A colon before a date ("…:@anna:stadt.de:2026-12-10T…" in a
# delivery key), a full stop ending a sentence, a bracket, quote or space end the ID.
_CONTINUES_ID = re.compile(r"[A-Za-z0-9-]|\.[A-Za-z0-9]|:\d{1,5}(?![\w-])")
_MARKDOWN_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def _ends_there(text: str, end: int) -> bool:
    """Whether a Matrix ID found in ``text`` ending at ``end`` is not the start of a longer
    one (Markdown escapes after it, as in "stadt\\.de\\.example", are read through)."""
    following = _MARKDOWN_ESCAPE.sub(r"\1", text[end : end + 16])
    return _CONTINUES_ID.match(following) is None


def _spans(text: str, user_id: str) -> Iterator[tuple[int, int]]:
    """Where ``text`` names ``user_id`` as a whole Matrix ID, as it is or escaped for
    Markdown (how messages show it, see :func:`lotsenbot.core.names.person_label`)."""
    for form in dict.fromkeys((user_id, escape(user_id))):
        start = text.find(form) if form else -1
        while start >= 0:
            end = start + len(form)
            if _ends_there(text, end):
                yield start, end
            start = text.find(form, start + 1)


def names_person(text: str, user_id: str) -> bool:
    """Whether ``text`` names ``user_id`` itself, not merely an ID that begins with it.

    Erasure and access must match a person exactly: a substring search for
    "@anna:stadt.de" also finds "@anna:stadt.dev" and "@anna:stadt.de.example", and would
    blank or export another person's messages. SQL may narrow rows down with ``instr``
    first; this decides.
    """
    return next(_spans(text, user_id), None) is not None


def text_names_person(text: str, user_id: str, longer: Collection[str]) -> bool:
    """Whether ``text`` names ``user_id`` anywhere except where one of ``longer`` stands,
    the known Matrix IDs that begin with it ("@anna:stadt.dev" for "@anna:stadt.de").

    For erasing text, where missing a mention is worse than blanking one message too many:
    people write IDs run into other words ("@anna:stadt.de-Postfach", "@anna:stadt.de.Bitte"),
    which :func:`names_person` reads as longer IDs. Here only an ID that really belongs to
    someone else keeps the text.
    """
    for form in dict.fromkeys((user_id, escape(user_id))):
        start = text.find(form) if form else -1
        while start >= 0:
            if not any(
                text.startswith(other_form, start)
                for other in longer
                for other_form in (other, escape(other))
            ):
                return True
            start = text.find(form, start + 1)
    return False


def content_names_person(content: str, user_id: str, longer: Collection[str] | None = None) -> bool:
    """Whether a stored JSON document (an outbox message: Markdown, metadata, mentions)
    names ``user_id`` in any of its strings; text that is not JSON is searched as it is.

    With ``longer`` (the known IDs that begin with ``user_id``) the test is
    :func:`text_names_person`, for erasure; without, :func:`names_person`."""

    def names(text: str) -> bool:
        if longer is None:
            return names_person(text, user_id)
        return text_names_person(text, user_id, longer)

    try:
        document = json.loads(content)
    except ValueError:
        return names(content)
    return any(names(text) for text in _strings(document))


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def replace_person(text: str, user_id: str, replacement: str) -> str:
    """``text`` with every whole occurrence of ``user_id`` replaced (a delivery key such as
    "ann:7:@anna:stadt.de"); longer IDs that begin with it stay as they are."""
    parts: list[str] = []
    position = 0
    start = text.find(user_id) if user_id else -1
    while start >= 0:
        end = start + len(user_id)
        if _ends_there(text, end):
            parts += [text[position:start], replacement]
            position = end
            start = text.find(user_id, end)
        else:
            start = text.find(user_id, start + 1)
    return "".join(parts) + text[position:]
