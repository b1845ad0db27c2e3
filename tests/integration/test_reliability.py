"""Faults the foundation survives, through a real Synapse and the real `lotsenbot` process."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from lotsenbot.core.feature import Feature
from tests.integration.bot import BotRunner, ask, bot_sections, open_dm, run_cli, write_config

ASYNC = pytest.mark.asyncio(loop_scope="session")


class Flaky(Feature):
    """A test feature: `!kaputt` raises, `!wackelig` hits a busy database once."""

    name = "core"  # reuses the core texts for its (hidden) commands

    def __init__(self) -> None:
        super().__init__()
        self.busy_failures = 0
        self.router.command("kaputt", hidden=True, help_key="core.cmd.hilfe")(self._boom)
        self.router.command("wackelig", hidden=True, help_key="core.cmd.hilfe")(self._flaky)

    async def _boom(self, ctx, args):
        raise RuntimeError("kaputt")

    async def _flaky(self, ctx, args):
        if self.busy_failures == 0:
            self.busy_failures += 1
            raise sqlite3.OperationalError("database is locked")
        ctx.reply("geschafft")


@ASYNC
async def test_handler_error_apologises_and_busy_db_is_retried(tmp_path, synapse, register_user,
                                                              make_user):  # fmt: skip
    staff = await make_user("staff")
    account = await register_user("lotsenbot")
    flaky = Flaky()
    runner = BotRunner(tmp_path / "bot", bot_sections(synapse, account, departments=()))
    await runner.start(features=[flaky])
    try:
        room = await open_dm(staff, account.user_id)
        reply = await ask(staff, room, account.user_id, "!kaputt", timeout=10)
        assert reply.content["de.lotsenbot.error"]["code"] == "internal"
        await staff.send_text(room, "!wackelig")
        reply = await staff.wait_for_message(room, sender=account.user_id, timeout=15)
        assert reply.body == "geschafft"
        assert flaky.busy_failures == 1
        # And the bot still answers normally afterwards.
        await staff.send_text(room, "!hilfe")
        reply = await staff.wait_for_message(room, sender=account.user_id)
        assert "de.lotsenbot.help" in reply.content
    finally:
        await runner.stop()


@ASYNC
async def test_help_answered_within_a_second(tmp_path, synapse, register_user, make_user):
    staff = await make_user("staff")
    account = await register_user("lotsenbot")
    runner = BotRunner(tmp_path / "bot", bot_sections(synapse, account, departments=()))
    await runner.start()
    try:
        room = await open_dm(staff, account.user_id)
        durations = []
        for _ in range(5):
            staff.mark()
            started = time.monotonic()
            await staff.send_text(room, "!hilfe")
            await staff.wait_for_message(room, sender=account.user_id, timeout=5)
            durations.append(time.monotonic() - started)
        # Sync long-polling delivers within one round trip; generous bound for a busy CI.
        assert sorted(durations)[2] < 1.0, durations
    finally:
        await runner.stop()


async def _spawn_bot(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lotsenbot", "run", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


@ASYNC
async def test_sigterm_finishes_and_exits_0(tmp_path, synapse, register_user, make_user):
    staff = await make_user("staff")
    account = await register_user("lotsenbot")
    folder = tmp_path / "bot"
    folder.mkdir()
    config = write_config(folder / "config.toml", bot_sections(synapse, account, departments=()))
    process = await _spawn_bot(config)
    try:
        room = await open_dm(staff, account.user_id)
        await ask(staff, room, account.user_id, "!hilfe")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=10)
        assert process.returncode == 0
        assert time.monotonic() - started < 10
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@ASYNC
async def test_revoked_token_exits_3_without_crash_loop(tmp_path, synapse, register_user):
    account = await register_user("lotsenbot")
    folder = tmp_path / "bot"
    folder.mkdir()
    config_sections = bot_sections(synapse, account, departments=())
    del config_sections["matrix"]["password"]
    config_sections["matrix"].update(access_token="syt_revoked_token", device_id="REVOKED")
    config = write_config(folder / "config.toml", config_sections)
    result = await asyncio.to_thread(run_cli, ["run", "--config", str(config)], timeout=60)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "syt_revoked_token" not in result.stderr  # secrets never logged
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, errors
