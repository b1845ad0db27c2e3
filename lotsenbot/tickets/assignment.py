"""Choosing the pilot who takes a new ticket within a department.

Pure function over the state the store already has (pilot list, open-ticket
counts, absences, the last assignee), so that the fairness rules can be tested
without a database and the caller persists the rotation position.

The rules, in the order they apply:

* Each pilot of the department is a *slot* in the rotation. An absent pilot's
  slot is served by the named deputy (following a chain of deputies if the
  deputy is away too); with nobody available along the chain the slot is skipped.
* The slot whose serving person has the fewest open tickets wins, so an absent
  pilot's frozen, low count never attracts all new tickets to the deputy.
* Ties go round-robin: the first tied slot after the last-assigned slot, in the
  order the coordinator configured the pilots.
* If no slot can be served, nobody is assigned; the ticket waits in the
  department queue and coordinators are told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

__all__ = ["Absence", "Assignment", "choose_assignee", "is_absent"]

_BERLIN = ZoneInfo("Europe/Berlin")


@dataclass(frozen=True)
class Absence:
    """A pilot is away up to and including ``until`` (local date).

    ``start`` lets an absence be entered ahead of time ("Urlaub vom 3. bis
    14."); without it the absence applies immediately. ``deputy`` is a Matrix ID,
    not necessarily a pilot of the same department.
    """

    until: date
    deputy: str | None = None
    start: date | None = None

    def covers(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and day <= self.until


@dataclass(frozen=True)
class Assignment:
    """Outcome of :func:`choose_assignee`.

    ``via_deputy_of`` names the absent pilot whose turn the assignee took, so the
    ticket message can say "in Vertretung für …".
    """

    assignee: str | None
    via_deputy_of: str | None = None

    @property
    def rotation_key(self) -> str | None:
        """What the caller stores as ``last_assigned``: the slot, not the person.

        Storing the deputy instead would make the rotation skip the absent
        pilot's turn, giving the deputy fewer of the tickets they stand in for.
        """
        return self.via_deputy_of or self.assignee


def is_absent(person: str, absences: Mapping[str, Absence], today: date) -> bool:
    absence = absences.get(person)
    return absence is not None and absence.covers(today)


def _serving_person(
    pilot: str, absences: Mapping[str, Absence], today: date
) -> tuple[str | None, bool]:
    """Who actually serves ``pilot``'s slot today, and whether a deputy does.

    Follows deputy chains (A → B → C) and stops at a cycle, because two
    colleagues naming each other while both are on leave is a normal situation.
    """
    seen = {pilot}
    person = pilot
    while is_absent(person, absences, today):
        deputy = absences[person].deputy
        if deputy is None or deputy in seen:
            return None, False
        seen.add(deputy)
        person = deputy
    return person, person != pilot


def choose_assignee(
    pilots: Sequence[str],
    open_counts: Mapping[str, int],
    absences: Mapping[str, Absence],
    last_assigned: str | None,
    now: datetime,
    *,
    tz: ZoneInfo = _BERLIN,
    exclude: str | None = None,
) -> Assignment:
    """Pick the assignee for a new ticket of a department (never ``exclude``, the requester:
    a pilot's own request goes to a colleague, also when they are someone's deputy).

    ``open_counts`` holds the open tickets per person (deputies included; missing
    means none). ``last_assigned`` is the previous :attr:`Assignment.rotation_key`
    of this department. ``now`` must be aware: absences are whole local days in
    ``tz``, and a UTC clock just before midnight is already the next day in Berlin.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("choose_assignee needs an aware datetime")
    today = now.astimezone(tz).date()
    slots = list(dict.fromkeys(pilots))
    if not slots:
        return Assignment(None)

    # Rotation order: the slots after the last-assigned one come first.
    if last_assigned in slots:
        pivot = slots.index(last_assigned) + 1
        order = slots[pivot:] + slots[:pivot]
    else:
        order = slots

    best: tuple[int, int] | None = None
    chosen = Assignment(None)
    for position, slot in enumerate(order):
        person, by_deputy = _serving_person(slot, absences, today)
        if person is None or person == exclude:
            continue
        rank = (open_counts.get(person, 0), position)
        if best is None or rank < best:
            best = rank
            chosen = Assignment(person, slot if by_deputy else None)
    return chosen
