"""Running the real bot in-process against the test homeserver.

`BotRunner` writes a config file the way an admin would, starts `App` in a task, waits for
its first completed sync, and can stop and start it again on the same database and device
(for restart tests). `run_cli` starts the real `lotsenbot` command as a subprocess, for
tests of exit codes and signals.

`bot_sections`/`make_bot` build the config every test module needs (account, store, database,
coordinators, departments) from what makes that test different, and `open_dm`/`ask` are the
way a person starts a chat with the bot and asks it something, so the tests say only that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lotsenbot.app import App
from lotsenbot.config import Config, load_config
from lotsenbot.core.feature import Feature
from lotsenbot.devserver import Synapse
from tests.integration.conftest import Account, RegisterUser
from tests.integration.helpers import MatrixUser, Predicate, Received

REPLY_TIMEOUT = 15.0
"""Seconds a person waits for the bot's answer (or its join) unless a test says otherwise."""


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(type(value))


def write_config(path: Path, sections: dict[str, Any]) -> Path:
    """Write a TOML config: dict values become tables, lists of dicts arrays of tables."""
    lines: list[str] = []
    for name, section in sections.items():
        if isinstance(section, list):
            for item in section:
                lines.append(f"[[{name}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in item.items()]
                lines.append("")
            continue
        nested = {k: v for k, v in section.items() if isinstance(v, dict)}
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in section.items() if k not in nested]
        lines.append("")
        for sub, values in nested.items():
            lines.append(f"[{name}.{sub}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    tomllib.loads(path.read_text("utf-8"))  # the test's own config must be valid TOML
    return path


def bot_sections(
    synapse: Synapse,
    account: Account,
    *,
    coordinators: Sequence[str] = (),
    pilots: Sequence[str] = (),
    departments: Sequence[Mapping[str, Any]] | None = None,
    matrix: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config of a bot logged in as ``account`` on ``synapse``, serving that server.

    Without ``departments`` there is one, "it", whose pilots are ``pilots``; pass ``()`` for
    a bot without departments. ``matrix`` adds to (or overrides) the ``[matrix]`` table and
    ``extra`` adds whole sections such as ``tickets`` or ``metrics``.
    """
    if departments is None:
        departments = [{"id": "it", "name": "IT-Service", "pilots": list(pilots)}]
    sections: dict[str, Any] = {
        "matrix": {
            "homeserver": synapse.url,
            "user_id": account.user_id,
            "password": account.password,
            "store_path": "store",
            "allowed_servers": [synapse.server_name],
            # The simulated people are plain clients unless a test gives them keys; tests of
            # encrypted direct chats opened by the bot pass True.
            "encrypt_direct_chats": False,
            **(matrix or {}),
        },
        "database": {"path": "bot.db"},
        "bot": {"coordinators": list(coordinators)},
        "departments": [dict(department) for department in departments],
        # The same answers on every machine, whether or not mythes-de is installed.
        "faq": {"thesaurus": False},
    }
    sections.update(extra or {})
    return sections


async def make_bot(
    tmp_path: Path,
    synapse: Synapse,
    register_user: RegisterUser,
    *,
    coordinators: Sequence[str] = (),
    pilots: Sequence[str] = (),
    departments: Sequence[Mapping[str, Any]] | None = None,
    matrix: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> BotRunner:
    """A fresh bot account and a not yet started `BotRunner` in ``tmp_path / "bot"``;
    the keyword arguments are those of `bot_sections`."""
    account = await register_user("lotsenbot")
    sections = bot_sections(synapse, account, coordinators=coordinators, pilots=pilots,
                            departments=departments, matrix=matrix, extra=extra)  # fmt: skip
    return BotRunner(tmp_path / "bot", sections)


async def open_dm(
    person: MatrixUser, bot_id: str, *, encrypted: bool = False, timeout: float = REPLY_TIMEOUT
) -> str:
    """Start a direct chat with the bot and wait until it has joined (it only reads rooms it
    is in, so a message sent earlier would go unanswered)."""
    room = await person.create_dm(bot_id, encrypted=encrypted)
    await person.wait_for_join(room, bot_id, timeout=timeout)
    return room


async def ask(
    person: MatrixUser,
    room: str,
    bot_id: str,
    text: str,
    predicate: Predicate | None = None,
    *,
    timeout: float = REPLY_TIMEOUT,
) -> Received:
    """Send ``text`` and return the bot's next message in ``room`` (matching ``predicate``).

    Marks first, so an answer that arrives before the wait starts still counts and an older
    message of the bot does not."""
    person.mark()
    await person.send_text(room, text)
    return await person.wait_for_message(room, sender=bot_id, predicate=predicate, timeout=timeout)


class BotRunner:
    def __init__(
        self,
        folder: Path,
        sections: dict[str, Any],
        features: Sequence[Feature] | None = None,
    ) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = write_config(folder / "config.toml", sections)
        self.features_factory = features
        self.app: App | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    async def start(self, features: Sequence[Feature] | None = None) -> App:
        app = App(self.config, features=features)
        await app.start()
        self.app = app
        self._task = asyncio.create_task(app.run(), name="bot")
        ready = asyncio.create_task(app.ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, timeout=30,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if self._task in done:
            self._task.result()  # raise what ended the bot
        if ready not in done:
            raise TimeoutError("bot did not complete its first sync within 30 s")
        return app

    async def stop(self) -> None:
        if self.app is None or self._task is None:
            return
        self.app.stop()
        try:
            await asyncio.wait_for(self._task, timeout=20)
        finally:
            self.app = None
            self._task = None

    async def kill(self) -> None:
        """Stop abruptly: cancel everything without the graceful path (closest to SIGKILL
        in-process; subprocess tests use a real SIGKILL)."""
        if self.app is None or self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        with contextlib.suppress(Exception):
            await self.app.db.close()
        self.app = None
        self._task = None


def run_cli(args: Sequence[str], *, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "lotsenbot", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
