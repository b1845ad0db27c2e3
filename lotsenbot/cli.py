"""Command line: ``lotsenbot run | migrate | check-config | demo | chat``.

Exit codes: 0 done, 1 unexpected error, 2 configuration problem, 3 login rejected
(expired or revoked token, wrong password) — so a service manager does not crash-loop on a
problem only an admin can fix.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from lotsenbot.config import Config, ConfigError, default_config_path, load_config
from lotsenbot.logs import setup_logging

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_AUTH = 3


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="Konfigurationsdatei (Standard: $LOTSENBOT_CONFIG, sonst ./config.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lotsenbot",
        description="Matrix-Bot für das Netzwerk der Digitalen Lotsinnen und Lotsen.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="BEFEHL")
    run = commands.add_parser("run", help="Bot starten")
    _add_config(run)
    migrate = commands.add_parser("migrate", help="Datenbank auf den neuesten Stand bringen")
    _add_config(migrate)
    check = commands.add_parser("check-config", help="Konfiguration prüfen")
    _add_config(check)
    demo = commands.add_parser(
        "demo", help="Lokalen Test-Homeserver mit Demo-Konten und Bot starten"
    )
    demo.add_argument("--folder", type=Path, default=Path(".demo"), help="Arbeitsordner")
    demo.add_argument("--port", type=int, default=8008, help="Port des Homeservers")
    chat = commands.add_parser("chat", help="Im Terminal mit dem Demo-Bot schreiben")
    chat.add_argument("--user", required=True, help="Demo-Konto, z. B. mitarbeiterin")
    chat.add_argument("--folder", type=Path, default=Path(".demo"), help="Arbeitsordner der Demo")
    return parser


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config or default_config_path())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check-config":
            config = _load(args)
            print(
                f"{config.source}: in Ordnung – {len(config.departments)} Abteilungen, "
                f"{len(config.bot.coordinators)} Koordinator*innen."
            )
            return EXIT_OK
        if args.command == "migrate":
            config = _load(args)
            setup_logging(config.logging)
            return asyncio.run(_migrate(config))
        if args.command == "run":
            config = _load(args)
            setup_logging(config.logging)
            return asyncio.run(run_bot(config))
        if args.command == "demo":
            from lotsenbot.demo import run_demo

            return asyncio.run(run_demo(args.folder, args.port))
        if args.command == "chat":
            from lotsenbot.demo import run_demo_chat

            return asyncio.run(run_demo_chat(args.folder, args.user))
    except ConfigError as exc:
        print(f"Konfigurationsfehler: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_ERROR


async def _migrate(config: Config) -> int:
    from lotsenbot.storage.db import Database
    from lotsenbot.storage.migrate import SchemaTooNew, migrate

    db = Database(config.database.path)
    await db.open()
    try:
        applied = await migrate(db)
    except SchemaTooNew as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ERROR
    finally:
        await db.close()
    print(f"Migrationen angewendet: {applied or 'keine, Datenbank ist aktuell'}")
    return EXIT_OK


async def run_bot(config: Config) -> int:
    """Run until SIGTERM/SIGINT; map the ways it can end to exit codes."""
    from lotsenbot.app import App
    from lotsenbot.matrix.transport import AuthenticationFailed
    from lotsenbot.storage.migrate import SchemaTooNew

    log = logging.getLogger("lotsenbot")
    app = App(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.stop)
    try:
        await app.start()
        log.info("lotsenbot läuft als %s", config.matrix.user_id)
        await app.run()
    except AuthenticationFailed as exc:
        log.error("Anmeldung abgelehnt: %s – bitte Zugangsdaten prüfen. Beende mit Code 3.", exc)
        await _close_quietly(app)
        return EXIT_AUTH
    except SchemaTooNew as exc:
        log.error("%s", exc)
        await _close_quietly(app)
        return EXIT_ERROR
    except (OSError, ConnectionError) as exc:
        log.error("Homeserver nicht erreichbar: %s", exc)
        await _close_quietly(app)
        return EXIT_ERROR
    log.info("lotsenbot beendet")
    return EXIT_OK


async def _close_quietly(app: object) -> None:
    from lotsenbot.app import App

    assert isinstance(app, App)
    app.stop()
    try:
        if app.transport is not None:
            await app.transport.close()
        await app.db.close()
    except Exception:  # closing after a failure must not mask the failure
        logging.getLogger("lotsenbot").debug("Schließen nach Fehler fehlgeschlagen", exc_info=True)
