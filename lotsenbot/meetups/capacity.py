"""Places and waiting list of a meetup as pure state transitions.

Each function takes a :class:`Roster` and returns the new roster together with what happened,
so the store can persist the result in one transaction and the commands can tell exactly the
people concerned (in particular whoever moved up from the waiting list).

Rules, chosen so that nobody loses a place they were promised:

* Signing up twice is harmless: the answer says where one already stands, nothing changes.
* When a confirmed person withdraws, the first on the waiting list moves up (first come,
  first served).
* Raising the capacity (or removing the limit) moves up as many as there are new places.
* Lowering it below the number already confirmed removes nobody: those people may already
  have arranged their day. The meetup is then overbooked; new sign-ups go on the waiting list,
  and withdrawals move nobody up until the confirmed count is below the new capacity again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from lotsenbot.meetups.dates import MeetupError

MAX_CAPACITY = 10_000


@dataclass(frozen=True)
class Roster:
    """Who has a place and who waits, in order of sign-up; ``capacity`` None = unlimited."""

    capacity: int | None = None
    confirmed: tuple[str, ...] = ()
    waitlist: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_capacity(self.capacity)
        everyone = self.confirmed + self.waitlist
        if len(set(everyone)) != len(everyone):
            raise ValueError("a person can hold only one place in a roster")
        if self.waitlist and self.free != 0:
            # Every transition fills free places at once; anything else is a store bug.
            raise ValueError("people are waiting although places are free")

    @property
    def free(self) -> int | None:
        """Free places (0 when full or overbooked), None when unlimited."""
        if self.capacity is None:
            return None
        return max(0, self.capacity - len(self.confirmed))

    @property
    def overbooked(self) -> int:
        """How many more are confirmed than the capacity allows (after a reduction)."""
        if self.capacity is None:
            return 0
        return max(0, len(self.confirmed) - self.capacity)

    def status(self, person: str) -> Literal["confirmed", "waitlisted", "none"]:
        if person in self.confirmed:
            return "confirmed"
        if person in self.waitlist:
            return "waitlisted"
        return "none"

    def position(self, person: str) -> int | None:
        """1-based place on the waiting list, or None when not waiting."""
        return self.waitlist.index(person) + 1 if person in self.waitlist else None


def check_capacity(capacity: int | None) -> None:
    """Refuse capacities that can only be typos (0, negative, absurdly large)."""
    if capacity is not None and not 1 <= capacity <= MAX_CAPACITY:
        raise MeetupError("meetups.capacity.invalid", value=capacity, max=MAX_CAPACITY)


@dataclass(frozen=True)
class SignUpResult:
    outcome: Literal["confirmed", "waitlisted", "already_confirmed", "already_waitlisted"]
    position: int | None = None  # place on the waiting list when waiting

    @property
    def changed(self) -> bool:
        return not self.outcome.startswith("already_")


@dataclass(frozen=True)
class WithdrawResult:
    was: Literal["confirmed", "waitlisted", "none"]
    promoted: tuple[str, ...] = ()  # moved up from the waiting list; tell them


def _settle(
    capacity: int | None, confirmed: tuple[str, ...], waitlist: tuple[str, ...]
) -> tuple[Roster, tuple[str, ...]]:
    """Build the roster after a change, first moving people up into free places."""
    free = len(waitlist) if capacity is None else max(0, capacity - len(confirmed))
    promoted = waitlist[:free]
    return Roster(capacity, confirmed + promoted, waitlist[len(promoted) :]), promoted


def sign_up(roster: Roster, person: str) -> tuple[Roster, SignUpResult]:
    """Give ``person`` a place, or the next place on the waiting list when full."""
    current = roster.status(person)
    if current == "confirmed":
        return roster, SignUpResult("already_confirmed")
    if current == "waitlisted":
        return roster, SignUpResult("already_waitlisted", roster.position(person))
    if roster.free != 0:
        return replace(roster, confirmed=(*roster.confirmed, person)), SignUpResult("confirmed")
    updated = replace(roster, waitlist=(*roster.waitlist, person))
    return updated, SignUpResult("waitlisted", len(updated.waitlist))


def withdraw(roster: Roster, person: str) -> tuple[Roster, WithdrawResult]:
    """Remove ``person``; a freed place goes to the first on the waiting list."""
    current = roster.status(person)
    if current == "none":
        return roster, WithdrawResult("none")
    if current == "waitlisted":
        updated = replace(roster, waitlist=tuple(p for p in roster.waitlist if p != person))
        return updated, WithdrawResult("waitlisted")
    remaining = tuple(p for p in roster.confirmed if p != person)
    updated, promoted = _settle(roster.capacity, remaining, roster.waitlist)
    return updated, WithdrawResult("confirmed", promoted)


def change_capacity(roster: Roster, capacity: int | None) -> tuple[Roster, tuple[str, ...]]:
    """Set a new capacity; returns the new roster and who moved up (see module docstring)."""
    check_capacity(capacity)
    return _settle(capacity, roster.confirmed, roster.waitlist)
