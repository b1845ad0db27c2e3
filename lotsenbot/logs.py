"""Logging setup: plain or JSON lines; message bodies only when deliberately enabled.

Secrets never reach the log: nio's request logging (which contains access tokens in URLs)
is kept at WARNING, and the bot itself logs event ids, never bodies.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from lotsenbot.config import LoggingConfig


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(config: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)
    # At DEBUG, aiosqlite logs statements with their parameters (message bodies), and
    # nio's schema checks quote whole events: neither belongs in an ordinary log.
    for noisy in ("nio", "aiohttp", "apscheduler", "peewee", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for chatty in ("nio.events", "nio.responses"):
        logging.getLogger(chatty).setLevel(logging.CRITICAL)
