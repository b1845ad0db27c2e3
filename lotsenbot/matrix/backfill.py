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

from lotsenbot.matrix.errors import TransientSyncError

log = logging.getLogger(__name__)

PAGE = 100
MAX_EVENTS = 5_000


async def fetch_gap(client: AsyncClient, room_id: str, prev_batch: str, since: str) -> list[Any]:
    """Events between the previous sync (``since``) and the limited timeline, oldest first."""
    collected: list[Any] = []
    start = prev_batch
    while len(collected) < MAX_EVENTS:
        try:
            response = await client.room_messages(
                room_id, start=start, end=since, direction=MessageDirection.back, limit=PAGE
            )
        except Exception as exc:  # no connection: the same, retry the batch later
            raise TransientSyncError(f"Lücke in {room_id} nicht nachgeladen: {exc}") from exc
        if not isinstance(response, RoomMessagesResponse):
            # Skipping the gap would lose messages: let the sync loop retry the batch.
            raise TransientSyncError(f"Lücke in {room_id} nicht nachgeladen: {response}")
        collected.extend(response.chunk)
        if not response.chunk or not response.end or response.end == start:
            break
        start = response.end
    else:
        log.warning("Lücke in %s größer als %d Ereignisse; ältere übersprungen", room_id,
                    MAX_EVENTS)  # fmt: skip
    collected.reverse()
    return collected
