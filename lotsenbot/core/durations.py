"""Durations as people write them in config files: "90s", "2m", "4h", "2d"."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_duration(value: str) -> timedelta:
    """Parse ``<number><unit>`` with unit s, m, h or d; raise ValueError otherwise.

    Ticket escalation reads "h" and "d" as working hours and working days; that
    interpretation belongs to the working-time calendar, not to this parser.
    """
    match = _PATTERN.match(value)
    if not match:
        raise ValueError(f'„{value}“ ist keine Dauer (Beispiele: "90s", "2m", "4h", "2d")')
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def duration_parts(value: str) -> tuple[int, str]:
    """Number and unit letter of a duration string, for callers that treat units differently."""
    match = _PATTERN.match(value)
    if not match:
        raise ValueError(f"„{value}“ ist keine Dauer")
    return int(match.group(1)), match.group(2)
