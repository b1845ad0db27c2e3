"""Assignment within a department: load, round robin, absences and deputies."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from lotsenbot.tickets.assignment import Absence, Assignment, choose_assignee

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
A, B, C, D = "@anna:stadt.example", "@ben:stadt.example", "@cem:stadt.example", "@dora:x.example"


def test_fewest_open_tickets_wins() -> None:
    result = choose_assignee([A, B, C], {A: 3, B: 1, C: 2}, {}, None, NOW)
    assert result == Assignment(B)


def test_missing_count_means_no_open_tickets() -> None:
    assert choose_assignee([A, B], {A: 1}, {}, None, NOW).assignee == B


def test_ties_start_after_last_assigned_and_wrap() -> None:
    counts = {A: 0, B: 0, C: 0}
    assert choose_assignee([A, B, C], counts, {}, None, NOW).assignee == A
    assert choose_assignee([A, B, C], counts, {}, A, NOW).assignee == B
    assert choose_assignee([A, B, C], counts, {}, C, NOW).assignee == A


def test_tie_break_only_among_the_least_loaded() -> None:
    # B is next in turn but busier; of the tied A and C, C comes first after B.
    counts = {A: 1, B: 2, C: 1}
    assert choose_assignee([A, B, C], counts, {}, A, NOW).assignee == C


def test_last_assigned_no_longer_a_pilot_starts_from_the_top() -> None:
    assert choose_assignee([A, B], {}, {}, "@gone:stadt.example", NOW).assignee == A


def test_round_robin_over_a_simulated_day_is_fair() -> None:
    """Tickets that are closed immediately: every pilot gets the same share."""
    pilots = [A, B, C]
    last: str | None = None
    taken: Counter[str] = Counter()
    for _ in range(30):
        result = choose_assignee(pilots, {}, {}, last, NOW)
        assert result.assignee is not None
        taken[result.assignee] += 1
        last = result.rotation_key
    assert taken == Counter({A: 10, B: 10, C: 10})


def test_load_balancing_over_a_simulated_day() -> None:
    """Open tickets accumulate: counts never differ by more than one."""
    pilots = [A, B, C]
    counts: Counter[str] = Counter({B: 4})
    last: str | None = None
    for _ in range(20):
        result = choose_assignee(pilots, counts, {}, last, NOW)
        assert result.assignee is not None
        counts[result.assignee] += 1
        last = result.rotation_key
    assert max(counts.values()) - min(counts.values()) <= 1


def test_absent_pilot_without_deputy_is_skipped() -> None:
    absences = {A: Absence(until=date(2026, 3, 20))}
    result = choose_assignee([A, B], {A: 0, B: 5}, absences, None, NOW)
    assert result == Assignment(B)


def test_absence_ends_after_until_day_and_starts_on_start_day() -> None:
    absences = {A: Absence(until=date(2026, 3, 10))}
    assert choose_assignee([A, B], {B: 1}, absences, None, NOW).assignee == B
    tomorrow = datetime(2026, 3, 11, 8, tzinfo=NOW.tzinfo)
    assert choose_assignee([A, B], {B: 1}, absences, None, tomorrow).assignee == A
    planned = {A: Absence(start=date(2026, 3, 11), until=date(2026, 3, 20))}
    assert choose_assignee([A, B], {B: 1}, planned, None, NOW).assignee == A
    assert choose_assignee([A, B], {B: 1}, planned, None, tomorrow).assignee == B


def test_absence_day_is_local_berlin_day() -> None:
    # 23:30 UTC on 10 March is already 11 March in Berlin: the absence is over.
    late_utc = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    absences = {A: Absence(until=date(2026, 3, 10))}
    assert choose_assignee([A, B], {B: 1}, absences, None, late_utc).assignee == A


def test_absent_pilots_turn_goes_to_available_deputy() -> None:
    absences = {A: Absence(until=date(2026, 3, 20), deputy=D)}
    result = choose_assignee([A, B], {A: 0, B: 2, D: 1}, absences, None, NOW)
    assert result == Assignment(D, via_deputy_of=A)
    assert result.rotation_key == A


def test_deputy_is_judged_by_own_load_not_the_absent_pilots() -> None:
    # A's count is frozen at 0 while away; the deputy is busy, so B gets it.
    absences = {A: Absence(until=date(2026, 3, 20), deputy=D)}
    result = choose_assignee([A, B], {A: 0, B: 2, D: 6}, absences, None, NOW)
    assert result == Assignment(B)


def test_deputy_from_the_same_department_takes_both_turns() -> None:
    absences = {A: Absence(until=date(2026, 3, 20), deputy=B)}
    first = choose_assignee([A, B, C], {}, absences, None, NOW)
    assert first == Assignment(B, via_deputy_of=A)
    second = choose_assignee([A, B, C], {}, absences, first.rotation_key, NOW)
    assert second == Assignment(B)
    third = choose_assignee([A, B, C], {}, absences, second.rotation_key, NOW)
    assert third == Assignment(C)


def test_absent_deputy_falls_through_to_next_pilot() -> None:
    absences = {
        A: Absence(until=date(2026, 3, 20), deputy=D),
        D: Absence(until=date(2026, 3, 12)),
    }
    assert choose_assignee([A, B], {B: 3}, absences, None, NOW) == Assignment(B)


def test_deputy_chain_is_followed() -> None:
    absences = {
        A: Absence(until=date(2026, 3, 20), deputy=B),
        B: Absence(until=date(2026, 3, 20), deputy=D),
    }
    result = choose_assignee([A, B, C], {C: 1, D: 0}, absences, None, NOW)
    assert result == Assignment(D, via_deputy_of=A)


def test_deputy_cycle_of_absent_pilots_ends_without_loop() -> None:
    absences = {
        A: Absence(until=date(2026, 3, 20), deputy=B),
        B: Absence(until=date(2026, 3, 20), deputy=A),
    }
    assert choose_assignee([A, B, C], {C: 9}, absences, None, NOW) == Assignment(C)
    assert choose_assignee([A, B], {}, absences, None, NOW) == Assignment(None)


def test_nobody_available_means_no_assignee() -> None:
    absences = {A: Absence(until=date(2026, 3, 20)), B: Absence(until=date(2026, 4, 1))}
    result = choose_assignee([A, B], {}, absences, A, NOW)
    assert result == Assignment(None)
    assert result.rotation_key is None


def test_empty_department_and_duplicate_pilots() -> None:
    assert choose_assignee([], {}, {}, None, NOW) == Assignment(None)
    assert choose_assignee([A, A, B], {}, {}, A, NOW).assignee == B


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        choose_assignee([A], {}, {}, None, datetime(2026, 3, 10, 9))


def test_the_requester_is_never_chosen_not_even_as_a_deputy() -> None:
    assert choose_assignee([A, B], {}, {}, None, NOW, exclude=A).assignee == B
    away = {B: Absence(until=date(2026, 3, 20), deputy=A)}  # B away, A stands in for B
    assert choose_assignee([A, B], {A: 5}, away, None, NOW, exclude=A) == Assignment(None)
    assert choose_assignee([A, B, C], {}, away, None, NOW, exclude=A).assignee == C
