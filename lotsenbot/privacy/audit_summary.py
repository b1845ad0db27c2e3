"""Readable summaries of audit-log details, for ``!protokoll``.

Every privileged action stores its details as JSON: the old and new state of an FAQ entry,
the recipients of an announcement, the counts of a purge. Coordinators read the log in chat,
where ``{"old": {"id": "bot-hilfe", …`` cut off after 160 characters said nothing. This
module turns the details into one short line in the reader's language: which fields of an
entry changed from what to what (values shortened), what was created or deleted, and the
other details as "label: value".

It needs no list of every action. A pair of entry states (``old``/``new`` with an ``id``) is
compared field by field; other values are shown by their type: yes/no, a date in the bot's
time zone, a list by its first items, database row ids and nested counts by their number.
Labels come from the feature's form labels (``<feature>.form.label.<key>``, e.g. the FAQ's
"Antwort") or from ``privacy.audit.key.<key>``; a key without a label is shown as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from lotsenbot.core.clock import parse_iso
from lotsenbot.texts import Catalogue

__all__ = ["SUMMARY_LIMIT", "VALUE_LIMIT", "summarize"]

VALUE_LIMIT = 40
"""Characters of one value shown (an answer is cut at a word boundary)."""
SUMMARY_LIMIT = 300
"""Characters of one audit line's summary."""
LIST_ITEMS = 3
"""Items of a list shown before "… (+n)"."""

HEADLINE = ("question", "title", "category")
"""Fields that name a created or deleted entry (the rest is in the log's database row)."""
COMPARED = {"old", "new", "fields"}
"""Keys shown by the comparison of two entry states."""

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def summarize(action: str, details: Any, t: Catalogue, tz: tzinfo) -> str:
    """One line saying what ``details`` of ``action`` hold, in ``t``'s language; "" if
    nothing. The result is plain text: the caller escapes it for Markdown."""
    if not details:
        return ""
    if not isinstance(details, Mapping):  # a text stored as it is
        return _cut(" ".join(str(details).split()), SUMMARY_LIMIT)
    if action == "privacy.purge":  # counts per feature and category
        return t("privacy.audit.purged", count=_total(details))
    feature = action.split(".", 1)[0]
    parts: list[str] = []
    old, new = details.get("old"), details.get("new")
    # Without two states, "old" is an import's record of every entry it changed: too long
    # for a line (the database keeps it), while "new" lists the ids it added.
    skipped = COMPARED if _is_state(old) or _is_state(new) else {"old"}
    if skipped is COMPARED:
        parts += _states(feature, old, new, details.get("fields"), t, tz)
    for key, value in details.items():
        if key in skipped or _empty(value):
            continue
        if key == "phrase" and parts:
            continue  # the learnt phrasing shows as a new alternative already
        if key == "fields" and isinstance(value, list):  # names of changed fields
            value = [_label(t, feature, str(item)) for item in value]
            shown = ", ".join(value)
        else:
            shown = _value(value, t, tz)
        parts.append(t("privacy.audit.field", label=_label(t, feature, str(key)), value=shown))
    return _cut("; ".join(parts), SUMMARY_LIMIT)


def _is_state(value: Any) -> bool:
    """An entry as the audit log keeps it (``entry_snapshot``): fields with an id."""
    return isinstance(value, Mapping) and isinstance(value.get("id"), str)


def _states(feature: str, old: Any, new: Any, fields: Any, t: Catalogue, tz: tzinfo) -> list[str]:
    """A change field by field; a created or deleted entry by its question and category."""
    if not (_is_state(old) and _is_state(new)):
        state = new if _is_state(new) else old
        return [
            t("privacy.audit.field", label=_label(t, feature, name),
              value=_value(state[name], t, tz))
            for name in HEADLINE
            if not _empty(state.get(name))
        ]  # fmt: skip
    if isinstance(fields, Sequence) and not isinstance(fields, str):
        names = [str(name) for name in fields]
    else:
        names = [name for name in new if name != "id" and old.get(name) != new.get(name)]
    parts = []
    for name in names:
        before, after = old.get(name), new.get(name)
        label = _label(t, feature, name)
        if isinstance(before, list) and isinstance(after, list):
            changes = [
                t("privacy.audit.added", item=_quoted(t, item))
                for item in after
                if item not in before
            ]
            changes += [t("privacy.audit.removed", item=_quoted(t, item))
                        for item in before if item not in after]  # fmt: skip
            if changes:
                parts.append(t("privacy.audit.field", label=label, value=", ".join(changes)))
            continue
        parts.append(
            t("privacy.audit.change", label=label, old=_value(before, t, tz),
              new=_value(after, t, tz))
        )  # fmt: skip
    return parts


def _label(t: Catalogue, feature: str, key: str) -> str:
    for candidate in (f"{feature}.form.label.{key}", f"privacy.audit.key.{key}"):
        if t.has(candidate):
            return t(candidate)
    return key


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _value(value: Any, t: Catalogue, tz: tzinfo) -> str:
    if value is None or value == "":
        return t("privacy.audit.none")
    if isinstance(value, bool):
        return t("privacy.audit.yes" if value else "privacy.audit.no")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _text(value, t, tz)
    if isinstance(value, Mapping):
        return str(_total(value))  # counts per category: their sum
    if isinstance(value, Sequence):
        items = list(value)
        if all(isinstance(item, int) and not isinstance(item, bool) for item in items):
            return str(len(items))  # database row ids: how many
        if any(isinstance(item, Mapping) for item in items):
            return str(len(items))
        shown = [_text(str(item), t, tz) for item in items[:LIST_ITEMS]]
        if len(items) > LIST_ITEMS:
            shown.append(t("privacy.audit.more", count=len(items) - LIST_ITEMS))
        return ", ".join(shown)
    return _cut(str(value), VALUE_LIMIT)


def _text(value: str, t: Catalogue, tz: tzinfo) -> str:
    try:
        if _DATETIME.match(value):
            return parse_iso(value).astimezone(tz).strftime("%d.%m.%Y %H:%M")
        if _DATE.match(value):
            return datetime.strptime(value, "%Y-%m-%d").strftime("%d.%m.%Y")
    except ValueError:
        pass
    return _quoted(t, value)


def _quoted(t: Catalogue, value: Any) -> str:
    return t("privacy.audit.quoted", text=_cut(" ".join(str(value).split()), VALUE_LIMIT))


def _total(value: Any) -> int:
    """The sum of the numbers in nested counts ({"faq": {"unanswered": 3}, …})."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return sum(_total(item) for item in value.values())
    return 0


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut.rstrip(" ,;:.-") + " …"
