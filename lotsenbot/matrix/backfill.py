"""Filling the gap of a "limited" sync timeline, so no message is ever skipped.

When more events arrived in a room than the sync filter's timeline limit (a burst, or a
long downtime of the bot), the homeserver returns only the newest ones and marks the
timeline ``limited``. The missing older events are fetched with ``/messages`` from the
timeline's ``prev_batch`` back to the previous sync token, oldest first.
"""

from __future__ import annotations

import logging
from typing import Any

from nio import AsyncClient, MessageDirection, RoomMessagesResponse

log = logging.getLogger(__name__)

PAGE = 100
MAX_EVENTS = 5_000


async def fetch_gap(client: AsyncClient, room_id: str, prev_batch: str, since: str) -> list[Any]:
    """Events between the previous sync (``since``) and the limited timeline, oldest first."""
    collected: list[Any] = []
    start = prev_batch
    while len(collected) < MAX_EVENTS:
        response = await client.room_messages(
            room_id, start=start, end=since, direction=MessageDirection.back, limit=PAGE
        )
        if not isinstance(response, RoomMessagesResponse):
            log.warning("Lücke in %s nicht vollständig nachgeladen: %s", room_id, response)
            break
        collected.extend(response.chunk)
        if not response.chunk or not response.end or response.end == start:
            break
        start = response.end
    else:
        log.warning("Lücke in %s größer als %d Ereignisse; ältere übersprungen", room_id,
                    MAX_EVENTS)  # fmt: skip
    collected.reverse()
    return collected
