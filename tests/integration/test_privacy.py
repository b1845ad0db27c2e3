"""Data protection through a real Synapse: access file, erasure, report, audit log, roles,
and the monitoring listener of the running bot."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import aiohttp
import pytest
from nio import DownloadResponse

from lotsenbot.devserver import Synapse
from tests.integration.bot import ask, make_bot, open_dm
from tests.integration.conftest import MakeUser, RegisterUser
from tests.integration.helpers import MatrixUser, Received

PRIVACY = "de.lotsenbot.privacy"
ERROR = "de.lotsenbot.error"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def download(user: MatrixUser, item: Received) -> bytes:
    response = await user.client.download(mxc=item.content["url"])
    assert isinstance(response, DownloadResponse), response
    return bytes(response.body)


def is_file(item: Received) -> bool:
    return item.msgtype == "m.file"


@pytest.mark.asyncio(loop_scope="session")
async def test_access_erasure_report_and_roles(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    staff = await make_user("mitarbeiterin")
    coordinator = await make_user("koordination")
    port = free_port()
    runner = await make_bot(tmp_path, synapse, register_user, coordinators=[coordinator.user_id],
                            extra={"metrics": {"listen": f"127.0.0.1:{port}"}})  # fmt: skip
    app = await runner.start()
    bot_id = app.config.matrix.user_id
    try:
        room = await open_dm(staff, bot_id)

        # Art. 15: a JSON file the client can download and parse.
        text = await ask(staff, room, bot_id, "!meine-daten", lambda m: not is_file(m), timeout=10)
        assert text.content[PRIVACY]["action"] == "export"
        attachment = await staff.wait_for_message(room, sender=bot_id, predicate=is_file)
        assert attachment.content["info"]["mimetype"] == "application/json"
        assert attachment.body.startswith("meine-daten-") and attachment.body.endswith(".json")
        document = json.loads(await download(staff, attachment))
        assert document["user_id"] == staff.user_id
        assert document["data"]["core"]["person"]["user_id"] == staff.user_id
        assert any(e["kind"] == "message" for e in document["data"]["core"]["events"])

        # Staff may not see the audit log or the report.
        for command in ("!bericht", "!protokoll"):
            await staff.send_text(room, command)
            denied = await staff.wait_for_message(room, sender=bot_id)
            assert denied.content[ERROR]["code"] == "permission_denied"

        # Art. 17: ask, confirm, erased.
        await staff.send_text(room, "!daten-löschen")
        question = await staff.wait_for_message(room, sender=bot_id)
        assert question.content[PRIVACY]["action"] == "erase_confirm"
        await staff.send_text(room, "!daten-löschen bestätigen")
        done = await staff.wait_for_message(room, sender=bot_id)
        assert done.content[PRIVACY]["action"] == "erased"
        assert done.content[PRIVACY]["erased"]["core.person"] == 1
        assert {k["category"] for k in done.content[PRIVACY]["kept"]} >= {"core.audit_log"}
        row = await app.db.fetchone(
            "SELECT COUNT(*) FROM inbox WHERE sender = ? AND status != 'pending'",
            (staff.user_id,),
        )
        assert row is not None and row[0] == 0

        # The coordinator's report: text plus a PNG chart; and the audit log.
        croom = await open_dm(coordinator, bot_id)
        report = await ask(coordinator, croom, bot_id, "!bericht 7 Tage",
                           lambda m: not is_file(m), timeout=10)  # fmt: skip
        assert "de.lotsenbot.report" in report.content
        assert "core" in report.content["de.lotsenbot.report"]["sections"]
        chart = await coordinator.wait_for_message(croom, sender=bot_id, predicate=is_file)
        assert chart.content["info"]["mimetype"] == "image/png"
        png = await download(coordinator, chart)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
        await coordinator.send_text(croom, "!protokoll 5")
        log = await coordinator.wait_for_message(croom, sender=bot_id)
        actions = [(e["actor"], e["action"]) for e in log.content[PRIVACY]["entries"]]
        assert (staff.user_id, "privacy.erase") in actions
        assert (coordinator.user_id, "privacy.report") in actions

        # The running bot's monitoring listener.
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/health") as response,
        ):
            assert response.status == 200
            health = json.loads(await response.text())
        assert health["database"] is True
        assert health["last_sync_age_seconds"] is not None
        assert health["last_sync_age_seconds"] < 60
    finally:
        await runner.stop()
    with pytest.raises(aiohttp.ClientConnectionError):  # the listener stopped with the bot
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/health")
