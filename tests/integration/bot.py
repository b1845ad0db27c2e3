"""Running the real bot in-process against the test homeserver.

`BotRunner` writes a config file the way an admin would, starts `App` in a task, waits for
its first completed sync, and can stop and start it again on the same database and device
(for restart tests). `run_cli` starts the real `lotsenbot` command as a subprocess, for
tests of exit codes and signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lotsenbot.app import App
from lotsenbot.config import Config, load_config
from lotsenbot.core.feature import Feature


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
