"""``lotsenbot demo`` and ``lotsenbot chat``: try everything on one machine, no Element needed.

The demo starts a throwaway Synapse on loopback in ``.demo/``, registers the bot and five
demo accounts (a coordinator, two pilots in two departments, a staff member), writes a
config file for the bot, loads the starter knowledge base, runs the bot and prints the
logins. Ctrl-C stops the bot and the homeserver; nothing is left running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from lotsenbot.config import load_config
from lotsenbot.devserver import Synapse, free_port

log = logging.getLogger(__name__)

ACCOUNTS_FILE = "accounts.json"
BOT = "lotsenbot"

# localpart → (display name, role description, department or None)
DEMO_PEOPLE: dict[str, tuple[str, str, str | None]] = {
    "koordination": ("Kim Koordination", "Koordinatorin des Lotsen-Netzwerks", None),
    "lotsin-it": ("Ida Lotsin (IT)", "Digitale Lotsin, IT-Service", "it"),
    "lotse-buergeramt": ("Bernd Lotse (Bürgeramt)", "Digitaler Lotse, Bürgeramt", "buergeramt"),
    "mitarbeiterin": ("Maria Mitarbeiterin", "Mitarbeiterin (Sachbearbeitung)", None),
    "mitarbeiter": ("Max Mitarbeiter", "Mitarbeiter (Sachbearbeitung)", None),
}

DEMO_DEPARTMENTS: list[dict[str, Any]] = [
    {"id": "it", "name": "IT-Service", "specialist": True,
     "description": "Arbeitsplatz-IT, Drucker, Konten und Passwörter, VPN und Homeoffice, "
                    "Software und Fachverfahren.",
     "keywords": ["Drucker", "Passwort", "VPN", "Laptop", "Software", "Konto", "Monitor",
                  "Headset", "Outlook", "Zugang"]},
    {"id": "infosec", "name": "Informationssicherheit", "specialist": True,
     "description": "Sicherheitsvorfälle, Phishing, Viren und verdächtige E-Mails.",
     "keywords": ["Phishing", "Virus", "Sicherheitsvorfall", "Spam", "Schadsoftware"]},
    {"id": "datenschutz", "name": "Datenschutz", "specialist": True,
     "description": "Fragen zur DSGVO, Verarbeitungsverzeichnis, Auskunftsersuchen.",
     "keywords": ["DSGVO", "personenbezogen", "Auskunft", "Einwilligung", "Löschung"]},
    {"id": "digitalisierung", "name": "Digitalisierungsbüro", "specialist": True,
     "description": "OZG-Onlinedienste, E-Akte, Digitalisierungsstrategie und das "
                    "Lotsen-Netzwerk.",
     "keywords": ["OZG", "Onlinedienst", "E-Akte", "DMS", "Strategie", "Lotse"]},
    {"id": "buergeramt", "name": "Bürgeramt", "specialist": False,
     "description": "Meldewesen, Ausweise und Pässe, Terminvergabe.",
     "keywords": ["Meldebescheinigung", "Personalausweis", "Reisepass", "Termin"]},
]  # fmt: skip


def _password(folder: Path) -> str:
    path = folder / "password"
    if path.exists():
        return path.read_text("utf-8").strip()
    value = "demo-" + secrets.token_hex(4)
    path.write_text(value, "utf-8")
    return value


def _toml(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON strings and lists are valid TOML


def write_demo_config(folder: Path, url: str, server_name: str, password: str) -> Path:
    def uid(localpart: str) -> str:
        return f"@{localpart}:{server_name}"

    lines = [
        "# Von `lotsenbot demo` erzeugt – nur für die lokale Demo.",
        "[matrix]",
        f"homeserver = {_toml(url)}",
        f"user_id = {_toml(uid(BOT))}",
        f"password = {_toml(password)}",
        'store_path = "bot-store"',
        f"allowed_servers = {_toml([server_name])}",
        "",
        "[database]",
        'path = "lotsenbot.db"',
        "",
        "[bot]",
        f"coordinators = {_toml([uid('koordination')])}",
        "",
        "[tickets]",
        'claim_within = "4h"',
        'answer_within = "2d"',
        "",
        "[meetups]",
        'reminders = ["24h", "1h", "2m"]',
        "",
    ]
    for department in DEMO_DEPARTMENTS:
        pilots = [uid(p) for p, (_, _, dep) in DEMO_PEOPLE.items() if dep == department["id"]]
        lines.append("[[departments]]")
        for key, value in department.items():
            lines.append(f"{key} = {_toml(value)}")  # JSON true/false/strings/lists are TOML
        lines.append(f"pilots = {_toml(pilots)}")
        lines.append("")
    path = folder / "config.toml"
    path.write_text("\n".join(lines), "utf-8")
    return path


async def prepare(folder: Path, port: int) -> tuple[Synapse, Path, str]:
    """Start the homeserver, create the accounts and the bot's config."""
    folder.mkdir(parents=True, exist_ok=True)
    server = Synapse(folder / "synapse", port=free_port(port))
    await server.start()
    password = _password(folder)
    await server.register(BOT, password, displayname="Lotsenbot")
    for localpart, (name, _, _) in DEMO_PEOPLE.items():
        await server.register(localpart, password, displayname=name)
    (folder / ACCOUNTS_FILE).write_text(
        json.dumps({"homeserver": server.url, "server_name": server.server_name,
                    "bot": server.user_id(BOT)}),
        "utf-8",
    )  # fmt: skip
    return server, write_demo_config(folder, server.url, server.server_name, password), password


