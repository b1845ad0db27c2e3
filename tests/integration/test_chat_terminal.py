"""`lotsenbot chat` against a real homeserver, with a scripted stand-in for the bot."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from lotsenbot.chat import run_chat
from lotsenbot.devserver import Synapse
from tests.integration.conftest import MakeUser, RegisterUser
from tests.integration.helpers import MatrixUser


class Screen:
    """Collects what the chat client prints, so the test can wait for a line to appear."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self._changed = asyncio.Event()

    def write(self, text: str) -> int:
        self.parts.append(text)
        self._changed.set()
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def wait_for(self, needle: str, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.text:
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Terminal:
    screen: Screen
    keyboard: TextIO
    task: asyncio.Task[None]
    typed: list[str] = field(default_factory=list)

    def type(self, line: str) -> None:
        self.keyboard.write(line + "\n")
        self.keyboard.flush()

    def room_id(self) -> str:
        match = re.search(r"Direktchat mit \S+: (!\S+)", self.screen.text)
        assert match, self.screen.text
        return match.group(1)


@asynccontextmanager
async def terminal(
    synapse: Synapse, user_id: str, password: str, bot_id: str, store_path: Path | None = None
) -> AsyncIterator[Terminal]:
    read_fd, write_fd = os.pipe()
    keyboard = os.fdopen(write_fd, "w", encoding="utf-8")
    stdin = os.fdopen(read_fd, "r", encoding="utf-8")
    screen = Screen()
    chat = run_chat(
        synapse.url, user_id, password, bot_id,
        stdin=stdin, stdout=screen, store_path=store_path,  # type: ignore[arg-type]
    )  # fmt: skip
    task = asyncio.create_task(chat)
    try:
        yield Terminal(screen, keyboard, task)
    finally:
        if not keyboard.closed:
            keyboard.close()  # end of input: the client leaves on its own
        await asyncio.wait_for(task, timeout=15)
        stdin.close()


async def test_chat_round_trip_reaction_and_reuse_of_the_dm(
    synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    bot: MatrixUser = await make_user("demobot")
    person = await register_user("mitarbeiterin")

    async with terminal(synapse, person.user_id, person.password, bot.user_id) as term:
        await term.screen.wait_for("Angemeldet als")
        room_id = term.room_id()
        assert room_id in bot.client.rooms or await _joined(bot, room_id)

        bot.mark()
        term.type("!hilfe")
        question = await bot.wait_for_message(room_id=room_id, sender=person.user_id)
        assert question.body == "!hilfe"
        assert question.msgtype == "m.text"

        term.type("Zeile eins\\")
        term.type("Zeile zwei")
        multi = await bot.wait_for_message(room_id=room_id, sender=person.user_id)
        assert multi.body == "Zeile eins\nZeile zwei"

        answer_id = await bot.send(
            room_id, "m.room.message", {"msgtype": "m.notice", "body": "Hier ist die Hilfe."}
        )
        await term.screen.wait_for("Hier ist die Hilfe.")
        assert re.search(r"\[\d\d:\d\d\] .+: Hier ist die Hilfe\.", term.screen.text)
        await bot.send(room_id, "m.room.message", {"msgtype": "m.notice", "body": "Zweite"})
        await term.screen.wait_for("Zweite")

        bot.mark()
        term.type("/react 2 👍")
        reaction = await bot.wait_for_event(room_id=room_id, event_type="m.reaction")
        assert reaction.content["m.relates_to"] == {
            "rel_type": "m.annotation",
            "event_id": answer_id,
            "key": "👍",
        }

        term.type("/react 9 👍")
        await term.screen.wait_for("keine 9-letzte Nachricht")
        bot.mark()
        term.type("/antworte 2 Danke für die Hilfe")
        reply = await bot.wait_for_message(room_id=room_id, sender=person.user_id)
        assert reply.body == "Danke für die Hilfe"
        assert reply.content["m.relates_to"] == {"m.in_reply_to": {"event_id": answer_id}}
        term.type("/antworte 1")
        await term.screen.wait_for("Nutzung: /antworte N TEXT")
        term.type("/room")
        await term.screen.wait_for("  * ")
        assert room_id in term.screen.text.split("Beigetretene Räume:")[-1]

        term.type("/quit")
        await asyncio.wait_for(term.task, timeout=15)
        assert "Auf Wiedersehen!" in term.screen.text

    # A second session finds the same direct chat and shows the bot's last messages.
    async with terminal(synapse, person.user_id, person.password, bot.user_id) as again:
        await again.screen.wait_for("Angemeldet als")
        assert again.room_id() == room_id
        await again.screen.wait_for("(1) Zweite")
        assert "Neuer Direktchat" not in again.screen.text
    assert bot.messages(room_id=room_id, since=0)  # the bot saw the whole conversation


async def test_chat_joins_a_dm_the_bot_opened(
    synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    bot: MatrixUser = await make_user("demobot")
    person = await register_user("lotse")
    room_id = await bot.create_dm(person.user_id)

    async with terminal(synapse, person.user_id, person.password, bot.user_id) as term:
        await term.screen.wait_for("Angemeldet als")
        assert term.room_id() == room_id
        assert "Neuer Direktchat" not in term.screen.text
    # End of input (Ctrl-D) ended the session without /quit.
    assert term.task.done() and term.task.exception() is None


async def test_chat_with_a_key_store_reads_an_encrypted_dm_the_bot_opened(
    tmp_path: Path, synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    """`make demo`'s chat keeps a key store, so a pilot reads the encrypted direct chat the
    bot opens for a notification."""
    bot: MatrixUser = await make_user("demobot", encryption=True)
    person = await register_user("lotsin")
    room_id = await bot.create_dm(person.user_id, encrypted=True)

    async with terminal(synapse, person.user_id, person.password, bot.user_id,
                        tmp_path / "chat-store") as term:  # fmt: skip
        await term.screen.wait_for("Angemeldet als")
        assert term.room_id() == room_id
        await bot.wait_for_join(room_id, person.user_id)
        await bot.send(room_id, "m.room.message",
                       {"msgtype": "m.notice", "body": "Neue Anfrage #7 für Sie"})  # fmt: skip
        await term.screen.wait_for("Neue Anfrage #7 für Sie")
        bot.mark()
        term.type("!übernehmen 7")
        answer = await bot.wait_for_message(room_id=room_id, sender=person.user_id)
        assert answer.body == "!übernehmen 7" and getattr(answer.event, "decrypted", False)


async def test_wrong_password_is_reported_not_raised(
    synapse: Synapse, register_user: RegisterUser, make_user: MakeUser
) -> None:
    bot: MatrixUser = await make_user("demobot")
    person = await register_user("koordination")
    async with terminal(synapse, person.user_id, "falsch", bot.user_id) as term:
        await asyncio.wait_for(term.task, timeout=15)
        assert "Anmeldung fehlgeschlagen" in term.screen.text


async def _joined(user: MatrixUser, room_id: str) -> bool:
    await user.wait_for_join(room_id, user.user_id)
    return True
