"""Putting user text into Markdown safely.

Catalogue texts are Markdown. Anything a user wrote that is shown back (a ticket text, a
mistyped command) goes through :func:`escape`, so it cannot turn into links, headings or
formatting; the transport additionally renders with raw HTML disabled and sanitises.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&@:=])")
# Indentation at the start of a line: four spaces would make a code block.
_INDENT = re.compile(r"^[ \t]+", re.M)


def escape(text: str) -> str:
    """Escape Markdown syntax so the text renders literally (line breaks kept).

    Punctuation is backslash-escaped ("===" under a line would make it a heading); leading
    spaces become no-break spaces, which keep the indentation without making a code block.
    """
    escaped = _SPECIAL.sub(r"\\\1", text)
    return _INDENT.sub(lambda m: m.group(0).replace("\t", "    ").replace(" ", "\u00a0"), escaped)


def quote(text: str) -> str:
    """A user's multi-line text as an escaped Markdown block quote."""
    return "\n".join("> " + escape(line) if line.strip() else ">" for line in text.splitlines())
