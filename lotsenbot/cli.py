"""Command line: ``lotsenbot run | migrate | check-config | demo | chat``.

Exit codes: 0 done, 1 unexpected error, 2 configuration problem, 3 login rejected
(expired or revoked token, wrong password) — so a service manager does not crash-loop on a
problem only an admin can fix.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from lotsenbot.config import Config, ConfigError, default_config_path, load_config
from lotsenbot.logs import setup_logging

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_AUTH = 3


# argparse phrases its own messages in English through gettext. These are its message
# templates (msgids) in German; a template a Python version phrases differently is simply not
# found and stays English, so a new Python can never break the command line.
_ARGPARSE_DE = {
    "usage: ": "Aufruf: ",
    "positional arguments": "Argumente",
    "options": "Optionen",
    "optional arguments": "Optionen",
    "subcommands": "Befehle",
    "show this help message and exit": "diese Hilfe anzeigen und beenden",
    "%(prog)s: error: %(message)s\n": "%(prog)s: Fehler: %(message)s\n",
    "argument %(argument_name)s: %(message)s": "%(argument_name)s: %(message)s",
    "the following arguments are required: %s": "es fehlt: %s",
    "unrecognized arguments: %s": "unbekannte Angaben: %s",
    "invalid choice: %(value)r (choose from %(choices)s)": (
        "„%(value)s“ gibt es nicht (möglich: %(choices)s)"
    ),
    "invalid %(type)s value: %(value)r": "ungültiger Wert „%(value)s“ (erwartet: %(type)s)",
    "expected one argument": "hier fehlt ein Wert",
    "expected at most one argument": "höchstens ein Wert erlaubt",
    "expected at least one argument": "mindestens ein Wert nötig",
    "ambiguous option: %(option)s could match %(matches)s": (
        "%(option)s ist nicht eindeutig: %(matches)s"
    ),
    "not allowed with argument %s": "nicht zusammen mit %s erlaubt",
    "one of the arguments %s is required": "eine dieser Angaben ist nötig: %s",
    "ignored explicit argument %r": "überflüssiger Wert %r",
    "unexpected option string: %s": "unerwartete Option: %s",
    "unknown parser %(parser_name)r (choices: %(choices)s)": (
        "„%(parser_name)s“ gibt es nicht (möglich: %(choices)s)"
    ),
    "can't open '%(filename)s': %(error)s": "„%(filename)s“ lässt sich nicht öffnen: %(error)s",
}
_ARGPARSE_DE_PLURAL = {
    ("expected %s argument", "expected %s arguments"): ("erwartet %s Wert", "erwartet %s Werte"),
}


def _gettext_de(message: str) -> str:
    return _ARGPARSE_DE.get(message, message)


def _ngettext_de(singular: str, plural: str, number: int) -> str:
    one, many = _ARGPARSE_DE_PLURAL.get((singular, plural), (singular, plural))
    return one if number == 1 else many


@contextlib.contextmanager
def _german_argparse() -> Iterator[None]:
    """Let argparse speak German while one of our parsers works (restored afterwards, so
    other parsers in the same process are not affected)."""
    saved = {name: getattr(argparse, name) for name in ("_", "ngettext") if hasattr(argparse, name)}
    argparse._ = _gettext_de  # type: ignore[attr-defined]
    argparse.ngettext = _ngettext_de  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for name in ("_", "ngettext"):
            if name in saved:
                setattr(argparse, name, saved[name])
            else:
                delattr(argparse, name)


class GermanArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose own texts (usage, help headings, errors) are German."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with _german_argparse():
            super().__init__(*args, **kwargs)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> argparse.Namespace:
        with _german_argparse():
            return super().parse_args(args, namespace)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        with _german_argparse():
            return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        with _german_argparse():
            return super().format_usage()

    def format_help(self) -> str:
        with _german_argparse():
            return super().format_help()

    def error(self, message: str) -> NoReturn:
        """Usage, the German message and a pointer to the help; exit code 2 as argparse."""
        self.print_usage(sys.stderr)
        self.exit(
            EXIT_CONFIG,
            f"{self.prog}: Fehler: {message}\nHilfe: {self.prog} --help\n",
        )


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="DATEI",
        help="Konfigurationsdatei (Standard: $LOTSENBOT_CONFIG, sonst ./config.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = GermanArgumentParser(
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
    demo.add_argument(
        "--folder", type=Path, default=Path(".demo"), metavar="ORDNER", help="Arbeitsordner"
    )
    demo.add_argument("--port", type=int, default=8008, metavar="PORT", help="Port des Homeservers")
    reference = commands.add_parser("commands", help="Befehlsübersicht als Markdown ausgeben")
    reference.add_argument(
        "--update-readme", action="store_true", help="README.md im aktuellen Ordner aktualisieren"
    )
    chat = commands.add_parser("chat", help="Im Terminal mit dem Demo-Bot schreiben")
    chat.add_argument(
        "--user", required=True, metavar="KONTO", help="Demo-Konto, z. B. mitarbeiterin"
    )
    chat.add_argument(
        "--folder",
        type=Path,
        default=Path(".demo"),
        metavar="ORDNER",
        help="Arbeitsordner der Demo",
    )
    route = commands.add_parser(
        "route", help="Zeigen, welcher Abteilung eine Anfrage zugeordnet würde (legt nichts an)"
    )
    route.add_argument(
        "text", nargs="?", metavar="TEXT", help="Text der Anfrage; ohne: je Zeile von stdin"
    )
    route.add_argument("--json", action="store_true", help="je Anfrage eine JSON-Zeile ausgeben")
    route.add_argument(
        "--department", metavar="KÜRZEL", help="eigene Abteilung der fragenden Person (Kürzel)"
    )
    _add_config(route)
    faq = commands.add_parser("faq", help="Wissensdatenbank (FAQ) importieren, exportieren, testen")
    faq_commands = faq.add_subparsers(dest="faq_command", required=True, metavar="AKTION")
    faq_import = faq_commands.add_parser(
        "import", help="Einträge aus YAML oder CSV übernehmen (alles oder nichts)"
    )
    faq_import.add_argument("file", type=Path, metavar="DATEI", help=".yaml, .yml oder .csv")
    faq_import.add_argument(
        "--replace", action="store_true", help="Einträge, die nicht in der Datei stehen, löschen"
    )
    _add_config(faq_import)
    faq_export = faq_commands.add_parser("export", help="Alle Einträge als YAML oder CSV speichern")
    faq_export.add_argument("file", type=Path, metavar="DATEI", help=".yaml, .yml oder .csv")
    _add_config(faq_export)
    faq_ask = faq_commands.add_parser("ask", help="Antworten des Bots auf Fragen zeigen")
    faq_ask.add_argument("question", nargs="?", metavar="FRAGE", help="ohne: je Zeile von stdin")
    faq_ask.add_argument("--json", action="store_true", help="je Frage eine JSON-Zeile ausgeben")
    _add_config(faq_ask)
    crypto = commands.add_parser("crypto", help="Verschlüsselung verwalten")
    crypto_commands = crypto.add_subparsers(dest="crypto_command", required=True, metavar="AKTION")
    bootstrap = crypto_commands.add_parser(
        "bootstrap", help="Cross-Signing-Schlüssel des Bot-Kontos einrichten oder ersetzen"
    )
    _add_config(bootstrap)
    bootstrap.add_argument(
        "--reset",
        action="store_true",
        help="vorhandene Cross-Signing-Schlüssel des Kontos ersetzen (Passwort nötig)",
    )
    bootstrap.add_argument(
        "--restore",
        action="store_true",
        help="Master-Schlüssel aus dem Wiederherstellungsschlüssel (Eingabe/stdin) übernehmen",
    )
    purge = commands.add_parser(
        "purge", help="Aufbewahrungsfristen anwenden: Abgelaufenes löschen bzw. anonymisieren"
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="nur zeigen, was gelöscht würde (je Kategorie)"
    )
    _add_config(purge)
    backup = commands.add_parser(
        "backup", help="Datenbank im laufenden Betrieb konsistent sichern (SQLite-Backup-API)"
    )
    backup.add_argument("target", type=Path, metavar="ZIEL.db", help="Datei für die Sicherung")
    backup.add_argument("--force", action="store_true", help="vorhandene Zieldatei überschreiben")
    _add_config(backup)
    return parser


def _load(args: argparse.Namespace, *, login: bool = False) -> Config:
    """The configuration; only commands that log in (``login``) need the Matrix secret."""
    return load_config(args.config or default_config_path(), login=login)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check-config":
            config = _load(args, login=True)
            departments = _count(len(config.departments), "Abteilung", "Abteilungen")
            coordinators = _count(
                len(config.bot.coordinators), "Koordinatorin oder Koordinator", "Koordinator*innen"
            )
            print(f"{config.source}: in Ordnung – {departments}, {coordinators}.")
            for warning in config.warnings():
                print(f"Hinweis: {warning}")
            if not config.database.path.exists():
                print(
                    f"Hinweis: Die Datenbank {config.database.path} gibt es noch nicht. Bei "
                    "einer neuen Installation legt sie der erste Start des Bots oder "
                    "„lotsenbot migrate“ an; läuft der Bot schon, stimmt [database] path nicht."
                )
            return EXIT_OK
        if args.command == "migrate":
            config = _load(args)
            setup_logging(config.logging)
            return asyncio.run(_migrate(config))
        if args.command == "run":
            config = _load(args, login=True)
            setup_logging(config.logging)
            for warning in config.warnings():
                logging.getLogger("lotsenbot").warning("Konfiguration: %s", warning)
            return asyncio.run(run_bot(config))
        if args.command == "commands":
            return print_commands(update_readme=args.update_readme)
        if args.command == "demo":
            from lotsenbot.demo import run_demo

            return asyncio.run(run_demo(args.folder, args.port))
        if args.command == "chat":
            from lotsenbot.demo import run_demo_chat

            return asyncio.run(run_demo_chat(args.folder, args.user))
        if args.command == "route":
            return route_requests(args)
        if args.command == "faq":
            config = _load(args)
            setup_logging(config.logging.model_copy(update={"level": "WARNING"}))
            return asyncio.run(faq_command(config, args))
        if args.command == "crypto" and args.crypto_command == "bootstrap":
            config = _load(args, login=True)
            setup_logging(config.logging)
            return asyncio.run(crypto_bootstrap(config, reset=args.reset, restore=args.restore))
        if args.command == "purge":
            config = _load(args)
            setup_logging(config.logging)
            return asyncio.run(purge_data(config, dry_run=args.dry_run))
        if args.command == "backup":
            return backup_data(_load(args), args.target, force=args.force)
    except ConfigError as exc:
        for line in exc.lines():
            print(f"Konfigurationsfehler: {line}", file=sys.stderr)
        if len(exc.problems) > 1:
            print(f"{len(exc.problems)} Fehler in {exc.path}.", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_ERROR


def _count(number: int, one: str, many: str) -> str:
    """The count with its noun in the right number: "1 Abteilung", "3 Abteilungen"."""
    return f"{number} {one if number == 1 else many}"


def _missing_database(config: Config) -> bool:
    """Tell the admin when the configured database does not exist (for commands that must
    not create one: an empty new database would hide a wrong ``[database] path``)."""
    path = config.database.path
    if path.is_file():
        return False
    source = config.source or "der Konfiguration"
    print(
        f"Datenbank {path} nicht gefunden. Stimmt [database] path in {source}? Bei einer "
        "neuen Installation legt der erste Start des Bots (lotsenbot run) oder "
        "„lotsenbot migrate“ sie an.",
        file=sys.stderr,
    )
    return True


def print_commands(*, update_readme: bool) -> int:
    from lotsenbot.core.reference import END, START, default_reference, replace_block

    block = default_reference()
    if not update_readme:
        print(block, end="")
        return EXIT_OK
    readme = Path("README.md")
    hint = (
        "--update-readme ist für die Entwicklung gedacht und im Quellordner von lotsenbot "
        "aufzurufen; ohne die Option gibt der Befehl die Übersicht aus."
    )
    try:
        text = readme.read_text("utf-8")
    except FileNotFoundError:
        print(f"README.md nicht gefunden im Ordner {Path.cwd()}. {hint}", file=sys.stderr)
        return EXIT_CONFIG
    except (OSError, UnicodeDecodeError) as exc:
        print(f"README.md kann nicht gelesen werden ({exc}).", file=sys.stderr)
        return EXIT_ERROR
    if START not in text or END not in text:
        print(
            f"README.md im Ordner {Path.cwd()} hat keinen Bereich für die Befehlsübersicht "
            f"({START} … {END}); nichts geändert. {hint}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        readme.write_text(replace_block(text, block), "utf-8")
    except OSError as exc:
        print(f"README.md kann nicht geschrieben werden ({exc.strerror}).", file=sys.stderr)
        return EXIT_ERROR
    print("README.md aktualisiert.")
    return EXIT_OK


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


async def crypto_bootstrap(config: Config, *, reset: bool = False, restore: bool = False) -> int:
    """Set up (or replace) the bot's cross-signing identity and show the recovery key once.

    Uses the bot's own device and crypto store, so it is best run while the bot is stopped.
    Secrets are asked for interactively when there is a terminal, otherwise read from the
    environment (password) or stdin (recovery key) — never from the command line, where
    other users of the machine could see them.
    """
    import getpass

    from lotsenbot.matrix.crypto import (
        CrossSigningError,
        CrossSigningKeys,
        ForeignKeys,
        KeyFileError,
        SigningKey,
        decode_recovery_key,
    )
    from lotsenbot.matrix.transport import AuthenticationFailed, MatrixTransport

    interactive = sys.stdin.isatty()
    transport = MatrixTransport(config.matrix)
    signing = transport.cross_signing
    try:
        await transport.login()
        client = transport.client
        if client.should_upload_keys:
            await client.keys_upload()
        if not signing.password and interactive:
            signing.password = getpass.getpass(f"Passwort von {config.matrix.user_id}: ")
        keys = None
        if restore:
            text = (
                getpass.getpass("Wiederherstellungsschlüssel: ")
                if interactive
                else sys.stdin.readline()
            )
            keys = CrossSigningKeys.generate(master=SigningKey(decode_recovery_key(text)))
        held = signing.vault.public_keys()
        chain = await signing.chain()
        if not reset and not restore and chain.master and held and held["master"] == chain.master:
            chain, _ = await signing.ensure()
            print(
                f"Cross-Signing ist bereits eingerichtet (Master-Schlüssel {chain.master}); "
                f"Gerät {client.device_id} signiert: {'ja' if chain.device_signed else 'nein'}."
            )
            return EXIT_OK if chain.complete else EXIT_ERROR
        result = await signing.bootstrap(reset=reset, keys=keys)
    except AuthenticationFailed as exc:
        print(f"Anmeldung abgelehnt: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except ForeignKeys as exc:
        print(
            f"Das Konto {config.matrix.user_id} hat bereits Cross-Signing-Schlüssel "
            f"(Master {exc}), die dieser Bot nicht besitzt. Nichts geändert.\n"
            "Zum Ersetzen: lotsenbot crypto bootstrap --reset --config … (alle, die den Bot "
            "verifiziert haben, müssen ihn danach neu verifizieren), oder mit --restore den "
            "Wiederherstellungsschlüssel eingeben.",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except (CrossSigningError, KeyFileError, ValueError) as exc:
        print(f"Cross-Signing nicht eingerichtet: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, ConnectionError) as exc:
        print(f"Homeserver nicht erreichbar: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        await transport.close()
    print(
        f"Cross-Signing eingerichtet: Master-Schlüssel {result.chain.master}, "
        f"Gerät {transport.client.device_id} ist signiert."
    )
    if result.recovery_key:
        print(
            "\nWiederherstellungsschlüssel (wird nur jetzt angezeigt – bitte sicher verwahren, "
            "z. B. im Passwort-Tresor der Verwaltung):\n\n"
            f"    {result.recovery_key}\n\n"
            "Damit lässt sich die Identität des Bots nach einem Verlust des Speicherordners "
            "mit „lotsenbot crypto bootstrap --restore“ wiederherstellen, ohne dass alle den "
            "Bot neu verifizieren müssen."
        )
    return EXIT_OK


def route_requests(args: argparse.Namespace) -> int:
    """Route texts the way the bot would, without a database: for tuning department texts.

    FAQ hints are left out (they need the bot's database); the requester's department can
    be given with ``--department``. Reading stdin line by line keeps the output in step
    with the input, so a coordinator can pipe in a list of typical requests.
    """
    import json

    from lotsenbot.tickets.routing import TopicRouter

    config = _load(args)
    own = args.department
    if own is not None and config.department(own) is None:
        known = ", ".join(d.id for d in config.departments) or "keine"
        print(f"Unbekannte Abteilung „{own}“ (bekannt: {known})", file=sys.stderr)
        return EXIT_ERROR
    router = TopicRouter(config.departments)
    texts = [args.text] if args.text is not None else (line.rstrip("\r\n") for line in sys.stdin)
    for text in texts:
        decision = router.route(text, (), own)
        if args.json:
            result = {"decision": decision.decision, "department": decision.department,
                      "scores": decision.scores}  # fmt: skip
            print(json.dumps(result, ensure_ascii=False), flush=True)
            continue
        ranked = sorted(decision.scores.items(), key=lambda item: -item[1])
        scores = ", ".join(f"{dep}={score:.2f}" for dep, score in ranked)
        target = decision.department or "Koordination (Triage)"
        print(f"{target} [{decision.reason}] – {scores}", flush=True)
    return EXIT_OK


async def faq_command(config: Config, args: argparse.Namespace) -> int:
    """``lotsenbot faq import|export|ask``: work on the database directly, no Matrix login.

    Safe while the bot runs: writes are short transactions, and the bot notices the changed
    knowledge base (``faq_state``) and rebuilds its index before the next question.
    """
    import json

    from lotsenbot.core.clock import Clock
    from lotsenbot.core.context import audit
    from lotsenbot.faq import store
    from lotsenbot.faq.feature import make_index
    from lotsenbot.faq.kb import dump_csv, dump_yaml, load_file, render_issues
    from lotsenbot.storage.db import Database
    from lotsenbot.storage.migrate import SchemaTooNew, migrate
    from lotsenbot.texts import Catalogue

    path: Path | None = getattr(args, "file", None)
    entries = []
    if args.faq_command == "import":
        assert path is not None
        # Validate before touching the database: a broken file changes nothing at all.
        result = load_file(path, {department.id for department in config.departments})
        if not result.ok:
            for line in render_issues(result.errors, config.bot.language):
                print(line, file=sys.stderr)
            summary = Catalogue(config.bot.language)("faq.import.summary", count=len(result.errors))
            print(summary, file=sys.stderr)
            return EXIT_CONFIG  # 2: the input must be fixed, like a configuration problem
        entries = result.entries
    suffix = path.suffix.lower() if path is not None else ""
    if args.faq_command == "export" and suffix not in (".yaml", ".yml", ".csv"):
        print(f"Unbekanntes Dateiformat „{suffix}“: .yaml, .yml oder .csv", file=sys.stderr)
        return EXIT_CONFIG
    if _missing_database(config):
        return EXIT_ERROR
    index = make_index(config) if args.faq_command == "ask" else None
    db = Database(config.database.path)
    await db.open()
    try:
        await migrate(db)
        if args.faq_command == "import":
            assert path is not None
            now, actor = Clock().now(), _cli_actor()
            async with db.transaction() as conn:
                outcome = await store.import_entries(
                    conn, entries, replace=args.replace, now=now, actor=actor
                )
                if outcome.touched:
                    details = {"file": path.name, "replace": args.replace, "new": outcome.new,
                               "changed": outcome.changed, "removed": outcome.removed,
                               "old": outcome.old}  # fmt: skip
                    await audit(conn, now, actor, "faq.import", path.name, details)
            print(
                f"{path.name}: {len(outcome.new)} neu, {len(outcome.changed)} geändert, "
                f"{len(outcome.unchanged)} unverändert, {len(outcome.removed)} entfernt."
            )
            return EXIT_OK
        all_entries = await store.all_entries(db.conn)
        if args.faq_command == "export":
            assert path is not None
            text = dump_csv(all_entries) if suffix == ".csv" else dump_yaml(all_entries)
            try:
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                print(f"{path}: kann nicht geschrieben werden ({exc.strerror})", file=sys.stderr)
                return EXIT_ERROR
            print(f"{_count(len(all_entries), 'Eintrag', 'Einträge')} nach {path} exportiert.")
            return EXIT_OK
    except SchemaTooNew as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ERROR
    finally:
        await db.close()
    # ask: the same search as the bot; stdin mode answers line by line, in order.
    assert index is not None
    index.build(all_entries)
    if not all_entries:
        print("Die Wissensdatenbank ist leer: zuerst „lotsenbot faq import“.", file=sys.stderr)
    questions = [args.question] if args.question is not None else (
        line.rstrip("\r\n") for line in sys.stdin
    )  # fmt: skip
    for question in questions:
        found = index.search(question, limit=3)
        if args.json:
            data = {"question": question, "decision": found.decision,
                    "results": [{"id": i, "score": s} for i, s in found.results]}  # fmt: skip
            print(json.dumps(data, ensure_ascii=False), flush=True)
            continue
        ranked = ", ".join(f"{i} ({s:.2f})" for i, s in found.results) or "–"
        print(f"{found.decision}: {ranked}", flush=True)
    return EXIT_OK


def _cli_actor() -> str:
    """Who ran the command, for the audit log."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


async def purge_data(config: Config, *, dry_run: bool) -> int:
    """Apply the retention periods of ``[privacy]`` now (the bot does it nightly at 03:30),
    or with ``dry_run`` only count what would go, per feature and category."""
    from lotsenbot.app import default_features
    from lotsenbot.core.clock import Clock
    from lotsenbot.core.context import audit
    from lotsenbot.privacy.feature import all_handlers, purge_all
    from lotsenbot.storage.db import Database
    from lotsenbot.storage.migrate import current_version, discover

    if _missing_database(config):
        return EXIT_ERROR
    db = Database(config.database.path)
    await db.open()
    try:
        known = max((m.version for m in discover()), default=0)
        if await current_version(db) != known:
            print("Die Datenbank ist nicht auf dem Stand dieser Version; bitte zuerst "
                  "„lotsenbot migrate“ ausführen.", file=sys.stderr)  # fmt: skip
            return EXIT_ERROR
        handlers = all_handlers({f.name: f for f in default_features()})
        now = Clock().now()
        async with db.transaction() as conn:
            counts = await purge_all(conn, handlers, now, config.privacy, dry_run)
            if not dry_run:
                await audit(conn, now, "cli:purge", "privacy.purge", None, counts)
    finally:
        await db.close()
    rows = [(f"{feature}.{category}", n) for feature, categories in counts.items()
            for category, n in sorted(categories.items())]  # fmt: skip
    print("Probelauf – nichts gelöscht. Fällig wären:" if dry_run else "Gelöscht/anonymisiert:")
    width = max((len(name) for name, _ in rows), default=10)
    for name, count in rows:
        print(f"  {name:<{width}}  {count:>7}")
    print(f"  {'Summe':<{width}}  {sum(n for _, n in rows):>7}")
    return EXIT_OK


def backup_data(config: Config, target: Path, *, force: bool) -> int:
    """Copy the database consistently while the bot runs (see docs/betrieb.md)."""
    from lotsenbot.privacy.backup import BackupError, backup_database

    if _missing_database(config):
        return EXIT_ERROR
    try:
        result = backup_database(config.database.path, target, force=force)
    except BackupError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ERROR
    print(
        f"Gesichert: {result.path} ({result.size / 1_048_576:.1f} MiB, Schema-Version "
        f"{result.schema_version}, Integrität geprüft, {result.seconds:.1f} s). Den "
        "store-Ordner gesondert sichern."
    )
    return EXIT_OK
