"""The chat form coordinators use to add and change FAQ entries (``!faq neu`` / ``!faq ändern``).

One message, one field per label, written the way people write an e-mail::

    !faq neu
    Frage: Wie bestelle ich Toner?
    Alternativen: Toner leer; Druckerpatrone bestellen
    Kategorie: Drucken und Scannen
    Abteilung: it
    Tags: toner, drucker
    Antwort:
    Toner bestellen Sie im **Bestellportal**: <INTRANET-LINK>.

A label starts a field only at the beginning of a line; everything up to the next label
belongs to it, so an answer can span paragraphs and lists. Within the answer, a line that
looks like the label of a field given already (or, in a change, of the id) is part of the
answer, so an answer line such as "Alternative: im Portal …" survives ``!faq ändern``.
Alternatives are separated by ``;`` (as in a CSV cell) or given one per line, with or without
``-``; a comma does not separate them, because questions contain commas ("Outlook, Teams und
Co."). Tags, single words, are also separated by commas. The parser only
reads the message; the rules an entry must follow are those of the import
(:func:`lotsenbot.faq.kb.validate_records`), so a form and a file can never disagree on what a
valid entry is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz

from lotsenbot.core.router import fold
from lotsenbot.faq.kb import FaqEntry, ImportResult, RawRecord, validate_records
from lotsenbot.nlp import is_stopword, normalize

__all__ = [
    "CATEGORY_SIMILARITY",
    "FIELD_ORDER",
    "LABELS",
    "Form",
    "FormError",
    "merge",
    "parse_form",
    "render_form",
    "shown",
    "similar_category",
    "slug",
]

LABELS: dict[str, str] = {
    "id": "id",
    "frage": "question",
    "question": "question",
    "alternativen": "alternatives",
    "alternative": "alternatives",
    "alternatives": "alternatives",
    "antwort": "answer",
    "answer": "answer",
    "kategorie": "category",
    "category": "category",
    "abteilung": "department",
    "department": "department",
    "tags": "tags",
    "schlagworte": "tags",
    "stichworte": "tags",
}
"""Spelling of a label (folded: lower case, umlauts as ae/oe/ue) → entry field."""

FIELD_ORDER: tuple[str, ...] = (
    "question",
    "alternatives",
    "category",
    "department",
    "tags",
    "answer",
)
"""Order of the fields in a form the bot writes out (the multi-line answer last)."""

_LABEL_LINE = re.compile(r"^\s*([^\W\d_][\w ]{0,29}?)\s*:(?!//)[ \t]?(.*)$")
_BULLET = re.compile(r"^\s*(?:[-*•–]|\d+[.)])\s+")
_NO_DEPARTMENT = {"", "-", "–", "keine", "none"}
_SLUG_LENGTH = 48
CATEGORY_SIMILARITY = 85.0
"""rapidfuzz ratio of two folded category names from which a new one looks like a misspelling
of the other: "Arbietsplatz" and "Arbeitsplatz" score 92, "Telefon" and "Telefonie" 88, while
the starter knowledge base's own categories score at most 58 against each other."""


_SHOWN_TEXT = 60  # characters of a stray line repeated in an error


@dataclass(frozen=True)
class FormError:
    """A problem with the form's shape; ``code`` is a key below ``faq.form``."""

    code: str
    line: int | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Form:
    """The fields a coordinator wrote, as entry data, with the message line of each label,
    and every problem with the form's shape (the rules of an entry are checked by
    :func:`merge`), so that all of them can be reported at once."""

    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    errors: list[FormError] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.values)


def parse_form(text: str, first_line: int = 1, *, new_entry: bool = True) -> Form:
    """Read the labelled fields of ``text``; ``first_line`` is the message line ``text``
    starts on, so that problems point at the line the coordinator sees. ``new_entry``: an
    "ID:" line names the new entry's id anywhere; in a change (the id is fixed) an "ID:"
    line inside the answer is the answer's text.

    Problems go to ``form.errors`` and reading goes on, so a form with three mistakes is
    answered with three: a field given twice keeps its first value (the repeated one's lines
    are skipped), and text before the first field is reported once, by its first line.
    """
    form = Form()
    raw: dict[str, list[str]] = {}
    current: str | None = None
    stray_seen = False
    for number, line in enumerate(text.splitlines(), start=first_line):
        match = _LABEL_LINE.match(line)
        name = LABELS.get(fold(match.group(1))) if match else None
        if current == "answer" and (name in raw or (name == "id" and not new_entry)):
            # Inside the answer, "Alternative: …" or "ID: …" is the answer's own text when
            # that field was given already (the form the bot writes puts the answer last).
            name = None
        if match and name is not None:
            if name in raw:
                form.errors.append(
                    FormError("duplicate_field", number, {"label": match.group(1).strip()})
                )
                current = None
                stray_seen = True  # what follows belongs to the repeated field: not stray
                continue
            current = name
            raw[name] = [match.group(2)]
            form.lines[name] = number
        elif current is not None:
            raw[current].append(line)
        elif line.strip() and not stray_seen:
            stray_seen = True
            if match:  # "Fragee: …" – a label the form does not know
                form.errors.append(
                    FormError("unknown_label", number, {"label": match.group(1).strip()})
                )
            else:
                form.errors.append(FormError("text_before_field", number, {"text": shown(line)}))
    for name, lines in raw.items():
        form.values[name] = _value(name, lines)
    return form


