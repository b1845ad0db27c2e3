"""`lotsenbot chat`: talk to the demo bot from a terminal, as one of the demo accounts.

Newcomers should be able to try the bot without installing Element. This is a deliberately
small Matrix client: it finds (or opens) the direct chat with the bot, prints what the bot
says, sends what you type, and offers reactions so reaction-driven features can be tried.

It is a developer tool, so its German texts live in `TEXTE` at the top of this file instead
of the bot's message catalogue (which is for what the *bot* says).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote
from zoneinfo import ZoneInfo

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinError,
    LoginResponse,
    MatrixRoom,
    MegolmEvent,
    RoomCreateError,
    RoomMessage,
    RoomPreset,
    RoomSendError,
    SyncError,
)

__all__ = ["TEXTE", "ChatSession", "parse_command", "run_chat"]

# --------------------------------------------------------------------------- texts (German)

TEXTE: dict[str, str] = {
    "willkommen": (
        "Angemeldet als {user}. Direktchat mit {bot}: {room}\n"
        "Schreiben Sie einfach los (z. B. „!hilfe“). /hilfe zeigt die Befehle dieses Clients."
    ),
    "hilfe": (
        "Befehle dieses Terminal-Clients:\n"
        "  /hilfe            diese Übersicht\n"
        "  /react N 👍        auf die N-letzte Nachricht des Bots reagieren (N=1: die neueste)\n"
        "  /antworte N Text  auf die N-letzte Nachricht des Bots antworten (Antwortfunktion)\n"
        "  /room             beigetretene Räume auflisten\n"
        "  /quit             beenden (ebenso Strg+C oder Strg+D)\n"
        "Eine Zeile, die mit \\ endet, wird in der nächsten Zeile fortgesetzt.\n"
        "Befehle an den Bot beginnen mit ! (z. B. !hilfe). //text sendet „/text“ wörtlich."
    ),
    "prompt": "Sie> ",
    "prompt_weiter": "...> ",
    "anmeldung_fehlgeschlagen": "Anmeldung fehlgeschlagen: {fehler}",
    "sync_fehlgeschlagen": "Verbindung zum Homeserver fehlgeschlagen: {fehler}",
    "raum_erstellt": "Neuer Direktchat mit {bot} angelegt.",
    "raum_fehler": "Direktchat konnte nicht angelegt werden: {fehler}",
    "warte_auf_bot": "Warte, bis {bot} dem Chat beitritt …",
    "bot_fehlt": "{bot} ist noch nicht beigetreten; Nachrichten werden trotzdem zugestellt.",
    "verlauf": "Letzte Nachrichten des Bots:",
    "senden_fehler": "Senden fehlgeschlagen: {fehler}",
    "react_nutzung": "Nutzung: /react N EMOJI, z. B. /react 1 👍",
    "react_keine": "Es gibt keine {n}-letzte Nachricht des Bots (bisher {anzahl}).",
    "react_ok": "Reaktion {key} auf: {auszug}",
    "antwort_nutzung": "Nutzung: /antworte N TEXT, z. B. /antworte 1 Es ist ein HP-Drucker.",
    "antwort_ok": "Antwort auf: {auszug}",
    "raeume_kopf": "Beigetretene Räume:",
    "raum_zeile": "  {markierung} {name}  ({room_id}, {anzahl} Mitglieder)",
    "unbekannt": "Unbekannter Befehl {befehl}. /hilfe zeigt die Befehle.",
    "nicht_lesbar": "[verschlüsselte Nachricht, nicht lesbar]",
    "tschuess": "Auf Wiedersehen!",
}

TIMEZONE = ZoneInfo("Europe/Berlin")
BOT_JOIN_WAIT_SECONDS = 15.0
HISTORY_LINES = 5
SYNC_TIMEOUT_MS = 30_000


# --------------------------------------------------------------------------- input parsing


@dataclass(frozen=True)
class Command:
    """A parsed input line: either text to send or a client command with its argument."""

    name: str  # "send", "quit", "help", "react", "reply", "rooms", "unknown", "empty"
    text: str = ""


def parse_command(line: str) -> Command:
    """Decide what a (complete, possibly multi-line) input means.

    Only `/` is the client's: the bot's own commands start with `!`, so they pass through.
    """
    stripped = line.strip()
    if not stripped:
        return Command("empty")
    if stripped.startswith("//"):
        return Command("send", line.strip()[1:])
    if not stripped.startswith("/"):
        return Command("send", line.rstrip())
    word, _, rest = stripped.partition(" ")
    word = word.lower()
    if word in ("/quit", "/exit", "/ende"):
        return Command("quit")
    if word in ("/hilfe", "/help"):
        return Command("help")
    if word == "/react":
        return Command("react", rest.strip())
    if word in ("/antworte", "/antwort", "/reply"):
        return Command("reply", rest.strip())
    if word in ("/room", "/rooms", "/raeume", "/räume"):
        return Command("rooms")
    return Command("unknown", word)


class LineJoiner:
    """Collects physical lines into logical input; a trailing backslash continues."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    @property
    def continuing(self) -> bool:
        return bool(self._parts)

    def feed(self, line: str) -> str | None:
        """Returns the complete input once a line does not end with a backslash."""
        line = line.rstrip("\r\n")
        if line.endswith("\\"):
            self._parts.append(line[:-1])
            return None
        self._parts.append(line)
        complete = "\n".join(self._parts)
        self._parts = []
        return complete


