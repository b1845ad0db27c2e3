"""Display names through a real Synapse: people appear as "Name (@id)" in the bot's messages,
from the name they set in their client, and a rename is picked up without their writing.

The names are read from the bodies on purpose (that is what staff see); which message is
meant is still decided by the ``de.lotsenbot.ticket`` metadata, which keeps Matrix IDs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from nio import ProfileSetDisplayNameResponse

from lotsenbot.core import names
from lotsenbot.storage.db import Database
from lotsenbot.tickets.feature import TicketsFeature
from tests.integration.bot import ask, make_bot, open_dm
from tests.integration.conftest import MakeUser
from tests.integration.helpers import MatrixUser
from tests.integration.test_tickets import IT_TEXT, departments, ticket_event

TICKET = "de.lotsenbot.ticket"


async def set_name(user: MatrixUser, name: str) -> None:
    response = await user.client.set_displayname(name)
    assert isinstance(response, ProfileSetDisplayNameResponse), response


async def stored_name(db: Database, user_id: str, timeout: float = 15.0) -> str:
    """Wait until the bot has a name for ``user_id`` and return it."""
    return await name_becomes(db, user_id, lambda name: True, timeout)


async def name_becomes(
    db: Database, user_id: str, wanted: Callable[[str], bool], timeout: float = 15.0
) -> str:
    """Wait until the bot's stored name for ``user_id`` satisfies ``wanted``."""
    async with asyncio.timeout(timeout):
        while True:
            found = await names.stored_names(db.conn, [user_id])
            if user_id in found and wanted(found[user_id].display_name):
                return found[user_id].display_name
            await asyncio.sleep(0.2)


@pytest.mark.asyncio(loop_scope="session")
async def test_requests_show_display_names_and_follow_a_rename(
    tmp_path, synapse, register_user, make_user: MakeUser
):
    staff = await make_user("carla")
    pilot = await make_user("lotsin")
    await set_name(staff, "Carla Beispiel")
    await set_name(pilot, "Lena Lotsin")
    runner = await make_bot(
        tmp_path, synapse, register_user, departments=departments(it=[pilot.user_id])
    )
    app = await runner.start([TicketsFeature()])
    bot_id = app.config.matrix.user_id
    try:
        # The pilot shares no room with the bot yet: the bot looks the name up in the
        # background after its first sync, as it does for every configured pilot.
        assert await stored_name(app.db, pilot.user_id) == "Lena Lotsin"

        room = await open_dm(staff, bot_id)
        pilot.mark()
        created = await ask(staff, room, bot_id, f"!anfrage {IT_TEXT}", ticket_event("created"))
        number = created.content[TICKET]["id"]
        assert created.content[TICKET]["assignee"] == pilot.user_id  # metadata: Matrix IDs
        assert f"Zuständig: Lena Lotsin ({pilot.user_id})" in created.body
        # The pilot's notice names the requester, from the name her client set.
        notice = await pilot.wait_for_message(
            sender=bot_id, timeout=20, predicate=ticket_event("assigned", id=number)
        )
        assert f"von Carla Beispiel ({staff.user_id})" in notice.body
        pilot_room = notice.room_id

        staff.mark()
        await ask(pilot, pilot_room, bot_id, f"!übernehmen {number}", ticket_event("claimed"))
        claimed = await staff.wait_for_message(room, sender=bot_id,
                                               predicate=ticket_event("claimed"))  # fmt: skip
        assert f"Lena Lotsin ({pilot.user_id}) kümmert sich" in claimed.body

        # Carla renames herself; the bot learns it from the sync, without her writing again.
        await set_name(staff, "Carla Neu")
        await name_becomes(app.db, staff.user_id, lambda name: name == "Carla Neu")
        history = await ask(pilot, pilot_room, bot_id, f"!verlauf {number}",
                            lambda item: "de.lotsenbot.ticket_history" in item.content)  # fmt: skip
        assert f"Von Carla Neu ({staff.user_id})" in history.body
        assert "Carla Beispiel" not in history.body
    finally:
        await runner.stop()
