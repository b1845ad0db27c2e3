"""Putting user text into Markdown safely.

Catalogue texts are Markdown. Anything a user wrote that is shown back (a ticket text, a
mistyped command) goes through :func:`escape`, so it cannot turn into links, headings or
formatting; the transport additionally renders with raw HTML disabled and sanitises.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&@:])")


def escape(text: str) -> str:
    """Escape Markdown syntax so the text renders literally (line breaks kept)."""
    return _SPECIAL.sub(r"\\\1", text)


def quote(text: str) -> str:
    """A user's multi-line text as an escaped Markdown block quote."""
    return "\n".join("> " + escape(line) if line.strip() else ">" for line in text.splitlines())
