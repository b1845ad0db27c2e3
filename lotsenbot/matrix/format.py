"""Markdown → Matrix message content: a plain ``body`` and sanitised HTML.

markdown-it-py renders with raw HTML disabled (``js-default`` preset: no inline HTML, no
linkify), and nh3 (ammonia) then keeps only the tags and attributes the Matrix spec
recommends for ``formatted_body``, and only http(s)/mailto links. Room-wide mentions are
neutralised in the plain body so that clients with legacy push rules do not ping
``@room``; explicit ``m.mentions`` is set on every message by the sender.
"""

from __future__ import annotations

import re
from typing import Any

import nh3
from markdown_it import MarkdownIt

from lotsenbot.core.types import OutMessage

_MD = MarkdownIt("js-default", {"breaks": True, "html": False, "linkify": False}).enable("table")

ALLOWED_TAGS = {
    "a", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td",
    "th", "thead", "tr", "u", "ul", "details", "summary", "span",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href"}, "ol": {"start"}, "code": {"class"}}
ALLOWED_SCHEMES = {"http", "https", "mailto"}

_ROOM_PING = re.compile(r"@room\b", re.IGNORECASE)
_ZERO_WIDTH_JOINER = "\u2060"


def sanitize_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def render_html(markdown: str) -> str:
    return sanitize_html(_MD.render(markdown)).strip()


# The characters lotsenbot.core.markdown.escape escapes; kept in step by a test.
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~&@:=])")
_PLACEHOLDER_BASE = 0xF0000  # private-use plane: never in real text


def plain_text(markdown: str) -> str:
    """A readable plain-text ``body``: headings and emphasis markers removed, but characters
    the author escaped (user text) kept exactly as typed."""
    text = _ESCAPED.sub(lambda m: chr(_PLACEHOLDER_BASE + ord(m.group(1))), markdown)
    text = re.sub(r"(?m)^#{1,6}\s+", "", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", text)
    text = re.sub(r"(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])", r"\1", text)
    return "".join(
        chr(ord(ch) - _PLACEHOLDER_BASE) if ord(ch) >= _PLACEHOLDER_BASE and
        ord(ch) < _PLACEHOLDER_BASE + 128 else ch
        for ch in text
    )  # fmt: skip


def defuse_room_ping(text: str) -> str:
    return _ROOM_PING.sub(lambda m: "@" + _ZERO_WIDTH_JOINER + m.group(0)[1:], text)


def message_content(message: OutMessage) -> dict[str, Any]:
    """The ``m.room.message`` content of a bot message (always ``m.notice``)."""
    html = defuse_room_ping(render_html(message.markdown))
    content: dict[str, Any] = {
        "msgtype": "m.notice",
        "body": defuse_room_ping(plain_text(message.markdown)),
        "format": "org.matrix.custom.html",
        "formatted_body": html,
        "m.mentions": {"user_ids": sorted(set(message.mentions))},
    }
    relation = relates_to(message)
    if relation is not None:
        content["m.relates_to"] = relation
    for key, value in message.meta.items():
        content[key] = value
    return content


def relates_to(message: OutMessage) -> dict[str, Any] | None:
    """The ``m.relates_to`` of a message: a reply, and with ``thread_root`` its thread.

    A message in a thread relates to the thread's root with ``rel_type: m.thread``, so that
    clients show it there. Its ``m.in_reply_to`` is the message it answers, marked
    ``is_falling_back: false`` because it really replies to it; without one (a direct chat,
    where the bot does not quote) it names the thread root as the fallback for clients that
    know no threads, marked ``is_falling_back: true``."""
    if message.thread_root:
        return {
            "rel_type": "m.thread",
            "event_id": message.thread_root,
            "is_falling_back": message.reply_to is None,
            "m.in_reply_to": {"event_id": message.reply_to or message.thread_root},
        }
    if message.reply_to:
        return {"m.in_reply_to": {"event_id": message.reply_to}}
    return None


def poll_content(message: OutMessage) -> dict[str, Any]:
    """An MSC3381 poll start in the unstable form Element renders, with a text fallback."""
    assert message.poll is not None
    poll = message.poll
    fallback = plain_text(message.markdown)
    content: dict[str, Any] = {
        "org.matrix.msc3381.poll.start": {
            "question": {"org.matrix.msc1767.text": poll.question, "body": poll.question,
                         "msgtype": "m.text"},
            "kind": "org.matrix.msc3381.poll.disclosed",
            "max_selections": poll.max_selections,
            "answers": [
                {"id": answer_id, "org.matrix.msc1767.text": text}
                for answer_id, text in poll.answers
            ],
        },
        "org.matrix.msc1767.text": fallback,
        "body": fallback,
        "m.mentions": {"user_ids": sorted(set(message.mentions))},
    }  # fmt: skip
    for key, value in message.meta.items():
        content[key] = value
    return content


def poll_end_content(message: OutMessage) -> dict[str, Any]:
    """An MSC3381 poll end referring to the poll's start, so that clients show it closed;
    the text is the fallback for clients without polls."""
    assert message.ends_poll is not None
    fallback = plain_text(message.markdown)
    content: dict[str, Any] = {
        "org.matrix.msc3381.poll.end": {},
        "m.relates_to": {"rel_type": "m.reference", "event_id": message.ends_poll},
        "org.matrix.msc1767.text": fallback,
        "body": fallback,
        "m.mentions": {"user_ids": sorted(set(message.mentions))},
    }
    for key, value in message.meta.items():
        content[key] = value
    return content
