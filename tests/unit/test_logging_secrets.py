"""Secrets and message bodies stay out of the log.

The login paths run against a tiny fake homeserver on loopback (wrong password, token
revoked after login, revoked configured token) with the real logging setup at DEBUG, the
most talkative level an admin can choose; the password, the configured and the issued
access tokens and the pickle key must not appear in what is written. Message bodies reach
the log only when ``[logging] log_message_bodies`` is switched on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from lotsenbot.cli import EXIT_AUTH, run_bot
from lotsenbot.config import Config, LoggingConfig, load_config
from lotsenbot.logs import setup_logging

PASSWORD = "Pw-7h1s-1s-s3cr3t"
ISSUED_TOKEN = "syt_issued_2f9c1e7d4b"
CONFIGURED_TOKEN = "syt_configured_8a3b5c"
PICKLE_KEY = "pickle-9d8e7f6a5b4c"
SECRETS = (PASSWORD, ISSUED_TOKEN, CONFIGURED_TOKEN, PICKLE_KEY)
USER = "@lotsenbot:lotsen.test"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging replaces the root handlers; give pytest its own back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("nio", "nio.events", "nio.responses", "aiohttp", "apscheduler", "peewee")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


def fake_homeserver() -> web.Application:
    """Just enough of the client API for login: a correct password gets a token that is
    revoked by the time the first sync arrives."""

    async def login(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("password") != PASSWORD:
            return _error(403, "M_FORBIDDEN", "Invalid username or password")
        return web.json_response(
            {"user_id": USER, "access_token": ISSUED_TOKEN, "device_id": "DEVICE"}
        )

    async def whoami(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") == f"Bearer {ISSUED_TOKEN}":
            return web.json_response({"user_id": USER, "device_id": "DEVICE"})
        return _error(401, "M_UNKNOWN_TOKEN", "Invalid access token passed.")

    async def revoked(request: web.Request) -> web.Response:
        return _error(401, "M_UNKNOWN_TOKEN", "Invalid access token passed.")

    async def other(request: web.Request) -> web.Response:
        return _error(404, "M_UNRECOGNIZED", "Unrecognized request")

    app = web.Application()
    app.router.add_post("/_matrix/client/v3/login", login)
    app.router.add_get("/_matrix/client/v3/account/whoami", whoami)
    app.router.add_get("/_matrix/client/v3/sync", revoked)
    app.router.add_route("*", "/{tail:.*}", other)
    return app


def write_config(folder: Path, url: str, matrix: dict[str, str], json_format: bool) -> Config:
    lines = ["[matrix]", f'homeserver = "{url}"', f'user_id = "{USER}"', 'store_path = "store"',
             f'pickle_key = "{PICKLE_KEY}"']  # fmt: skip
    lines += [f'{key} = "{value}"' for key, value in matrix.items()]
    lines += ["[database]", 'path = "bot.db"', "[logging]", 'level = "DEBUG"',
              f"json_format = {'true' if json_format else 'false'}"]  # fmt: skip
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(path)


async def _run_against_fake(folder: Path, matrix: dict[str, str], json_format: bool) -> int:
    port = _free_port()
    runner = web.AppRunner(fake_homeserver())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        config = write_config(folder, f"http://127.0.0.1:{port}", matrix, json_format)
        setup_logging(config.logging)
        return await asyncio.wait_for(run_bot(config), timeout=60)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("json_format", [False, True])
@pytest.mark.parametrize(
    ("scenario", "matrix"),
    [
        ("wrong_password", {"password": PASSWORD + "-falsch"}),
        ("token_revoked_after_login", {"password": PASSWORD}),
        ("configured_token_revoked", {"access_token": CONFIGURED_TOKEN, "device_id": "DEV"}),
    ],
)
def test_login_paths_never_log_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None,
    scenario: str, matrix: dict[str, str], json_format: bool,
) -> None:  # fmt: skip
    code = asyncio.run(_run_against_fake(tmp_path, matrix, json_format))
    logged = capsys.readouterr().err
    assert code == EXIT_AUTH, logged[-2000:]
    assert "Anmeldung abgelehnt" in logged  # the path under test did log
    leaked = [secret for secret in SECRETS if secret in logged]
    assert leaked == [], logged[-3000:]
    if scenario == "token_revoked_after_login":
        # The issued token is kept (private file), just never written to the log.
        session = json.loads((tmp_path / "store" / "session.json").read_text("utf-8"))
        assert session["access_token"] == ISSUED_TOKEN


def test_nio_validation_warnings_do_not_leak_bodies(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    """nio logs the whole offending event when one fails its schema check; a message
    with a wrongly typed field would put its body into the log."""
    from nio import Event

    setup_logging(LoggingConfig(level="DEBUG"))
    event = {
        "type": "m.room.message",
        "sender": "@anna:lotsen.test",
        "event_id": "$x",
        "origin_server_ts": 1,
        # A file without its url: the schema error quotes the whole content.
        "content": {"msgtype": "m.file", "body": "Gehaltsabrechnung_Anna.pdf"},
    }
    Event.parse_event(event)
    logged = capsys.readouterr().err
    assert "Gehalt" not in logged, logged


async def _dispatch_once(tmp_path: Path, log_bodies: bool) -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from lotsenbot.core.clock import Clock
    from lotsenbot.core.dispatch import Dispatcher
    from lotsenbot.core.inbox import Inbox
    from lotsenbot.core.outbox import Outbox
    from lotsenbot.core.roles import Roles
    from lotsenbot.core.services import Services
    from lotsenbot.core.types import Incoming
    from lotsenbot.storage.db import Database
    from lotsenbot.storage.migrate import migrate
    from lotsenbot.texts import Catalogue

    config = Config.model_validate({
        "matrix": {"homeserver": "http://127.0.0.1:9", "user_id": USER, "password": "x"},
        "logging": {"log_message_bodies": log_bodies},
    })  # fmt: skip
    db = Database(tmp_path / f"bodies-{log_bodies}.db")
    await db.open()
    try:
        await migrate(db)
        clock = Clock()
        services = Services(config=config, db=db, texts=Catalogue("de"), clock=clock,
                            roles=Roles(config), outbox=Outbox(clock.now),
                            scheduler=AsyncIOScheduler(timezone=config.bot.tz),
                            bot_user_id=USER)  # fmt: skip
        inbox = Inbox(db)
        dispatcher = Dispatcher(services, [], inbox)
        incoming = Incoming(event_id="$q", room_id="!dm:lotsen.test", sender="@anna:lotsen.test",
                            kind="message", body="Meine Krankmeldung für Dienstag",
                            is_direct=True, origin_ts=1)  # fmt: skip
        async with db.transaction() as conn:
            await inbox.accept(conn, [incoming], clock.now())
        await dispatcher.handle(incoming)
    finally:
        await db.close()


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
@pytest.mark.parametrize("log_bodies", [False, True])
def test_bodies_logged_only_when_switched_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None,
    log_bodies: bool, level: str,
) -> None:  # fmt: skip
    """Even at DEBUG (which an admin may pick to chase a problem) no library below the bot
    may write a body: aiosqlite, for one, logs every statement with its parameters."""
    setup_logging(LoggingConfig(level=level, log_message_bodies=log_bodies))  # type: ignore[arg-type]
    asyncio.run(_dispatch_once(tmp_path, log_bodies))
    logged = capsys.readouterr().err
    assert ("Krankmeldung" in logged) is log_bodies, logged[-3000:]