async def run_demo(folder: Path, port: int) -> int:
    from lotsenbot.app import App
    from lotsenbot.logs import setup_logging

    folder = folder.resolve()
    server, config_path, password = await prepare(folder, port)
    config = load_config(config_path)
    setup_logging(config.logging.model_copy(update={"level": "WARNING"}))
    app = App(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.stop)
    try:
        await app.start()
        await _load_starter_faq(app)
        _print_banner(server, password, folder)
        await app.run()
    finally:
        await server.stop()
    print("\nDemo beendet. Homeserver und Bot sind gestoppt.")
    return 0


async def _load_starter_faq(app: Any) -> None:
    """Load the starter knowledge base when the FAQ feature is part of this build."""
    faq = app.services.feature("faq") if app.services else None
    loader = getattr(faq, "load_starter_kb", None)
    if loader is not None:
        count = await loader()
        print(f"Wissensdatenbank: {count} Einträge geladen.")


def _print_banner(server: Synapse, password: str, folder: Path) -> None:
    print()
    print("lotsenbot-Demo läuft.")
    print(f"  Homeserver:  {server.url}   (nur auf diesem Rechner erreichbar)")
    print(f"  Bot:         {server.user_id(BOT)}")
    print(f"  Passwort aller Demo-Konten: {password}")
    print("  Demo-Konten:")
    for localpart, (_, role, _) in DEMO_PEOPLE.items():
        print(f"    {server.user_id(localpart):<34} {role}")
    print()
    print("  Im Terminal chatten (zweites Terminal):")
    print("    .venv/bin/lotsenbot chat --user mitarbeiterin")
    print("  Oder mit Element: Homeserver-URL oben eintragen, mit einem Demo-Konto anmelden")
    print("  und dem Bot eine Direktnachricht schreiben, z. B. „!hilfe“.")
    print(f"  Daten liegen in {folder.name}/ – Strg+C beendet alles.")
    print(flush=True)


async def run_demo_chat(folder: Path, user: str) -> int:
    from lotsenbot.chat import run_chat

    folder = folder.resolve()
    accounts_path = folder / ACCOUNTS_FILE
    if not accounts_path.exists() or Synapse.running_url(folder / "synapse") is None:
        print("Die Demo läuft nicht. Bitte zuerst in einem anderen Terminal `make demo` starten.",
              file=sys.stderr)  # fmt: skip
        return 1
    if user not in DEMO_PEOPLE:
        print(f"Unbekanntes Demo-Konto „{user}“. Möglich: {', '.join(DEMO_PEOPLE)}",
              file=sys.stderr)  # fmt: skip
        return 2
    accounts = json.loads(accounts_path.read_text("utf-8"))
    user_id = f"@{user}:{accounts['server_name']}"
    # With a key store the terminal client reads the encrypted direct chats the bot opens
    # (a pilot's notifications) and keeps its device across runs.
    await run_chat(accounts["homeserver"], user_id, _password(folder), accounts["bot"],
                   store_path=folder / "chat-store" / user)  # fmt: skip
    return 0