def _start_line_reader(
    stream: TextIO, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]
) -> None:
    """Read lines in a daemon thread: blocking `readline` works for ttys, pipes and files
    alike, and a daemon thread never keeps the process alive after `/quit`."""

    def pump() -> None:
        try:
            for line in iter(stream.readline, ""):
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="chat-stdin", daemon=True).start()


# --------------------------------------------------------------------------- the session


@dataclass
class BotMessage:
    """A message from the bot, remembered so `/react N` and `/antworte N` find it (any room)."""

    room_id: str
    event_id: str
    body: str


class ChatSession:
    """One logged-in terminal conversation with the bot."""

    def __init__(
        self,
        client: AsyncClient,
        bot_user_id: str,
        write: Callable[[str], None],
        *,
        interactive: bool,
    ) -> None:
        self.client = client
        self.bot_user_id = bot_user_id
        self.write = write
        self.interactive = interactive
        self.room_id: str | None = None
        self.bot_messages: list[BotMessage] = []
        self.prompt = TEXTE["prompt"]
        self._live = False

    # ----------------------------------------------------------------- output

    def show(self, text: str) -> None:
        self.write(text + "\n")

    def show_prompt(self) -> None:
        if self.interactive:
            self.write(self.prompt)

    def format_message(self, room: MatrixRoom, sender: str, body: str, timestamp_ms: int) -> str:
        when = datetime.fromtimestamp(timestamp_ms / 1000, TIMEZONE).strftime("%H:%M")
        name = room.user_name(sender) or sender
        where = "" if room.room_id == self.room_id else f" [{room.display_name}]"
        first, *rest = body.splitlines() or [""]
        lines = [f"[{when}]{where} {name}: {first}"]
        lines += [f"        {line}" for line in rest]
        return "\n".join(lines)

    async def on_message(self, room: MatrixRoom, event: RoomMessage) -> None:
        if event.sender == self.client.user_id:
            return
        body = str(event.source.get("content", {}).get("body", ""))
        if event.sender == self.bot_user_id:
            self.bot_messages.append(BotMessage(room.room_id, event.event_id, body))
        if not self._live:
            return
        if self.interactive:
            self.write("\r")
        self.show(self.format_message(room, event.sender, body, event.server_timestamp))
        self.show_prompt()

    async def on_undecryptable(self, room: MatrixRoom, event: MegolmEvent) -> None:
        if self._live:
            message = self.format_message(
                room, event.sender, TEXTE["nicht_lesbar"], event.server_timestamp
            )
            self.show(message)
            self.show_prompt()

    # ----------------------------------------------------------------- the direct chat

    async def find_or_create_dm(self) -> str:
        """Reuse the existing direct chat with the bot; only open a new one if there is none.

        Order: rooms listed for the bot in `m.direct`, then any joined room whose members are
        exactly the two of us, then a pending invite from the bot, else a new room.
        """
        me = self.client.user_id
        direct = await self._account_data("m.direct") or {}
        for room_id in direct.get(self.bot_user_id, []):
            room = self.client.rooms.get(room_id)
            if room is not None and self.bot_user_id in room.users:
                return str(room_id)
        for room_id, room in self.client.rooms.items():
            if set(room.users) == {me, self.bot_user_id}:
                await self._remember_direct(direct, room_id)
                return str(room_id)
        for room_id, room in self.client.invited_rooms.items():
            if room.inviter == self.bot_user_id:
                joined = await self.client.join(room_id)
                if not isinstance(joined, JoinError):
                    await self._remember_direct(direct, room_id)
                    return str(room_id)
        created = await self.client.room_create(
            is_direct=True,
            invite=[self.bot_user_id],
            preset=RoomPreset.trusted_private_chat,
        )
        if isinstance(created, RoomCreateError):
            raise ChatError(TEXTE["raum_fehler"].format(fehler=created.message))
        self.show(TEXTE["raum_erstellt"].format(bot=self.bot_user_id))
        await self._remember_direct(direct, created.room_id)
        return str(created.room_id)

    async def wait_for_bot(self, timeout: float) -> None:
        """Give the bot a moment to accept a fresh invite so the first answer is not lost."""
        assert self.room_id is not None
        deadline = asyncio.get_running_loop().time() + timeout
        announced = False
        while True:
            room = self.client.rooms.get(self.room_id)
            if (
                room is not None
                and self.bot_user_id in room.users
                and self.bot_user_id not in room.invited_users
            ):
                return
            if not announced:
                self.show(TEXTE["warte_auf_bot"].format(bot=self.bot_user_id))
                announced = True
            if asyncio.get_running_loop().time() > deadline:
                self.show(TEXTE["bot_fehlt"].format(bot=self.bot_user_id))
                return
            await asyncio.sleep(0.2)

    async def _remember_direct(self, direct: dict[str, Any], room_id: str) -> None:
        rooms = list(direct.get(self.bot_user_id, []))
        if room_id not in rooms:
            direct[self.bot_user_id] = [*rooms, room_id]
            await self._put_account_data("m.direct", direct)

    def _account_path(self, event_type: str) -> str:
        return (
            f"/_matrix/client/v3/user/{quote(self.client.user_id, safe='')}"
            f"/account_data/{quote(event_type, safe='')}"
        )

    async def _account_data(self, event_type: str) -> dict[str, Any] | None:
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        response = await self.client.send("GET", self._account_path(event_type), None, headers)
        if response.status != 200:
            response.release()
            return None
        data = await response.json()
        return data if isinstance(data, dict) else None

    async def _put_account_data(self, event_type: str, content: Mapping[str, Any]) -> None:
        headers = {
            "Authorization": f"Bearer {self.client.access_token}",
            "Content-Type": "application/json",
        }
        response = await self.client.send(
            "PUT", self._account_path(event_type), json.dumps(dict(content)), headers
        )
        response.release()

    # ----------------------------------------------------------------- commands

    async def handle(self, command: Command) -> bool:
        """Carry out one input; False means the user wants to leave."""
        if command.name == "quit":
            return False
        if command.name == "help":
            self.show(TEXTE["hilfe"])
        elif command.name == "send":
            await self.send_text(command.text)
        elif command.name == "react":
            await self.react(command.text)
        elif command.name == "reply":
            await self.reply(command.text)
        elif command.name == "rooms":
            self.list_rooms()
        elif command.name == "unknown":
            self.show(TEXTE["unbekannt"].format(befehl=command.text))
        return True

    async def send_text(self, body: str) -> None:
        assert self.room_id is not None
        response = await self.client.room_send(
            self.room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True,
        )
        if isinstance(response, RoomSendError):
            self.show(TEXTE["senden_fehler"].format(fehler=response.message))

    def _recent(self, argument: str, usage: str) -> tuple[BotMessage, str] | None:
        """The N-last bot message named by ``N rest`` and the rest, or None (and why)."""
        number, _, rest = argument.partition(" ")
        rest = rest.strip()
        if not number.isdigit() or int(number) < 1 or not rest:
            self.show(TEXTE[usage])
            return None
        n = int(number)
        if n > len(self.bot_messages):
            self.show(TEXTE["react_keine"].format(n=n, anzahl=len(self.bot_messages)))
            return None
        return self.bot_messages[-n], rest

    async def react(self, argument: str) -> None:
        found = self._recent(argument, "react_nutzung")
        if found is None:
            return
        target, key = found
        content = {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": target.event_id, "key": key}
        }
        response = await self.client.room_send(
            target.room_id, "m.reaction", content, ignore_unverified_devices=True
        )
        if isinstance(response, RoomSendError):
            self.show(TEXTE["senden_fehler"].format(fehler=response.message))
            return
        self.show(TEXTE["react_ok"].format(key=key, auszug=_excerpt(target)))

    async def reply(self, argument: str) -> None:
        """Answer a bot message with the reply relation, as Element's "Antworten" does (no
        quoted fallback: the Matrix spec dropped it, and the bot strips it anyway)."""
        found = self._recent(argument, "antwort_nutzung")
        if found is None:
            return
        target, text = found
        content = {
            "msgtype": "m.text",
            "body": text,
            "m.relates_to": {"m.in_reply_to": {"event_id": target.event_id}},
        }
        response = await self.client.room_send(
            target.room_id, "m.room.message", content, ignore_unverified_devices=True
        )
        if isinstance(response, RoomSendError):
            self.show(TEXTE["senden_fehler"].format(fehler=response.message))
            return
        self.show(TEXTE["antwort_ok"].format(auszug=_excerpt(target)))

    def list_rooms(self) -> None:
        self.show(TEXTE["raeume_kopf"])
        for room_id, room in sorted(self.client.rooms.items(), key=lambda r: r[1].display_name):
            self.show(
                TEXTE["raum_zeile"].format(
                    markierung="*" if room_id == self.room_id else "-",
                    name=room.display_name,
                    room_id=room_id,
                    anzahl=room.joined_count,
                )
            )

    def go_live(self) -> None:
        """From now on incoming messages are printed; before, they were only history."""
        self._live = True


