"""Places and waiting list as pure state transitions."""

from __future__ import annotations

import pytest

from lotsenbot.meetups.capacity import (
    Roster,
    SignUpResult,
    WithdrawResult,
    change_capacity,
    sign_up,
    withdraw,
)
from lotsenbot.meetups.dates import MeetupError

A, B, C, D, E = "@a:s.de", "@b:s.de", "@c:s.de", "@d:s.de", "@e:s.de"


def signed(capacity: int | None, *people: str) -> Roster:
    roster = Roster(capacity=capacity)
    for person in people:
        roster, _ = sign_up(roster, person)
    return roster


def test_sign_up_until_full_then_waitlist() -> None:
    roster = Roster(capacity=2)
    roster, first = sign_up(roster, A)
    roster, second = sign_up(roster, B)
    roster, third = sign_up(roster, C)
    roster, fourth = sign_up(roster, D)
    assert [first.outcome, second.outcome] == ["confirmed", "confirmed"]
    assert third == SignUpResult("waitlisted", 1)
    assert fourth == SignUpResult("waitlisted", 2)
    assert roster.confirmed == (A, B) and roster.waitlist == (C, D)
    assert roster.free == 0


def test_double_sign_up_is_idempotent() -> None:
    roster = signed(1, A, B)
    same, again = sign_up(roster, A)
    assert same == roster and again.outcome == "already_confirmed" and not again.changed
    same, waiting = sign_up(roster, B)
    assert same == roster and waiting == SignUpResult("already_waitlisted", 1)


def test_unlimited_never_waitlists() -> None:
    roster = signed(None, A, B, C, D, E)
    assert roster.confirmed == (A, B, C, D, E) and roster.waitlist == ()
    assert roster.free is None


def test_withdraw_confirmed_promotes_first_waiting() -> None:
    roster = signed(2, A, B, C, D)
    roster, result = withdraw(roster, A)
    assert result == WithdrawResult("confirmed", (C,))
    assert roster.confirmed == (B, C) and roster.waitlist == (D,)
    assert roster.position(D) == 1


def test_withdraw_waiting_or_unknown_promotes_nobody() -> None:
    roster = signed(2, A, B, C, D)
    after, result = withdraw(roster, C)
    assert result == WithdrawResult("waitlisted", ())
    assert after.waitlist == (D,) and after.confirmed == (A, B)
    same, none = withdraw(after, E)
    assert none.was == "none" and same == after


def test_increase_promotes_as_many_as_new_places() -> None:
    roster = signed(1, A, B, C, D)
    roster, promoted = change_capacity(roster, 3)
    assert promoted == (B, C)
    assert roster.confirmed == (A, B, C) and roster.waitlist == (D,)
    roster, promoted = change_capacity(roster, None)
    assert promoted == (D,) and roster.waitlist == ()


def test_decrease_evicts_nobody_and_blocks_new_confirmations() -> None:
    roster = signed(4, A, B, C, D)
    roster, promoted = change_capacity(roster, 2)
    assert promoted == ()
    assert roster.confirmed == (A, B, C, D) and roster.overbooked == 2
    roster, result = sign_up(roster, E)
    assert result == SignUpResult("waitlisted", 1)
    # One withdrawal still leaves three confirmed for two places: E keeps waiting.
    roster, result = withdraw(roster, A)
    assert result.promoted == () and roster.waitlist == (E,)
    roster, _ = withdraw(roster, B)
    roster, result = withdraw(roster, C)
    # Now one confirmed for two places: E moves up.
    assert result.promoted == (E,) and roster.confirmed == (D, E)


@pytest.mark.parametrize("capacity", [0, -1, 10_001])
def test_invalid_capacity(capacity: int) -> None:
    with pytest.raises(MeetupError) as info:
        change_capacity(Roster(capacity=5), capacity)
    assert info.value.code == "meetups.capacity.invalid"


def test_inconsistent_rosters_are_refused() -> None:
    with pytest.raises(ValueError):
        Roster(capacity=2, confirmed=(A,), waitlist=(A,))
    with pytest.raises(ValueError):
        Roster(capacity=2, confirmed=(A,), waitlist=(B,))
