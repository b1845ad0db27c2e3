"""The "new meetup" message: a one-line short form or a multi-line form with fields.

Short form (what most coordinators type)::

    12.01.2027 14:00 Vernetzungstreffen Digitallotsen

Multi-line form, field names in German (English aliases accepted), case-insensitive, in any
order; the first line may also be a short form that the fields then complete::

    Titel: Vernetzungstreffen Digitallotsen
    Wann: nächsten Dienstag 14 Uhr
    Dauer: 90 Minuten
    Wo: Rathaus, Raum 1.12
    Link: https://konferenz.example.de/lotsen
    Plätze: 20
    Wiederholung: jeden ersten Dienstag im Monat bis 30.06.2027
    Zielgruppe: alle Lotsinnen und Lotsen

An unknown field is an error that names it — a silently ignored "Ort" typo would send out an
invitation without a place. A line without a field name continues the previous field, so a
longer description or address can span lines.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lotsenbot.meetups.capacity import MAX_CAPACITY, check_capacity
from lotsenbot.meetups.dates import MeetupError, parse_duration, parse_when, split_when
from lotsenbot.meetups.recurrence import Series, parse_recurrence

#: The canonical (German) name of each field, as shown in messages.
FIELD_NAMES = {
    "title": "Titel",
    "when": "Wann",
    "duration": "Dauer",
    "location": "Wo",
    "link": "Link",
    "capacity": "Plätze",
    "recurrence": "Wiederholung",
    "audience": "Zielgruppe",
    "description": "Beschreibung",
}
_ALIASES = {
    "titel": "title",
    "thema": "title",
    "title": "title",
    "wann": "when",
    "termin": "when",
    "when": "when",
    "dauer": "duration",
    "duration": "duration",
    "wo": "location",
    "ort": "location",
    "where": "location",
    "location": "location",
    "link": "link",
    "url": "link",
    "plaetze": "capacity",
    "platze": "capacity",
    "teilnehmende": "capacity",
    "seats": "capacity",
    "capacity": "capacity",
    "wiederholung": "recurrence",
    "repeat": "recurrence",
    "recurrence": "recurrence",
    "zielgruppe": "audience",
    "audience": "audience",
    "beschreibung": "description",
    "description": "description",
}
MAX_LENGTH = {"title": 200, "location": 300, "audience": 200, "description": 2000, "link": 500}

# A field name is letters (and spaces/hyphens) before a colon; "https://…" is not a field.
_FIELD_LINE = re.compile(
    r"\s*(?P<name>[^\W\d_][^\W\d_ -]*(?:[ -][^\W\d_]+)?)\s*:(?!//)(?P<value>.*)"
)
_UNLIMITED = re.compile(r"-|—|unbegrenzt|unbeschränkt|beliebig|offen|keine\s+begrenzung", re.I)
_CAPACITY = re.compile(r"(?P<n>\d+)(?:\s*(?:plätze|plaetze|personen|teilnehmende))?", re.I)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class MeetupDraft(BaseModel):
    """A validated new meetup, not yet stored; ``start`` is aware and in zone ``tzid``."""

    model_config = ConfigDict(frozen=True)

    title: Annotated[Text, StringConstraints(max_length=MAX_LENGTH["title"])]
    start: datetime
    tzid: str
    duration: timedelta
    location: str | None = None
    link: str | None = None
    capacity: Annotated[int, Field(ge=1, le=MAX_CAPACITY)] | None = None
    rrule: str | None = None
    audience: str | None = None
    description: str | None = None

    def series(self) -> Series:
        """The schedule to store: wall-clock start plus zone, see :mod:`.recurrence`."""
        return Series.at(self.start, ZoneInfo(self.tzid), self.duration, self.rrule)


def _normalise(name: str) -> str:
    folded = name.casefold().replace(" ", "").replace("-", "")
    for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        folded = folded.replace(umlaut, plain)
    return folded


def _collect(text: str) -> tuple[str | None, dict[str, str]]:
    """Split the message into an optional short-form first line and the named fields."""
    first_line: str | None = None
    fields: dict[str, str] = {}
    current: str | None = None
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        match = _FIELD_LINE.fullmatch(line)
        if match:
            key = _ALIASES.get(_normalise(match["name"]))
            if key is None:
                raise MeetupError(
                    "meetups.form.unknown_field",
                    field=match["name"].strip(),
                    known=", ".join(FIELD_NAMES.values()),
                )
            if key in fields:
                raise MeetupError("meetups.form.duplicate_field", field=FIELD_NAMES[key])
            fields[key] = match["value"].strip()
            current = key
        elif current is not None:
            joiner = "\n" if current == "description" else " "
            fields[current] = f"{fields[current]}{joiner}{line.strip()}".strip()
        elif first_line is None:
            first_line = line.strip()
        else:
            raise MeetupError("meetups.form.stray_line", text=line.strip())
    return first_line, fields


def _optional(fields: dict[str, str], key: str) -> str | None:
    value = fields.get(key, "").strip()
    if not value:
        return None
    if key in MAX_LENGTH and len(value) > MAX_LENGTH[key]:
        raise MeetupError("meetups.form.too_long", field=FIELD_NAMES[key], max=MAX_LENGTH[key])
    return value


def _link(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise MeetupError("meetups.form.link_invalid", text=value)
    return value


def _capacity(value: str | None) -> int | None:
    if value is None or _UNLIMITED.fullmatch(value):
        return None
    match = _CAPACITY.fullmatch(value)
    if match is None:
        raise MeetupError("meetups.form.capacity_invalid", text=value)
    capacity = int(match["n"])
    check_capacity(capacity)
    return capacity


def parse_meetup(
    text: str,
    *,
    tz: ZoneInfo,
    now: datetime,
    default_duration: timedelta = timedelta(hours=1),
) -> MeetupDraft:
    """Parse the text after ``!treffen neu`` into a :class:`MeetupDraft`.

    Raises :class:`MeetupError` with a ``meetups.*`` code for every problem, the first one
    found; the order (title, date, the rest) matches what people most often forget.
    """
    if not text.strip():
        raise MeetupError("meetups.form.empty")
    first_line, fields = _collect(text)
    start: datetime | None = None
    if first_line is not None:
        start, short_title = split_when(first_line, tz=tz, now=now)
        if "when" in fields:
            raise MeetupError("meetups.form.duplicate_field", field=FIELD_NAMES["when"])
        if short_title:
            if "title" in fields:
                raise MeetupError("meetups.form.duplicate_field", field=FIELD_NAMES["title"])
            fields["title"] = short_title

    title = _optional(fields, "title")
    if title is None:
        raise MeetupError("meetups.form.missing_field", field=FIELD_NAMES["title"])
    if start is None:
        when = _optional(fields, "when")
        if when is None:
            raise MeetupError("meetups.form.missing_field", field=FIELD_NAMES["when"])
        start = parse_when(when, tz=tz, now=now)

    duration_text = _optional(fields, "duration")
    duration = parse_duration(duration_text) if duration_text else default_duration
    recurrence_text = _optional(fields, "recurrence")
    rrule = (
        parse_recurrence(recurrence_text, start=start, tz=tz, now=now) if recurrence_text else None
    )
    return MeetupDraft(
        title=title,
        start=start,
        tzid=tz.key,
        duration=duration,
        location=_optional(fields, "location"),
        link=_link(_optional(fields, "link")),
        capacity=_capacity(_optional(fields, "capacity")),
        rrule=rrule,
        audience=_optional(fields, "audience"),
        description=_optional(fields, "description"),
    )


#: Fields that ``!treffen ändern <Nr>`` may change for the whole meetup, and for one date of
#: a series. The schedule of a series (Wiederholung, or Wann of all dates) is not changed in
#: place: the dates people signed up for would silently shift; cancel and create instead.
CHANGEABLE = ("title", "when", "duration", "location", "link", "capacity", "description")
DATE_CHANGEABLE = ("when", "duration", "location", "link")
_CLEAR = re.compile(r"-|—|keine?|leer|entfällt|entfaellt|none", re.I)


def parse_changes(
    text: str, *, tz: ZoneInfo, now: datetime, single_date: bool = False
) -> dict[str, Any]:
    """Parse the ``Feld: Wert`` lines of a change into field → new value.

    ``None`` as a value means "remove" (no place, no link, unlimited places). Values are
    validated exactly like in :func:`parse_meetup`, so a change can never store what a new
    meetup could not.
    """
    if not text.strip():
        raise MeetupError("meetups.change.empty")
    first_line, fields = _collect(text)
    if first_line is not None:
        raise MeetupError("meetups.form.stray_line", text=first_line)
    allowed = DATE_CHANGEABLE if single_date else CHANGEABLE
    changes: dict[str, Any] = {}
    for key, raw in fields.items():
        if key not in allowed:
            raise MeetupError("meetups.change.not_changeable", field=FIELD_NAMES[key])
        value = raw.strip()
        clear = not value or bool(_CLEAR.fullmatch(value))
        if clear and (key in ("title", "when", "duration") or single_date):
            raise MeetupError("meetups.change.cannot_clear", field=FIELD_NAMES[key])
        if key == "when":
            changes[key] = parse_when(value, tz=tz, now=now)
        elif key == "duration":
            changes[key] = parse_duration(value)
        elif key == "capacity":
            changes[key] = None if clear else _capacity(value)
        elif key == "link":
            changes[key] = None if clear else _link(_optional({key: value}, key))
        else:
            changes[key] = None if clear else _optional({key: value}, key)
    return changes