class ChatError(RuntimeError):
    """A problem the user should read as a sentence, not as a traceback."""


# --------------------------------------------------------------------------- entry point


async def run_chat(
    homeserver: str,
    user_id: str,
    password: str,
    bot_user_id: str,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    store_path: Path | None = None,
) -> None:
    """Chat with the bot until /quit, end of input or Ctrl-C.

    `stdin`/`stdout` default to the terminal; tests pass pipes. With `store_path` the client
    keeps its device (and encryption keys) there across runs and can read encrypted chats;
    without it, every run is a fresh device that is logged out again at the end.
    """
    in_stream = stdin if stdin is not None else sys.stdin
    out_stream = stdout if stdout is not None else sys.stdout

    def write(text: str) -> None:
        out_stream.write(text)
        out_stream.flush()

    client = _make_client(homeserver, user_id, store_path)
    session = ChatSession(client, bot_user_id, write, interactive=_is_tty(in_stream))
    client.add_event_callback(session.on_message, RoomMessage)
    client.add_event_callback(session.on_undecryptable, MegolmEvent)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    sigint_installed = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        sigint_installed = True
    sync_task: asyncio.Task[None] | None = None
    fresh_login = False
    try:
        fresh_login = await _log_in(client, password, store_path)
        first = await client.sync(timeout=0, full_state=True)
        if isinstance(first, SyncError):
            raise ChatError(TEXTE["sync_fehlgeschlagen"].format(fehler=first.message))
        session.room_id = await session.find_or_create_dm()
        sync_task = asyncio.create_task(client.sync_forever(timeout=SYNC_TIMEOUT_MS))
        await session.wait_for_bot(BOT_JOIN_WAIT_SECONDS)

        session.show(
            TEXTE["willkommen"].format(user=user_id, bot=bot_user_id, room=session.room_id)
        )
        _show_history(session)
        session.go_live()
        await _input_loop(session, in_stream, stop)
        session.show(TEXTE["tschuess"])
    except ChatError as error:
        session.show(str(error))
    finally:
        if sigint_installed:
            loop.remove_signal_handler(signal.SIGINT)
        if sync_task is not None:
            sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sync_task
        if fresh_login and store_path is None and client.access_token:
            with contextlib.suppress(Exception):
                await client.logout()
        await client.close()