def shown(text: str) -> str:
    """``text`` on one line and at most about 60 characters, to repeat it in an error."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _SHOWN_TEXT else flat[: _SHOWN_TEXT - 1].rstrip() + "…"


def _unfilled(value: str) -> bool:
    """Only the "…" the blank form shows (or dots): the field was not filled in."""
    return not value.strip(" \t\n.…")


def _value(name: str, lines: list[str]) -> Any:
    if name == "answer":
        answer = "\n".join(lines).strip("\n").rstrip()
        return "" if _unfilled(answer) else answer
    if name in ("alternatives", "tags"):
        separators = r"[;,]" if name == "tags" else r";"
        items: list[str] = []
        for line in lines:
            line = _BULLET.sub("", line)
            items += [item.strip() for item in re.split(separators, line) if not _unfilled(item)]
        return items
    value = " ".join(line.strip() for line in lines if line.strip())
    if _unfilled(value):
        value = ""
    if name == "department":
        return None if value.lower() in _NO_DEPARTMENT else value
    return value


def merge(
    base: FaqEntry | None,
    form: Form,
    known_departments: Collection[str] | None,
    *,
    entry_id: str | None = None,
) -> ImportResult:
    """Validate ``form`` applied to ``base`` (fields not in the form keep their value) with
    the import's rules; the result holds the new entry or every problem."""
    data: dict[str, Any] = base.model_dump() if base is not None else {}
    data.update(form.values)
    if entry_id is not None:
        data["id"] = entry_id
    if data.get("department") is None:
        data.pop("department", None)
    record = RawRecord(line=min(form.lines.values(), default=1), data=data,
                       field_lines=dict(form.lines))  # fmt: skip
    return validate_records([record], known_departments)


def similar_category(name: str, others: Collection[str]) -> str | None:
    """The existing category a new category ``name`` is probably meant to be, or None.

    ``others`` are the categories other entries have. Case and umlaut spellings count as the
    same name ("arbeitsplatz", "Arbeitsplätze" → "Arbeitsplatz"); the best match wins, among
    equally good ones the alphabetically first, so the answer does not depend on order.
    """
    folded = fold(name)
    scored = sorted((-fuzz.ratio(folded, fold(other)), other) for other in others if other != name)
    if scored and -scored[0][0] >= CATEGORY_SIMILARITY:
        return scored[0][1]
    return None


def render_form(entry: FaqEntry, labels: dict[str, str]) -> str:
    """The form text that recreates ``entry`` (``labels``: field → label in the bot's
    language), for a coordinator to copy and edit."""
    lines: list[str] = []
    for name in FIELD_ORDER:
        label = labels[name]
        value = getattr(entry, name)
        if name in ("alternatives", "tags"):
            if name == "tags":
                lines.append(f"{label}: {'; '.join(value)}".rstrip())
            else:
                lines.append(f"{label}:")
                lines += [f"- {item}" for item in value]
        elif name == "answer":
            lines.append(f"{label}:")
            lines.append(value.rstrip())
        else:
            lines.append(f"{label}: {value or ''}".rstrip())
    return "\n".join(lines)


def _ascii(word: str) -> str:
    """Letters without accents, digits kept, everything else dropped ("café" → "cafe")."""
    decomposed = unicodedata.normalize("NFKD", word)
    return re.sub(r"[^a-z0-9]", "", decomposed.encode("ascii", "ignore").decode("ascii"))


def slug(question: str, taken: Collection[str] = ()) -> str:
    """An entry id derived from a question ("Wie bestelle ich Toner?" → "bestelle-toner"),
    made unique against ``taken`` with a number suffix."""
    words = [(word, _ascii(fold(word))) for word in re.findall(r"[^\W_]+", question)]
    words = [(word, folded) for word, folded in words if folded]
    meaningful = [folded for word, folded in words if not is_stopword(normalize(word))]
    meaningful = meaningful or [folded for _, folded in words] or ["eintrag"]
    base = ""
    for word in meaningful:
        candidate = f"{base}-{word}" if base else word
        if len(candidate) > _SLUG_LENGTH:
            break
        base = candidate
    base = base or meaningful[0][:_SLUG_LENGTH]
    result, number = base, 2
    while result in taken:
        result = f"{base}-{number}"
        number += 1
    return result