def _make_client(homeserver: str, user_id: str, store_path: Path | None) -> AsyncClient:
    encryption = store_path is not None
    if store_path is not None:
        store_path.mkdir(parents=True, exist_ok=True)
    config = AsyncClientConfig(
        encryption_enabled=encryption,
        store_sync_tokens=encryption,
        max_timeout_retry_wait_time=5.0,
    )
    return AsyncClient(
        homeserver,
        user_id,
        store_path=str(store_path) if store_path is not None else "",
        config=config,
    )


async def _log_in(client: AsyncClient, password: str, store_path: Path | None) -> bool:
    """Reuse the saved device when there is a store, else log in; True if a new login."""
    session_file = store_path / "session.json" if store_path is not None else None
    if session_file is not None and session_file.exists():
        saved = json.loads(session_file.read_text(encoding="utf-8"))
        client.restore_login(client.user_id, saved["device_id"], saved["access_token"])
        probe = await client.whoami()
        if getattr(probe, "user_id", None) == client.user_id:
            return False
    response = await client.login(password, device_name="lotsenbot chat")
    if not isinstance(response, LoginResponse):
        raise ChatError(TEXTE["anmeldung_fehlgeschlagen"].format(fehler=response.message))
    if session_file is not None:
        session_file.write_text(
            json.dumps({"device_id": response.device_id, "access_token": response.access_token}),
            encoding="utf-8",
        )
        session_file.chmod(0o600)
    return True


def _show_history(session: ChatSession) -> None:
    recent = session.bot_messages[-HISTORY_LINES:]
    if not recent:
        return
    session.show(TEXTE["verlauf"])
    for index, message in enumerate(recent):
        number = len(recent) - index
        first = message.body.splitlines()[0] if message.body else ""
        session.show(f"  ({number}) {first}")


async def _input_loop(session: ChatSession, stream: TextIO, stop: asyncio.Event) -> None:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    _start_line_reader(stream, asyncio.get_running_loop(), queue)
    joiner = LineJoiner()
    session.show_prompt()
    while not stop.is_set():
        getter = asyncio.ensure_future(queue.get())
        stopper = asyncio.ensure_future(stop.wait())
        done, pending = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if getter not in done:
            break
        line = getter.result()
        if line is None:  # end of input (Ctrl-D)
            break
        complete = joiner.feed(line)
        if complete is None:
            session.prompt = TEXTE["prompt_weiter"]
            session.show_prompt()
            continue
        session.prompt = TEXTE["prompt"]
        if not await session.handle(parse_command(complete)):
            break
        session.show_prompt()
    if session.interactive:
        session.write("\n")


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _excerpt(message: BotMessage) -> str:
    return message.body.splitlines()[0][:60] if message.body else ""
